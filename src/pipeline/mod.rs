//! The steps a message goes through (DESIGN.md section 1): the recorder makes a webhook's
//! messages durable and announces them; workers take one conversation at a time and answer its
//! messages in order, writing replies to the outbox in the same transaction; the sender delivers
//! the outbox; recovery re-announces anything a crash left behind.

pub mod compose;
pub mod recorder;
pub mod recovery;
pub mod sender;
pub mod worker;

pub use recorder::{RecordError, RecordSummary, Recorder};
