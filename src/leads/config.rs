//! The `[leads]` section of `parley.toml`: scoring weights, tier thresholds and temperature rules
//! (all with defaults, so the section is optional), plus two environment overrides.
//!
//! ```toml
//! [leads]
//! mx_check = true
//! [leads.weights.source]
//! form = 20
//! [leads.tiers]
//! hot = 80
//! ```

use serde::Deserialize;

/// Lead settings, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeadsConfig {
    /// Whether messages update leads at all.
    pub enabled: bool,
    /// `PARLEY_LEADS_REGION`: the region national phone numbers are read in.
    pub region: String,
    /// The currency of Indian units ("lakh", "crore") and of bare budgets.
    pub currency: String,
    /// `PARLEY_LEADS_MX_CHECK`: look up email domains' MX records.
    pub mx_check: bool,
    pub mx_timeout_ms: u64,
    /// Ask the LLM (when configured) for facts as well as the rules.
    pub llm_extraction: bool,
    pub weights: Weights,
    pub tiers: Tiers,
    pub temperature: Temperature,
}

impl Default for LeadsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            region: "IN".into(),
            currency: "INR".into(),
            mx_check: true,
            mx_timeout_ms: 2_000,
            llm_extraction: true,
            weights: Weights::default(),
            tiers: Tiers::default(),
            temperature: Temperature::default(),
        }
    }
}

/// Points per factor. Each group has a cap; source and engagement share one budget.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    pub completeness: Completeness,
    pub verification: VerificationWeights,
    pub source: SourceWeights,
    pub engagement: EngagementWeights,
    pub recency: Recency,
}

/// Completeness, up to 25: first and last name, email, company (15); phone, property type or
/// industry, location, keywords (10).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Completeness {
    pub full_name: i32,
    pub email: i32,
    pub company: i32,
    pub phone: i32,
    pub property_type: i32,
    pub location: i32,
    pub keywords: i32,
    pub max: i32,
}

impl Default for Completeness {
    fn default() -> Self {
        Self {
            full_name: 5,
            email: 5,
            company: 5,
            phone: 3,
            property_type: 3,
            location: 2,
            keywords: 2,
            max: 25,
        }
    }
}

/// Verification, up to 30.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerificationWeights {
    pub email_verified: i32,
    pub email_risky: i32,
    pub phone_valid: i32,
    pub domain_verified: i32,
    pub max: i32,
}

impl Default for VerificationWeights {
    fn default() -> Self {
        Self {
            email_verified: 15,
            email_risky: 5,
            phone_valid: 10,
            domain_verified: 5,
            max: 30,
        }
    }
}

/// Source quality, up to 20.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceWeights {
    pub form: i32,
    pub event: i32,
    pub referral_ad: i32,
    pub whatsapp_inbound: i32,
    pub web: i32,
    pub email: i32,
    pub social: i32,
    pub analytics: i32,
    pub import: i32,
    pub max: i32,
}

impl Default for SourceWeights {
    fn default() -> Self {
        Self {
            form: 20,
            event: 18,
            referral_ad: 15,
            whatsapp_inbound: 14,
            web: 12,
            email: 12,
            social: 8,
            analytics: 5,
            import: 10,
            max: 20,
        }
    }
}

/// Engagement and intent. Source and engagement together stay within `shared_max` (with the
/// defaults: 25 + 30 + 35 + 10 = 100).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngagementWeights {
    pub per_reply: i32,
    pub replies_max: i32,
    pub pricing_question: i32,
    pub visit_request: i32,
    pub purchase_inquiry: i32,
    pub max: i32,
    /// Cap on source quality plus engagement.
    pub shared_max: i32,
}

impl Default for EngagementWeights {
    fn default() -> Self {
        Self {
            per_reply: 1,
            replies_max: 5,
            pricing_question: 4,
            visit_request: 6,
            purchase_inquiry: 6,
            max: 15,
            shared_max: 35,
        }
    }
}

/// Recency of the last engagement, up to 10.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recency {
    pub within_day: i32,
    pub within_week: i32,
    pub within_month: i32,
}

impl Default for Recency {
    fn default() -> Self {
        Self {
            within_day: 10,
            within_week: 7,
            within_month: 3,
        }
    }
}

/// The lowest score of each tier; below `low` a lead is `invalid`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tiers {
    pub hot: i32,
    pub warm: i32,
    pub cold: i32,
    pub low: i32,
}

impl Default for Tiers {
    fn default() -> Self {
        Self {
            hot: 80,
            warm: 60,
            cold: 40,
            low: 20,
        }
    }
}

/// Temperature moves on top of the score's tier.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Temperature {
    /// This many engagements move a cold lead to warm.
    pub warm_after_engagements: u32,
    /// Each period this long without engagement moves a lead down one tier.
    pub silence_days: i64,
}

impl Default for Temperature {
    fn default() -> Self {
        Self {
            warm_after_engagements: 3,
            silence_days: 30,
        }
    }
}

impl LeadsConfig {
    /// The file section with the environment's overrides, checked.
    pub fn resolve(
        file: Option<LeadsConfig>,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut config = file.unwrap_or_default();
        if let Some(region) = var("PARLEY_LEADS_REGION") {
            config.region = region;
        }
        if let Some(raw) = var("PARLEY_LEADS_MX_CHECK") {
            config.mx_check = match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(format!(
                        "PARLEY_LEADS_MX_CHECK `{raw}` is not a boolean; use true or false"
                    ));
                }
            };
        }
        if config
            .region
            .to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .is_err()
        {
            return Err(format!(
                "PARLEY_LEADS_REGION `{}` is not a two-letter region code such as IN or US",
                config.region
            ));
        }
        let t = &config.tiers;
        if !(t.hot > t.warm && t.warm > t.cold && t.cold > t.low && t.low > 0 && t.hot <= 100) {
            return Err("leads.tiers must satisfy 100 >= hot > warm > cold > low > 0".to_owned());
        }
        Ok(config)
    }
}
