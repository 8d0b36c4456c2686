//! The knowledge records in the SQL store (SQLite or PostgreSQL, one query text for both through
//! `on_pool!`): documents with their live version, chunks, and ingestion jobs. This is the source
//! of truth; the vector index is rebuilt from [`chunks_page`].
//!
//! Versions: [`claim_version`] gives each upload the next number; its chunks are written under it
//! ([`insert_chunks`]) and become live in one statement ([`publish_version`]), which also removes
//! the replaced chunks. Searches join chunks to their document on the live version
//! ([`passages`]), so they see the old version or the new one, never a mix.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::chunk::Chunk;
use super::embeddings;
use crate::store::{Store, StoreError, on_pool};

/// A document as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRecord {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub version: i64,
    pub tags: Vec<String>,
    pub media_type: String,
    pub content_hash: Option<String>,
    pub chunks: i64,
    pub status: String,
    pub error: Option<String>,
    pub uploaded_at: i64,
    pub updated_at: i64,
}

/// The version an upload writes, and what is live now.
#[derive(Debug, Clone)]
pub struct ClaimedVersion {
    pub document_id: Uuid,
    pub version: i64,
    pub live_version: i64,
    pub live_hash: Option<String>,
    pub live_tags: Vec<String>,
}

/// A chunk to store, with its id and dense vector.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub id: Uuid,
    pub chunk: Chunk,
    pub embedding: Option<Vec<f32>>,
}

/// A live chunk with its document, as search returns it.
#[derive(Debug, Clone)]
pub struct PassageRow {
    pub chunk_id: Uuid,
    pub text: String,
    pub section: Option<String>,
    pub page: Option<i32>,
    pub document_id: Uuid,
    pub document_name: String,
    pub content_hash: String,
}

/// A stored chunk with what the index needs.
#[derive(Debug, Clone)]
pub struct IndexRow {
    pub chunk_id: Uuid,
    pub tenant: String,
    pub document_id: Uuid,
    pub version: i64,
    pub tags: Vec<String>,
    pub text: String,
    pub section: Option<String>,
    pub embedding: Option<Vec<f32>>,
}

/// One file of an ingestion job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFile {
    pub name: String,
    /// `pending`, `processing`, `done`, `unchanged` or `failed`.
    pub status: String,
    pub chunks: u64,
    pub document_id: Option<Uuid>,
    pub error: Option<String>,
}

/// An ingestion job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: Uuid,
    pub tenant: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    pub files_total: i64,
    pub files_done: i64,
    pub chunks_done: i64,
    pub files: Vec<JobFile>,
    pub created_at: i64,
    pub updated_at: i64,
}

type DocumentRow = (
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    i64,
    String,
    Option<String>,
    i64,
    i64,
);

const DOCUMENT_COLUMNS: &str = "id, tenant_id, name, version, tags, media_type, content_hash, chunk_count, status, error, uploaded_at, updated_at";

fn document(row: DocumentRow) -> Result<DocumentRecord, StoreError> {
    let (
        id,
        tenant,
        name,
        version,
        tags,
        media_type,
        content_hash,
        chunks,
        status,
        error,
        uploaded_at,
        updated_at,
    ) = row;
    Ok(DocumentRecord {
        id: uuid(&id)?,
        tenant,
        name,
        version,
        tags: tags_of(&tags)?,
        media_type,
        content_hash,
        chunks,
        status,
        error,
        uploaded_at,
        updated_at,
    })
}

fn uuid(raw: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(raw).map_err(|_| StoreError::Corrupt(format!("`{raw}` is not a UUID")))
}

/// Ids from `RETURNING id` rows.
fn ids(rows: &[(String,)]) -> Result<Vec<Uuid>, StoreError> {
    rows.iter().map(|(id,)| uuid(id)).collect()
}

fn tags_of(raw: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(raw)
        .map_err(|_| StoreError::Corrupt("document tags are not a JSON array".into()))
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).expect("strings serialize")
}

/// `$first, $first+1, ...` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Takes the next version number of the tenant's document `name`, creating the document when
/// it is new (status `processing`, nothing live).
#[tracing::instrument(level = "debug", skip_all, fields(tenant.id = tenant))]
pub async fn claim_version(
    store: &Store,
    tenant: &str,
    name: &str,
    media_type: &str,
    now: i64,
) -> Result<ClaimedVersion, StoreError> {
    on_pool!(store, |pool, Db| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO knowledge_documents (id, tenant_id, name, media_type, status, uploaded_at, updated_at)
             VALUES ($1, $2, $3, $4, 'processing', $5, $5) ON CONFLICT (tenant_id, name) DO NOTHING",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(tenant)
        .bind(name)
        .bind(media_type)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let (id, version, live_version, live_hash, live_tags): (
            String,
            i64,
            i64,
            Option<String>,
            String,
        ) = sqlx::query_as(
            "UPDATE knowledge_documents SET last_version = last_version + 1
                 WHERE tenant_id = $1 AND name = $2
                 RETURNING id, last_version, version, content_hash, tags",
        )
        .bind(tenant)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ClaimedVersion {
            document_id: uuid(&id)?,
            version,
            live_version,
            live_hash,
            live_tags: tags_of(&live_tags)?,
        })
    })
}

