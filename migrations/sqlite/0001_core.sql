-- Core records: contacts, conversations, messages (inbound events and the outbound outbox) and
-- delivery receipts. Every row carries tenant_id. Times are Unix milliseconds (BIGINT) so both
-- dialects store them alike.

CREATE TABLE contacts (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    channel       TEXT NOT NULL,
    address       TEXT NOT NULL,
    display_name  TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (tenant_id, channel, address)
);

CREATE TABLE conversations (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    contact_id       TEXT NOT NULL REFERENCES contacts (id),
    channel          TEXT NOT NULL,
    thread           TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'bot' CHECK (state IN ('bot', 'queued', 'human')),
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX conversations_by_tenant ON conversations (tenant_id, updated_at DESC);

CREATE TABLE messages (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    id                   TEXT NOT NULL UNIQUE,
    tenant_id            TEXT NOT NULL,
    conversation_id      TEXT NOT NULL REFERENCES conversations (id),
    channel              TEXT NOT NULL,
    direction            TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    author               TEXT NOT NULL CHECK (author IN ('prospect', 'bot', 'staff')),
    kind                 TEXT NOT NULL,
    -- inbound: the sender's address; outbound: the recipient's (the outbox row is self-contained)
    address              TEXT NOT NULL,
    body                 TEXT,
    content              TEXT NOT NULL,
    provider_message_id  TEXT,
    -- inbound: the provider's send time; outbound: when it was queued
    sent_at              BIGINT NOT NULL,
    -- inbound only: pending until a worker has handled it, then done or skipped
    processing           TEXT CHECK (processing IN ('pending', 'done', 'skipped')),
    intent               TEXT,
    confidence           REAL,
    -- outbound only: the inbound message this answers, and which part of a split reply it is
    in_reply_to          TEXT,
    part                 INTEGER NOT NULL DEFAULT 0,
    status               TEXT NOT NULL,
    status_rank          INTEGER NOT NULL DEFAULT 0,
    error_code           BIGINT,
    error_detail         TEXT,
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at      BIGINT,
    lease_until          BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
-- Deduplication of redelivered webhooks.
CREATE UNIQUE INDEX messages_provider_id ON messages (tenant_id, channel, provider_message_id);
-- Exactly one bot reply (per part) for each inbound message, whatever crashes or retries.
CREATE UNIQUE INDEX messages_one_reply ON messages (in_reply_to, part) WHERE author = 'bot';
CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
CREATE INDEX messages_pending ON messages (conversation_id, sent_at, seq) WHERE processing = 'pending';
CREATE INDEX messages_outbox ON messages (next_attempt_at, seq) WHERE status = 'queued' AND direction = 'outbound';
CREATE INDEX messages_outbox_by_conversation ON messages (conversation_id, seq) WHERE status = 'queued' AND direction = 'outbound';

CREATE TABLE delivery_receipts (
    tenant_id            TEXT NOT NULL,
    channel              TEXT NOT NULL,
    provider_message_id  TEXT NOT NULL,
    status               TEXT NOT NULL,
    status_rank          INTEGER NOT NULL,
    error_code           BIGINT,
    error_title          TEXT,
    reported_at          BIGINT NOT NULL,
    received_at          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, channel, provider_message_id, status)
);
