-- Handoff to sales staff: staff accounts and their sessions, and the handoff queue. A conversation
-- has at most one open handoff (waiting for a person, or claimed by one).

CREATE TABLE staff (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    email          TEXT NOT NULL,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'sales', 'marketer')),
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    UNIQUE (tenant_id, email)
);

CREATE TABLE staff_sessions (
    token_hash  TEXT PRIMARY KEY,
    staff_id    TEXT NOT NULL REFERENCES staff (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE handoffs (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL,
    conversation_id      TEXT NOT NULL REFERENCES conversations (id),
    -- what made the bot step aside: explicit_request, low_confidence, multi_intent, frustration, high_value, ...
    reason               TEXT NOT NULL,
    detail               TEXT,
    status               TEXT NOT NULL CHECK (status IN ('waiting', 'claimed', 'released')),
    claimed_by           TEXT REFERENCES staff (id),
    release_note         TEXT,
    -- the context card for staff (JSON)
    context              TEXT NOT NULL DEFAULT '{}',
    sla_due_at           BIGINT NOT NULL,
    escalated_at         BIGINT,
    last_told_position   INTEGER,
    created_at           BIGINT NOT NULL,
    claimed_at           BIGINT,
    released_at          BIGINT
);
CREATE UNIQUE INDEX handoffs_one_open ON handoffs (conversation_id) WHERE status IN ('waiting', 'claimed');
CREATE INDEX handoffs_waiting ON handoffs (tenant_id, created_at) WHERE status = 'waiting';
