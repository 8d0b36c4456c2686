//! A lead as stored: its facts, verification, engagement, score and tier, and the version that
//! every change increments.

use serde::Serialize;
use uuid::Uuid;

use super::facts::{Engagement, LeadFacts, LeadSource};
use super::score::{Factor, Tier};
use super::validate::Verification;
use crate::domain::{ContactId, TenantId};

/// A lead's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct LeadId(pub Uuid);

impl LeadId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn parse(raw: &str) -> Result<Self, uuid::Error> {
        Uuid::parse_str(raw).map(Self)
    }
}

impl Default for LeadId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for LeadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One lead.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadRecord {
    pub id: LeadId,
    pub tenant: TenantId,
    /// The contact the lead talks to us as; `None` for an import that has not written yet.
    pub contact_id: Option<ContactId>,
    pub source: LeadSource,
    pub facts: LeadFacts,
    pub verification: Verification,
    pub engagement: Engagement,
    pub score: i32,
    pub tier: Tier,
    pub confidence: f64,
    pub factors: Vec<Factor>,
    pub opted_out: bool,
    /// When time alone next changes the score (Unix ms).
    pub review_at: Option<i64>,
    /// 0 for a lead not yet stored.
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl LeadRecord {
    /// A lead not yet stored.
    pub fn new(
        tenant: TenantId,
        contact_id: Option<ContactId>,
        source: LeadSource,
        now: i64,
    ) -> Self {
        Self {
            id: LeadId::new(),
            tenant,
            contact_id,
            source,
            facts: LeadFacts::default(),
            verification: Verification::default(),
            engagement: Engagement::default(),
            score: 0,
            tier: Tier::Invalid,
            confidence: 0.0,
            factors: Vec::new(),
            opted_out: false,
            review_at: None,
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether the parts a CRM sees differ from `other`'s.
    pub fn crm_visible_change(&self, other: &LeadRecord) -> bool {
        self.facts != other.facts
            || self.score != other.score
            || self.tier != other.tier
            || self.opted_out != other.opted_out
            || self.source != other.source
    }
}

/// One entry of a lead's history: a score or tier change and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub from_score: Option<i32>,
    pub to_score: i32,
    pub from_tier: Option<Tier>,
    pub to_tier: Tier,
    pub reason: String,
    pub at: i64,
}
