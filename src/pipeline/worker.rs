//! Workers: take a conversation from the queue (exclusively: no other worker in any replica holds
//! it), handle its pending messages in order, and for each one commit the completion and its
//! replies in one transaction. A failure leaves the message pending; the recovery sweep offers it
//! again later.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::agents::ReplyContext;
use crate::agents::brain::Evidence;
use crate::agents::guardrails::GuardrailSettings;
use crate::agents::handoff::{self, HandoffReason};
use crate::agents::{AgentSpec, answer, llm_answer, router, scheduling, summary};
use crate::app::AppState;
use crate::channels::whatsapp::split_message;
use crate::consent::{
    ConsentAction, ConsentCommand, ConsentSource, ContactFacts, GateDecision, GateRequest,
    MatchKind, NewConsentEvent, Purpose,
};
use crate::domain::{
    Author, Channel, ConversationId, DeliveryStatus, Direction, MessageContent, MessageId,
};
use crate::llm::IntentPrediction;
use crate::memory::{Turn, TurnRole};
use crate::store::{
    AgentMeta, Completion, ConversationRecord, LedgerEntry, MessageRecord, NewReply, PendingInbound,
};
use serde_json::json;

/// Pending messages read per round trip.
const PENDING_PAGE: i64 = 32;
/// The longest text one message may carry on WhatsApp.
const WHATSAPP_TEXT_LIMIT: usize = 4096;
/// The longest body Twilio's Messages API accepts.
const TWILIO_TEXT_LIMIT: usize = 1600;

