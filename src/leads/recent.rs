//! The leads this replica saved last, by contact: the pipeline updates a contact's lead after
//! every message, and reading it back each time was one statement per message.
//!
//! A kept lead is only a guess at the stored one. Every save is conditional on the version it
//! was read at (`WHERE id = .. AND version = ..`), and every write to a lead bumps its version,
//! so a lead changed or deleted elsewhere since (another replica, an import, the review sweep,
//! an erasure) fails the save, which then reads the store and applies the change again. A change
//! worked out from a kept lead is therefore saved only when the kept lead was exactly the stored
//! one.

use std::time::Duration;

use super::record::LeadRecord;
use crate::domain::ContactId;

/// Leads kept at most.
const CAPACITY: u64 = 4_096;
/// How long a lead is kept after its last save: a conversation's messages come within minutes.
const KEPT_FOR: Duration = Duration::from_secs(10 * 60);

/// A bounded map of contact to the lead last saved for it. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct RecentLeads {
    leads: moka::sync::Cache<ContactId, LeadRecord>,
}

impl Default for RecentLeads {
    fn default() -> Self {
        Self {
            leads: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(KEPT_FOR)
                .build(),
        }
    }
}

impl RecentLeads {
    /// The lead last saved for `contact`, if it is still kept.
    pub fn get(&self, contact: ContactId) -> Option<LeadRecord> {
        self.leads.get(&contact)
    }

    /// Keeps `lead`, just saved, under its contact.
    pub fn saved(&self, lead: &LeadRecord) {
        if let Some(contact) = lead.contact_id {
            self.leads.insert(contact, lead.clone());
        }
    }

    /// Drops what is kept for `contact` (its lead was found stale, or the contact was erased).
    pub fn forget(&self, contact: ContactId) {
        self.leads.invalidate(&contact);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TenantId;
    use crate::leads::LeadSource;

    #[test]
    fn a_saved_lead_is_kept_under_its_contact_until_forgotten() {
        let recent = RecentLeads::default();
        let tenant = TenantId::parse("t").unwrap();
        let contact = ContactId(uuid::Uuid::new_v4());
        let lead = LeadRecord::new(
            tenant.clone(),
            Some(contact),
            LeadSource::WhatsappInbound,
            0,
        );
        assert!(recent.get(contact).is_none());
        recent.saved(&lead);
        assert_eq!(recent.get(contact).map(|l| l.id), Some(lead.id));
        recent.forget(contact);
        assert!(recent.get(contact).is_none());

        let imported = LeadRecord::new(tenant, None, LeadSource::Import, 0);
        recent.saved(&imported);
        recent.leads.run_pending_tasks();
        assert_eq!(
            recent.leads.entry_count(),
            0,
            "a lead without a contact is not kept"
        );
    }
}
