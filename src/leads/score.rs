//! The lead score: 0-100, the sum of named factors with their points and a sentence each, and
//! the tier it falls in. Pure: everything it needs is passed in, so table tests cover every
//! factor and boundary. Weights come from `[leads.weights]`.

use serde::{Deserialize, Serialize};

use super::config::{LeadsConfig, Tiers};
use super::facts::{Engagement, LeadFacts, LeadSource};
use super::validate::{EmailStatus, MxStatus, Verification};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A score tier, hottest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Invalid,
    Low,
    Cold,
    Warm,
    Hot,
}

impl Tier {
    pub const ALL: [Tier; 5] = [Tier::Hot, Tier::Warm, Tier::Cold, Tier::Low, Tier::Invalid];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
            Tier::Low => "low",
            Tier::Invalid => "invalid",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// The tier a score falls in.
    pub fn of_score(score: i32, tiers: &Tiers) -> Self {
        if score >= tiers.hot {
            Tier::Hot
        } else if score >= tiers.warm {
            Tier::Warm
        } else if score >= tiers.cold {
            Tier::Cold
        } else if score >= tiers.low {
            Tier::Low
        } else {
            Tier::Invalid
        }
    }

    /// One tier cooler (`invalid` stays).
    pub fn cooler(self) -> Self {
        match self {
            Tier::Hot => Tier::Warm,
            Tier::Warm => Tier::Cold,
            Tier::Cold => Tier::Low,
            Tier::Low | Tier::Invalid => Tier::Invalid,
        }
    }
}

/// One named part of the score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factor {
    pub name: String,
    pub points: i32,
    pub detail: String,
}

/// What a score is computed from.
#[derive(Debug, Clone, Copy)]
pub struct ScoreInput<'a> {
    pub facts: &'a LeadFacts,
    pub verification: &'a Verification,
    pub source: LeadSource,
    pub engagement: &'a Engagement,
    pub now_ms: i64,
}

/// A computed score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub total: i32,
    /// The tier of the points alone (before temperature moves).
    pub tier: Tier,
    /// 0..1: how much of what the score looks at is known rather than missing or unchecked.
    pub confidence: f64,
    pub factors: Vec<Factor>,
}

/// Scores a lead.
pub fn score(input: ScoreInput<'_>, config: &LeadsConfig) -> Score {
    let w = &config.weights;
    let completeness = completeness(input.facts, config);
    let verification = verification(input.verification, config);
    let source_points = source_points(input.source, config).min(w.source.max);
    let (engagement_raw, engagement_detail) = engagement(input.engagement, config);
    let engagement_points = engagement_raw
        .min(w.engagement.max)
        .min((w.engagement.shared_max - source_points).max(0));
    let recency = recency(input.engagement.last_at, input.now_ms, config);
    let factors = vec![
        completeness,
        verification,
        Factor {
            name: "source".into(),
            points: source_points,
            detail: format!("source {}", input.source.as_str()),
        },
        Factor {
            name: "engagement".into(),
            points: engagement_points,
            detail: engagement_detail,
        },
        recency,
    ];
    let total = factors.iter().map(|f| f.points).sum::<i32>().clamp(0, 100);
    Score {
        total,
        tier: Tier::of_score(total, &config.tiers),
        confidence: confidence(input),
        factors,
    }
}

fn completeness(facts: &LeadFacts, config: &LeadsConfig) -> Factor {
    let c = &config.weights.completeness;
    let items = [
        (
            facts.first_name.is_some() && facts.last_name.is_some(),
            c.full_name,
            "first and last name",
        ),
        (facts.email.is_some(), c.email, "email"),
        (facts.company.is_some(), c.company, "company"),
        (facts.phone.is_some(), c.phone, "phone"),
        (
            facts.property_type.is_some(),
            c.property_type,
            "property type",
        ),
        (facts.location.is_some(), c.location, "location"),
        (!facts.keywords.is_empty(), c.keywords, "keywords"),
    ];
    let present: Vec<&str> = items.iter().filter(|i| i.0).map(|i| i.2).collect();
    let points: i32 = items.iter().filter(|i| i.0).map(|i| i.1).sum();
    Factor {
        name: "completeness".into(),
        points: points.min(c.max),
        detail: if present.is_empty() {
            "no facts yet".into()
        } else {
            format!("has {}", present.join(", "))
        },
    }
}

