//! Workers: take a conversation from the queue (exclusively: no other worker in any replica holds
//! it), handle its pending messages in order, and for each one commit the completion and its
//! replies in one transaction. A failure leaves the message pending; the recovery sweep offers it
//! again later.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::agents::ReplyContext;
use crate::app::AppState;
use crate::channels::whatsapp::split_message;
use crate::domain::{
    Author, Channel, ConversationId, DeliveryStatus, Direction, MessageContent, MessageId,
};
use crate::memory::{Turn, TurnRole};
use crate::store::{Completion, ConversationRecord, MessageRecord, NewReply, PendingInbound};

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
    let mut conversation: Option<ConversationRecord> = None;
    loop {
        let pending = state
            .store
            .pending_inbound(conversation_id, PENDING_PAGE)
            .await?;
        if pending.is_empty() {
            return Ok(());
        }
        if conversation.is_none() {
            conversation = state.store.conversation(conversation_id).await?;
        }
        let Some(conversation) = conversation.as_ref() else {
            anyhow::bail!("pending messages for a conversation that does not exist");
        };
        for message in pending {
            handle_message(state, conversation, message).await?;
        }
    }
}

async fn handle_message(
    state: &AppState,
    conversation: &ConversationRecord,
    message: PendingInbound,
) -> anyhow::Result<()> {
    if conversation.channel == Channel::Whatsapp {
        mark_read_with_typing(state, conversation, &message);
    }
    let completion = decide(state, conversation, &message).await;
    let now = state.clock.now_ms();
    let committed = state
        .store
        .complete_inbound(message.id, conversation, &completion, now)
        .await?;
    if !committed {
        // Another worker (or an earlier life of this one) already answered it.
        return Ok(());
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
    remember(state, conversation.id, &message, &completion).await;
    publish(
        state,
        conversation.id,
        &records_of(conversation, &message, &completion, now),
    )
    .await;
    if !completion.replies.is_empty() {
        state.outbox_wakeup.notify_one();
    }
    Ok(())
}

/// What to do with one message: the intent, and the reply if the bot answers.
async fn decide(
    state: &AppState,
    conversation: &ConversationRecord,
    message: &PendingInbound,
) -> Completion {
    if conversation.state != "bot" {
        // A person owns the conversation (or it waits for one): the bot stays quiet.
        return Completion {
            answered: false,
            intent: None,
            confidence: None,
            replies: Vec::new(),
        };
    }
    let business = state
        .config
        .tenant(&conversation.tenant)
        .map(|t| t.name.as_str())
        .unwrap_or("us");
    let context = ReplyContext {
        business,
        name: conversation.display_name.as_deref().unwrap_or(""),
    };
    let (intent, confidence, reply) = match message.content.text() {
        Some(text) if !text.trim().is_empty() => {
            let prediction = state.intents.detect(text).await;
            state.metrics.intent(
                prediction.source.as_str(),
                if prediction.intent.is_some() {
                    "classified"
                } else {
                    "abstained"
                },
            );
            let reply = state
                .replies
                .reply_for(prediction.intent.as_deref(), &context);
            (
                Some(prediction.intent.unwrap_or_else(|| "abstain".to_owned())),
                Some(f64::from(prediction.confidence)),
                reply,
            )
        }
        _ => {
            let reply = match &message.content {
                MessageContent::Media { .. }
                | MessageContent::Location { .. }
                | MessageContent::Contacts { .. }
                | MessageContent::Unsupported { .. } => {
                    state.replies.reply_for(Some("media"), &context)
                }
                _ => state.replies.reply_for(None, &context),
            };
            (None, None, reply)
        }
    };
    let parts = match conversation.channel {
        Channel::Whatsapp | Channel::Waha => split_message(&reply, WHATSAPP_TEXT_LIMIT),
        Channel::Twilio => split_message(&reply, TWILIO_TEXT_LIMIT),
        _ => vec![reply],
    };
    Completion {
        answered: true,
        intent,
        confidence,
        replies: parts
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .map(|text| NewReply {
                id: MessageId::new(),
                text,
            })
            .collect(),
    }
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

/// Adds the exchange to the conversation memory. Memory is derived state: a failure is logged,
/// the conversation goes on.
async fn remember(
    state: &AppState,
    conversation: ConversationId,
    message: &PendingInbound,
    completion: &Completion,
) {
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
    for turn in turns {
        if let Err(err) = state.memory.append(conversation, turn).await {
            tracing::warn!(conversation.id = %conversation, error = %err, "could not update conversation memory");
            return;
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
        created_at: message.recorded_at_ms,
        updated_at: now,
    };
    let replies = completion.replies.iter().map(|reply| MessageRecord {
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
    for record in records {
        let event = crate::http::message_json(record);
        if let Err(err) = state.live.publish(&topic, &event).await {
            tracing::debug!(error = %err, "live update not published");
        }
    }
}

/// The live-events topic of a conversation.
pub fn conversation_topic(conversation: ConversationId) -> String {
    format!("conversation:{conversation}")
}
