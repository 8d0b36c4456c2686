-- Channels beyond WhatsApp Cloud: email threading metadata, webhook tokens remembered to refuse
-- replays (Mailgun), and the state providers report for their sessions (WAHA). Every row
-- carries tenant_id; times are Unix milliseconds.

-- Every email Parley received or sent, by RFC Message-ID (without angle brackets): what threads
-- a later message into its conversation, and what a reply's In-Reply-To/References are built from.
CREATE TABLE email_messages (
    tenant_id        TEXT NOT NULL,
    message_id       TEXT NOT NULL,
    conversation_id  TEXT NOT NULL,
    thread           TEXT NOT NULL,
    direction        TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    subject          TEXT,
    -- the message's References chain, space-separated ids in angle brackets
    refs             TEXT NOT NULL DEFAULT '',
    -- attachment metadata as JSON: [{"name", "content_type", "size"}]
    attachments      TEXT NOT NULL DEFAULT '[]',
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, message_id)
);
CREATE INDEX email_messages_by_conversation ON email_messages (conversation_id, created_at);

-- Signed-webhook tokens seen recently (Mailgun's `token`), shared by every replica.
CREATE TABLE webhook_tokens (
    tenant_id   TEXT NOT NULL,
    provider    TEXT NOT NULL,
    token       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (provider, token)
);
CREATE INDEX webhook_tokens_expiry ON webhook_tokens (expires_at);

-- The last state a provider reported for a session (WAHA `session.status`).
CREATE TABLE channel_sessions (
    tenant_id   TEXT NOT NULL,
    channel     TEXT NOT NULL,
    session     TEXT NOT NULL,
    status      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, channel, session)
);
