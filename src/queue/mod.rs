//! The per-conversation ordered work queue and its locks, in-process or in Redis.
