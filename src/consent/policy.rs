//! The outbound policy as a pure function: given what is known about the contact (consent, when
//! they last wrote, how many proactive messages they got lately) and what is about to be sent,
//! decide to send, to defer (quiet hours) or to refuse (with a typed reason). The gate loads the
//! facts and applies this; tests drive it with any clock.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

use super::{ConsentSettings, settings::parse_clock_time};
use crate::domain::Channel;

/// Why a message is sent: the gate treats each differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Answers a message the prospect just sent: never held by quiet hours or caps.
    Reply,
    /// Starts contact (follow-ups, campaigns, CRM-triggered): quiet hours and caps apply.
    Proactive,
    /// The one confirmation of an opt-out: the only message an opted-out contact receives.
    OptOutConfirmation,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Reply => "reply",
            Purpose::Proactive => "proactive",
            Purpose::OptOutConfirmation => "opt_out_confirmation",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "reply" => Purpose::Reply,
            "proactive" => Purpose::Proactive,
            "opt_out_confirmation" => Purpose::OptOutConfirmation,
            _ => return None,
        })
    }
}

/// Why the gate refused or deferred a message; recorded on the outbound row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateReason {
    /// The contact opted out of this channel.
    OptedOut,
    /// WhatsApp: free-form text more than 24 hours after the prospect last wrote; an approved
    /// template is required.
    OutsideServiceWindow,
    /// A proactive message during the contact's quiet hours (deferred, not dropped).
    QuietHours,
    /// Too many proactive messages to this contact on this channel lately.
    FrequencyCap,
}

impl GateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GateReason::OptedOut => "opted_out",
            GateReason::OutsideServiceWindow => "outside_service_window",
            GateReason::QuietHours => "quiet_hours",
            GateReason::FrequencyCap => "frequency_cap",
        }
    }

    /// What a person reads about it.
    pub fn explain(self) -> &'static str {
        match self {
            GateReason::OptedOut => "the contact opted out of this channel",
            GateReason::OutsideServiceWindow => {
                "more than 24 hours since the contact last wrote: send an approved template instead"
            }
            GateReason::QuietHours => "quiet hours in the contact's time zone: deferred",
            GateReason::FrequencyCap => {
                "the contact already received the allowed number of proactive messages this week"
            }
        }
    }
}

/// The gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateDecision {
    Send,
    /// Hold until this time (Unix ms), then ask again.
    Defer {
        until_ms: i64,
        reason: GateReason,
    },
    Refuse(GateReason),
}

/// What the store knows about the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContactFacts {
    pub opted_out: bool,
    /// When the prospect last wrote on this channel (Unix ms).
    pub last_inbound_at_ms: Option<i64>,
    /// Proactive messages already handed to the provider within the cap window.
    pub recent_proactive: u32,
}

/// What is about to be sent.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub channel: Channel,
    /// The recipient's address (the WhatsApp window applies to `whatsapp:` Twilio addresses too).
    pub address: &'a str,
    pub purpose: Purpose,
    /// An approved template (allowed outside the 24-hour window).
    pub template: bool,
}

/// The 24-hour customer service window of WhatsApp Business.
pub const SERVICE_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// Whether free-form messages on this channel need the prospect to have written in the last 24 h.
pub fn has_service_window(channel: Channel, address: &str) -> bool {
    match channel {
        Channel::Whatsapp => true,
        Channel::Twilio => address.starts_with("whatsapp:"),
        _ => false,
    }
}

/// Decides what happens to `outgoing` at `now_ms` for a contact in `zone`.
pub fn decide(
    settings: &ConsentSettings,
    zone: &TimeZone,
    outgoing: Outgoing<'_>,
    facts: ContactFacts,
    now_ms: i64,
) -> GateDecision {
    if facts.opted_out && outgoing.purpose != Purpose::OptOutConfirmation {
        return GateDecision::Refuse(GateReason::OptedOut);
    }
    if has_service_window(outgoing.channel, outgoing.address) && !outgoing.template {
        let inside = facts
            .last_inbound_at_ms
            .is_some_and(|at| now_ms - at < SERVICE_WINDOW_MS);
        if !inside {
            return GateDecision::Refuse(GateReason::OutsideServiceWindow);
        }
    }
    if outgoing.purpose != Purpose::Proactive {
        return GateDecision::Send;
    }
    if let Some(cap) = settings.frequency_cap(outgoing.channel.as_str())
        && facts.recent_proactive >= cap
    {
        return GateDecision::Refuse(GateReason::FrequencyCap);
    }
    if let Some(until_ms) = quiet_hours_end(settings, zone, now_ms) {
        return GateDecision::Defer {
            until_ms,
            reason: GateReason::QuietHours,
        };
    }
    GateDecision::Send
}

