//! Matching the replies that reach the sink to the webhooks that caused them.
//!
//! The server answers each text message with exactly one reply, in order per conversation. So
//! each simulated prospect has a FIFO of messages sent and not yet answered; a reply to that
//! prospect answers the oldest. When the reply names the message it answers
//! (`context.message_id`), that message is taken instead, wherever it is in the queue. A reply
//! with nothing left to answer is a duplicate (or was never asked for), and is counted as such.
//!
//! The FIFO order is the order the bench *sent* in. With `--conversations` at least
//! `--concurrency`, one prospect almost never has two webhooks in flight at once, so the server
//! records them in that order too and the pairing is exact.

use super::envelope::{conversation_of_wa_id, seq_of_wamid};
use super::stats::{latency_histogram, record};
use hdrhistogram::Histogram;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

/// A message sent and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub seq: u64,
    pub sent_at: Instant,
    /// Whether the message belongs to the measured phase (warm-up messages do not).
    pub counted: bool,
}

/// One simulated prospect's unanswered messages, oldest first, and what was already answered.
#[derive(Debug, Default)]
pub struct Conversation {
    pending: VecDeque<Pending>,
    answered: HashSet<u64>,
}

/// How a reply was paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// It answers this message.
    Answers(Pending),
    /// It answers a message that already had its reply.
    Duplicate,
    /// Nothing was waiting for it: a duplicate without `context`, or a reply to a stranger.
    Unmatched,
}

impl Conversation {
    pub fn sent(&mut self, pending: Pending) {
        self.pending.push_back(pending);
    }

    /// The webhook for `seq` was not acknowledged, so no reply is owed for it.
    pub fn withdraw(&mut self, seq: u64) {
        self.pending.retain(|p| p.seq != seq);
    }

    /// Pairs a reply with the message it answers: the one named by `context`, else the oldest.
    pub fn reply(&mut self, context: Option<u64>) -> Pairing {
        if let Some(seq) = context {
            if let Some(at) = self.pending.iter().position(|p| p.seq == seq) {
                let pending = self.pending.remove(at).expect("position is in range");
                self.answered.insert(seq);
                return Pairing::Answers(pending);
            }
            if self.answered.contains(&seq) {
                return Pairing::Duplicate;
            }
        }
        match self.pending.pop_front() {
            Some(pending) => {
                self.answered.insert(pending.seq);
                Pairing::Answers(pending)
            }
            None => Pairing::Unmatched,
        }
    }

    pub fn outstanding(&self, counted_only: bool) -> usize {
        self.pending
            .iter()
            .filter(|p| p.counted || !counted_only)
            .count()
    }
}

/// What the sink has seen so far.
#[derive(Debug, Clone)]
pub struct ReplyResults {
    /// Send-to-reply latency of measured messages.
    pub end_to_end: Histogram<u64>,
    pub replies: u64,
    pub warmup_replies: u64,
    pub duplicates: u64,
    pub unmatched: u64,
    pub mark_reads: u64,
    /// When the last reply to a measured message arrived.
    pub last_reply: Option<Instant>,
}

impl Default for ReplyResults {
    fn default() -> Self {
        Self {
            end_to_end: latency_histogram(),
            replies: 0,
            warmup_replies: 0,
            duplicates: 0,
            unmatched: 0,
            mark_reads: 0,
            last_reply: None,
        }
    }
}

/// Shared between the senders (who note what they send) and the sink (which pairs replies).
#[derive(Debug)]
pub struct ReplyTracker {
    run: String,
    conversations: Vec<Mutex<Conversation>>,
    results: Mutex<ReplyResults>,
}

impl ReplyTracker {
    pub fn new(run: String, conversations: u32) -> Self {
        Self {
            run,
            conversations: (0..conversations).map(|_| Mutex::default()).collect(),
            results: Mutex::default(),
        }
    }

    fn conversation(&self, index: u32) -> &Mutex<Conversation> {
        &self.conversations[index as usize]
    }

    /// Call just before the webhook for `seq` goes out: its reply may overtake the response.
    pub fn sent(&self, conversation: u32, seq: u64, sent_at: Instant, counted: bool) {
        lock(self.conversation(conversation)).sent(Pending {
            seq,
            sent_at,
            counted,
        });
    }

    /// The webhook for `seq` failed: no reply is owed.
    pub fn withdraw(&self, conversation: u32, seq: u64) {
        lock(self.conversation(conversation)).withdraw(seq);
    }

