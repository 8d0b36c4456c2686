//! Command-line subcommands that are more than a call into the library.

pub mod bench;
pub mod chat;
pub mod eval;
pub mod eval_agents;
pub mod eval_retrieval;
pub mod ingest;
pub mod knowledge_bench;
