//! The one retry schedule shared by every outbound API (WhatsApp, OpenAI, CRM, ...): exponential
//! backoff with jitter from `backon`, plus the durable form used by outboxes, where the delay
//! before attempt `n` is computed and stored rather than slept.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Exponential backoff with full jitter, capped.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// Outbound messages: 1 s, 2 s, 4 s, ... up to 5 minutes between attempts.
    pub const OUTBOUND: RetryPolicy = RetryPolicy {
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(300),
        max_attempts: 8,
    };

    /// A `backon` builder for in-process retries (`.retry(policy.builder())`).
    pub fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
    }

    /// How long to wait after failed attempt number `attempt` (1-based) before the next one, or
    /// `None` when attempts are exhausted. A provider's `Retry-After` wins when it is longer.
    pub fn delay_after(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let computed = self
            .builder()
            .build()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(self.max_delay);
        Some(match retry_after {
            Some(after) if after > computed => after.min(Duration::from_secs(3600)),
            _ => computed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stop_after_the_last_attempt() {
        let policy = RetryPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            max_attempts: 4,
        };
        for attempt in 1..4 {
            let delay = policy.delay_after(attempt, None).unwrap();
            // jitter adds up to one more base delay
            let base = Duration::from_millis(100 * 2u64.pow(attempt - 1));
            assert!(
                delay >= base && delay <= base * 2,
                "attempt {attempt}: {delay:?}"
            );
        }
        assert_eq!(policy.delay_after(4, None), None);
    }

    #[test]
    fn a_longer_retry_after_wins() {
        let delay = RetryPolicy::OUTBOUND
            .delay_after(1, Some(Duration::from_secs(30)))
            .unwrap();
        assert_eq!(delay, Duration::from_secs(30));
    }
}
