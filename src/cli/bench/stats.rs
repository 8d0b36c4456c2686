//! Bookkeeping for the figures the bench reports: latency histograms (microseconds, three
//! significant digits), their summaries, status counts, and the generator's own CPU time.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Longest latency a histogram tracks exactly: one hour, in microseconds. Longer ones saturate.
const MAX_TRACKED_US: u64 = 3_600_000_000;

/// A histogram of latencies in microseconds, 1 µs to one hour, three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("static bounds are valid")
}

/// Records `elapsed` in microseconds; anything over an hour counts as an hour.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(us.min(MAX_TRACKED_US));
}

/// What a latency distribution looks like, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self {
                count: 0,
                mean_us: 0.0,
                p50_us: 0,
                p90_us: 0,
                p99_us: 0,
                max_us: 0,
            };
        }
        Self {
            count: histogram.len(),
            mean_us: histogram.mean(),
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
        }
    }

    /// `p50 1.20 ms, p90 ..., p99 ..., max ...`, or `none` when nothing was recorded.
    pub fn describe(&self) -> String {
        if self.count == 0 {
            return "none recorded".to_owned();
        }
        format!(
            "p50 {}, p90 {}, p99 {}, max {} (mean {}, n = {})",
            format_us(self.p50_us),
            format_us(self.p90_us),
            format_us(self.p99_us),
            format_us(self.max_us),
            format_us(self.mean_us.round() as u64),
            self.count
        )
    }
}

/// A latency for people: `850 µs`, `1.25 ms`, `2.50 s`.
pub fn format_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// What the webhook senders saw: acknowledgement latency, statuses, transport errors, timing.
#[derive(Debug, Clone)]
pub struct AckStats {
    pub latency: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<&'static str, u64>,
    /// When the last response (or error) came back.
    pub last_done: Option<Instant>,
}

impl Default for AckStats {
    fn default() -> Self {
        Self {
            latency: latency_histogram(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            last_done: None,
        }
    }
}

impl AckStats {
    pub fn record_status(&mut self, status: u16, elapsed: Duration, done: Instant) {
        *self.statuses.entry(status).or_default() += 1;
        if (200..300).contains(&status) {
            record(&mut self.latency, elapsed);
        }
        self.note_done(done);
    }

    pub fn record_error(&mut self, kind: &'static str, done: Instant) {
        *self.errors.entry(kind).or_default() += 1;
        self.note_done(done);
    }

    fn note_done(&mut self, done: Instant) {
        self.last_done = Some(self.last_done.map_or(done, |t| t.max(done)));
    }

    pub fn merge(&mut self, other: &AckStats) {
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        for (kind, n) in &other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        if let Some(done) = other.last_done {
            self.note_done(done);
        }
    }

    /// Requests that got any answer or error.
    pub fn sent(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.errors.values().sum::<u64>()
    }

    /// Requests answered 2xx: the server recorded them.
    pub fn acknowledged(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| (200..300).contains(*status))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Parses `30s`, `500ms`, `2m`, `1h` or a bare number of seconds (`1.5`).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{raw}` is not a duration: use for example 30s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{raw}`: use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{raw}` is out of range"))
}

/// CPU time (user + system) this process has used so far, where the platform tells (Linux).
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_proc_stat_cpu(&stat)
}

/// `utime + stime` from a `/proc/<pid>/stat` line. Both are in `USER_HZ` ticks, which the kernel
/// fixes at 100 per second for user space.
fn parse_proc_stat_cpu(stat: &str) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may hold spaces; fields count from after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_percentiles_in_microseconds() {
        let mut h = latency_histogram();
        for us in 1..=1000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p90_us, 900);
        assert_eq!(s.p99_us, 990);
        assert_eq!(s.max_us, 1000);
        assert!((s.mean_us - 500.5).abs() < 1.0);
    }

    #[test]
    fn an_empty_histogram_summarises_to_zeros() {
        let s = LatencySummary::of(&latency_histogram());
        assert_eq!(s.count, 0);
        assert_eq!(s.max_us, 0);
        assert_eq!(s.describe(), "none recorded");
    }

    #[test]
    fn latencies_past_an_hour_saturate_instead_of_failing() {
        let mut h = latency_histogram();
        record(&mut h, Duration::from_secs(10 * 3600));
        assert_eq!(h.len(), 1);
        assert!(h.max() >= MAX_TRACKED_US);
    }

    #[test]
    fn ack_stats_merge_and_count_only_2xx_as_acknowledged() {
        let now = Instant::now();
        let mut a = AckStats::default();
        a.record_status(200, Duration::from_micros(100), now);
        a.record_status(401, Duration::from_micros(50), now);
        let mut b = AckStats::default();
        b.record_status(
            200,
            Duration::from_micros(300),
            now + Duration::from_millis(5),
        );
        b.record_error("connect", now);
        a.merge(&b);
        assert_eq!(a.sent(), 4);
        assert_eq!(a.acknowledged(), 2);
        assert_eq!(a.statuses[&200], 2);
        assert_eq!(a.statuses[&401], 1);
        assert_eq!(a.errors["connect"], 1);
        assert_eq!(a.latency.len(), 2, "only acknowledged requests are timed");
        assert_eq!(a.last_done, Some(now + Duration::from_millis(5)));
    }

    #[test]
    fn latencies_read_well() {
        assert_eq!(format_us(850), "850 µs");
        assert_eq!(format_us(1_250), "1.25 ms");
        assert_eq!(format_us(2_500_000), "2.50 s");
    }

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn cpu_time_is_read_from_proc_stat_even_with_odd_process_names() {
        let line = "1234 (parley (bench) x) R 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3";
        assert_eq!(parse_proc_stat_cpu(line), Some(Duration::from_millis(3000)));
        assert_eq!(parse_proc_stat_cpu("garbage"), None);
    }
}
