//! How much the lead hook adds to each message's handling, offline: rule extraction over typical
//! messages, and scoring. Prints median and p99 per call in microseconds.
//!
//! ```sh
//! cargo run --release --example leads_bench -- 20000
//! ```

use std::time::Instant;

use hdrhistogram::Histogram;
use parley::leads::score::{ScoreInput, score};
use parley::leads::{Engagement, LeadSource, LeadsConfig, Verification, extract::extract};

const MESSAGES: &[&str] = &[
    "Hi, my name is Asha Rao, email asha.rao@example.com",
    "mera naam rohit sharma hai, budget 1.5 cr hai",
    "call me at 9876543210, I want a 3 BHK in Baner",
    "I work at Infosys. Looking for a villa, possession within 6 months, home loan needed",
    "2 bhk wakad mein kitne ka hai? agle mahine tak lena hai",
    "what is the price of the sample flat?",
    "ok thanks",
];

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let config = LeadsConfig::default();
    let region = phonenumber::country::Id::IN;
    // Warm the lazily compiled patterns.
    for text in MESSAGES {
        extract(text, region, "INR");
    }
    let mut extraction = Histogram::<u64>::new(3).unwrap();
    let mut scoring = Histogram::<u64>::new(3).unwrap();
    for round in 0..rounds {
        let text = MESSAGES[round % MESSAGES.len()];
        let started = Instant::now();
        let signals = std::hint::black_box(extract(text, region, "INR"));
        extraction
            .record(started.elapsed().as_nanos() as u64)
            .unwrap();
        let started = Instant::now();
        std::hint::black_box(score(
            ScoreInput {
                facts: &signals.facts,
                verification: &Verification::default(),
                source: LeadSource::WhatsappInbound,
                engagement: &Engagement::default(),
                now_ms: 0,
            },
            &config,
        ));
        scoring.record(started.elapsed().as_nanos() as u64).unwrap();
    }
    for (name, h) in [("extract", &extraction), ("score", &scoring)] {
        println!(
            "{name}: n={} median={:.1}us p99={:.1}us",
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0
        );
    }
}