/// Rows per multi-row chunk INSERT (12 parameters each, well under both dialects' limits).
const CHUNK_INSERT_ROWS: usize = 500;

/// Stores the chunks of a version that is not live yet. Identical chunks are stored once.
#[tracing::instrument(level = "debug", skip_all, fields(document.id = %document_id, version, chunks = chunks.len()))]
pub async fn insert_chunks(
    store: &Store,
    tenant: &str,
    document_id: Uuid,
    version: i64,
    chunks: &[NewChunk],
    now: i64,
) -> Result<(), StoreError> {
    let document_id = document_id.to_string();
    on_pool!(store, |pool, Db| {
        let mut tx = pool.begin().await?;
        for rows in chunks.chunks(CHUNK_INSERT_ROWS) {
            let mut insert = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO knowledge_chunks (id, tenant_id, document_id, version, position, section, page, text, content_hash, token_count, embedding, created_at) ",
            );
            insert.push_values(rows, |mut row, new| {
                let chunk = &new.chunk;
                row.push_bind(new.id.to_string())
                    .push_bind(tenant)
                    .push_bind(&document_id)
                    .push_bind(version)
                    .push_bind(chunk.position as i32)
                    .push_bind(chunk.section.as_deref())
                    .push_bind(chunk.page.map(|p| p as i32))
                    .push_bind(&chunk.text)
                    .push_bind(&chunk.content_hash)
                    .push_bind(chunk.token_count as i32)
                    .push_bind(new.embedding.as_deref().map(embeddings::to_bytes))
                    .push_bind(now);
            });
            insert.push(" ON CONFLICT DO NOTHING");
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    })
}

/// What the document looks like once a version is published.
#[derive(Debug, Clone)]
pub struct Publication<'a> {
    pub document_id: Uuid,
    pub version: i64,
    pub tags: &'a [String],
    pub media_type: &'a str,
    pub content_hash: &'a str,
    pub chunks: i64,
}

/// Makes `version` live in one statement unless a newer one already is, and deletes the chunks it
/// replaces (or its own, when it lost to a newer one). Returns `(published, removed chunk ids)`.
#[tracing::instrument(level = "debug", skip_all, fields(document.id = %publication.document_id, version = publication.version))]
pub async fn publish_version(
    store: &Store,
    publication: &Publication<'_>,
    now: i64,
) -> Result<(bool, Vec<Uuid>), StoreError> {
    let id = publication.document_id.to_string();
    on_pool!(store, |pool, Db| {
        let mut tx = pool.begin().await?;
        let published = sqlx::query(
            "UPDATE knowledge_documents
             SET version = $1, status = 'ready', error = NULL, tags = $2, media_type = $3,
                 content_hash = $4, chunk_count = $5, uploaded_at = $6, updated_at = $6
             WHERE id = $7 AND version < $1",
        )
        .bind(publication.version)
        .bind(tags_json(publication.tags))
        .bind(publication.media_type)
        .bind(publication.content_hash)
        .bind(publication.chunks)
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let removed: Vec<(String,)> = if published {
            sqlx::query_as(
                "DELETE FROM knowledge_chunks WHERE document_id = $1 AND version < $2 RETURNING id",
            )
            .bind(&id)
            .bind(publication.version)
            .fetch_all(&mut *tx)
            .await?
        } else {
            sqlx::query_as(
                "DELETE FROM knowledge_chunks WHERE document_id = $1 AND version = $2 RETURNING id",
            )
            .bind(&id)
            .bind(publication.version)
            .fetch_all(&mut *tx)
            .await?
        };
        tx.commit().await?;
        let removed = ids(&removed)?;
        Ok((published, removed))
    })
}

/// Abandons a version: deletes its chunks and records the error on the document (which is
/// `failed` only when no version is live). Returns the deleted chunk ids.
#[tracing::instrument(level = "debug", skip_all, fields(document.id = %document_id, version))]
pub async fn fail_version(
    store: &Store,
    document_id: Uuid,
    version: i64,
    error: &str,
    now: i64,
) -> Result<Vec<Uuid>, StoreError> {
    let id = document_id.to_string();
    on_pool!(store, |pool, Db| {
        let mut tx = pool.begin().await?;
        let removed: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM knowledge_chunks WHERE document_id = $1 AND version = $2 RETURNING id",
        )
        .bind(&id)
        .bind(version)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE knowledge_documents
             SET status = CASE WHEN version = 0 THEN 'failed' ELSE status END, error = $1, updated_at = $2
             WHERE id = $3",
        )
        .bind(error)
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        ids(&removed)
    })
}

