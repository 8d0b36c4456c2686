//! What the bot would answer, without a conversation and without sending anything: the marketer's
//! "test a question" panel. The question goes the way a prospect's would (intent detection, the
//! agent for the intent, its knowledge tags, the model or the offline brain, the guardrails) and
//! the passages found in all documents come back with it, so a new upload can be checked at once.

use super::answer::{AgentReply, offline_reply};
use super::brain::Evidence;
use super::guardrails::GuardrailSettings;
use super::llm_answer;
use crate::app::AppState;
use crate::domain::TenantId;
use crate::knowledge::{KnowledgeError, Passage};

/// Passages shown, and read by the agent.
const PASSAGES: usize = 5;
/// The agent that answers when the question matches no agent's intent.
const FALLBACK_INTENT: &str = "support";

/// The preview of one question.
#[derive(Debug, Clone)]
pub struct Preview {
    pub intent: Option<String>,
    pub intent_confidence: f32,
    /// The agent that would answer, if any.
    pub agent: Option<String>,
    /// Its answer (empty text when the passages do not answer), `None` without an agent.
    pub reply: Option<AgentReply>,
    /// The best passages over every document, whatever their tags.
    pub passages: Vec<Passage>,
}

fn evidence(passages: &[Passage]) -> Vec<Evidence> {
    passages
        .iter()
        .map(|p| Evidence {
            id: p.chunk_id.to_string(),
            text: p.text.clone(),
            score: p.score,
            document: p.document_name.clone(),
            section: p.section.clone(),
        })
        .collect()
}

/// Answers `question` for `tenant` as the bot would, sending nothing.
#[tracing::instrument(skip_all, fields(tenant.id = %tenant))]
pub async fn preview(
    state: &AppState,
    tenant: &TenantId,
    question: &str,
) -> Result<Preview, KnowledgeError> {
    let passages = state
        .knowledge
        .search(tenant, question, &[], PASSAGES)
        .await?;
    let prediction = state.intents.detect(question).await;
    let agent = prediction
        .intent
        .as_deref()
        .and_then(|i| state.agents.for_intent(i))
        .or_else(|| state.agents.for_intent(FALLBACK_INTENT));
    let Some(agent) = agent else {
        return Ok(Preview {
            intent: prediction.intent,
            intent_confidence: prediction.confidence,
            agent: None,
            reply: None,
            passages,
        });
    };
    let read = state
        .knowledge
        .search(tenant, question, &agent.knowledge_tags, PASSAGES)
        .await?;
    let read = evidence(&read);
    let default_guardrails = GuardrailSettings::default();
    let guardrails = state
        .config
        .tenant(tenant)
        .map_or(&default_guardrails, |t| &t.guardrails);
    let offline = || offline_reply(agent, question, prediction.confidence, &read, guardrails);
    let reply = match &state.llm {
        Some(llm) => {
            let business = state.consent.policy(tenant).business.clone();
            let ask = llm_answer::Ask {
                question,
                classifier_confidence: prediction.confidence,
                summary: None,
                recent: &[],
                passages: &read,
            };
            match llm_answer::llm_reply(llm, agent, &business, ask, guardrails).await {
                Ok((reply, _usage)) => reply,
                Err(err) => {
                    tracing::warn!(error = %err, "the model did not answer a preview; the offline brain answers");
                    offline()
                }
            }
        }
        None => offline(),
    };
    Ok(Preview {
        intent: prediction.intent,
        intent_confidence: prediction.confidence,
        agent: Some(agent.name.clone()),
        reply: Some(reply),
        passages,
    })
}
