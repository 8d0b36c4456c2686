//! Agents: what the bot says. This first reply step answers each intent with a fixed template
//! from `prompts/replies.toml`; the specialist agents (prompts/agents/) build on the same entry
//! point.

pub mod answer;
pub mod brain;
pub mod guardrails;
pub mod handoff;
pub mod llm_answer;
pub mod preview;
mod replies;
pub mod router;
pub mod scheduling;
mod spec;
pub mod summary;

pub use replies::{ReplyBook, ReplyContext};
pub use spec::{AgentFileError, AgentRegistry, AgentSpec, KNOWN_TOOLS, parse_agent};
