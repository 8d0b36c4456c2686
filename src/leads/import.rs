//! CSV import of leads, as a job: `POST /api/v1/leads/import` stores the job and answers at once;
//! a task reads the rows, validates each (a row with neither a valid email nor a valid phone is
//! refused with its row number and reason), deduplicates by email and phone against existing
//! leads and earlier rows (a duplicate is merged into the existing lead), and records progress.
//!
//! Columns (header names, any order, case-insensitive): `name` or `first_name` + `last_name`,
//! `email`, `phone`, `company`, `location` (or `city`), `budget`, `timeline`, `property_type`,
//! `source` (`form`, `event`, `referral_ad`, `web`, `social`, `analytics`, ...; default `import`).

use serde::Serialize;
use uuid::Uuid;

use super::facts::{LeadFacts, LeadSource};
use super::service::{Leads, Locate, Note};
use super::{money, phone, validate};
use crate::domain::TenantId;
use crate::store::{Store, StoreError, on_pool};

/// Rows per progress update.
const PROGRESS_EVERY: usize = 50;
/// The largest import accepted (rows).
pub const MAX_ROWS: usize = 100_000;

/// One refused row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RowError {
    /// 1-based, counting the header as row 1 (as a spreadsheet shows it).
    pub row: usize,
    pub reason: String,
}

/// An import job's progress.
#[derive(Debug, Clone, Serialize)]
pub struct ImportStatus {
    pub id: String,
    pub tenant: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    pub total_rows: i32,
    pub created: i32,
    pub merged: i32,
    pub errors: Vec<RowError>,
}

#[derive(Debug, Default)]
struct Progress {
    total: usize,
    created: usize,
    merged: usize,
    errors: Vec<RowError>,
}

