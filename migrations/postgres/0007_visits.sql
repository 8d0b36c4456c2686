-- Site visits and calls a prospect asked for by picking one of the slots the scheduling agent
-- offered. Staff confirm them; the prospect's pick is the record.

CREATE TABLE visit_requests (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id),
    contact_id       TEXT NOT NULL,
    slot_at          BIGINT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'requested' CHECK (status IN ('requested', 'confirmed', 'cancelled')),
    -- the inbound message that picked the slot
    message_id       TEXT NOT NULL UNIQUE,
    created_at       BIGINT NOT NULL
);
CREATE INDEX visit_requests_by_tenant ON visit_requests (tenant_id, slot_at);
