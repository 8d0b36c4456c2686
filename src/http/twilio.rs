//! `POST /webhooks/twilio`: inbound WhatsApp and SMS messages and status callbacks, form-encoded.
//! The signature covers the URL configured in Twilio (`TWILIO_WEBHOOK_URL`) and every POST
//! parameter, so it is checked before anything is parsed; then the message is recorded durably
//! and answered with empty TwiML (Parley replies through the API, not in the response).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, OriginalUri, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::post;
use secrecy::ExposeSecret;

use super::webhook;
use crate::app::AppState;
use crate::channels::tenant_for_twilio_number;
use crate::channels::twilio::{TwilioEvent, parse_form, verify_form};
use crate::consent::{ConsentAction, ConsentSource, NewConsentEvent};
use crate::domain::{Channel, ContactId, InboundMessage};
use crate::error::AppError;

const CHANNEL: &str = "twilio";
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

pub fn routes(state: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route("/webhooks/twilio", post(receive))
        .layer(DefaultBodyLimit::max(state.config.pipeline.max_body_bytes))
}

async fn receive(
    State(state): State<Arc<AppState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, AppError> {
    let body = body.map_err(|r| webhook::body_error(&state, CHANNEL, r))?;
    let config = &state.config.twilio;
    let (Some(token), Some(configured_url)) = (&config.auth_token, &config.webhook_url) else {
        return Err(webhook::not_configured(
            &state,
            CHANNEL,
            "Twilio (TWILIO_AUTH_TOKEN and TWILIO_WEBHOOK_URL or PARLEY_PUBLIC_URL)",
        ));
    };
    // Twilio signs the URL it called: the configured one, with any query string it carried.
    let url = match uri.query() {
        Some(query) if !configured_url.contains('?') => format!("{configured_url}?{query}"),
        _ => configured_url.clone(),
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(err) = verify_form(token.expose_secret().as_bytes(), &url, &params, signature) {
        state.metrics.webhook(CHANNEL, "bad_signature");
        tracing::warn!(reason = %err, "Twilio webhook refused: signature");
        return Err(AppError::unauthorized(
            "X-Twilio-Signature is missing or does not match the URL and parameters",
        ));
    }
    let event = parse_form(
        &params,
        |number| tenant_for_twilio_number(&state.config, number),
        state.clock.now_ms(),
    )
    .map_err(|err| {
        state.metrics.webhook(CHANNEL, "malformed");
        AppError::bad_request(format!("the Twilio request is malformed: {err}"))
    })?;
    match event {
        TwilioEvent::Messages { messages, opt_out } => {
            if opt_out.as_deref() == Some("STOP") {
                record_provider_opt_out(&state, &messages[0]).await?;
            }
            webhook::record(&state, CHANNEL, messages, Vec::new()).await?
        }
        TwilioEvent::Status(status) => {
            webhook::record(&state, CHANNEL, Vec::new(), vec![status]).await?
        }
        TwilioEvent::Ignored => state.metrics.webhook(CHANNEL, "ignored"),
    }
    Ok(([(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML))
}

/// Twilio's Advanced Opt-Out has classified the message as STOP: Twilio already blocks further
/// messages and sends its own confirmation, so the opt-out is written to the ledger now, with
/// Twilio as the source. The worker then sees a STOP from a contact already opted out and sends
/// no second confirmation. A redelivery finds the contact opted out and writes nothing.
async fn record_provider_opt_out(
    state: &AppState,
    message: &InboundMessage,
) -> Result<(), AppError> {
    let contact = ContactId::derive(&message.tenant, Channel::Twilio, &message.sender);
    if state
        .consent
        .is_opted_out(&message.tenant, contact, Channel::Twilio)
        .await?
    {
        return Ok(());
    }
    state
        .consent
        .record(&NewConsentEvent {
            tenant: message.tenant.clone(),
            contact,
            channel: Channel::Twilio,
            action: ConsentAction::OptOut,
            source: ConsentSource::Provider,
            proof: Some(message.provider_message_id.to_string()),
            detail: Some("OptOutType=STOP".to_owned()),
            at_ms: state.clock.now_ms(),
        })
        .await?;
    tracing::info!(tenant = %message.tenant, contact.id = %contact, "opt-out reported by Twilio");
    Ok(())
}
