//! Hands one claimed outbound message to its channel's provider API and reports the outcome in
//! one shape for every channel: accepted (with the provider's id and the status to record), or
//! refused (with the failure to record and, when the provider said it may work later, how long
//! to wait). The sender decides what to do with a refusal; channels only classify it.

use std::time::Duration;

use crate::app::AppState;
use crate::domain::{Channel, DeliveryStatus, ProviderMessageId};
use crate::store::{OutboundJob, SendFailure};

/// The provider accepted the message.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The provider's id for it, when the channel has receipts.
    pub provider_id: Option<ProviderMessageId>,
    pub status: DeliveryStatus,
}

/// The provider refused the message, or it could not be handed over.
#[derive(Debug, Clone)]
pub struct Refused {
    pub failure: SendFailure,
    /// A later attempt may succeed.
    pub retryable: bool,
    /// The provider's hint for when to try again (`Retry-After`), if it gave one.
    pub retry_after: Option<Duration>,
}

impl Refused {
    /// A refusal that no retry can fix.
    pub fn permanent(code: Option<i64>, detail: impl Into<String>) -> Self {
        Self {
            failure: SendFailure {
                code,
                detail: detail.into(),
            },
            retryable: false,
            retry_after: None,
        }
    }
}

/// Sends `job` through its channel.
pub async fn send(state: &AppState, job: &OutboundJob) -> Result<Accepted, Refused> {
    match job.channel {
        // Web chat: the message is delivered when it is committed and published live.
        Channel::Web => Ok(Accepted {
            provider_id: None,
            status: DeliveryStatus::Delivered,
        }),
        Channel::Whatsapp => send_whatsapp(state, job).await,
        Channel::Twilio => send_twilio(state, job).await,
        Channel::Waha => send_waha(state, job).await,
        Channel::Email => send_email(state, job).await,
    }
}

async fn send_twilio(state: &AppState, job: &OutboundJob) -> Result<Accepted, Refused> {
    let config = &state.config.twilio;
    let (Some(account_sid), Some(auth_token)) = (&config.account_sid, &config.auth_token) else {
        return Err(Refused::permanent(
            None,
            "Twilio is not configured (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)",
        ));
    };
    let Some(number) = state
        .config
        .tenant(&job.tenant)
        .and_then(|t| t.channels.twilio_from.as_deref())
    else {
        return Err(Refused::permanent(
            None,
            "no Twilio number is configured for this tenant (TWILIO_FROM_NUMBER)",
        ));
    };
    // A WhatsApp conversation is answered from the number's WhatsApp sender, an SMS one by SMS.
    let from = if job.address.starts_with("whatsapp:") {
        format!("whatsapp:{number}")
    } else {
        number.to_owned()
    };
    state
        .twilio
        .send(
            account_sid,
            auth_token,
            &from,
            &job.address,
            &job.text,
            config.webhook_url.as_deref(),
        )
        .await
        .map(|sid| Accepted {
            provider_id: Some(sid),
            status: DeliveryStatus::Sent,
        })
        .map_err(|err| Refused {
            retryable: err.retryable,
            retry_after: err.retry_after,
            failure: SendFailure {
                code: err.code,
                detail: err.to_string(),
            },
        })
}

async fn send_waha(state: &AppState, job: &OutboundJob) -> Result<Accepted, Refused> {
    let config = &state.config.waha;
    let Some(url) = &config.url else {
        return Err(Refused::permanent(
            None,
            "WAHA is not configured (WAHA_URL)",
        ));
    };
    let tenant = state.config.tenant(&job.tenant);
    let session = tenant
        .and_then(|t| t.channels.waha_session.as_deref())
        .unwrap_or("default");
    let chat_id = crate::channels::waha::chat_id_for(&job.address);
    state
        .waha
        .send_text(url, config.api_key.as_ref(), session, &chat_id, &job.text)
        .await
        .map(|id| Accepted {
            provider_id: id,
            status: DeliveryStatus::Sent,
        })
        .map_err(|err| Refused {
            retryable: err.retryable,
            retry_after: err.retry_after,
            failure: SendFailure {
                code: err.http_status.map(i64::from),
                detail: err.to_string(),
            },
        })
}

