//! Replies by SMTP (`lettre`, tokio + rustls). A reply threads under the prospect's latest email
//! (`In-Reply-To` its Message-ID, `References` its chain plus that id, `Re:` its subject), has a
//! Reply-To plus-address naming the conversation, a one-click `List-Unsubscribe` (RFC 8058) and
//! both a text and an HTML part. Its Message-ID is derived from the outbox message id, so a
//! retried send carries the same id.

use std::time::Duration;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

/// A send that did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the SMTP send failed (code {code:?}): {detail}")]
pub struct SmtpSendError {
    /// The SMTP reply code (`550`, `451`...), when the server answered one.
    pub code: Option<i64>,
    pub retryable: bool,
    pub detail: String,
}

/// One reply to send.
#[derive(Debug, Clone)]
pub struct OutgoingEmail<'a> {
    pub from: &'a Mailbox,
    pub to: &'a str,
    pub reply_to: Option<String>,
    pub subject: String,
    /// Without angle brackets.
    pub message_id: &'a str,
    pub in_reply_to: Option<&'a str>,
    pub references: &'a [String],
    pub text: &'a str,
    pub unsubscribe_url: Option<String>,
}

#[derive(Clone)]
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpSender(..)")
    }
}

impl SmtpSender {
    /// A sender for `SMTP_URL` (`smtp://host:port`, `smtp://host?tls=required`, `smtps://...`).
    pub fn new(url: &SecretString) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .map_err(|_| "SMTP_URL is not a valid SMTP URL".to_owned())?
            .timeout(Some(Duration::from_secs(30)))
            .build();
        Ok(Self { transport })
    }

    #[tracing::instrument(name = "smtp.send", skip_all)]
    pub async fn send(&self, email: &OutgoingEmail<'_>) -> Result<(), SmtpSendError> {
        let message = build(email).map_err(|detail| SmtpSendError {
            code: None,
            retryable: false,
            detail,
        })?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            let code = e.status().and_then(|c| c.to_string().parse::<i64>().ok());
            SmtpSendError {
                code,
                // Network trouble and 4xx replies may pass later; 5xx will not.
                retryable: !e.is_permanent(),
                detail: if e.is_permanent() {
                    "the SMTP server refused the message".to_owned()
                } else if e.is_transient() {
                    "the SMTP server deferred the message".to_owned()
                } else {
                    "the SMTP server could not be reached".to_owned()
                },
            }
        })
    }
}

/// The RFC 5322 message for `email`.
pub fn build(email: &OutgoingEmail<'_>) -> Result<Message, String> {
    let to: Mailbox = email
        .to
        .parse()
        .map_err(|_| "the recipient is not a valid address".to_owned())?;
    let mut builder = Message::builder()
        .from(email.from.clone())
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(format!("<{}>", email.message_id)));
    if let Some(reply_to) = &email.reply_to
        && let Ok(mailbox) = reply_to.parse::<Mailbox>()
    {
        builder = builder.reply_to(mailbox);
    }
    if let Some(parent) = email.in_reply_to {
        builder = builder.in_reply_to(format!("<{parent}>"));
    }
    if !email.references.is_empty() {
        let chain = email
            .references
            .iter()
            .map(|r| format!("<{r}>"))
            .collect::<Vec<_>>()
            .join(" ");
        builder = builder.references(chain);
    }
    let (mut text, mut html) = (email.text.to_owned(), html_of(email.text));
    if let Some(url) = &email.unsubscribe_url {
        builder = builder
            .header(ListUnsubscribe(format!("<{url}>")))
            .header(ListUnsubscribePost);
        text.push_str(&format!("\n\n-- \nUnsubscribe: {url}\n"));
        let footer = format!(
            "<p style=\"font-size:small;color:#666\"><a href=\"{}\">Unsubscribe</a></p>",
            escape(url)
        );
        html = html.replace("</body>", &format!("{footer}</body>"));
    }
    builder
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| format!("the email could not be built: {e}"))
}

/// Paragraphs of escaped text.
fn html_of(text: &str) -> String {
    let body: String = text
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("<p>{}</p>", escape(p.trim()).replace('\n', "<br>")))
        .collect();
    format!("<!doctype html><html><body>{body}</body></html>")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `List-Unsubscribe: <https://.../unsubscribe/{token}>`
#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_owned())
    }
}

/// `Re: <subject>` unless it already starts with `Re:`.
pub fn reply_subject(subject: Option<&str>) -> String {
    match subject.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s.len() >= 3 && s[..3].eq_ignore_ascii_case("re:") => s.to_owned(),
        Some(s) => format!("Re: {s}"),
        None => "Re: your message".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_carries_thread_headers_unsubscribe_and_both_parts() {
        let from: Mailbox = "Skyline Habitat <hello@skyline.example>".parse().unwrap();
        let references = vec!["root@x".to_owned(), "parent@y".to_owned()];
        let email = OutgoingEmail {
            from: &from,
            to: "jane@example.com",
            reply_to: Some("hello+abc@skyline.example".to_owned()),
            subject: reply_subject(Some("Saying <Hello>")),
            message_id: "m1@skyline.example",
            in_reply_to: Some("parent@y"),
            references: &references,
            text: "Hello Jane,\n\nA 2 BHK starts at 80 lakh & up.",
            unsubscribe_url: Some("https://parley.example/unsubscribe/t".to_owned()),
        };
        let raw = String::from_utf8(build(&email).unwrap().formatted()).unwrap();
        assert!(raw.contains("In-Reply-To: <parent@y>"), "{raw}");
        assert!(raw.contains("References: <root@x> <parent@y>"), "{raw}");
        assert!(raw.contains("Message-ID: <m1@skyline.example>"), "{raw}");
        assert!(raw.contains("Subject: Re: Saying <Hello>"), "{raw}");
        assert!(raw.contains("List-Unsubscribe: <https://parley.example/unsubscribe/t>"));
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(html_of("80 lakh & <up>").contains("80 lakh &amp; &lt;up&gt;"));
    }

    #[test]
    fn subjects_get_one_re_prefix() {
        assert_eq!(reply_subject(Some("Re: Hi")), "Re: Hi");
        assert_eq!(reply_subject(Some("RE: Hi")), "RE: Hi");
        assert_eq!(reply_subject(Some("Hi")), "Re: Hi");
        assert_eq!(reply_subject(None), "Re: your message");
    }
}
