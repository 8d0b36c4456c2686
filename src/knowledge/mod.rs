//! Knowledge base and vector index.
