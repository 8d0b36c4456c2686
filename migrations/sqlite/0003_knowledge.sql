-- Knowledge base: uploaded documents, their chunks and ingestion jobs. The SQL store is the source
-- of truth; the vector index (Qdrant Edge or a Qdrant server) is derived from knowledge_chunks.
--
-- A document has one live version (`version`, 0 before the first one is ready). Every upload
-- takes the next number from `last_version`; its chunks are written under that number and become
-- visible in one UPDATE of `version`, so a search never sees half of a replacement.

CREATE TABLE knowledge_documents (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       BIGINT NOT NULL DEFAULT 0,
    last_version  BIGINT NOT NULL DEFAULT 0,
    -- JSON array of tag strings
    tags          TEXT NOT NULL DEFAULT '[]',
    media_type    TEXT NOT NULL,
    content_hash  TEXT,
    chunk_count   BIGINT NOT NULL DEFAULT 0,
    status        TEXT NOT NULL CHECK (status IN ('processing', 'ready', 'failed')),
    error         TEXT,
    uploaded_at   BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE knowledge_chunks (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    document_id   TEXT NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    version       BIGINT NOT NULL,
    position      INTEGER NOT NULL,
    section       TEXT,
    page          INTEGER,
    text          TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    token_count   INTEGER NOT NULL,
    -- the dense embedding (little-endian f32s) when an embedding model is configured
    embedding     BLOB,
    created_at    BIGINT NOT NULL,
    -- identical chunks of one document version are stored once; also the index for a
    -- document's chunks. Searches look chunks up by id (the primary key): an index leading with
    -- tenant_id would tempt the planner into scanning a tenant's chunks instead.
    UNIQUE (document_id, version, content_hash)
);

CREATE TABLE knowledge_jobs (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    files_total   INTEGER NOT NULL,
    files_done    INTEGER NOT NULL DEFAULT 0,
    chunks_done   BIGINT NOT NULL DEFAULT 0,
    -- JSON array of {"name", "status", "chunks", "document_id", "error"}
    files         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX knowledge_jobs_by_tenant ON knowledge_jobs (tenant_id, created_at DESC);
