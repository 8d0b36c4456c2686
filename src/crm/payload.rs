//! What a CRM job carries: a snapshot of the lead as of the change, so a delivery made after an
//! outage sends what changed then, in order.

use serde::{Deserialize, Serialize};

use crate::domain::Channel;
use crate::leads::{Budget, Factor, LeadRecord};

/// The lead as CRMs see it. Personal data: never log it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadSnapshot {
    pub lead_id: String,
    pub tenant: String,
    pub contact_id: Option<String>,
    pub version: i64,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub budget: Option<Budget>,
    pub timeline: Option<String>,
    pub location: Option<String>,
    pub property_type: Option<String>,
    pub source: String,
    pub score: i32,
    pub tier: String,
    pub confidence: f64,
    pub factors: Vec<Factor>,
    pub opted_out: bool,
    /// For an opt-out: the channel the contact opted out on.
    pub channel: Option<Channel>,
    /// When the change happened (Unix ms).
    pub changed_at: i64,
}

impl LeadSnapshot {
    pub fn of(lead: &LeadRecord, channel: Option<Channel>) -> Self {
        let f = &lead.facts;
        Self {
            lead_id: lead.id.to_string(),
            tenant: lead.tenant.to_string(),
            contact_id: lead.contact_id.map(|c| c.to_string()),
            version: lead.version,
            first_name: f.first_name.clone(),
            last_name: f.last_name.clone(),
            email: f.email.clone(),
            phone: f.phone.clone(),
            company: f.company.clone(),
            budget: f.budget.clone(),
            timeline: f.timeline.clone(),
            location: f.location.clone(),
            property_type: f.property_type.clone(),
            source: lead.source.as_str().to_owned(),
            score: lead.score,
            tier: lead.tier.as_str().to_owned(),
            confidence: lead.confidence,
            factors: lead.factors.clone(),
            opted_out: lead.opted_out,
            channel,
            changed_at: lead.updated_at,
        }
    }

    /// A display name for alerts.
    pub fn name(&self) -> String {
        match (&self.first_name, &self.last_name) {
            (Some(f), Some(l)) => format!("{f} {l}"),
            (Some(n), None) | (None, Some(n)) => n.clone(),
            (None, None) => "(name unknown)".to_owned(),
        }
    }
}
