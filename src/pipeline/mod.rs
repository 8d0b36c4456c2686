//! The steps a message goes through (DESIGN.md section 1): the recorder makes a webhook's
//! messages durable and announces them; workers take one conversation at a time and answer its
//! messages in order, writing replies to the outbox in the same transaction (the completer commits
//! many workers' completions together); the sender delivers the outbox; recovery re-announces
//! anything a crash left behind.

pub mod completer;
pub mod compose;
mod group_commit;
pub mod recorder;
pub mod recovery;
pub mod sender;
pub mod worker;

pub use completer::{CompleteError, Completer};
pub use recorder::{RecordError, RecordSummary, Recorder};
