//! `POST /webhooks/email/{mailgun|sendgrid|postmark}` (and `.../{secret}`): inbound email.
//! Mailgun posts are verified by signature, freshness and a never-seen token; SendGrid and
//! Postmark sign nothing, so they must come with the configured secret path segment or basic
//! auth. The email's threading metadata is stored, then the message is recorded durably and
//! answered.
//!
//! `GET|POST /unsubscribe/{token}`: the one-click unsubscribe of every email reply (RFC 8058).
//! GET shows a confirmation page; POST (what mail clients send) records the opt-out in the
//! consent ledger.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use base64::Engine;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::webhook;
use crate::app::AppState;
use crate::channels::email::mailgun::{self, MailgunSignature};
use crate::channels::email::{InboundEmail, postmark, read_form, sendgrid, thread_key};
use crate::channels::tenant_for_email;
use crate::consent::{ConsentAction, ConsentSource, NewConsentEvent};
use crate::domain::{
    Channel, ConversationId, InboundMessage, MessageContent, ProviderMessageId, ReplyContext,
    TenantId,
};
use crate::error::AppError;
use crate::store::EmailRecord;

const CHANNEL: &str = "email";

pub fn routes(state: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route("/webhooks/email/{provider}", post(receive))
        .route(
            "/webhooks/email/{provider}/{secret}",
            post(receive_with_secret),
        )
        .layer(DefaultBodyLimit::max(state.config.pipeline.max_body_bytes))
        .route("/unsubscribe/{token}", get(confirm).post(unsubscribe))
}

