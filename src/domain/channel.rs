//! The channels a conversation can run on.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A messaging channel. The string forms are stored in the database and shown in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// WhatsApp Cloud API (Meta).
    Whatsapp,
    /// Twilio (WhatsApp or SMS).
    Twilio,
    /// WAHA, self-hosted WhatsApp HTTP API.
    Waha,
    /// Inbound email through a provider webhook, replies by SMTP.
    Email,
    /// The web chat channel (`/api/v1/web/messages`, the widget, `parley chat`).
    Web,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Whatsapp,
        Channel::Twilio,
        Channel::Waha,
        Channel::Email,
        Channel::Web,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Whatsapp => "whatsapp",
            Channel::Twilio => "twilio",
            Channel::Waha => "waha",
            Channel::Email => "email",
            Channel::Web => "web",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown channel `{0}`")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownChannel(s.to_owned()))
    }
}
