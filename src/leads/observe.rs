//! The pipeline's hook: after an inbound message is committed, its facts and signals update the
//! sender's lead. The rules run inline (microseconds, then one read and one transaction); the
//! slow parts (the LLM extraction, the email's MX lookup) run in a spawned task and apply their
//! findings as a further change. Best effort: a failure is logged and the message is unaffected.

use super::facts::{LeadSource, MessageSignals};
use super::record::LeadId;
use super::record::LeadRecord;
use super::service::{Leads, Locate, Note};
use super::{extract, phone, validate};
use crate::app::AppState;
use crate::domain::{Channel, TenantId};
use crate::store::{Completion, ConversationRecord, PendingInbound};

/// Updates the lead of the message's sender. Never fails the message.
pub async fn observe(
    state: &AppState,
    conversation: &ConversationRecord,
    message: &PendingInbound,
    completion: &Completion,
) {
    let leads = &state.leads;
    if !leads.config.enabled {
        return;
    }
    let text = message.content.text().unwrap_or("");
    let signals = extract::extract(text, leads.region(), &leads.config.currency);
    match apply(leads, conversation, message, completion, &signals).await {
        Ok(Some(lead)) => {
            let id = lead.id;
            let wants_llm =
                leads.llm.is_some() && leads.config.llm_extraction && !text.trim().is_empty();
            let wants_email_check =
                validate::needs_email_check(&lead.verification, lead.facts.email.as_deref());
            // The LLM may find an email, which is then checked in the same task.
            if !(wants_llm || wants_email_check) {
                return;
            }
            let leads = leads.clone();
            let tenant = conversation.tenant.clone();
            let text = text.to_owned();
            tokio::spawn(async move {
                if wants_llm {
                    enrich_with_llm(&leads, &tenant, id, &text).await;
                }
                if let Err(err) = leads.verify_email(&tenant, id).await {
                    tracing::warn!(lead.id = %id, error = %err, "could not record an email check");
                }
            });
        }
        Ok(None) => {}
        Err(err) => {
            tracing::warn!(conversation.id = %conversation.id, message.id = %message.id, error = %err, "lead not updated from this message");
        }
    }
}

async fn apply(
    leads: &Leads,
    conversation: &ConversationRecord,
    message: &PendingInbound,
    completion: &Completion,
    signals: &MessageSignals,
) -> Result<Option<LeadRecord>, crate::store::StoreError> {
    // A WhatsApp address is the international number's digits: the phone is known already.
    let channel_phone = match conversation.channel {
        Channel::Whatsapp | Channel::Twilio | Channel::Waha => {
            phone::from_whatsapp_address(conversation.address.trim_start_matches('+'))
                .filter(|p| p.valid)
                .map(|p| p.e164)
        }
        _ => None,
    };
    let channel_email = (conversation.channel == Channel::Email)
        .then(|| conversation.address.to_ascii_lowercase())
        .filter(|a| email_address::EmailAddress::is_valid(a));
    let intent = completion.intent.as_deref();
    let pricing = signals.pricing_question || intent == Some("pricing");
    let visit = signals.visit_request || intent == Some("scheduling");
    let purchase = signals.purchase_inquiry;
    let display_name = conversation.display_name.clone();
    let locate = Locate::Contact {
        contact: conversation.contact_id,
        source: LeadSource::of_channel(conversation.channel, message.referral.is_some()),
        email: signals.facts.email.clone().or(channel_email.clone()),
        phone: signals.facts.phone.clone().or(channel_phone.clone()),
    };
    let at = message.recorded_at_ms;
    leads
        .change_relaxed(&conversation.tenant, &locate, |lead| {
            let mut note = Note::default();
            if message.referral.is_some() && lead.source == LeadSource::WhatsappInbound {
                lead.source = LeadSource::ReferralAd;
                note.reasons.push("came from a click-to-WhatsApp ad".into());
            }
            let mut facts = signals.facts.clone();
            if lead.facts.phone.is_none() && facts.phone.is_none() {
                facts.phone = channel_phone.clone();
            }
            if lead.facts.email.is_none() && facts.email.is_none() {
                facts.email = channel_email.clone();
            }
            if lead.facts.first_name.is_none()
                && facts.first_name.is_none()
                && let Some(name) = &display_name
            {
                facts.set_name(name);
            }
            if let Some(reason) = leads.merge_facts(lead, &facts) {
                note.reasons.push(reason);
            }
            let e = &mut lead.engagement;
            e.replies += 1;
            e.last_at = Some(e.last_at.unwrap_or(at).max(at));
            if pricing {
                e.pricing_questions += 1;
                note.reasons.push("asked about price".into());
            }
            if visit {
                e.visit_requests += 1;
                note.reasons.push("requested a visit or call".into());
            }
            if purchase {
                e.purchase_inquiries += 1;
                note.reasons.push("asked to buy".into());
            }
            if note.reasons.is_empty() {
                note.reasons.push("replied".into());
            }
            note
        })
        .await
}

/// Asks the LLM for facts and merges what it found (it may find what the rules missed).
async fn enrich_with_llm(leads: &Leads, tenant: &TenantId, id: LeadId, text: &str) {
    let Some(llm) = &leads.llm else { return };
    let signals = match super::llm_extract::extract(
        llm,
        text,
        leads.region(),
        &leads.config.currency,
    )
    .await
    {
        Ok(signals) => signals,
        Err(err) => {
            tracing::warn!(lead.id = %id, error.kind = err.kind(), "LLM fact extraction failed; the rules' facts stand");
            return;
        }
    };
    let result = leads
        .change(tenant, &Locate::Id(id), |lead| Note {
            reasons: leads
                .merge_facts(lead, &signals.facts)
                .into_iter()
                .collect(),
            ..Note::default()
        })
        .await;
    if let Err(err) = result {
        tracing::warn!(lead.id = %id, error = %err, "could not record the LLM's facts");
    }
}