async fn receive(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, AppError> {
    handle(&state, &provider, None, &headers, body).await
}

async fn receive_with_secret(
    State(state): State<Arc<AppState>>,
    Path((provider, secret)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, AppError> {
    handle(&state, &provider, Some(&secret), &headers, body).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Provider {
    Mailgun,
    Sendgrid,
    Postmark,
}

async fn handle(
    state: &AppState,
    provider: &str,
    path_secret: Option<&str>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, AppError> {
    let provider = match provider {
        "mailgun" => Provider::Mailgun,
        "sendgrid" => Provider::Sendgrid,
        "postmark" => Provider::Postmark,
        _ => {
            return Err(AppError::not_found(
                "the email provider must be mailgun, sendgrid or postmark",
            ));
        }
    };
    let body = body.map_err(|r| webhook::body_error(state, CHANNEL, r))?;
    let config = &state.config.email;
    if provider != Provider::Mailgun {
        authorize_unsigned(state, path_secret, headers)?;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let malformed = |err: &dyn std::fmt::Display| {
        state.metrics.webhook(CHANNEL, "malformed");
        AppError::bad_request(format!("the email post is malformed: {err}"))
    };
    let now = state.clock.now_ms();
    let mut claimed_token = None;
    let email = match provider {
        Provider::Postmark => postmark::parse(&body).map_err(|e| malformed(&e))?,
        Provider::Sendgrid => {
            let form = read_form(content_type, body.clone())
                .await
                .map_err(|e| malformed(&e))?;
            sendgrid::parse(&form).map_err(|e| malformed(&e))?
        }
        Provider::Mailgun => {
            let Some(key) = &config.mailgun_signing_key else {
                return Err(webhook::not_configured(
                    state,
                    CHANNEL,
                    "Mailgun (MAILGUN_SIGNING_KEY)",
                ));
            };
            let form = read_form(content_type, body.clone())
                .await
                .map_err(|e| malformed(&e))?;
            let signed = MailgunSignature::from_form(&form)
                .and_then(|s| {
                    s.verify(key.expose_secret().as_bytes(), now, config.mailgun_max_age)?;
                    Ok(s)
                })
                .map_err(|err| {
                    state.metrics.webhook(CHANNEL, "bad_signature");
                    tracing::warn!(reason = %err, "Mailgun webhook refused: signature");
                    AppError::unauthorized(format!("the Mailgun signature was refused: {err}"))
                })?;
            let email = mailgun::parse(&form).map_err(|e| malformed(&e))?;
            let tenant = tenant_of(state, &email);
            let expires = now + 2 * config.mailgun_max_age.as_millis() as i64;
            if !state
                .store
                .claim_webhook_token(&tenant, "mailgun", &signed.token, expires, now)
                .await?
            {
                state.metrics.webhook(CHANNEL, "replay");
                tracing::warn!("Mailgun webhook refused: its token was already used");
                return Err(AppError::unauthorized(
                    "the Mailgun token was already used (a replay)",
                ));
            }
            claimed_token = Some(signed.token);
            email
        }
    };
    let result = record(state, email, &body, now).await;
    if let (Err(_), Some(token)) = (&result, &claimed_token) {
        // Mailgun retries a failed delivery with the same token: let the retry through.
        if let Err(err) = state.store.release_webhook_token("mailgun", token).await {
            tracing::warn!(error = %err, "could not release a Mailgun token");
        }
    }
    result.map(|()| StatusCode::OK)
}

/// SendGrid and Postmark: the secret path segment or basic auth must match what is configured.
fn authorize_unsigned(
    state: &AppState,
    path_secret: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), AppError> {
    let config = &state.config.email;
    if config.webhook_secret.is_none() && config.webhook_basic_auth.is_none() {
        return Err(webhook::not_configured(
            state,
            CHANNEL,
            "email webhook protection (EMAIL_WEBHOOK_SECRET or EMAIL_WEBHOOK_USER/EMAIL_WEBHOOK_PASSWORD)",
        ));
    }
    let secret_ok = match (&config.webhook_secret, path_secret) {
        (Some(expected), Some(given)) => equal(expected.expose_secret(), given),
        _ => false,
    };
    let basic_ok = match &config.webhook_basic_auth {
        Some((user, password)) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .is_some_and(|raw| {
                equal(
                    &format!("{user}:{}", password.expose_secret()),
                    &String::from_utf8_lossy(&raw),
                )
            }),
        None => false,
    };
    if secret_ok || basic_ok {
        Ok(())
    } else {
        state.metrics.webhook(CHANNEL, "bad_signature");
        Err(AppError::unauthorized(
            "the email webhook needs the configured secret path or basic auth",
        ))
    }
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn tenant_of(state: &AppState, email: &InboundEmail) -> TenantId {
    email
        .recipients
        .iter()
        .map(|r| tenant_for_email(&state.config, r))
        .find(|t| *t != TenantId::default_tenant())
        .unwrap_or_else(TenantId::default_tenant)
}

/// Stores the threading metadata, then records the message through the pipeline.
async fn record(
    state: &AppState,
    email: InboundEmail,
    raw: &[u8],
    now: i64,
) -> Result<(), AppError> {
    let tenant = tenant_of(state, &email);
    // Without a Message-ID, the body's hash still deduplicates redeliveries.
    let message_id = email
        .message_id
        .clone()
        .unwrap_or_else(|| format!("{}@parley.invalid", hex::encode(Sha256::digest(raw))));
    let provider_message_id = ProviderMessageId::parse(&message_id)
        .map_err(|_| AppError::bad_request("the Message-ID is not valid"))?;
    let thread = thread_key(&state.store, &tenant, &email, &message_id).await?;
    let conversation = ConversationId::derive(&tenant, Channel::Email, &thread);
    let attachments = serde_json::to_string(&email.attachments).unwrap_or_else(|_| "[]".into());
    state
        .store
        .record_email(&EmailRecord {
            tenant: tenant.clone(),
            message_id: message_id.clone(),
            conversation_id: conversation,
            thread: thread.clone(),
            inbound: true,
            subject: email.subject.clone(),
            references: email.references.clone(),
            attachments,
            created_at: now,
        })
        .await?;
    let text = if email.reply_text.trim().is_empty() {
        email.subject.clone().unwrap_or_default()
    } else {
        email.reply_text.replace("\r\n", "\n")
    };
    let message = InboundMessage {
        tenant,
        channel: Channel::Email,
        provider_message_id,
        sender: email.from.clone(),
        thread,
        sender_name: email.from_name.clone(),
        sent_at_ms: email.sent_at_ms.unwrap_or(now),
        content: MessageContent::Text { body: text },
        context: email.in_reply_to.clone().map(|parent| ReplyContext {
            replied_to: Some(parent),
            forwarded: false,
        }),
        referral: None,
    };
    webhook::record(state, CHANNEL, vec![message], Vec::new()).await
}

async fn confirm(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    state
        .unsubscribe
        .verify(&token)
        .ok_or_else(|| AppError::not_found("this unsubscribe link is not valid"))?;
    Ok(Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Unsubscribe</title></head>\
         <body><h1>Unsubscribe</h1><p>Stop receiving email from us?</p>\
         <form method=\"post\" action=\"/unsubscribe/{token}\">\
         <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Unsubscribe</button></form></body></html>"
    )))
}

async fn unsubscribe(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let (tenant, contact) = state
        .unsubscribe
        .verify(&token)
        .ok_or_else(|| AppError::not_found("this unsubscribe link is not valid"))?;
    let already = state
        .consent
        .is_opted_out(&tenant, contact, Channel::Email)
        .await?;
    if !already {
        state
            .consent
            .record(&NewConsentEvent {
                tenant: tenant.clone(),
                contact,
                channel: Channel::Email,
                action: ConsentAction::OptOut,
                source: ConsentSource::UnsubscribeLink,
                proof: Some("list-unsubscribe".to_owned()),
                detail: None,
                at_ms: state.clock.now_ms(),
            })
            .await?;
        tracing::info!(tenant = %tenant, contact.id = %contact, "unsubscribed by link");
    }
    Ok(Html(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Unsubscribed</title></head>\
         <body><h1>You are unsubscribed</h1><p>You will not receive further email from us.</p>\
         </body></html>",
    ))
}