/// The tenant's documents, by name.
pub async fn list_documents(
    store: &Store,
    tenant: &str,
) -> Result<Vec<DocumentRecord>, StoreError> {
    let sql = format!(
        "SELECT {DOCUMENT_COLUMNS} FROM knowledge_documents WHERE tenant_id = $1 ORDER BY name"
    );
    let rows: Vec<DocumentRow> = on_pool!(store, |pool, Db| {
        sqlx::query_as(&sql).bind(tenant).fetch_all(pool).await?
    });
    rows.into_iter().map(document).collect()
}

pub async fn get_document(
    store: &Store,
    tenant: &str,
    id: Uuid,
) -> Result<Option<DocumentRecord>, StoreError> {
    let sql = format!(
        "SELECT {DOCUMENT_COLUMNS} FROM knowledge_documents WHERE tenant_id = $1 AND id = $2"
    );
    let row: Option<DocumentRow> = on_pool!(store, |pool, Db| {
        sqlx::query_as(&sql)
            .bind(tenant)
            .bind(id.to_string())
            .fetch_optional(pool)
            .await?
    });
    row.map(document).transpose()
}

/// Deletes a document and its chunks in one transaction; `None` when the tenant has no such
/// document, else the deleted chunk ids.
#[tracing::instrument(level = "debug", skip_all, fields(document.id = %id))]
pub async fn delete_document(
    store: &Store,
    tenant: &str,
    id: Uuid,
) -> Result<Option<Vec<Uuid>>, StoreError> {
    let id = id.to_string();
    on_pool!(store, |pool, Db| {
        let mut tx = pool.begin().await?;
        // Chunks first: the document's deletion would cascade to them without saying which.
        let removed: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM knowledge_chunks WHERE tenant_id = $1 AND document_id = $2 RETURNING id",
        )
        .bind(tenant)
        .bind(&id)
        .fetch_all(&mut *tx)
        .await?;
        let deleted =
            sqlx::query("DELETE FROM knowledge_documents WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(&id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if deleted == 0 {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(ids(&removed)?))
    })
}

/// The live chunks among `ids` that belong to `tenant`, in no particular order. `CROSS JOIN`
/// makes SQLite look the chunks up by id first (left to itself it walks every live chunk of each
/// document); PostgreSQL plans it like any join.
pub async fn passages(
    store: &Store,
    tenant: &str,
    ids: &[Uuid],
) -> Result<Vec<PassageRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT c.id, c.text, c.section, c.page, d.id, d.name, c.content_hash
         FROM knowledge_chunks c CROSS JOIN knowledge_documents d
         WHERE d.id = c.document_id AND c.tenant_id = $1 AND d.tenant_id = $1
           AND c.version = d.version AND c.id IN ({})",
        placeholders(2, ids.len())
    );
    type Row = (
        String,
        String,
        Option<String>,
        Option<i32>,
        String,
        String,
        String,
    );
    let rows: Vec<Row> = on_pool!(store, |pool, Db| {
        let mut query = sqlx::query_as(&sql).bind(tenant);
        for id in ids {
            query = query.bind(id.to_string());
        }
        query.fetch_all(pool).await?
    });
    rows.into_iter()
        .map(
            |(chunk_id, text, section, page, document_id, document_name, content_hash)| {
                Ok(PassageRow {
                    chunk_id: uuid(&chunk_id)?,
                    text,
                    section,
                    page,
                    document_id: uuid(&document_id)?,
                    document_name,
                    content_hash,
                })
            },
        )
        .collect()
}

/// Every stored chunk (live or being written), for comparing with the index.
pub async fn count_chunks(store: &Store) -> Result<u64, StoreError> {
    let (n,): (i64,) = on_pool!(store, |pool, Db| {
        sqlx::query_as("SELECT COUNT(*) FROM knowledge_chunks")
            .fetch_one(pool)
            .await?
    });
    Ok(n as u64)
}

