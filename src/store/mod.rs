//! Durable records in SQLite or PostgreSQL.
