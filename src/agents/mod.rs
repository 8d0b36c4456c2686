//! Agents: what the bot says. This first reply step answers each intent with a fixed template
//! from `prompts/replies.toml`; the specialist agents (prompts/agents/) build on the same entry
//! point.

pub mod handoff;
mod replies;

pub use replies::{ReplyBook, ReplyContext};