async fn send_whatsapp(state: &AppState, job: &OutboundJob) -> Result<Accepted, Refused> {
    let Some(credentials) = state.whatsapp_credentials(&job.tenant) else {
        return Err(Refused::permanent(
            None,
            "no WhatsApp number is configured for this tenant",
        ));
    };
    let sent = match &job.template {
        Some(template) => {
            let name = template["name"].as_str().unwrap_or_default();
            let language = template["language"].as_str().unwrap_or("en");
            let params: Vec<serde_json::Value> = template["params"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .map(|v| serde_json::json!({"type": "text", "text": v.as_str().unwrap_or_default()}))
                        .collect()
                })
                .unwrap_or_default();
            let components = if params.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::json!([{"type": "body", "parameters": params}])
            };
            state
                .whatsapp
                .send_template(&credentials, &job.address, name, language, components)
                .await
        }
        None => {
            state
                .whatsapp
                .send_text(&credentials, &job.address, &job.text, None)
                .await
        }
    };
    sent.map(|id| Accepted {
        provider_id: Some(id),
        status: DeliveryStatus::Sent,
    })
    .map_err(|err| Refused {
        retryable: err.is_retryable(),
        retry_after: err.retry_after(),
        failure: SendFailure {
            code: err.code,
            detail: err.to_string(),
        },
    })
}

async fn send_email(state: &AppState, job: &OutboundJob) -> Result<Accepted, Refused> {
    use crate::channels::email::{OutgoingEmail, plus_address, reply_subject};
    let Some(smtp) = &state.smtp else {
        return Err(Refused::permanent(
            None,
            "SMTP is not configured (SMTP_URL)",
        ));
    };
    let Some(from) = state
        .config
        .tenant(&job.tenant)
        .and_then(|t| t.channels.email_from.as_ref())
    else {
        return Err(Refused::permanent(
            None,
            "no email address is configured for this tenant (EMAIL_FROM)",
        ));
    };
    let store_failure = |err: crate::store::StoreError| Refused {
        failure: SendFailure {
            code: None,
            detail: format!("the thread could not be read: {err}"),
        },
        retryable: true,
        retry_after: None,
    };
    let parent = state
        .store
        .latest_inbound_email(job.conversation_id)
        .await
        .map_err(store_failure)?;
    let domain = from.email.domain().to_owned();
    // Derived from the outbox id: a retried send repeats the same Message-ID.
    let message_id = format!("{}@{domain}", job.id.0.simple());
    let mut references = parent
        .as_ref()
        .map(|p| p.references.clone())
        .unwrap_or_default();
    if let Some(parent) = &parent {
        references.push(parent.message_id.clone());
    }
    let contact = crate::domain::ContactId::derive(&job.tenant, Channel::Email, &job.address);
    let unsubscribe_url = state.config.email.public_url.as_ref().map(|base| {
        format!(
            "{base}/unsubscribe/{}",
            state.unsubscribe.token(&job.tenant, contact)
        )
    });
    let email = OutgoingEmail {
        from,
        to: &job.address,
        reply_to: Some(plus_address(from.email.as_ref(), job.conversation_id)),
        subject: reply_subject(parent.as_ref().and_then(|p| p.subject.as_deref())),
        message_id: &message_id,
        in_reply_to: parent.as_ref().map(|p| p.message_id.as_str()),
        references: &references,
        text: &job.text,
        unsubscribe_url,
    };
    smtp.send(&email).await.map_err(|err| Refused {
        retryable: err.retryable,
        retry_after: None,
        failure: SendFailure {
            code: err.code,
            detail: err.to_string(),
        },
    })?;
    // Remembered so a reply to this email threads back here even without References.
    let thread = parent.as_ref().map(|p| p.thread.clone());
    if let Some(thread) = thread {
        let record = crate::store::EmailRecord {
            tenant: job.tenant.clone(),
            message_id: message_id.clone(),
            conversation_id: job.conversation_id,
            thread,
            inbound: false,
            subject: Some(email.subject.clone()),
            references,
            attachments: "[]".to_owned(),
            created_at: state.clock.now_ms(),
        };
        if let Err(err) = state.store.record_email(&record).await {
            tracing::warn!(message.id = %job.id, error = %err, "could not remember a sent email's Message-ID");
        }
    }
    Ok(Accepted {
        provider_id: ProviderMessageId::parse(&message_id).ok(),
        status: DeliveryStatus::Sent,
    })
}