fn verification(v: &Verification, config: &LeadsConfig) -> Factor {
    let w = &config.weights.verification;
    let mut points = 0;
    let mut notes = Vec::new();
    match v.email {
        Some(EmailStatus::Verified) => {
            points += w.email_verified;
            notes.push("email verified");
        }
        Some(EmailStatus::Risky) => {
            points += w.email_risky;
            notes.push(if v.disposable {
                "email risky (disposable domain)"
            } else {
                "email risky (domain has no MX records)"
            });
        }
        Some(EmailStatus::Unknown) => {
            points += w.email_risky;
            notes.push("email unverified (MX lookup failed)");
        }
        Some(EmailStatus::Invalid) => notes.push("email invalid"),
        None => {}
    }
    if let Some(phone) = &v.phone {
        if phone.valid {
            points += w.phone_valid;
            notes.push("phone valid");
        } else {
            notes.push("phone invalid");
        }
    }
    if v.mx == Some(MxStatus::Found) && !v.disposable {
        points += w.domain_verified;
        notes.push("domain receives mail");
    }
    Factor {
        name: "verification".into(),
        points: points.min(w.max),
        detail: if notes.is_empty() {
            "nothing to verify yet".into()
        } else {
            notes.join(", ")
        },
    }
}

fn source_points(source: LeadSource, config: &LeadsConfig) -> i32 {
    let s = &config.weights.source;
    match source {
        LeadSource::Form => s.form,
        LeadSource::Event => s.event,
        LeadSource::ReferralAd => s.referral_ad,
        LeadSource::WhatsappInbound => s.whatsapp_inbound,
        LeadSource::Web => s.web,
        LeadSource::Email => s.email,
        LeadSource::Social => s.social,
        LeadSource::Analytics => s.analytics,
        LeadSource::Import => s.import,
    }
}

fn engagement(e: &Engagement, config: &LeadsConfig) -> (i32, String) {
    let w = &config.weights.engagement;
    let replies = (e.replies as i32 * w.per_reply).min(w.replies_max);
    let mut points = replies;
    let mut notes = vec![format!("{} replies", e.replies)];
    if e.pricing_questions > 0 {
        points += w.pricing_question;
        notes.push("asked about price".into());
    }
    if e.visit_requests > 0 {
        points += w.visit_request;
        notes.push("requested a visit".into());
    }
    if e.purchase_inquiries > 0 {
        points += w.purchase_inquiry;
        notes.push("asked to buy".into());
    }
    (points, notes.join(", "))
}

fn recency(last_at: Option<i64>, now_ms: i64, config: &LeadsConfig) -> Factor {
    let r = &config.weights.recency;
    let (points, detail) = match last_at {
        None => (0, "no engagement yet".to_owned()),
        Some(at) => {
            let age = (now_ms - at).max(0);
            let points = if age < DAY_MS {
                r.within_day
            } else if age < 7 * DAY_MS {
                r.within_week
            } else if age < 30 * DAY_MS {
                r.within_month
            } else {
                0
            };
            (points, format!("last engaged {} days ago", age / DAY_MS))
        }
    };
    Factor {
        name: "recency".into(),
        points,
        detail,
    }
}

