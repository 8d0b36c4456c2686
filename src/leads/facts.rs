//! What Parley knows about a lead: the facts a prospect stated (or an import supplied), where the
//! lead came from, and how engaged they are. Stored as JSON on the lead row; merged as new
//! messages arrive (a newer stated value replaces an older one, nothing is erased).

use serde::{Deserialize, Serialize};

use crate::domain::Channel;

/// An amount of money in whole currency units (1 crore = 10,000,000; 1 lakh = 100,000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub amount: u64,
    /// ISO 4217 code: `INR`, `USD`, `EUR`, `GBP`.
    pub currency: String,
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.currency, self.amount)
    }
}

/// Facts about a lead. Personal data: never log the values, only which are present.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeadFacts {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Lowercased, syntactically valid.
    pub email: Option<String>,
    /// E.164, e.g. `+919876543210`.
    pub phone: Option<String>,
    pub company: Option<String>,
    pub budget: Option<Budget>,
    pub timeline: Option<String>,
    pub location: Option<String>,
    /// `2 BHK`, `villa`, `plot`, ...
    pub property_type: Option<String>,
    /// Interest keywords (investment, loan, possession, ...), deduplicated.
    pub keywords: Vec<String>,
}

impl LeadFacts {
    /// Copies every fact `newer` states over this one; returns the names of facts that changed.
    pub fn merge(&mut self, newer: &LeadFacts) -> Vec<&'static str> {
        let mut changed = Vec::new();
        macro_rules! take {
            ($($field:ident),*) => {$(
                if let Some(value) = &newer.$field {
                    if self.$field.as_ref() != Some(value) {
                        self.$field = Some(value.clone());
                        changed.push(stringify!($field));
                    }
                }
            )*};
        }
        take!(
            first_name,
            last_name,
            email,
            phone,
            company,
            budget,
            timeline,
            location,
            property_type
        );
        for keyword in &newer.keywords {
            if !self.keywords.contains(keyword) {
                self.keywords.push(keyword.clone());
                if !changed.contains(&"keywords") {
                    changed.push("keywords");
                }
            }
        }
        changed
    }

    /// The full name, when known.
    pub fn full_name(&self) -> Option<String> {
        match (&self.first_name, &self.last_name) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (Some(f), None) => Some(f.clone()),
            (None, Some(l)) => Some(l.clone()),
            (None, None) => None,
        }
    }

    /// Sets first and last name from a full name (`Asha Rao` → `Asha`, `Rao`).
    pub fn set_name(&mut self, full: &str) {
        let mut words = full.split_whitespace();
        if let Some(first) = words.next() {
            self.first_name = Some(first.to_owned());
            let rest: Vec<&str> = words.collect();
            self.last_name = (!rest.is_empty()).then(|| rest.join(" "));
        }
    }

    /// Names of the facts present, for logs (never the values).
    pub fn present(&self) -> Vec<&'static str> {
        let mut present = Vec::new();
        macro_rules! check {
            ($($field:ident),*) => {$( if self.$field.is_some() { present.push(stringify!($field)); } )*};
        }
        check!(
            first_name,
            last_name,
            email,
            phone,
            company,
            budget,
            timeline,
            location,
            property_type
        );
        if !self.keywords.is_empty() {
            present.push("keywords");
        }
        present
    }
}

/// Where a lead came from. The source-quality points of each live in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadSource {
    /// A filled web form (import rows may say so).
    Form,
    Event,
    /// A click-to-WhatsApp ad (the message carried a referral).
    ReferralAd,
    WhatsappInbound,
    /// The web chat.
    Web,
    Email,
    Social,
    Analytics,
    /// A CSV import without a more specific source.
    Import,
}

impl LeadSource {
    pub const ALL: [LeadSource; 9] = [
        LeadSource::Form,
        LeadSource::Event,
        LeadSource::ReferralAd,
        LeadSource::WhatsappInbound,
        LeadSource::Web,
        LeadSource::Email,
        LeadSource::Social,
        LeadSource::Analytics,
        LeadSource::Import,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeadSource::Form => "form",
            LeadSource::Event => "event",
            LeadSource::ReferralAd => "referral_ad",
            LeadSource::WhatsappInbound => "whatsapp_inbound",
            LeadSource::Web => "web",
            LeadSource::Email => "email",
            LeadSource::Social => "social",
            LeadSource::Analytics => "analytics",
            LeadSource::Import => "import",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// The source of a conversation on `channel` (a click-to-WhatsApp referral overrides it).
    pub fn of_channel(channel: Channel, from_ad: bool) -> Self {
        if from_ad {
            return LeadSource::ReferralAd;
        }
        match channel {
            Channel::Whatsapp | Channel::Twilio | Channel::Waha => LeadSource::WhatsappInbound,
            Channel::Web => LeadSource::Web,
            Channel::Email => LeadSource::Email,
        }
    }
}

/// How engaged a lead is, counted from their inbound messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Engagement {
    /// Inbound messages (replies) from the prospect.
    pub replies: u32,
    /// Messages classified as the `pricing` intent.
    pub pricing_questions: u32,
    /// Visit or meeting requests (the `scheduling` intent, or words like "site visit").
    pub visit_requests: u32,
    /// Direct purchase inquiries ("want to book a flat", "token amount").
    pub purchase_inquiries: u32,
    /// When the latest of these happened (Unix ms).
    pub last_at: Option<i64>,
}

/// What one message says about its sender.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageSignals {
    pub facts: LeadFacts,
    pub pricing_question: bool,
    pub visit_request: bool,
    pub purchase_inquiry: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_old_facts_and_reports_what_changed() {
        let mut facts = LeadFacts {
            email: Some("a@example.com".into()),
            location: Some("Baner".into()),
            ..Default::default()
        };
        let newer = LeadFacts {
            location: Some("Wakad".into()),
            keywords: vec!["loan".into()],
            ..Default::default()
        };
        let changed = facts.merge(&newer);
        assert_eq!(changed, vec!["location", "keywords"]);
        assert_eq!(facts.email.as_deref(), Some("a@example.com"));
        assert_eq!(facts.location.as_deref(), Some("Wakad"));
        assert!(facts.merge(&newer).is_empty());
    }

    #[test]
    fn a_full_name_splits_into_first_and_last() {
        let mut facts = LeadFacts::default();
        facts.set_name("Asha Rao Kulkarni");
        assert_eq!(facts.first_name.as_deref(), Some("Asha"));
        assert_eq!(facts.last_name.as_deref(), Some("Rao Kulkarni"));
        assert_eq!(facts.full_name().as_deref(), Some("Asha Rao Kulkarni"));
    }
}
