//! Conversation memory: recent turns, rolling summary and lead facts, in-process or in Redis.
