//! A tenant's handoff policy: business hours, the claim SLA, and what the prospect is told. Read
//! from `[handoff]` (every tenant) or `[tenants.<id>.handoff]`; every field has a default.

use serde::Deserialize;

/// How handoffs to staff work for a tenant. See the README's "Handoff" section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandoffSettings {
    /// Minutes a handoff may wait unclaimed (in business hours) before it is escalated.
    pub sla_minutes: u32,
    /// Business hours' time zone (IANA name).
    pub time_zone: String,
    /// Days staff work: `mon` .. `sun`.
    pub business_days: Vec<String>,
    /// Opening and closing time, `"HH:MM"`, local.
    pub opens: String,
    pub closes: String,
    /// Told when the conversation is handed off in business hours. `{position}` is filled in.
    pub handed_off_text: String,
    /// Told when handed off outside business hours. `{position}` and `{opens_at}`.
    pub after_hours_text: String,
    /// Told when the queue position improves meaningfully.
    pub position_text: String,
    /// Told when the SLA passes unclaimed.
    pub escalated_text: String,
    /// A lead whose stated budget reaches this amount (whole units of the leads' currency,
    /// `[leads] currency`) is handed to a person at once, once per conversation, with reason
    /// `high_value_lead`. `PARLEY_HIGH_VALUE_BUDGET` sets it for tenants without their own
    /// `[tenants.<id>.handoff]`. Off when absent.
    pub high_value_budget: Option<u64>,
}

impl Default for HandoffSettings {
    fn default() -> Self {
        Self {
            sla_minutes: 5,
            time_zone: "Asia/Kolkata".to_owned(),
            business_days: ["mon", "tue", "wed", "thu", "fri", "sat"]
                .iter()
                .map(|d| (*d).to_owned())
                .collect(),
            opens: "09:00".to_owned(),
            closes: "19:00".to_owned(),
            handed_off_text: "I have asked a member of our sales team to take over; they will reply here shortly. You are number {position} in the queue.".to_owned(),
            after_hours_text: "I have asked our sales team to take over. They are away now and will reply {opens_at}. You are number {position} in the queue.".to_owned(),
            position_text: "Thank you for waiting: you are now number {position} in the queue.".to_owned(),
            escalated_text: "Sorry for the wait. I have reminded our sales team and someone will be with you as soon as possible.".to_owned(),
            high_value_budget: None,
        }
    }
}

impl HandoffSettings {
    /// Checks what types cannot: the zone, the days and the times.
    pub fn validate(&self, section: &str) -> Result<(), String> {
        jiff::tz::TimeZone::get(&self.time_zone).map_err(|_| {
            format!(
                "[{section}] time_zone `{}` is not an IANA time zone name",
                self.time_zone
            )
        })?;
        for day in &self.business_days {
            super::hours::weekday(day).ok_or_else(|| {
                format!("[{section}] business_days: `{day}` is not one of mon, tue, wed, thu, fri, sat, sun")
            })?;
        }
        for (field, value) in [("opens", &self.opens), ("closes", &self.closes)] {
            crate::consent::parse_clock_time(value)
                .ok_or_else(|| format!("[{section}] {field} `{value}` is not a time like 09:00"))?;
        }
        if crate::consent::parse_clock_time(&self.opens)
            >= crate::consent::parse_clock_time(&self.closes)
        {
            return Err(format!("[{section}] opens must be before closes"));
        }
        if self.high_value_budget == Some(0) {
            return Err(format!(
                "[{section}] high_value_budget must be above 0 (leave it out to turn it off)"
            ));
        }
        if self.sla_minutes == 0 {
            return Err(format!("[{section}] sla_minutes must be at least 1"));
        }
        Ok(())
    }
}
