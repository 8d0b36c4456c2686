-- Leads: facts and scores kept per contact, the history of every score or tier change, CSV
-- import jobs, and the CRM outbox (one row per change and adapter, written in the transaction
-- that changes the lead) with the mapping of Parley's lead ids to each CRM's ids.

CREATE TABLE leads (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    -- NULL for a lead imported from a CSV that has not written to us yet
    contact_id        TEXT UNIQUE,
    -- normalised copies of two facts, for deduplication (lowercase email, E.164 phone)
    email             TEXT,
    phone             TEXT,
    source            TEXT NOT NULL,
    -- JSON: the facts, their verification, and the engagement counters
    facts             TEXT NOT NULL,
    verification      TEXT NOT NULL,
    engagement        TEXT NOT NULL,
    last_engaged_at   BIGINT,
    -- when time alone next changes the score (recency steps, silence decay); the sweep's index
    review_at         BIGINT,
    score             INTEGER NOT NULL,
    tier              TEXT NOT NULL,
    confidence        REAL NOT NULL,
    factors           TEXT NOT NULL,
    opted_out         BOOLEAN NOT NULL DEFAULT 0,
    -- grows with every change; updates are conditional on it (optimistic concurrency)
    version           BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX leads_by_score ON leads (tenant_id, score DESC);
CREATE INDEX leads_by_email ON leads (tenant_id, email);
CREATE INDEX leads_by_phone ON leads (tenant_id, phone);
CREATE INDEX leads_by_review ON leads (review_at);

CREATE TABLE lead_history (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT NOT NULL,
    lead_id      TEXT NOT NULL REFERENCES leads (id),
    from_score   INTEGER,
    to_score     INTEGER NOT NULL,
    from_tier    TEXT,
    to_tier      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    at           BIGINT NOT NULL
);
CREATE INDEX lead_history_by_lead ON lead_history (lead_id, seq);

CREATE TABLE lead_imports (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    total_rows   INTEGER NOT NULL DEFAULT 0,
    created      INTEGER NOT NULL DEFAULT 0,
    merged       INTEGER NOT NULL DEFAULT 0,
    -- JSON array of {"row", "reason"}
    errors       TEXT NOT NULL DEFAULT '[]',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE crm_outbox (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    tenant_id        TEXT NOT NULL,
    lead_id          TEXT NOT NULL,
    adapter          TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('upsert', 'hot_alert', 'opt_out')),
    -- JSON snapshot of the lead as of this change, so a late delivery sends what changed then
    payload          TEXT NOT NULL,
    lead_version     BIGINT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX crm_outbox_due ON crm_outbox (next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX crm_outbox_by_lead ON crm_outbox (lead_id, adapter, seq) WHERE status = 'pending';
CREATE INDEX crm_outbox_dead ON crm_outbox (tenant_id, seq) WHERE status = 'dead';

CREATE TABLE crm_mappings (
    tenant_id    TEXT NOT NULL,
    lead_id      TEXT NOT NULL,
    adapter      TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, lead_id, adapter)
);

-- Where an inbound message came from when it carried a click-to-WhatsApp ad referral (JSON):
-- the lead source `referral_ad`.
ALTER TABLE messages ADD COLUMN referral TEXT;
