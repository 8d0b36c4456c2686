-- Consent: an append-only ledger of consent events, the current state derived from it, and what
-- the outbound gate records on each outbound message.
--
-- The ledger names a contact only by `subject`, a keyed hash (HMAC-SHA256) of the contact id, so
-- erasing a contact's personal data never needs to touch it: an erased contact who opted out stays
-- opted out. `consent_subjects` maps subjects back to contact ids while the contact exists; it is
-- deleted with the contact.

CREATE TABLE consent_events (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    channel      TEXT NOT NULL,
    action       TEXT NOT NULL CHECK (action IN ('opt_in', 'opt_out', 'help')),
    source       TEXT NOT NULL CHECK (source IN ('keyword', 'phrase', 'classifier', 'api', 'import', 'staff', 'form', 'provider', 'unsubscribe_link')),
    -- the inbound message id (keyword, phrase) or the caller's reference (api, import, form)
    proof        TEXT,
    -- what matched: the normalised keyword or phrase; never the message text
    detail       TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX consent_events_by_subject ON consent_events (tenant_id, subject, channel, seq);
CREATE INDEX consent_events_by_time ON consent_events (tenant_id, created_at, seq);

CREATE FUNCTION consent_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'consent_events is append-only: % is not allowed', TG_OP;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER consent_events_no_update_or_delete BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only();

-- Current consent per contact and channel: the latest opt-in or opt-out (help changes nothing).
CREATE VIEW consent_current AS
SELECT e.tenant_id, e.subject, e.channel, e.action AS state, e.created_at AS since, e.seq
FROM consent_events e
WHERE e.action IN ('opt_in', 'opt_out')
  AND e.seq = (SELECT max(l.seq) FROM consent_events l
               WHERE l.tenant_id = e.tenant_id AND l.subject = e.subject AND l.channel = e.channel
                 AND l.action IN ('opt_in', 'opt_out'));

CREATE TABLE consent_subjects (
    tenant_id   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    contact_id  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, subject)
);

-- Secrets Parley generates once and every replica shares (the consent hashing key).
CREATE TABLE parley_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- The contact's time zone for quiet hours (IANA name); unset means derived from the number or
-- the tenant's zone.
ALTER TABLE contacts ADD COLUMN time_zone TEXT;

-- Outbound: why it is sent (reply, proactive, opt_out_confirmation), the approved template it
-- uses (JSON), and the gate's refusal or deferral reason.
ALTER TABLE messages ADD COLUMN purpose TEXT;
ALTER TABLE messages ADD COLUMN template TEXT;
ALTER TABLE messages ADD COLUMN gate_reason TEXT;
-- Proactive messages sent per contact (frequency caps).
CREATE INDEX messages_proactive ON messages (conversation_id, updated_at) WHERE purpose = 'proactive';
-- The latest inbound message of a conversation (the 24-hour window, reply detection).
CREATE INDEX messages_inbound_by_conversation ON messages (conversation_id, created_at) WHERE direction = 'inbound';
-- A contact's conversations (the gate's facts, erasure).
CREATE INDEX conversations_by_contact ON conversations (contact_id);
