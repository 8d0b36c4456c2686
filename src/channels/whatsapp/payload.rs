//! The serde model of Meta's webhook envelope, as received. Only what Parley reads is declared;
//! unknown fields are ignored so Meta can add fields without breaking us.
//!
//! Parsing is in steps (see `parse.rs`): each change's `value`, each message and each message's
//! type-specific body are first kept as the raw JSON they came as (`RawValue`, a slice of the
//! body: nothing is built for them), so a change whose `field` is not `messages` or a message of
//! an unknown type is kept as it came (never rejected); the known parts are then read into the
//! typed structs below, with the path of any mistake.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// One WhatsApp Business Account's batch of changes.
#[derive(Debug, Deserialize)]
pub(crate) struct Entry<'a> {
    #[serde(borrow, default)]
    pub changes: Vec<Change<'a>>,
}

/// `{"field": "messages", "value": {...}}`; `value` is read according to `field`.
#[derive(Debug, Deserialize)]
pub(crate) struct Change<'a> {
    pub field: String,
    #[serde(borrow, default)]
    pub value: Option<&'a RawValue>,
}

/// The `value` of a `messages` change.
#[derive(Debug, Deserialize)]
pub(crate) struct MessagesValue<'a> {
    pub metadata: Metadata,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// Read one by one, so an unknown type can be kept raw.
    #[serde(borrow, default)]
    pub messages: Vec<&'a RawValue>,
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

/// The fields common to every message, and the raw body of each type Parley understands (the
/// one named by `type` is read; see [`Message::body`]).
#[derive(Debug, Deserialize)]
pub(crate) struct Message<'a> {
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
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    image: Option<&'a RawValue>,
    #[serde(borrow, default)]
    video: Option<&'a RawValue>,
    #[serde(borrow, default)]
    audio: Option<&'a RawValue>,
    #[serde(borrow, default)]
    document: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sticker: Option<&'a RawValue>,
    #[serde(borrow, default)]
    interactive: Option<&'a RawValue>,
    #[serde(borrow, default)]
    button: Option<&'a RawValue>,
    #[serde(borrow, default)]
    location: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reaction: Option<&'a RawValue>,
    #[serde(borrow, default)]
    contacts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    unsupported: Option<&'a RawValue>,
}

impl<'a> Message<'a> {
    /// The raw body under `key` (`text`, `image`...), if the message has one (a JSON `null` counts
    /// as none) and the key is one of the types Parley understands.
    pub fn body(&self, key: &str) -> Option<&'a RawValue> {
        match key {
            "text" => self.text,
            "image" => self.image,
            "video" => self.video,
            "audio" => self.audio,
            "document" => self.document,
            "sticker" => self.sticker,
            "interactive" => self.interactive,
            "button" => self.button,
            "location" => self.location,
            "reaction" => self.reaction,
            "contacts" => self.contacts,
            "unsupported" => self.unsupported,
            _ => None,
        }
    }
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