/// When `now_ms` falls in the quiet hours (local to `zone`), the moment they end.
pub fn quiet_hours_end(settings: &ConsentSettings, zone: &TimeZone, now_ms: i64) -> Option<i64> {
    let quiet = settings.quiet_hours.as_ref()?;
    let (start, end) = (
        parse_clock_time(&quiet.start)?,
        parse_clock_time(&quiet.end)?,
    );
    let start = Time::constant(start.0, start.1, 0, 0);
    let end = Time::constant(end.0, end.1, 0, 0);
    if start == end {
        return None;
    }
    let now = Timestamp::from_millisecond(now_ms)
        .ok()?
        .to_zoned(zone.clone());
    let time = now.time();
    let inside = if start < end {
        time >= start && time < end
    } else {
        time >= start || time < end
    };
    if !inside {
        return None;
    }
    // The end is today if it is still ahead, otherwise tomorrow (a period spanning midnight).
    let date = if time < end {
        now.date()
    } else {
        now.date().checked_add(1.day()).ok()?
    };
    let end_local: Zoned = date.to_datetime(end).to_zoned(zone.clone()).ok()?;
    Some(end_local.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(iso: &str) -> i64 {
        iso.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn proactive(channel: Channel) -> Outgoing<'static> {
        Outgoing {
            channel,
            address: "919800000001",
            purpose: Purpose::Proactive,
            template: true,
        }
    }

    fn fresh_facts(now: i64) -> ContactFacts {
        ContactFacts {
            opted_out: false,
            last_inbound_at_ms: Some(now - 60_000),
            recent_proactive: 0,
        }
    }

    #[test]
    fn opted_out_contacts_get_only_the_confirmation() {
        let now = ms("2026-11-22T06:00:00Z");
        let facts = ContactFacts {
            opted_out: true,
            ..fresh_facts(now)
        };
        let settings = ConsentSettings::default();
        let kolkata = zone("Asia/Kolkata");
        for purpose in [Purpose::Reply, Purpose::Proactive] {
            let out = Outgoing {
                purpose,
                ..proactive(Channel::Whatsapp)
            };
            assert_eq!(
                decide(&settings, &kolkata, out, facts, now),
                GateDecision::Refuse(GateReason::OptedOut)
            );
        }
        let confirmation = Outgoing {
            purpose: Purpose::OptOutConfirmation,
            template: false,
            ..proactive(Channel::Whatsapp)
        };
        assert_eq!(
            decide(&settings, &kolkata, confirmation, facts, now),
            GateDecision::Send
        );
    }

    #[test]
    fn whatsapp_free_form_needs_the_24_hour_window() {
        let settings = ConsentSettings::default();
        let now = ms("2026-11-22T06:00:00Z");
        let text = Outgoing {
            purpose: Purpose::Reply,
            template: false,
            ..proactive(Channel::Whatsapp)
        };
        let at = |age_ms: i64| ContactFacts {
            last_inbound_at_ms: Some(now - age_ms),
            ..ContactFacts::default()
        };
        let utc = zone("UTC");
        assert_eq!(
            decide(&settings, &utc, text, at(SERVICE_WINDOW_MS - 1), now),
            GateDecision::Send
        );
        assert_eq!(
            decide(&settings, &utc, text, at(SERVICE_WINDOW_MS), now),
            GateDecision::Refuse(GateReason::OutsideServiceWindow)
        );
        assert_eq!(
            decide(&settings, &utc, text, ContactFacts::default(), now),
            GateDecision::Refuse(GateReason::OutsideServiceWindow)
        );
        let template = Outgoing {
            template: true,
            ..text
        };
        assert_eq!(
            decide(&settings, &utc, template, at(3 * SERVICE_WINDOW_MS), now),
            GateDecision::Send
        );
        // Twilio: only its WhatsApp addresses have the window; SMS and email do not.
        let sms = Outgoing {
            channel: Channel::Twilio,
            address: "+14155550100",
            ..text
        };
        assert_eq!(
            decide(&settings, &utc, sms, ContactFacts::default(), now),
            GateDecision::Send
        );
        let twilio_wa = Outgoing {
            channel: Channel::Twilio,
            address: "whatsapp:+14155550100",
            ..text
        };
        assert_eq!(
            decide(&settings, &utc, twilio_wa, ContactFacts::default(), now),
            GateDecision::Refuse(GateReason::OutsideServiceWindow)
        );
    }

    #[test]
    fn quiet_hours_follow_the_contacts_time_zone() {
        let settings = ConsentSettings::default(); // 21:00 to 09:00
        // 16:00 UTC is 21:30 in Kolkata (quiet) and 11:00 in New York (not quiet).
        let now = ms("2026-11-22T16:00:00Z");
        let facts = fresh_facts(now);
        let kolkata = decide(
            &settings,
            &zone("Asia/Kolkata"),
            proactive(Channel::Email),
            facts,
            now,
        );
        assert_eq!(
            kolkata,
            GateDecision::Defer {
                until_ms: ms("2026-11-23T03:30:00Z"), // 09:00 IST the next morning
                reason: GateReason::QuietHours
            }
        );
        let new_york = decide(
            &settings,
            &zone("America/New_York"),
            proactive(Channel::Email),
            facts,
            now,
        );
        assert_eq!(new_york, GateDecision::Send);
        // 02:00 UTC is 21:00 in New York: quiet until 09:00 the same local... next morning.
        let later = ms("2026-11-23T02:00:00Z");
        assert_eq!(
            decide(
                &settings,
                &zone("America/New_York"),
                proactive(Channel::Email),
                fresh_facts(later),
                later
            ),
            GateDecision::Defer {
                until_ms: ms("2026-11-23T14:00:00Z"),
                reason: GateReason::QuietHours
            }
        );
        // Early morning (before the end) ends the same day.
        let early = ms("2026-11-23T00:30:00Z"); // 06:00 IST
        assert_eq!(
            quiet_hours_end(&settings, &zone("Asia/Kolkata"), early),
            Some(ms("2026-11-23T03:30:00Z"))
        );
    }

    #[test]
    fn replies_ignore_quiet_hours_and_caps() {
        let settings = ConsentSettings::default();
        let now = ms("2026-11-22T16:00:00Z"); // 21:30 in Kolkata
        let facts = ContactFacts {
            recent_proactive: 10,
            ..fresh_facts(now)
        };
        let reply = Outgoing {
            purpose: Purpose::Reply,
            template: false,
            ..proactive(Channel::Whatsapp)
        };
        assert_eq!(
            decide(&settings, &zone("Asia/Kolkata"), reply, facts, now),
            GateDecision::Send
        );
    }

    #[test]
    fn caps_hold_proactive_messages_per_channel() {
        let settings = ConsentSettings::default(); // WhatsApp 1, email 2 per 7 days
        let now = ms("2026-11-22T06:00:00Z"); // 11:30 IST, not quiet
        let kolkata = zone("Asia/Kolkata");
        let with = |n| ContactFacts {
            recent_proactive: n,
            ..fresh_facts(now)
        };
        assert_eq!(
            decide(
                &settings,
                &kolkata,
                proactive(Channel::Whatsapp),
                with(0),
                now
            ),
            GateDecision::Send
        );
        assert_eq!(
            decide(
                &settings,
                &kolkata,
                proactive(Channel::Whatsapp),
                with(1),
                now
            ),
            GateDecision::Refuse(GateReason::FrequencyCap)
        );
        assert_eq!(
            decide(&settings, &kolkata, proactive(Channel::Email), with(1), now),
            GateDecision::Send
        );
        assert_eq!(
            decide(&settings, &kolkata, proactive(Channel::Email), with(2), now),
            GateDecision::Refuse(GateReason::FrequencyCap)
        );
        assert_eq!(
            decide(&settings, &kolkata, proactive(Channel::Web), with(50), now),
            GateDecision::Send
        );
    }

    #[test]
    fn quiet_hours_can_be_turned_off_or_lie_within_a_day() {
        let mut settings = ConsentSettings::default();
        let utc = zone("UTC");
        settings.quiet_hours = None;
        assert_eq!(
            quiet_hours_end(&settings, &utc, ms("2026-11-22T23:00:00Z")),
            None
        );
        settings.quiet_hours = Some(super::super::settings::QuietHours {
            start: "12:00".into(),
            end: "14:00".into(),
        });
        assert_eq!(
            quiet_hours_end(&settings, &utc, ms("2026-11-22T13:00:00Z")),
            Some(ms("2026-11-22T14:00:00Z"))
        );
        assert_eq!(
            quiet_hours_end(&settings, &utc, ms("2026-11-22T14:00:00Z")),
            None
        );
    }
}