/// Up to `limit` stored chunks with ids after `after`, in id order (for rebuilding the index).
pub async fn chunks_page(
    store: &Store,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<IndexRow>, StoreError> {
    type Row = (
        String,
        String,
        String,
        i64,
        String,
        String,
        Option<String>,
        Option<Vec<u8>>,
    );
    let after = after.map(|u| u.to_string()).unwrap_or_default();
    let rows: Vec<Row> = on_pool!(store, |pool, Db| {
        sqlx::query_as(
            "SELECT c.id, c.tenant_id, c.document_id, c.version, d.tags, c.text, c.section, c.embedding
             FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id
             WHERE c.id > $1 ORDER BY c.id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(
            |(id, tenant, document_id, version, tags, text, section, embedding)| {
                Ok(IndexRow {
                    chunk_id: uuid(&id)?,
                    tenant,
                    document_id: uuid(&document_id)?,
                    version,
                    tags: tags_of(&tags)?,
                    text,
                    section,
                    embedding: embedding.as_deref().map(embeddings::from_bytes),
                })
            },
        )
        .collect()
}

/// Whether the tenant has ever had a document or a job (the knowledge folder is loaded only
/// before that).
pub async fn tenant_has_history(store: &Store, tenant: &str) -> Result<bool, StoreError> {
    let (n,): (i64,) = on_pool!(store, |pool, Db| {
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM knowledge_documents WHERE tenant_id = $1)
                  + (SELECT COUNT(*) FROM knowledge_jobs WHERE tenant_id = $1)",
        )
        .bind(tenant)
        .fetch_one(pool)
        .await?
    });
    Ok(n > 0)
}

pub async fn create_job(store: &Store, job: &JobRecord) -> Result<(), StoreError> {
    let files = serde_json::to_string(&job.files).expect("job files serialize");
    on_pool!(store, |pool, Db| {
        sqlx::query(
            "INSERT INTO knowledge_jobs (id, tenant_id, status, files_total, files_done, chunks_done, files, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(job.id.to_string())
        .bind(&job.tenant)
        .bind(&job.status)
        .bind(job.files_total as i32)
        .bind(job.files_done as i32)
        .bind(job.chunks_done)
        .bind(files)
        .bind(job.created_at)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Saves a job's progress.
pub async fn update_job(store: &Store, job: &JobRecord) -> Result<(), StoreError> {
    let files = serde_json::to_string(&job.files).expect("job files serialize");
    on_pool!(store, |pool, Db| {
        sqlx::query(
            "UPDATE knowledge_jobs SET status = $1, files_done = $2, chunks_done = $3, files = $4, updated_at = $5
             WHERE id = $6",
        )
        .bind(&job.status)
        .bind(job.files_done as i32)
        .bind(job.chunks_done)
        .bind(files)
        .bind(job.updated_at)
        .bind(job.id.to_string())
        .execute(pool)
        .await?;
    });
    Ok(())
}

pub async fn get_job(
    store: &Store,
    tenant: &str,
    id: Uuid,
) -> Result<Option<JobRecord>, StoreError> {
    type Row = (String, String, String, i32, i32, i64, String, i64, i64);
    let row: Option<Row> = on_pool!(store, |pool, Db| {
        sqlx::query_as(
            "SELECT id, tenant_id, status, files_total, files_done, chunks_done, files, created_at, updated_at
             FROM knowledge_jobs WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id.to_string())
        .fetch_optional(pool)
        .await?
    });
    row.map(
        |(
            id,
            tenant,
            status,
            files_total,
            files_done,
            chunks_done,
            files,
            created_at,
            updated_at,
        )| {
            Ok(JobRecord {
                id: uuid(&id)?,
                tenant,
                status,
                files_total: files_total as i64,
                files_done: files_done as i64,
                chunks_done,
                files: serde_json::from_str(&files)
                    .map_err(|_| StoreError::Corrupt("job files are not valid JSON".into()))?,
                created_at,
                updated_at,
            })
        },
    )
    .transpose()
}

/// After a restart: jobs still `running` that have not moved since `stale_before` are marked
/// failed, and chunks of versions that never went live (and belong to no running job) are
/// deleted. Returns the deleted chunk ids.
pub async fn recover_interrupted(
    store: &Store,
    stale_before: i64,
    now: i64,
) -> Result<(u64, Vec<Uuid>), StoreError> {
    on_pool!(store, |pool, Db| {
        let mut tx = pool.begin().await?;
        let failed = sqlx::query(
            "UPDATE knowledge_jobs SET status = 'failed', updated_at = $1 WHERE status = 'running' AND updated_at < $2",
        )
        .bind(now)
        .bind(stale_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let (running,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM knowledge_jobs WHERE status = 'running'")
                .fetch_one(&mut *tx)
                .await?;
        let removed: Vec<(String,)> = if running == 0 {
            sqlx::query_as(
                "DELETE FROM knowledge_chunks WHERE version <> (SELECT d.version FROM knowledge_documents d WHERE d.id = knowledge_chunks.document_id) RETURNING id",
            )
            .fetch_all(&mut *tx)
            .await?
        } else {
            Vec::new()
        };
        sqlx::query(
            "UPDATE knowledge_documents SET status = 'failed', error = 'ingestion was interrupted by a restart; upload it again'
             WHERE status = 'processing' AND version = 0 AND updated_at < $1",
        )
        .bind(stale_before)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((failed, ids(&removed)?))
    })
}
