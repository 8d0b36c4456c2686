//! `parley bench-knowledge`: speed of the knowledge base on a temporary data dir (SQLite and
//! Qdrant Edge, BM25 only unless `PARLEY_EMBEDDING_MODEL` is set), through the same code paths as
//! uploads and agent searches:
//! - ingestion throughput in chunks per second (Markdown documents, parse to durable index);
//! - one 100-page PDF, end to end;
//! - search latency (p50, p99) as the index grows to each `--sizes` count of chunks, for queries
//!   filtered by tenant, after the index has been optimized as it is after every job.
//!
//! The machine is shared, so figures vary between runs; run it in release mode.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;

use crate::config::Config;
use crate::domain::TenantId;
use crate::knowledge::index::IndexQuery;
use crate::knowledge::{Knowledge, Upload};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct KnowledgeBenchArgs {
    /// Index sizes (chunks) at which search latency is measured.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub sizes: Vec<usize>,
    /// Searches per measurement.
    #[arg(long, default_value_t = 2000)]
    pub queries: usize,
    /// The PDF for the end-to-end figure.
    #[arg(long, default_value = "tests/data/bench/100-pages.pdf")]
    pub pdf: PathBuf,
    /// Chunks per generated document.
    #[arg(long, default_value_t = 500)]
    pub chunks_per_document: usize,
}

const WORDS: &[&str] = &[
    "apartment",
    "tower",
    "garden",
    "payment",
    "booking",
    "amenity",
    "clubhouse",
    "parking",
    "schedule",
    "visit",
    "brochure",
    "possession",
    "registration",
    "loan",
    "interest",
    "balcony",
    "kitchen",
    "lobby",
    "security",
    "lift",
    "pool",
    "gym",
    "school",
    "hospital",
    "metro",
    "airport",
    "highway",
    "discount",
    "refund",
    "maintenance",
    "water",
    "power",
    "backup",
    "solar",
    "rainwater",
    "terrace",
    "duplex",
    "villa",
    "plot",
    "carpet",
    "area",
    "price",
    "crore",
    "lakh",
    "emi",
    "bank",
    "approval",
    "rera",
    "occupancy",
    "handover",
];

/// A Markdown document of `sections` sections of about 60 words each (one chunk per section).
fn document(seed: usize, sections: usize) -> String {
    let mut out = String::with_capacity(sections * 500);
    let mut state = seed as u64 * 2_654_435_761 + 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as usize
    };
    out.push_str(&format!("# Document {seed}\n\n"));
    for s in 0..sections {
        out.push_str(&format!("## Section {s}\n\n"));
        for _ in 0..60 {
            out.push_str(WORDS[next() % WORDS.len()]);
            out.push(' ');
        }
        out.push_str(&format!("unique{seed}x{s}.\n\n"));
    }
    out
}

fn percentiles(latencies: &mut [Duration]) -> String {
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    format!(
        "p50 {:.2} ms, p99 {:.2} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    )
}

/// A knowledge base in a temporary data dir (SQLite and Qdrant Edge) with the embedding and
/// chunking settings of the environment; it lives as long as the returned directory.
pub async fn temporary_knowledge() -> anyhow::Result<(tempfile::TempDir, Store, Knowledge)> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("OPENAI_")
                || k.starts_with("PARLEY_EMBEDDING")
                || k.starts_with("PARLEY_CHUNK")
        })
        .collect();
    env.insert("PARLEY_DATA_DIR".into(), dir.path().display().to_string());
    env.insert("PARLEY_CONFIG".into(), "/dev/null".into());
    let config = Config::from_sources(&env)?;
    let store = Store::open_configured(&config, None).await?;
    let knowledge = Knowledge::open(store.clone(), &config).await?;
    Ok((dir, store, knowledge))
}

pub async fn run(args: KnowledgeBenchArgs) -> anyhow::Result<()> {
    let (_dir, store, knowledge) = temporary_knowledge().await?;
    let tenant = TenantId::default_tenant();
    println!(
        "knowledge bench: {} backend, temporary data dir, {} CPUs (shared machine)",
        knowledge.backend_name(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // 1. The 100-page PDF, end to end (parse, chunk, store, index, durable).
    let pdf =
        std::fs::read(&args.pdf).with_context(|| format!("cannot read {}", args.pdf.display()))?;
    let started = Instant::now();
    let job = knowledge
        .ingest(
            &tenant,
            vec![Upload {
                name: "bench.pdf".into(),
                bytes: Bytes::from(pdf),
            }],
            Vec::new(),
            &mut |_| {},
        )
        .await?;
    anyhow::ensure!(
        job.files[0].error.is_none(),
        "the PDF failed: {:?}",
        job.files[0].error
    );
    println!(
        "100-page PDF end to end: {:.3} s ({} chunks)",
        started.elapsed().as_secs_f64(),
        job.chunks_done
    );

    // 2. Ingestion throughput, and 3. search latency at each size.
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    let mut indexed = job.chunks_done as usize;
    let mut seed = 0;
    let mut ingest_time = Duration::ZERO;
    let mut ingested = 0usize;
    for size in sizes {
        while indexed < size {
            let docs: Vec<Upload> = (0..10)
                .map(|_| {
                    seed += 1;
                    Upload {
                        name: format!("doc-{seed}.md"),
                        bytes: Bytes::from(document(seed, args.chunks_per_document)),
                    }
                })
                .collect();
            let started = Instant::now();
            let job = knowledge
                .ingest(&tenant, docs, Vec::new(), &mut |_| {})
                .await?;
            ingest_time += started.elapsed();
            ingested += job.chunks_done as usize;
            indexed += job.chunks_done as usize;
        }
        println!(
            "ingestion so far: {ingested} chunks in {:.2} s = {:.0} chunks/s (index now {indexed} chunks; includes optimize after each job)",
            ingest_time.as_secs_f64(),
            ingested as f64 / ingest_time.as_secs_f64().max(1e-9)
        );
        let query_text = |q: usize| {
            format!(
                "{} {} {}",
                WORDS[q % WORDS.len()],
                WORDS[(q * 7 + 3) % WORDS.len()],
                WORDS[(q * 13 + 5) % WORDS.len()]
            )
        };
        let mut whole = Vec::with_capacity(args.queries);
        let mut index_only = Vec::with_capacity(args.queries);
        for q in 0..args.queries {
            let query = query_text(q);
            let started = Instant::now();
            let results = knowledge.search(&tenant, &query, &[], 5).await?;
            whole.push(started.elapsed());
            anyhow::ensure!(!results.is_empty(), "a search found nothing");
            let index_query = IndexQuery {
                tenant: tenant.as_str().to_owned(),
                tags: Vec::new(),
                sparse: knowledge.bm25().query(&query),
                dense: None,
                limit: 25,
            };
            let started = Instant::now();
            knowledge.index().search(index_query).await?;
            index_only.push(started.elapsed());
        }
        println!(
            "search at {indexed} chunks, {} queries, tenant-filtered: Knowledge::search top 5 (index + store) {}; index alone (BM25, 25 candidates) {}",
            whole.len(),
            percentiles(&mut whole),
            percentiles(&mut index_only)
        );
    }
    drop(knowledge);
    store.close().await;
    Ok(())
}
