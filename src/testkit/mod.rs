//! Local fakes of third-party HTTP APIs (Graph API, OpenAI) that record what they receive; used by tests and the load generator.

pub mod fake_crm;
pub mod fake_graph;
pub mod fake_openai;
