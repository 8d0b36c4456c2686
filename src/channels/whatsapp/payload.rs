//! The serde model of Meta's webhook envelope, as received. Only what Parley reads is declared;
//! unknown fields are ignored so Meta can add fields without breaking us.
//!
//! Parsing is in two steps (see `parse.rs`): the envelope down to each change's `value` and each
//! message is read as `serde_json::Value`, so a change whose `field` is not `messages` or a
//! message of an unknown type is kept as it came (never rejected); the known parts are then read
//! into the typed structs below with the path of any mistake.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One WhatsApp Business Account's batch of changes.
#[derive(Debug, Deserialize)]
pub(crate) struct Entry {
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// `{"field": "messages", "value": {...}}`; `value` is read according to `field`.
#[derive(Debug, Deserialize)]
pub(crate) struct Change {
    pub field: String,
    #[serde(default)]
    pub value: Value,
}

/// The `value` of a `messages` change.
#[derive(Debug, Deserialize)]
pub(crate) struct MessagesValue {
    pub metadata: Metadata,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// Read one by one, so an unknown type can be kept raw.
    #[serde(default)]
    pub messages: Vec<Value>,
    #[serde(default)]
    pub statuses: Vec<Status>,
    #[serde(default)]
    pub errors: Vec<WireError>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Metadata {
    pub phone_number_id: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Contact {
    pub wa_id: Option<String>,
    pub profile: Option<Profile>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Profile {
    pub name: Option<String>,
}

/// The fields common to every message, and the body of each type Parley understands.
#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    pub from: String,
    pub id: String,
    #[serde(deserialize_with = "unix_seconds")]
    pub timestamp: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub context: Option<Context>,
    pub referral: Option<Referral>,
    #[serde(default)]
    pub errors: Vec<WireError>,
}

/// `context`: the message replied to, and forwarding flags.
#[derive(Debug, Deserialize)]
pub(crate) struct Context {
    pub id: Option<String>,
    #[serde(default)]
    pub forwarded: bool,
    #[serde(default)]
    pub frequently_forwarded: bool,
}

/// `referral`: the click-to-WhatsApp ad the conversation started from.
#[derive(Debug, Deserialize)]
pub(crate) struct Referral {
    pub source_url: Option<String>,
    pub source_id: Option<String>,
    pub source_type: Option<String>,
    pub headline: Option<String>,
    pub ctwa_clid: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Text {
    pub body: String,
}

/// `image`, `video`, `audio`, `document` and `sticker` share this shape.
#[derive(Debug, Deserialize)]
pub(crate) struct Media {
    pub id: String,
    pub mime_type: Option<String>,
    pub sha256: Option<String>,
    pub caption: Option<String>,
    pub filename: Option<String>,
    #[serde(default)]
    pub voice: bool,
}

/// `interactive`: which reply it is is in `type`, the body in the field of that name.
#[derive(Debug, Deserialize)]
pub(crate) struct Interactive {
    #[serde(rename = "type")]
    pub kind: String,
    pub button_reply: Option<InteractiveReply>,
    pub list_reply: Option<InteractiveReply>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct InteractiveReply {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
}

/// `button`: a tap on a template's quick-reply button.
#[derive(Debug, Deserialize)]
pub(crate) struct Button {
    #[serde(default)]
    pub payload: String,
    pub text: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Location {
    pub latitude: f64,
    pub longitude: f64,
    pub name: Option<String>,
    pub address: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Reaction {
    pub message_id: String,
    /// Empty (or absent) when the reaction was removed.
    pub emoji: Option<String>,
}

/// `unsupported`: what kind of message WhatsApp could not hand over (for example `edit`).
#[derive(Debug, Deserialize)]
pub(crate) struct Unsupported {
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// A delivery status of a message the business sent.
#[derive(Debug, Deserialize)]
pub(crate) struct Status {
    pub id: String,
    pub status: String,
    #[serde(deserialize_with = "unix_seconds")]
    pub timestamp: i64,
    #[serde(default)]
    pub errors: Vec<WireError>,
}

/// An entry of an `errors[]` array (on a status, a message or a change).
#[derive(Debug, Deserialize)]
pub(crate) struct WireError {
    pub code: i64,
    pub title: Option<String>,
    pub message: Option<String>,
    pub error_data: Option<ErrorData>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorData {
    pub details: Option<String>,
}

/// Meta sends timestamps as strings of Unix seconds; a bare integer is accepted too.
fn unix_seconds<'de, D: Deserializer<'de>>(de: D) -> Result<i64, D::Error> {
    struct UnixSeconds;

    impl serde::de::Visitor<'_> for UnixSeconds {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Unix seconds as a string of digits")
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<i64, E> {
            s.trim()
                .parse()
                .map_err(|_| E::custom("expected Unix seconds as a string of digits"))
        }

        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<i64, E> {
            Ok(n)
        }

        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<i64, E> {
            i64::try_from(n).map_err(|_| E::custom("Unix seconds out of range"))
        }
    }

    de.deserialize_any(UnixSeconds)
}