    /// A reply to `to` arrived at `at`, naming `context` (a wamid) if the server set one.
    pub fn reply(&self, to: &str, context: Option<&str>, at: Instant) -> Pairing {
        let pairing =
            match conversation_of_wa_id(to).filter(|&c| (c as usize) < self.conversations.len()) {
                Some(conversation) => {
                    let context = context.and_then(|wamid| seq_of_wamid(&self.run, wamid));
                    lock(self.conversation(conversation)).reply(context)
                }
                None => Pairing::Unmatched,
            };
        let mut results = lock(&self.results);
        match pairing {
            Pairing::Answers(pending) if pending.counted => {
                results.replies += 1;
                record(
                    &mut results.end_to_end,
                    at.saturating_duration_since(pending.sent_at),
                );
                results.last_reply = Some(results.last_reply.map_or(at, |t| t.max(at)));
            }
            Pairing::Answers(_) => results.warmup_replies += 1,
            Pairing::Duplicate => results.duplicates += 1,
            Pairing::Unmatched => results.unmatched += 1,
        }
        pairing
    }

    pub fn mark_read(&self) {
        lock(&self.results).mark_reads += 1;
    }

    /// Messages still waiting for their reply.
    pub fn outstanding(&self, counted_only: bool) -> usize {
        self.conversations
            .iter()
            .map(|c| lock(c).outstanding(counted_only))
            .sum()
    }

    pub fn results(&self) -> ReplyResults {
        lock(&self.results).clone()
    }
}

/// The bench's locks guard plain counters; a panic elsewhere cannot leave them inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bench::envelope::{wa_id, wamid};
    use std::time::Duration;

    fn pending(seq: u64, at: Instant) -> Pending {
        Pending {
            seq,
            sent_at: at,
            counted: true,
        }
    }

    #[test]
    fn replies_answer_the_oldest_unanswered_message_first() {
        let t0 = Instant::now();
        let mut c = Conversation::default();
        c.sent(pending(1, t0));
        c.sent(pending(4, t0));
        assert_eq!(c.reply(None), Pairing::Answers(pending(1, t0)));
        assert_eq!(c.reply(None), Pairing::Answers(pending(4, t0)));
        assert_eq!(c.reply(None), Pairing::Unmatched);
    }

    #[test]
    fn a_reply_naming_its_message_takes_that_one() {
        let t0 = Instant::now();
        let mut c = Conversation::default();
        c.sent(pending(1, t0));
        c.sent(pending(4, t0));
        assert_eq!(c.reply(Some(4)), Pairing::Answers(pending(4, t0)));
        assert_eq!(c.reply(Some(4)), Pairing::Duplicate);
        assert_eq!(c.outstanding(true), 1);
    }

    #[test]
    fn a_withdrawn_message_is_owed_no_reply() {
        let t0 = Instant::now();
        let mut c = Conversation::default();
        c.sent(pending(1, t0));
        c.sent(pending(2, t0));
        c.withdraw(1);
        assert_eq!(c.reply(None), Pairing::Answers(pending(2, t0)));
        assert_eq!(c.outstanding(false), 0);
    }

    #[test]
    fn tracker_times_measured_replies_and_counts_the_rest() {
        let t0 = Instant::now();
        let tracker = ReplyTracker::new("run".into(), 2);
        tracker.sent(0, 0, t0, false);
        tracker.sent(1, 1, t0, true);
        tracker.sent(0, 2, t0, true);
        assert_eq!(tracker.outstanding(true), 2);
        assert_eq!(tracker.outstanding(false), 3);

        let t1 = t0 + Duration::from_millis(3);
        assert!(matches!(
            tracker.reply(&wa_id(0), None, t1),
            Pairing::Answers(Pending {
                seq: 0,
                counted: false,
                ..
            })
        ));
        assert!(matches!(
            tracker.reply(&wa_id(1), Some(&wamid("run", 1)), t1),
            Pairing::Answers(Pending { seq: 1, .. })
        ));
        let t2 = t0 + Duration::from_millis(7);
        assert!(matches!(
            tracker.reply(&wa_id(0), None, t2),
            Pairing::Answers(Pending { seq: 2, .. })
        ));
        assert_eq!(
            tracker.reply(&wa_id(1), Some(&wamid("run", 1)), t2),
            Pairing::Duplicate
        );
        assert_eq!(tracker.reply(&wa_id(0), None, t2), Pairing::Unmatched);
        assert_eq!(tracker.reply("447700900123", None, t2), Pairing::Unmatched);
        assert_eq!(tracker.reply(&wa_id(5), None, t2), Pairing::Unmatched);
        tracker.mark_read();

        let r = tracker.results();
        assert_eq!(r.replies, 2);
        assert_eq!(r.warmup_replies, 1);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.unmatched, 3);
        assert_eq!(r.mark_reads, 1);
        assert_eq!(r.last_reply, Some(t2));
        assert_eq!(r.end_to_end.len(), 2);
        assert!(r.end_to_end.equivalent(r.end_to_end.max(), 7_000));
        assert_eq!(tracker.outstanding(false), 0);
    }
}
