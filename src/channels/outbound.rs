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
        other => Err(Refused::permanent(
            None,
            format!("the {other} channel cannot send yet"),
        )),
    }
}

async fn send_whatsapp(state: &AppState, job: &OutboundJob) -> Result<Accepted, Refused> {
    let Some(credentials) = state.whatsapp_credentials(&job.tenant) else {
        return Err(Refused::permanent(
            None,
            "no WhatsApp number is configured for this tenant",
        ));
    };
    state
        .whatsapp
        .send_text(&credentials, &job.address, &job.text, None)
        .await
        .map(|id| Accepted {
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
