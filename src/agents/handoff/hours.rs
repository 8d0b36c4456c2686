//! Business hours: whether staff are in, when they are next in, and when an unclaimed handoff is
//! due for escalation (the SLA counts business time only from the next opening).

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

use super::HandoffSettings;
use crate::consent::parse_clock_time;

/// `mon` .. `sun`.
pub fn weekday(raw: &str) -> Option<Weekday> {
    Some(match raw.trim().to_ascii_lowercase().as_str() {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

/// Business hours prepared for one tenant.
#[derive(Debug, Clone)]
pub struct BusinessHours {
    zone: TimeZone,
    days: Vec<Weekday>,
    opens: Time,
    closes: Time,
}

fn clock_time(raw: &str, fallback: (i8, i8)) -> Time {
    let (h, m) = parse_clock_time(raw).unwrap_or(fallback);
    Time::constant(h, m, 0, 0)
}

impl BusinessHours {
    pub fn new(settings: &HandoffSettings) -> Self {
        Self {
            zone: TimeZone::get(&settings.time_zone).unwrap_or(TimeZone::UTC),
            days: settings
                .business_days
                .iter()
                .filter_map(|d| weekday(d))
                .collect(),
            opens: clock_time(&settings.opens, (9, 0)),
            closes: clock_time(&settings.closes, (19, 0)),
        }
    }

    fn local(&self, ms: i64) -> Zoned {
        Timestamp::from_millisecond(ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.zone.clone())
    }

    /// Whether staff are in at `ms`.
    pub fn is_open(&self, ms: i64) -> bool {
        let now = self.local(ms);
        self.days.contains(&now.weekday()) && now.time() >= self.opens && now.time() < self.closes
    }

    /// The next moment staff are in (`ms` itself when they are in now).
    pub fn next_opening(&self, ms: i64) -> i64 {
        if self.days.is_empty() || self.is_open(ms) {
            return ms;
        }
        let now = self.local(ms);
        for offset in 0..8 {
            let Ok(date) = now.date().checked_add(offset.days()) else {
                break;
            };
            if !self.days.contains(&date.weekday()) {
                continue;
            }
            let Ok(opening) = date.to_datetime(self.opens).to_zoned(self.zone.clone()) else {
                continue;
            };
            let opening = opening.timestamp().as_millisecond();
            if opening > ms {
                return opening;
            }
        }
        ms
    }

    /// When a handoff created at `created_ms` must have been claimed.
    pub fn sla_due(&self, created_ms: i64, sla_minutes: u32) -> i64 {
        self.next_opening(created_ms) + i64::from(sla_minutes) * 60_000
    }

    /// "at 09:00 on Monday" in the business's zone, for telling the prospect.
    pub fn describe(&self, ms: i64) -> String {
        let local = self.local(ms);
        local.strftime("at %H:%M on %A").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(iso: &str) -> i64 {
        iso.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn hours() -> BusinessHours {
        BusinessHours::new(&HandoffSettings::default()) // Mon-Sat 09:00-19:00 Kolkata
    }

    #[test]
    fn open_in_local_business_hours_only() {
        let h = hours();
        // Monday 2026-11-23 10:00 IST = 04:30Z.
        assert!(h.is_open(ms("2026-11-23T04:30:00Z")));
        // Monday 20:00 IST.
        assert!(!h.is_open(ms("2026-11-23T14:30:00Z")));
        // Sunday 11:00 IST.
        assert!(!h.is_open(ms("2026-11-22T05:30:00Z")));
    }

    #[test]
    fn the_next_opening_skips_closed_days() {
        let h = hours();
        // Sunday 11:00 IST: next is Monday 09:00 IST = 03:30Z.
        assert_eq!(
            h.next_opening(ms("2026-11-22T05:30:00Z")),
            ms("2026-11-23T03:30:00Z")
        );
        // Monday 20:00 IST: Tuesday 09:00.
        assert_eq!(
            h.next_opening(ms("2026-11-23T14:30:00Z")),
            ms("2026-11-24T03:30:00Z")
        );
        // Monday 07:00 IST: the same day at 09:00.
        assert_eq!(
            h.next_opening(ms("2026-11-23T01:30:00Z")),
            ms("2026-11-23T03:30:00Z")
        );
        let open = ms("2026-11-23T04:30:00Z");
        assert_eq!(h.next_opening(open), open);
        assert_eq!(h.describe(ms("2026-11-23T03:30:00Z")), "at 09:00 on Monday");
    }

    #[test]
    fn the_sla_starts_at_the_next_opening() {
        let h = hours();
        let open = ms("2026-11-23T04:30:00Z");
        assert_eq!(h.sla_due(open, 5), open + 5 * 60_000);
        assert_eq!(
            h.sla_due(ms("2026-11-22T05:30:00Z"), 5),
            ms("2026-11-23T03:35:00Z")
        );
    }
}