/// Runs one worker until `shutdown`; the current conversation is finished first.
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let lease = tokio::select! {
            _ = shutdown.cancelled() => return,
            lease = state.queue.next() => lease,
        };
        match lease {
            Ok(lease) => {
                backoff = Duration::from_millis(100);
                let conversation = lease.conversation();
                if let Err(err) = process_conversation(&state, conversation).await {
                    tracing::warn!(conversation.id = %conversation, error = %err, "conversation left pending; it will be retried");
                }
                if let Err(err) = lease.finish().await {
                    tracing::warn!(conversation.id = %conversation, error = %err, "could not release a conversation; its lease will expire");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "work queue unavailable; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Handles every pending message of one conversation, oldest first.
pub async fn process_conversation(
    state: &AppState,
    conversation_id: ConversationId,
) -> anyhow::Result<()> {
    loop {
        let pending = state
            .store
            .pending_inbound(conversation_id, PENDING_PAGE)
            .await?;
        if pending.is_empty() {
            return Ok(());
        }
        // Read again for every page: who owns the conversation can change meanwhile (a person
        // claiming it, a handoff opened by an earlier message), and a message must be answered
        // by its current owner.
        let mut conversation = read_conversation(state, conversation_id).await?;
        // Marking the newest message read marks the ones before it too (WhatsApp's rule), and
        // its typing indicator covers the whole page: one Graph API call, not one per message.
        if conversation.channel == Channel::Whatsapp
            && let Some(newest) = pending.last()
        {
            mark_read_with_typing(state, &conversation, newest);
        }
        for message in pending {
            let handed_over = handle_message(state, &conversation, message).await?;
            if handed_over {
                // The bot stays quiet for the messages after the one that asked for a person.
                conversation = read_conversation(state, conversation_id).await?;
            }
        }
    }
}

async fn read_conversation(
    state: &AppState,
    conversation_id: ConversationId,
) -> anyhow::Result<ConversationRecord> {
    state
        .store
        .conversation(conversation_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("pending messages for a conversation that does not exist"))
}

/// Handles one message; `true` when its completion handed the conversation to a person.
async fn handle_message(
    state: &AppState,
    conversation: &ConversationRecord,
    message: PendingInbound,
) -> anyhow::Result<bool> {
    let completion = decide(state, conversation, &message).await?;
    let now = state.clock.now_ms();
    let (committed, completion) = state
        .completer
        .complete(message.id, conversation, completion, now)
        .await?;
    if !committed {
        // Another worker (or an earlier life of this one) already answered it.
        return Ok(false);
    }
    state.metrics.processed(
        conversation.channel.as_str(),
        (now - message.recorded_at_ms).max(0) as f64 / 1000.0,
    );
    tracing::info!(
        conversation.id = %conversation.id,
        message.id = %message.id,
        intent = completion.intent.as_deref().unwrap_or("none"),
        replies = completion.replies.len(),
        "message handled"
    );
    if let Some(entry) = &completion.consent
        && entry.event.action == ConsentAction::OptOut
    {
        // The CRMs learn it too (Mautic's do-not-contact).
        crate::crm::on_opt_out(
            state,
            &conversation.tenant,
            conversation.contact_id,
            conversation.channel,
        )
        .await;
    }
    if let Some(handoff) = &completion.handoff {
        state.metrics.handoff_opened(&handoff.reason);
        handoff::announce(state, "opened", &handoff.id).await;
    }
    // The derived state, side by side (each in its own store); all of it before this
    // conversation's next message, which should see the memory, the summary and the lead.
    let memory = async {
        let dropped = remember(state, conversation.id, &message, &completion).await;
        if !dropped.is_empty() {
            fold_summary(state, conversation, &dropped).await;
        }
    };
    let live = async {
        publish(
            state,
            conversation.id,
            &records_of(conversation, &message, &completion, now),
        )
        .await;
        // After the queued replies were shown, so the sender's "sent" follows them.
        if !completion.replies.is_empty() {
            state.outbox_wakeup.notify_one();
        }
    };
    tokio::join!(
        memory,
        crate::leads::observe(state, conversation, &message, &completion),
        live
    );
    Ok(completion.handoff.is_some())
}

/// Folds the turns that fell out of the memory window into the conversation's rolling summary:
/// by the model when one is configured (falling back to the extractive fold when it fails), by
/// the extractive fold otherwise. Best effort, like all memory.
async fn fold_summary(state: &AppState, conversation: &ConversationRecord, dropped: &[Turn]) {
    let existing = match state.memory.summary(conversation.id).await {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(conversation.id = %conversation.id, error = %err, "could not read the summary; not folding");
            return;
        }
    };
    let folded = match &state.llm {
        Some(llm) => {
            match summary::fold_with_model(llm, &state.summary_prompt, existing.as_deref(), dropped)
                .await
            {
                Ok((text, usage)) => {
                    record_usage(state, &conversation.tenant, "summary", &usage).await;
                    text
                }
                Err(err) => {
                    tracing::warn!(conversation.id = %conversation.id, error.kind = err.kind(), "the model did not summarise; the extractive summary is used");
                    summary::extractive(existing.as_deref(), dropped)
                }
            }
        }
        None => summary::extractive(existing.as_deref(), dropped),
    };
    if let Err(err) = state.memory.set_summary(conversation.id, &folded).await {
        tracing::warn!(conversation.id = %conversation.id, error = %err, "could not store the summary");
    }
}

/// Records a model call's tokens for the tenant's usage. Best effort.
async fn record_usage(
    state: &AppState,
    tenant: &crate::domain::TenantId,
    purpose: &str,
    usage: &crate::llm::JsonCompletion,
) {
    let day = jiff::Timestamp::from_millisecond(state.clock.now_ms())
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default();
    if let Err(err) = state
        .store
        .record_llm_usage(
            tenant,
            &day,
            purpose,
            usage.prompt_tokens,
            usage.completion_tokens,
        )
        .await
    {
        tracing::warn!(error = %err, "could not record token usage");
    }
}

/// What the context card says beyond the reason: the conversation's summary (the rolling one,
/// else an extractive one from the recent turns and this message, so it is never empty) and
/// the lead's facts.
async fn card_extras(
    state: &AppState,
    conversation: &ConversationRecord,
    text: &str,
) -> (String, serde_json::Value) {
    let rolling = state
        .memory
        .summary(conversation.id)
        .await
        .unwrap_or_default()
        .filter(|s| !s.trim().is_empty());
    let mut recent = state
        .memory
        .recent(conversation.id)
        .await
        .unwrap_or_default();
    recent.push(Turn {
        role: TurnRole::Prospect,
        text: text.to_owned(),
        at_ms: state.clock.now_ms(),
    });
    let summary = summary::extractive(rolling.as_deref(), &recent);
    let facts = match state.store.lead_by_contact(conversation.contact_id).await {
        Ok(Some(lead)) => serde_json::to_value(&lead.facts).unwrap_or_default(),
        Ok(None) => json!({}),
        Err(err) => {
            tracing::warn!(conversation.id = %conversation.id, error = %err, "could not read the lead for the context card");
            json!({})
        }
    };
    (summary, facts)
}

/// What to do with one message: consent commands first (STOP, START, HELP, whoever owns the
/// conversation), then the bot's intent and reply if the bot owns it. Every reply passes the
/// consent gate before it is queued.
async fn decide(
    state: &AppState,
    conversation: &ConversationRecord,
    message: &PendingInbound,
) -> anyhow::Result<Completion> {
    let tenant = &conversation.tenant;
    let policy = state.consent.policy(tenant).clone();
    let opted_out = state
        .consent
        .is_opted_out(tenant, conversation.contact_id, conversation.channel)
        .await?;
    let text = message
        .content
        .text()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let mut command = text.and_then(|t| policy.vocabulary.command(t));
    if matches!(command, Some(ConsentCommand::OptIn { .. })) && !opted_out {
        // "Yes" from a subscribed contact is conversation, not consent.
        command = None;
    }
    // The classifier runs once: for the opt-out path and, if the bot answers, for its reply.
    let prediction = match (text, &command) {
        (Some(text), None) => {
            let prediction = state.intents.detect(text).await;
            state.metrics.intent(
                prediction.source.as_str(),
                if prediction.intent.is_some() {
                    "classified"
                } else {
                    "abstained"
                },
            );
            if policy.vocabulary.classifier_opt_out(
                text,
                prediction.intent.as_deref(),
                prediction.confidence,
            ) {
                command = Some(ConsentCommand::OptOut {
                    how: MatchKind::Classifier,
                    matched: "opt_out".to_owned(),
                });
            }
            Some(prediction)
        }
        _ => None,
    };
    let ledger = |action: ConsentAction, source: ConsentSource, matched: &str| LedgerEntry {
        subject: state.consent.subject(tenant, conversation.contact_id),
        event: NewConsentEvent {
            tenant: tenant.clone(),
            contact: conversation.contact_id,
            channel: conversation.channel,
            action,
            source,
            proof: Some(message.id.to_string()),
            detail: Some(matched.to_owned()),
            at_ms: state.clock.now_ms(),
        },
    };
    let mut completion = Completion {
        answered: true,
        intent: None,
        confidence: None,
        replies: Vec::new(),
        consent: None,
        handoff: None,
        agent: None,
    };
    match command {
        Some(ConsentCommand::OptOut { how, matched }) => {
            completion.intent = Some("opt_out".to_owned());
            if !opted_out {
                // A second STOP changes nothing and gets no second confirmation.
                let source = match how {
                    MatchKind::Keyword => ConsentSource::Keyword,
                    MatchKind::Phrase => ConsentSource::Phrase,
                    MatchKind::Classifier => ConsentSource::Classifier,
                };
                completion.consent = Some(ledger(ConsentAction::OptOut, source, &matched));
                completion.replies = replies(
                    state,
                    conversation,
                    message,
                    true,
                    Purpose::OptOutConfirmation,
                    &policy.opt_out_confirmation(),
                );
            }
            tracing::info!(conversation.id = %conversation.id, message.id = %message.id, already = opted_out, "opt-out request");
            return Ok(completion);
        }
        Some(ConsentCommand::OptIn { matched }) if opted_out => {
            completion.intent = Some("opt_in".to_owned());
            completion.consent = Some(ledger(
                ConsentAction::OptIn,
                ConsentSource::Keyword,
                &matched,
            ));
            completion.replies = replies(
                state,
                conversation,
                message,
                false,
                Purpose::Reply,
                &policy.opt_in_confirmation(),
            );
            tracing::info!(conversation.id = %conversation.id, message.id = %message.id, "opt-in");
            return Ok(completion);
        }
        Some(ConsentCommand::Help { matched }) => {
            completion.intent = Some("help".to_owned());
            completion.consent = Some(ledger(
                ConsentAction::Help,
                ConsentSource::Keyword,
                &matched,
            ));
            completion.replies = replies(
                state,
                conversation,
                message,
                opted_out,
                Purpose::Reply,
                &policy.help_text(),
            );
            return Ok(completion);
        }
        _ => {}
    }
    if conversation.state != "bot" || opted_out {
        // A person owns the conversation (or it waits for one), or the contact opted out and
        // hears nothing more: the bot stays quiet.
        completion.answered = false;
        completion.intent = prediction
            .as_ref()
            .map(|p| p.intent.clone().unwrap_or_else(|| "abstain".to_owned()));
        completion.confidence = prediction.as_ref().map(|p| f64::from(p.confidence));
        return Ok(completion);
    }
    if let Some(text) = text
        && let Some(told) = schedule_pick(state, conversation, message, text).await?
    {
        completion.intent = Some("scheduling".to_owned());
        completion.agent = scheduling_agent(state, None);
        completion.replies = replies(state, conversation, message, false, Purpose::Reply, &told);
        return Ok(completion);
    }
    if let (Some(text), Some(prediction)) = (text, prediction.as_ref())
        && let Some((reason, detail)) = handoff_reason(state, conversation, text, prediction).await
    {
        let (summary, lead_facts) = card_extras(state, conversation, text).await;
        let context = json!({
            "reason": reason.as_str(),
            "intent": prediction.intent,
            "confidence": prediction.confidence,
            "last_message": text,
            "summary": summary,
            "lead_facts": lead_facts,
        });
        let (handoff, told) = handoff::plan(state, conversation, reason, detail, context).await?;
        completion.intent = Some(
            prediction
                .intent
                .clone()
                .unwrap_or_else(|| "abstain".to_owned()),
        );
        completion.confidence = Some(f64::from(prediction.confidence));
        completion.handoff = Some(handoff);
        completion.replies = replies(state, conversation, message, false, Purpose::Reply, &told);
        return Ok(completion);
    }
    if let (Some(text), Some(prediction)) = (text, prediction.as_ref())
        && prediction.intent.as_deref() == Some("scheduling")
        && scheduling::asks_to_book(text)
        && let Some(agent) = state.agents.for_intent("scheduling")
        && agent.tools.iter().any(|t| t == "schedule_visit")
        && let Some(offer) = offer_slots(state, conversation).await
    {
        completion.intent = Some("scheduling".to_owned());
        completion.confidence = Some(f64::from(prediction.confidence));
        completion.agent = scheduling_agent(state, Some(prediction.confidence));
        completion.replies = replies(state, conversation, message, false, Purpose::Reply, &offer);
        return Ok(completion);
    }
    // The agent serving the intent; a message the classifier could not place goes to the
    // general agent (the one serving `other`), which answers only what the documents clearly
    // answer and hands off otherwise.
    if let (Some(text), Some(prediction)) = (text, prediction.as_ref())
        && let Some(agent) = match prediction.intent.as_deref() {
            Some(intent) => state.agents.for_intent(intent),
            None => state.agents.for_intent(FALLBACK_INTENT),
        }
    {
        return agent_answer(
            state,
            conversation,
            message,
            text,
            prediction,
            agent,
            completion,
        )
        .await;
    }
    let business = policy.business.as_str();
    let context = ReplyContext {
        business,
        name: conversation.display_name.as_deref().unwrap_or(""),
    };
    let reply = match prediction {
        Some(prediction) => {
            let reply = state
                .replies
                .reply_for(prediction.intent.as_deref(), &context);
            completion.intent = Some(prediction.intent.unwrap_or_else(|| "abstain".to_owned()));
            completion.confidence = Some(f64::from(prediction.confidence));
            reply
        }
        None => match &message.content {
            MessageContent::Media { .. }
            | MessageContent::Location { .. }
            | MessageContent::Contacts { .. }
            | MessageContent::Unsupported { .. } => {
                state.replies.reply_for(Some("media"), &context)
            }
            _ => state.replies.reply_for(None, &context),
        },
    };
    completion.replies = replies(state, conversation, message, false, Purpose::Reply, &reply);
    Ok(completion)
}

/// Passages retrieved per question.
const PASSAGES: usize = 5;

/// A specialist agent answers from the knowledge base (the model when one is configured, the
/// offline brain otherwise or when the model fails), or hands the conversation to a person when the
/// question is complex or the answer's confidence is below the agent's threshold.
async fn agent_answer(
    state: &AppState,
    conversation: &ConversationRecord,
    message: &PendingInbound,
    text: &str,
    prediction: &IntentPrediction,
    agent: &AgentSpec,
    mut completion: Completion,
) -> anyhow::Result<Completion> {
    let tenant = &conversation.tenant;
    completion.intent = Some(
        prediction
            .intent
            .clone()
            .unwrap_or_else(|| "abstain".to_owned()),
    );
    completion.confidence = Some(f64::from(prediction.confidence));
    let passages: Vec<Evidence> = match state
        .knowledge
        .search(tenant, text, &agent.knowledge_tags, PASSAGES)
        .await
    {
        Ok(found) => found
            .into_iter()
            .map(|p| Evidence {
                id: p.chunk_id.to_string(),
                text: p.text,
                score: p.score,
                document: p.document_name,
                section: p.section,
            })
            .collect(),
        Err(err) => {
            tracing::warn!(conversation.id = %conversation.id, error = %err, "knowledge search failed; answering without passages");
            Vec::new()
        }
    };
    let default_guardrails = GuardrailSettings::default();
    let tenant_config = state.config.tenant(tenant);
    let guardrails = tenant_config.map_or(&default_guardrails, |t| &t.guardrails);
    let business = state.consent.policy(tenant).business.clone();
    let reply = match &state.llm {
        Some(llm) => {
            let recent = state
                .memory
                .recent(conversation.id)
                .await
                .unwrap_or_default();
            let summary = state
                .memory
                .summary(conversation.id)
                .await
                .unwrap_or_default();
            let ask = llm_answer::Ask {
                question: text,
                classifier_confidence: prediction.confidence,
                summary: summary.as_deref(),
                recent: &recent,
                passages: &passages,
            };
            match llm_answer::llm_reply(llm, agent, &business, ask, guardrails).await {
                Ok((reply, usage)) => {
                    record_usage(state, tenant, "agent_answer", &usage).await;
                    reply
                }
                Err(err) => {
                    tracing::warn!(conversation.id = %conversation.id, error = %err, "the model did not answer; the offline brain answers");
                    answer::offline_reply(agent, text, prediction.confidence, &passages, guardrails)
                }
            }
        }
        None => answer::offline_reply(agent, text, prediction.confidence, &passages, guardrails),
    };
    let sources: Vec<serde_json::Value> = passages
        .iter()
        .filter(|p| reply.cited.contains(&p.id))
        .map(
            |p| json!({"id": p.id, "document": p.document, "section": p.section, "score": p.score}),
        )
        .collect();
    let found: Vec<serde_json::Value> = passages
        .iter()
        .map(|p| json!({"id": p.id, "document": p.document, "section": p.section, "score": p.score, "text": p.text}))
        .collect();
    let factors = serde_json::to_value(reply.factors).unwrap_or_default();
    completion.agent = Some(AgentMeta {
        agent: agent.name.clone(),
        factors: factors.clone(),
        sources: serde_json::Value::Array(sources),
    });
    let reason = if reply.hand_off {
        Some((
            HandoffReason::LowConfidence,
            Some(format!("confidence {:.2}", reply.factors.confidence)),
        ))
    } else {
        None
    };
    if let Some((reason, detail)) = reason {
        let (summary, lead_facts) = card_extras(state, conversation, text).await;
        let context = json!({
            "reason": reason.as_str(),
            "summary": summary,
            "lead_facts": lead_facts,
            "agent": agent.name,
            "intent": prediction.intent,
            "confidence_factors": factors,
            "last_message": text,
            "passages": found,
            "draft_answer": reply.text,
        });
        let (handoff, told) = handoff::plan(state, conversation, reason, detail, context).await?;
        completion.confidence = Some(f64::from(reply.factors.confidence));
        completion.handoff = Some(handoff);
        completion.replies = replies(state, conversation, message, false, Purpose::Reply, &told);
        return Ok(completion);
    }
    completion.confidence = Some(f64::from(reply.factors.confidence));
    completion.replies = replies(
        state,
        conversation,
        message,
        false,
        Purpose::Reply,
        &reply.text,
    );
    Ok(completion)
}

/// The memory fact holding the visit slots last offered (JSON array of Unix ms).
const OFFERED_SLOTS: &str = "offered_slots";

/// Offers the next visit slots and remembers them, so a reply like "2" can pick one.
async fn offer_slots(state: &AppState, conversation: &ConversationRecord) -> Option<String> {
    let tenant = state.config.tenant(&conversation.tenant)?;
    let slots = scheduling::next_slots(&tenant.scheduling, &tenant.handoff, state.clock.now_ms());
    if slots.is_empty() {
        return None;
    }
    let json = serde_json::to_string(&slots).ok()?;
    if let Err(err) = state
        .memory
        .set_fact(conversation.id, OFFERED_SLOTS, &json)
        .await
    {
        tracing::warn!(conversation.id = %conversation.id, error = %err, "could not remember the offered slots");
        return None;
    }
    let list = slots
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            format!(
                "{}) {}",
                i + 1,
                scheduling::describe_slot(*ms, &tenant.handoff)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Some(format!(
        "I can book a site visit for you. These times are open:\n{list}\nReply with the number that suits you."
    ))
}

/// When the prospect was offered slots and this message picks one: records the visit request
/// and returns the confirmation to send.
async fn schedule_pick(
    state: &AppState,
    conversation: &ConversationRecord,
    message: &PendingInbound,
    text: &str,
) -> anyhow::Result<Option<String>> {
    let facts = match state.memory.facts(conversation.id).await {
        Ok(facts) => facts,
        Err(_) => return Ok(None),
    };
    let Some(offered) = facts
        .get(OFFERED_SLOTS)
        .and_then(|raw| serde_json::from_str::<Vec<i64>>(raw).ok())
        .filter(|o| !o.is_empty())
    else {
        return Ok(None);
    };
    let Some(tenant) = state.config.tenant(&conversation.tenant) else {
        return Ok(None);
    };
    let Some(index) = scheduling::picked_slot(text, &offered, &tenant.handoff) else {
        return Ok(None);
    };
    let slot = offered[index];
    state
        .store
        .record_visit_request(
            &conversation.tenant,
            conversation.id,
            conversation.contact_id,
            slot,
            message.id,
            state.clock.now_ms(),
        )
        .await?;
    if let Err(err) = state
        .memory
        .set_fact(conversation.id, OFFERED_SLOTS, "[]")
        .await
    {
        tracing::debug!(error = %err, "could not clear the offered slots");
    }
    tracing::info!(conversation.id = %conversation.id, message.id = %message.id, "visit requested");
    Ok(Some(format!(
        "Done: I have requested a site visit on {}. Our team will confirm it here.",
        scheduling::describe_slot(slot, &tenant.handoff)
    )))
}

/// The intent whose agent answers messages the classifier could not place.
const FALLBACK_INTENT: &str = "other";

/// The scheduling agent's record on a reply it made with its tool (an offer, a booking).
fn scheduling_agent(state: &AppState, classifier: Option<f32>) -> Option<AgentMeta> {
    let agent = state.agents.for_intent("scheduling")?;
    Some(AgentMeta {
        agent: agent.name.clone(),
        factors: json!({"classifier": classifier, "tool": "schedule_visit"}),
        sources: json!([]),
    })
}

/// Whether the bot should step aside for this message, and why (with a detail for staff): an
/// explicit ask for a person, anger or repeated frustration, several questions for different
/// agents at once, or a message the classifier could not place when no agent takes those.
async fn handoff_reason(
    state: &AppState,
    conversation: &ConversationRecord,
    text: &str,
    prediction: &IntentPrediction,
) -> Option<(HandoffReason, Option<String>)> {
    if prediction.intent.as_deref() == Some("human_request") || handoff::asks_for_a_person(text) {
        return Some((HandoffReason::ExplicitRequest, None));
    }
    let upset = handoff::upset_level(text);
    if upset > 0 {
        // Only a mildly upset message needs the earlier ones to decide.
        let earlier = if upset == 1 {
            state
                .memory
                .recent(conversation.id)
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let earlier_texts = earlier
            .iter()
            .filter(|t| t.role == TurnRole::Prospect)
            .map(|t| t.text.as_str());
        if handoff::is_frustrated(text, earlier_texts) {
            return Some((HandoffReason::Frustration, None));
        }
    }
    if let Some(detail) = high_value_lead(state, conversation, text).await {
        return Some((HandoffReason::HighValue, Some(detail)));
    }
    let several = router::distinct_intents(&state.intents, text);
    if several.len() >= 2 {
        return Some((
            HandoffReason::MultiIntent,
            Some(several.into_iter().collect::<Vec<_>>().join(", ")),
        ));
    }
    if prediction.intent.is_none() && state.agents.for_intent(FALLBACK_INTENT).is_none() {
        return Some((HandoffReason::LowConfidence, None));
    }
    None
}

/// When the tenant sets a high-value budget and the lead's budget (stated in this message, or
/// among the lead's facts) reaches it, the first time in this conversation: the detail for
/// staff. Amounts in another currency than the leads' are not compared.
async fn high_value_lead(
    state: &AppState,
    conversation: &ConversationRecord,
    text: &str,
) -> Option<String> {
    let threshold = state
        .config
        .tenant(&conversation.tenant)?
        .handoff
        .high_value_budget?;
    let currency = &state.leads.config.currency;
    let stated = crate::leads::money::parse_budget(text, currency);
    let budget = match stated {
        Some(budget) => Some(budget),
        None => match state.store.lead_by_contact(conversation.contact_id).await {
            Ok(lead) => lead.and_then(|l| l.facts.budget),
            Err(err) => {
                tracing::warn!(conversation.id = %conversation.id, error = %err, "could not read the lead for its budget");
                None
            }
        },
    }?;
    if budget.currency != *currency || budget.amount < threshold {
        return None;
    }
    let reason = HandoffReason::HighValue.as_str();
    match state
        .store
        .was_handed_off_for(conversation.id, reason)
        .await
    {
        Ok(false) => Some(format!(
            "budget {budget} (threshold {currency} {threshold})"
        )),
        Ok(true) => None,
        Err(err) => {
            tracing::warn!(conversation.id = %conversation.id, error = %err, "could not check earlier handoffs");
            None
        }
    }
}

/// A reply split for its channel, each part checked by the consent gate as it is queued.
fn replies(
    state: &AppState,
    conversation: &ConversationRecord,
    message: &PendingInbound,
    opted_out: bool,
    purpose: Purpose,
    text: &str,
) -> Vec<NewReply> {
    let parts = match conversation.channel {
        Channel::Whatsapp | Channel::Waha => split_message(text, WHATSAPP_TEXT_LIMIT),
        Channel::Twilio => split_message(text, TWILIO_TEXT_LIMIT),
        _ => vec![text.to_owned()],
    };
    let policy = state.consent.policy(&conversation.tenant);
    let request = GateRequest {
        tenant: &conversation.tenant,
        contact: conversation.contact_id,
        channel: conversation.channel,
        address: &conversation.address,
        purpose,
        template: false,
    };
    let facts = ContactFacts {
        opted_out,
        last_inbound_at_ms: Some(message.recorded_at_ms),
        recent_proactive: 0,
    };
    let blocked = match state
        .consent
        .decide(request, facts, &policy.zone, state.clock.now_ms())
    {
        GateDecision::Refuse(reason) => Some(reason),
        // Replies are never deferred; a deferral would come from a policy change, and the
        // sender asks the gate again before sending anyway.
        GateDecision::Send | GateDecision::Defer { .. } => None,
    };
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .map(|text| NewReply {
            id: MessageId::new(),
            text,
            purpose,
            blocked,
        })
        .collect()
}

/// Tells the prospect their message was read and a reply is being typed. Best effort, off the
/// critical path: a failure changes nothing else.
fn mark_read_with_typing(
    state: &AppState,
    conversation: &ConversationRecord,
    message: &PendingInbound,
) {
    let (Some(provider_id), Some(credentials)) = (
        message.provider_message_id.clone(),
        state.whatsapp_credentials(&conversation.tenant),
    ) else {
        return;
    };
    let client = state.whatsapp.clone();
    let message_id = message.id;
    tokio::spawn(async move {
        if let Err(err) = client.mark_read(&credentials, &provider_id, true).await {
            tracing::debug!(message.id = %message_id, error = %err, "mark-read failed");
        }
    });
}

/// Adds the exchange to the conversation memory and returns the turns that fell out of its window.
/// Memory is derived state: a failure is logged, the conversation goes on.
async fn remember(
    state: &AppState,
    conversation: ConversationId,
    message: &PendingInbound,
    completion: &Completion,
) -> Vec<Turn> {
    let mut turns = Vec::new();
    if let Some(text) = message.content.text() {
        turns.push(Turn {
            role: TurnRole::Prospect,
            text: text.to_owned(),
            at_ms: message.sent_at_ms,
        });
    }
    let now = state.clock.now_ms();
    turns.extend(completion.replies.iter().map(|r| Turn {
        role: TurnRole::Bot,
        text: r.text.clone(),
        at_ms: now,
    }));
    match state.memory.append_all(conversation, turns).await {
        Ok(dropped) => dropped,
        Err(err) => {
            tracing::warn!(conversation.id = %conversation, error = %err, "could not update conversation memory");
            Vec::new()
        }
    }
}

/// The records the exchange produced, built from what the worker holds (no extra reads).
fn records_of(
    conversation: &ConversationRecord,
    message: &PendingInbound,
    completion: &Completion,
    now: i64,
) -> Vec<MessageRecord> {
    let inbound = MessageRecord {
        id: message.id,
        conversation_id: conversation.id,
        direction: Direction::Inbound,
        author: Author::Prospect,
        kind: message.content.kind_name().to_owned(),
        text: message.content.text().map(str::to_owned),
        status: "received".to_owned(),
        intent: completion.intent.clone(),
        confidence: completion.confidence,
        error_code: None,
        purpose: None,
        gate_reason: None,
        agent: None,
        confidence_factors: None,
        sources: None,
        created_at: message.recorded_at_ms,
        updated_at: now,
    };
    // Replies are shown live once queued, except on the web channel, where showing them is the
    // delivery itself: the sender publishes those after the consent gate lets them through.
    // Blocked replies are never shown to the prospect.
    let shown = completion
        .replies
        .iter()
        .filter(|r| conversation.channel != Channel::Web && r.blocked.is_none());
    let replies = shown.map(|reply| MessageRecord {
        id: reply.id,
        conversation_id: conversation.id,
        direction: Direction::Outbound,
        author: Author::Bot,
        kind: "text".to_owned(),
        text: Some(reply.text.clone()),
        status: DeliveryStatus::Queued.as_str().to_owned(),
        intent: completion.intent.clone(),
        confidence: completion.confidence,
        error_code: None,
        purpose: Some(reply.purpose.as_str().to_owned()),
        gate_reason: None,
        agent: completion.agent.as_ref().map(|a| a.agent.clone()),
        confidence_factors: completion.agent.as_ref().map(|a| a.factors.to_string()),
        sources: completion.agent.as_ref().map(|a| a.sources.to_string()),
        created_at: now,
        updated_at: now,
    });
    std::iter::once(inbound).chain(replies).collect()
}

/// Sends these messages' current state to live listeners (web chat, inbox). Best effort.
pub(crate) async fn publish(
    state: &AppState,
    conversation: ConversationId,
    records: &[MessageRecord],
) {
    let topic = conversation_topic(conversation);
    let events: Vec<serde_json::Value> = records.iter().map(crate::http::message_json).collect();
    if let Err(err) = state.live.publish_all(&topic, &events).await {
        tracing::debug!(error = %err, "live update not published");
    }
}

/// The live-events topic of a conversation.
pub fn conversation_topic(conversation: ConversationId) -> String {
    format!("conversation:{conversation}")
}
