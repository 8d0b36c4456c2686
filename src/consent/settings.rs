//! A tenant's consent policy: its keyword lists, the texts it answers with, quiet hours, frequency
//! caps and approved templates. Read from `[consent]` (every tenant) or `[tenants.<id>.consent]`
//! (one tenant) in `parley.toml`; every field has a default, so an empty section is valid.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// How a tenant handles consent. See the README's "Consent" section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsentSettings {
    /// Single words that opt a contact out of the channel they were sent on.
    pub opt_out_keywords: Vec<String>,
    /// Single words that opt a contact back in (only when they are opted out).
    pub opt_in_keywords: Vec<String>,
    /// Single words answered with `help_text`.
    pub help_keywords: Vec<String>,
    /// Plain-language opt-out requests, matched as whole words anywhere in a message.
    pub opt_out_phrases: Vec<String>,
    /// The intent classifier's `opt_out` prediction opts out at or above this confidence, when the
    /// message also contains one of `opt_out_cues`. Set above 1 to turn the classifier path off.
    pub classifier_threshold: f32,
    /// Words one of which must appear for the classifier path to apply.
    pub opt_out_cues: Vec<String>,
    /// Sent once when a contact opts out. `{business}` and `{opt_in}` are filled in.
    pub opt_out_confirmation: String,
    /// Sent when a contact opts back in.
    pub opt_in_confirmation: String,
    /// Sent for HELP and INFO.
    pub help_text: String,
    /// The tenant's time zone (IANA name), used for contacts whose own zone is unknown.
    pub time_zone: String,
    /// Quiet hours in the contact's local time, `"HH:MM"`; proactive messages wait until `end`.
    pub quiet_hours: Option<QuietHours>,
    /// Proactive messages allowed per contact and channel in `frequency_window_days`.
    /// Channels not listed are not capped.
    pub frequency_caps: BTreeMap<String, u32>,
    pub frequency_window_days: u32,
    /// A staff or API message counts as a reply (exempt from quiet hours and caps) when the
    /// prospect wrote within this many minutes; otherwise it is proactive.
    pub reply_window_minutes: u32,
}

/// A daily quiet period, possibly spanning midnight (`start` after `end`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
}

/// An approved WhatsApp template (`[tenants.<id>.templates.<name>]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    /// Meta's language code, for example `en` or `en_US`.
    pub language: String,
    /// The approved body with `{{1}}`-style placeholders, used to show the message in Parley.
    pub body: String,
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| (*w).to_owned()).collect()
}

impl Default for ConsentSettings {
    fn default() -> Self {
        Self {
            opt_out_keywords: words(&[
                "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
                "ARRET", "HALT", "STOPP", "DETENER", "BAJA", "PARAR", "SAIR", "FERMA",
            ]),
            opt_in_keywords: words(&["START", "YES", "UNSTOP"]),
            help_keywords: words(&["HELP", "INFO"]),
            opt_out_phrases: words(&[
                "stop messaging me",
                "stop texting me",
                "stop sending me",
                "stop contacting me",
                "stop emailing me",
                "stop calling me",
                "stop writing to me",
                "stop spamming me",
                "dont text me",
                "dont message me",
                "dont contact me",
                "dont email me",
                "dont send me",
                "do not text me",
                "do not message me",
                "do not contact me",
                "do not email me",
                "do not send me",
                "never text me",
                "never message me",
                "never contact me",
                "unsubscribe me",
                "opt me out",
                "i want to opt out",
                "i would like to opt out",
                "remove me from your list",
                "remove me from the list",
                "remove me from this list",
                "remove my number",
                "take me off your list",
                "take me off the list",
                "no more messages",
                "leave me alone",
            ]),
            classifier_threshold: 0.8,
            opt_out_cues: words(&[
                "stop", "unsubscribe", "remove", "dont", "never", "opt", "leave", "spam",
                "block", "quit",
            ]),
            opt_out_confirmation: "You are unsubscribed from {business} messages on this channel and will not hear from us again. Reply {opt_in} to opt back in.".to_owned(),
            opt_in_confirmation: "You are subscribed to {business} messages again. Reply STOP at any time to opt out.".to_owned(),
            help_text: "{business}: ask us about our projects, prices and site visits, and a person can join when you need one. Reply STOP to opt out, START to opt back in.".to_owned(),
            time_zone: "Asia/Kolkata".to_owned(),
            quiet_hours: Some(QuietHours {
                start: "21:00".to_owned(),
                end: "09:00".to_owned(),
            }),
            frequency_caps: BTreeMap::from([
                ("whatsapp".to_owned(), 1),
                ("twilio".to_owned(), 1),
                ("waha".to_owned(), 1),
                ("email".to_owned(), 2),
            ]),
            frequency_window_days: 7,
            reply_window_minutes: 24 * 60,
        }
    }
}

impl ConsentSettings {
    /// Checks what cannot be checked by types: time zone names and `HH:MM` times.
    pub fn validate(&self, section: &str) -> Result<(), String> {
        jiff::tz::TimeZone::get(&self.time_zone).map_err(|_| {
            format!(
                "[{section}] time_zone `{}` is not an IANA time zone name",
                self.time_zone
            )
        })?;
        if let Some(q) = &self.quiet_hours {
            for (field, value) in [("start", &q.start), ("end", &q.end)] {
                parse_clock_time(value).ok_or_else(|| {
                    format!("[{section}] quiet_hours.{field} `{value}` is not a time like 21:00")
                })?;
            }
        }
        if self.opt_out_keywords.is_empty() {
            return Err(format!(
                "[{section}] opt_out_keywords must name at least one keyword"
            ));
        }
        Ok(())
    }

    /// How long after a prospect's message a staff or API message still counts as a reply.
    pub fn reply_window(&self) -> Duration {
        Duration::from_secs(u64::from(self.reply_window_minutes) * 60)
    }

    /// The cap for proactive messages on `channel`, if it has one.
    pub fn frequency_cap(&self, channel: &str) -> Option<u32> {
        self.frequency_caps.get(channel).copied()
    }
}

/// `"HH:MM"` as (hour, minute).
pub fn parse_clock_time(raw: &str) -> Option<(i8, i8)> {
    let (h, m) = raw.trim().split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h, m))
}