/// The share of scored signals that are known: each fact present, and each check done with a
/// definite answer (an `unknown` MX lookup counts half).
fn confidence(input: ScoreInput<'_>) -> f64 {
    let f = input.facts;
    let facts_known = [
        f.first_name.is_some(),
        f.email.is_some(),
        f.phone.is_some(),
        f.company.is_some(),
        f.budget.is_some(),
        f.timeline.is_some(),
        f.location.is_some(),
        f.property_type.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count() as f64;
    let email_check = match input.verification.email {
        Some(EmailStatus::Verified | EmailStatus::Risky | EmailStatus::Invalid) => 1.0,
        Some(EmailStatus::Unknown) => 0.5,
        None => 0.0,
    };
    let phone_check = if input.verification.phone.is_some() {
        1.0
    } else {
        0.0
    };
    let engaged = if input.engagement.replies > 0 {
        1.0
    } else {
        0.0
    };
    let known = facts_known + email_check + phone_check + engaged;
    ((known / 11.0) * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leads::phone::PhoneCheck;

    const NOW: i64 = 1_800_000_000_000;

    fn config() -> LeadsConfig {
        LeadsConfig::default()
    }

    fn points(score: &Score, name: &str) -> i32 {
        score
            .factors
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .points
    }

    fn run(
        facts: &LeadFacts,
        verification: &Verification,
        source: LeadSource,
        engagement: &Engagement,
    ) -> Score {
        score(
            ScoreInput {
                facts,
                verification,
                source,
                engagement,
                now_ms: NOW,
            },
            &config(),
        )
    }

    fn full_facts() -> LeadFacts {
        LeadFacts {
            first_name: Some("Asha".into()),
            last_name: Some("Rao".into()),
            email: Some("asha@example.com".into()),
            phone: Some("+919876543210".into()),
            company: Some("Infosys".into()),
            location: Some("Baner".into()),
            property_type: Some("3 BHK".into()),
            keywords: vec!["loan".into()],
            ..Default::default()
        }
    }

    fn verified() -> Verification {
        Verification {
            email_checked: Some("asha@example.com".into()),
            email: Some(EmailStatus::Verified),
            mx: Some(MxStatus::Found),
            disposable: false,
            phone: Some(PhoneCheck {
                e164: "+919876543210".into(),
                valid: true,
                kind: "mobile".into(),
            }),
        }
    }

    #[test]
    fn completeness_counts_each_fact_up_to_25() {
        let e = Engagement::default();
        let v = Verification::default();
        let table: Vec<(LeadFacts, i32)> = vec![
            (LeadFacts::default(), 0),
            (
                LeadFacts {
                    first_name: Some("Asha".into()),
                    ..Default::default()
                },
                0,
            ),
            (
                LeadFacts {
                    first_name: Some("Asha".into()),
                    last_name: Some("Rao".into()),
                    ..Default::default()
                },
                5,
            ),
            (
                LeadFacts {
                    email: Some("a@example.com".into()),
                    company: Some("X".into()),
                    ..Default::default()
                },
                10,
            ),
            (
                LeadFacts {
                    phone: Some("+919876543210".into()),
                    property_type: Some("villa".into()),
                    location: Some("Pune".into()),
                    keywords: vec!["nri".into()],
                    ..Default::default()
                },
                10,
            ),
            (full_facts(), 25),
        ];
        for (facts, expected) in table {
            let s = run(&facts, &v, LeadSource::Web, &e);
            assert_eq!(points(&s, "completeness"), expected, "{facts:?}");
        }
    }

    #[test]
    fn verification_gives_email_phone_and_domain_points_up_to_30() {
        let facts = LeadFacts::default();
        let e = Engagement::default();
        let mut v = verified();
        assert_eq!(
            points(&run(&facts, &v, LeadSource::Web, &e), "verification"),
            30
        );
        v.email = Some(EmailStatus::Risky);
        v.disposable = true;
        assert_eq!(
            points(&run(&facts, &v, LeadSource::Web, &e), "verification"),
            15
        );
        v.phone.as_mut().unwrap().valid = false;
        assert_eq!(
            points(&run(&facts, &v, LeadSource::Web, &e), "verification"),
            5
        );
        v.email = Some(EmailStatus::Invalid);
        v.disposable = false;
        v.mx = Some(MxStatus::Unknown);
        assert_eq!(
            points(&run(&facts, &v, LeadSource::Web, &e), "verification"),
            0
        );
    }

    #[test]
    fn each_source_has_its_points() {
        let table = [
            (LeadSource::Form, 20),
            (LeadSource::Event, 18),
            (LeadSource::ReferralAd, 15),
            (LeadSource::WhatsappInbound, 14),
            (LeadSource::Web, 12),
            (LeadSource::Social, 8),
            (LeadSource::Analytics, 5),
        ];
        for (source, expected) in table {
            let s = run(
                &LeadFacts::default(),
                &Verification::default(),
                source,
                &Engagement::default(),
            );
            assert_eq!(points(&s, "source"), expected, "{source:?}");
        }
    }

    #[test]
    fn engagement_counts_replies_prices_and_visits_within_the_shared_budget() {
        let e = Engagement {
            replies: 2,
            pricing_questions: 1,
            visit_requests: 0,
            purchase_inquiries: 0,
            last_at: None,
        };
        let s = run(
            &LeadFacts::default(),
            &Verification::default(),
            LeadSource::Web,
            &e,
        );
        assert_eq!(points(&s, "engagement"), 2 + 4);
        let busy = Engagement {
            replies: 40,
            pricing_questions: 3,
            visit_requests: 2,
            purchase_inquiries: 1,
            last_at: None,
        };
        let s = run(
            &LeadFacts::default(),
            &Verification::default(),
            LeadSource::Web,
            &busy,
        );
        assert_eq!(
            points(&s, "engagement"),
            15,
            "capped at the engagement maximum"
        );
        // A form lead has 20 source points: engagement gets the 15 left of the shared 35.
        let s = run(
            &LeadFacts::default(),
            &Verification::default(),
            LeadSource::Form,
            &busy,
        );
        assert_eq!(points(&s, "source") + points(&s, "engagement"), 35);
    }

    #[test]
    fn recency_steps_at_a_day_a_week_and_a_month() {
        let hour = 60 * 60 * 1000;
        let table = [
            (None, 0),
            (Some(NOW - hour), 10),
            (Some(NOW - 24 * hour + 1), 10),
            (Some(NOW - 24 * hour), 7),
            (Some(NOW - 7 * DAY_MS + 1), 7),
            (Some(NOW - 7 * DAY_MS), 3),
            (Some(NOW - 30 * DAY_MS + 1), 3),
            (Some(NOW - 30 * DAY_MS), 0),
        ];
        for (last_at, expected) in table {
            let e = Engagement {
                last_at,
                ..Default::default()
            };
            let s = run(
                &LeadFacts::default(),
                &Verification::default(),
                LeadSource::Web,
                &e,
            );
            assert_eq!(points(&s, "recency"), expected, "{last_at:?}");
        }
    }

    #[test]
    fn tier_boundaries() {
        let tiers = config().tiers;
        let table = [
            (100, Tier::Hot),
            (80, Tier::Hot),
            (79, Tier::Warm),
            (60, Tier::Warm),
            (59, Tier::Cold),
            (40, Tier::Cold),
            (39, Tier::Low),
            (20, Tier::Low),
            (19, Tier::Invalid),
            (0, Tier::Invalid),
        ];
        for (score, tier) in table {
            assert_eq!(Tier::of_score(score, &tiers), tier, "{score}");
        }
    }

    #[test]
    fn a_complete_verified_engaged_lead_scores_100_and_never_more() {
        let e = Engagement {
            replies: 10,
            pricing_questions: 2,
            visit_requests: 1,
            purchase_inquiries: 1,
            last_at: Some(NOW - 1000),
        };
        let s = run(&full_facts(), &verified(), LeadSource::Form, &e);
        assert_eq!(s.total, 100);
        assert_eq!(s.tier, Tier::Hot);
        assert!(s.confidence > 0.8);
        let names: Vec<&str> = s.factors.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "completeness",
                "verification",
                "source",
                "engagement",
                "recency"
            ]
        );
    }

    #[test]
    fn weights_come_from_configuration() {
        let mut config = config();
        config.weights.source.web = 3;
        let facts = LeadFacts::default();
        let s = score(
            ScoreInput {
                facts: &facts,
                verification: &Verification::default(),
                source: LeadSource::Web,
                engagement: &Engagement::default(),
                now_ms: NOW,
            },
            &config,
        );
        assert_eq!(points(&s, "source"), 3);
    }
}
