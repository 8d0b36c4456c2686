//! The scheduling tool: concrete visit slots from the tenant's calendar hours, and recognising the
//! prospect's pick ("2", "the second one", "Tuesday") among the slots they were offered.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::Deserialize;

use super::handoff::HandoffSettings;
use crate::consent::{normalise, parse_clock_time};

/// When visits can be booked (`[scheduling]` or `[tenants.<id>.scheduling]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulingSettings {
    /// Start times offered on each business day, local (`"HH:MM"`).
    pub visit_times: Vec<String>,
    /// The earliest slot is at least this many hours ahead.
    pub lead_time_hours: u32,
    /// How many slots are offered at once.
    pub slots_offered: usize,
}

impl Default for SchedulingSettings {
    fn default() -> Self {
        Self {
            visit_times: vec!["11:00".to_owned(), "15:00".to_owned(), "17:00".to_owned()],
            lead_time_hours: 18,
            slots_offered: 3,
        }
    }
}

/// Whether the message asks to book, move or arrange a visit or a call (and should be offered
/// slots), rather than asking about visits ("How long does a visit take?"), which the scheduling
/// agent answers from the documents.
pub fn asks_to_book(text: &str) -> bool {
    const PHRASES: &[&str] = &[
        "book",
        "schedule",
        "reschedule",
        "arrange",
        "fix a",
        "set up a",
        "appointment",
        "slot",
        "slots",
        "can i visit",
        "can i come",
        "could i visit",
        "can we visit",
        "can we come",
        "i want to visit",
        "i would like to visit",
        "want to see the",
        "come and see",
        "come for a visit",
        "plan a visit",
        "site visit on",
        "visit on",
        "visit this",
        "visit tomorrow",
        "visit today",
        "call me",
        "a call",
    ];
    let n = format!(" {} ", normalise(text));
    PHRASES.iter().any(|p| n.contains(&format!(" {p} ")))
}

/// The next `settings.slots_offered` slots after `now_ms`, on the business days of `hours`.
pub fn next_slots(settings: &SchedulingSettings, hours: &HandoffSettings, now_ms: i64) -> Vec<i64> {
    let zone = TimeZone::get(&hours.time_zone).unwrap_or(TimeZone::UTC);
    let days: Vec<_> = hours
        .business_days
        .iter()
        .filter_map(|d| super::handoff::weekday(d))
        .collect();
    let mut times: Vec<Time> = settings
        .visit_times
        .iter()
        .filter_map(|t| parse_clock_time(t))
        .map(|(h, m)| Time::constant(h, m, 0, 0))
        .collect();
    times.sort();
    let earliest = now_ms + i64::from(settings.lead_time_hours) * 3_600_000;
    let Ok(now) = Timestamp::from_millisecond(now_ms) else {
        return Vec::new();
    };
    let today = now.to_zoned(zone.clone()).date();
    let mut slots = Vec::new();
    for offset in 0..21 {
        let Ok(date) = today.checked_add(offset.days()) else {
            break;
        };
        if !days.contains(&date.weekday()) {
            continue;
        }
        for time in &times {
            let Ok(at) = date.to_datetime(*time).to_zoned(zone.clone()) else {
                continue;
            };
            let ms = at.timestamp().as_millisecond();
            if ms >= earliest {
                slots.push(ms);
                if slots.len() == settings.slots_offered {
                    return slots;
                }
            }
        }
    }
    slots
}

/// "Tue 24 Nov, 11:00" in the business's zone.
pub fn describe_slot(ms: i64, hours: &HandoffSettings) -> String {
    let zone = TimeZone::get(&hours.time_zone).unwrap_or(TimeZone::UTC);
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_zoned(zone).strftime("%a %-d %b, %H:%M").to_string())
        .unwrap_or_default()
}

/// Which offered slot (index) a message picks, if it clearly picks one.
pub fn picked_slot(text: &str, offered: &[i64], hours: &HandoffSettings) -> Option<usize> {
    let words: Vec<String> = normalise(text).split(' ').map(str::to_owned).collect();
    if words.is_empty() || words.len() > 8 {
        return None;
    }
    let ordinals = [
        ["1", "one", "first", "1st"],
        ["2", "two", "second", "2nd"],
        ["3", "three", "third", "3rd"],
        ["4", "four", "fourth", "4th"],
    ];
    let mut picks: Vec<usize> = ordinals
        .iter()
        .enumerate()
        .filter(|(_, names)| words.iter().any(|w| names.contains(&w.as_str())))
        .map(|(i, _)| i)
        .filter(|i| *i < offered.len())
        .collect();
    if picks.is_empty() {
        // A weekday name that matches exactly one offered slot.
        let zone = TimeZone::get(&hours.time_zone).unwrap_or(TimeZone::UTC);
        picks = offered
            .iter()
            .enumerate()
            .filter(|(_, ms)| {
                Timestamp::from_millisecond(**ms).is_ok_and(|t| {
                    let day = t
                        .to_zoned(zone.clone())
                        .strftime("%A")
                        .to_string()
                        .to_lowercase();
                    words
                        .iter()
                        .any(|w| *w == day || (w.len() >= 3 && day.starts_with(w.as_str())))
                })
            })
            .map(|(i, _)| i)
            .collect();
    }
    (picks.len() == 1).then(|| picks[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_to_book_is_told_from_a_question_about_visits() {
        for ask in [
            "I want to book a site visit",
            "Can I schedule a site visit?",
            "Can I visit the sample flat on Saturday morning?",
            "Please arrange a call tomorrow",
        ] {
            assert!(asks_to_book(ask), "{ask}");
        }
        for question in [
            "How long does a site visit take?",
            "Do you provide free pick-up for the site visit?",
            "Is the booking amount refundable?",
        ] {
            assert!(!asks_to_book(question), "{question}");
        }
    }

    fn ms(iso: &str) -> i64 {
        iso.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn slots_fall_on_business_days_after_the_lead_time() {
        let hours = HandoffSettings::default(); // Mon-Sat, Kolkata
        // Saturday 2026-11-21 12:00 IST: 18 h later is Sunday (closed), so Monday's slots.
        let slots = next_slots(
            &SchedulingSettings::default(),
            &hours,
            ms("2026-11-21T06:30:00Z"),
        );
        assert_eq!(
            slots,
            [
                ms("2026-11-23T05:30:00Z"),
                ms("2026-11-23T09:30:00Z"),
                ms("2026-11-23T11:30:00Z")
            ]
        );
        assert_eq!(describe_slot(slots[0], &hours), "Mon 23 Nov, 11:00");
    }

    #[test]
    fn a_pick_is_a_number_an_ordinal_or_a_unique_weekday() {
        let hours = HandoffSettings::default();
        let offered = [
            ms("2026-11-23T05:30:00Z"),
            ms("2026-11-23T09:30:00Z"),
            ms("2026-11-24T05:30:00Z"),
        ];
        assert_eq!(picked_slot("2", &offered, &hours), Some(1));
        assert_eq!(
            picked_slot("the first one please", &offered, &hours),
            Some(0)
        );
        assert_eq!(picked_slot("Tuesday works", &offered, &hours), Some(2));
        assert_eq!(
            picked_slot("Monday", &offered, &hours),
            None,
            "two Monday slots"
        );
        assert_eq!(
            picked_slot(
                "What is the price of a 3 BHK in Skyline Meadows project",
                &offered,
                &hours
            ),
            None
        );
        assert_eq!(picked_slot("5", &offered, &hours), None);
    }
}