impl Store {
    pub async fn create_import(
        &self,
        id: Uuid,
        tenant: &TenantId,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "INSERT INTO lead_imports (id, tenant_id, status, created_at, updated_at) VALUES ($1, $2, 'running', $3, $3)",
            )
            .bind(id.to_string())
            .bind(tenant.as_str())
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    async fn update_import(
        &self,
        id: Uuid,
        status: &str,
        progress: &Progress,
        now: i64,
    ) -> Result<(), StoreError> {
        let errors = serde_json::to_string(&progress.errors)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        on_pool!(self, |pool, Db| {
            sqlx::query(
                "UPDATE lead_imports SET status = $1, total_rows = $2, created = $3, merged = $4, errors = $5, updated_at = $6
                 WHERE id = $7",
            )
            .bind(status)
            .bind(progress.total as i32)
            .bind(progress.created as i32)
            .bind(progress.merged as i32)
            .bind(errors)
            .bind(now)
            .bind(id.to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn import_status(&self, id: Uuid) -> Result<Option<ImportStatus>, StoreError> {
        let row: Option<(String, String, String, i32, i32, i32, String)> = on_pool!(
            self,
            |pool, Db| {
                sqlx::query_as(
                "SELECT id, tenant_id, status, total_rows, created, merged, errors FROM lead_imports WHERE id = $1",
            )
            .bind(id.to_string())
            .fetch_optional(pool)
            .await?
            }
        );
        row.map(
            |(id, tenant, status, total_rows, created, merged, errors)| {
                Ok(ImportStatus {
                    id,
                    tenant,
                    status,
                    total_rows,
                    created,
                    merged,
                    errors: serde_json::from_str(&errors)
                        .map_err(|e| StoreError::Corrupt(format!("import errors: {e}")))?,
                })
            },
        )
        .transpose()
    }
}

/// The facts and source of one row, or why it is refused.
fn parse_row(
    headers: &[String],
    record: &csv::StringRecord,
    leads: &Leads,
) -> Result<(LeadFacts, LeadSource), String> {
    let get = |names: &[&str]| {
        names.iter().find_map(|name| {
            headers
                .iter()
                .position(|h| h == name)
                .and_then(|i| record.get(i))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        })
    };
    let mut facts = LeadFacts::default();
    if let Some(name) = get(&["name", "full_name"]) {
        facts.set_name(name);
    }
    if let Some(first) = get(&["first_name", "firstname"]) {
        facts.first_name = Some(first.to_owned());
    }
    if let Some(last) = get(&["last_name", "lastname"]) {
        facts.last_name = Some(last.to_owned());
    }
    if let Some(email) = get(&["email", "email_address"]) {
        let email = email.to_ascii_lowercase();
        if !email_address::EmailAddress::is_valid(&email) {
            return Err("email is not a valid address".into());
        }
        facts.email = Some(email);
    }
    if let Some(raw) = get(&["phone", "mobile", "phone_number"]) {
        match phone::check(raw, leads.region()) {
            Some(p) if p.valid => facts.phone = Some(p.e164),
            _ => return Err("phone is not a valid number".into()),
        }
    }
    if facts.email.is_none() && facts.phone.is_none() {
        return Err("a row needs an email or a phone".into());
    }
    facts.company = get(&["company", "company_name"]).map(str::to_owned);
    facts.location = get(&["location", "city"]).map(str::to_owned);
    facts.timeline = get(&["timeline"]).map(str::to_owned);
    facts.property_type = get(&["property_type", "property"]).map(str::to_owned);
    if let Some(raw) = get(&["budget"]) {
        let with_context = format!("budget {raw}");
        facts.budget = Some(
            money::parse_budget(&with_context, &leads.config.currency).ok_or_else(|| {
                "budget is not an amount (write 1.5 cr, 80 lakh, $300k)".to_owned()
            })?,
        );
    }
    let source = match get(&["source"]) {
        Some(raw) => {
            LeadSource::parse(raw).ok_or_else(|| format!("source `{raw}` is not known"))?
        }
        None => LeadSource::Import,
    };
    Ok((facts, source))
}

/// Runs an import to the end, recording progress. The CSV was read into memory by the caller.
pub async fn run(leads: Leads, tenant: TenantId, id: Uuid, csv_text: String) {
    let mut progress = Progress::default();
    let outcome = process(&leads, &tenant, id, &csv_text, &mut progress).await;
    let now = leads.clock.now_ms();
    let status = match outcome {
        Ok(()) => "done",
        Err(err) => {
            tracing::error!(import.id = %id, error = %err, "lead import stopped");
            progress.errors.push(RowError {
                row: 0,
                reason: "the import stopped: a backend was unavailable".into(),
            });
            "failed"
        }
    };
    if let Err(err) = leads.store.update_import(id, status, &progress, now).await {
        tracing::error!(import.id = %id, error = %err, "could not record an import's end");
    }
    tracing::info!(import.id = %id, rows = progress.total, created = progress.created, merged = progress.merged, errors = progress.errors.len(), "lead import finished");
}

async fn process(
    leads: &Leads,
    tenant: &TenantId,
    id: Uuid,
    csv_text: &str,
    progress: &mut Progress,
) -> Result<(), StoreError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv_text.as_bytes());
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h
            .iter()
            .map(|h| h.trim().to_ascii_lowercase().replace([' ', '-'], "_"))
            .collect(),
        Err(_) => {
            progress.errors.push(RowError {
                row: 1,
                reason: "the header row is not CSV".into(),
            });
            return Ok(());
        }
    };
    if !headers.iter().any(|h| {
        matches!(
            h.as_str(),
            "email" | "email_address" | "phone" | "mobile" | "phone_number"
        )
    }) {
        progress.errors.push(RowError {
            row: 1,
            reason: "the header names neither an email nor a phone column".into(),
        });
        return Ok(());
    }
    for (index, record) in reader.records().enumerate() {
        let row = index + 2;
        progress.total += 1;
        if progress.total > MAX_ROWS {
            progress.errors.push(RowError {
                row,
                reason: format!("only the first {MAX_ROWS} rows are imported"),
            });
            break;
        }
        let parsed = match record {
            Ok(record) => parse_row(&headers, &record, leads),
            Err(err) => Err(format!("not a CSV row: {err}")),
        };
        let (facts, source) = match parsed {
            Ok(parsed) => parsed,
            Err(reason) => {
                progress.errors.push(RowError { row, reason });
                continue;
            }
        };
        let locate = Locate::EmailOrPhone {
            email: facts.email.clone(),
            phone: facts.phone.clone(),
            source,
        };
        let mut was_new = false;
        let lead = leads
            .change(tenant, &locate, |lead| {
                was_new = lead.version == 0;
                Note {
                    reasons: leads
                        .merge_facts(lead, &facts)
                        .map(|r| format!("imported: {r}"))
                        .into_iter()
                        .collect(),
                    ..Note::default()
                }
            })
            .await?;
        if was_new {
            progress.created += 1;
        } else {
            progress.merged += 1;
        }
        if let Some(lead) = lead
            && validate::needs_email_check(&lead.verification, lead.facts.email.as_deref())
        {
            leads.verify_email(tenant, lead.id).await?;
        }
        if progress.total.is_multiple_of(PROGRESS_EVERY) {
            leads
                .store
                .update_import(id, "running", progress, leads.clock.now_ms())
                .await?;
        }
    }
    Ok(())
}
