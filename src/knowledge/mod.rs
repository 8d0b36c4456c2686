//! The knowledge base: documents a business uploads (Markdown, text, HTML, PDF, DOCX, CSV FAQs),
//! cut into chunks, kept in the SQL store, indexed for hybrid search, and searched by the agents.
//!
//! - [`parse`] reads a file into text parts; [`chunk`] cuts them into passages with their
//!   heading path; [`bm25`] and [`embeddings`] turn passages into sparse and dense vectors.
//! - [`store`] keeps documents, versions, chunks and jobs in SQLite or PostgreSQL: the source of
//!   truth. [`index`] is the derived vector index (Qdrant Edge in-process, or a Qdrant server).
//! - [`jobs`] runs uploads in the background with per-file progress and errors; [`search`]
//!   answers queries, always filtered by tenant and, when given, by tags.
//!
//! At start-up the index is compared with the store and rebuilt from it when they disagree
//! (Qdrant Edge 0.7.2 loses unflushed writes on a crash; see `index::edge`).

pub mod bm25;
pub mod chunk;
pub mod embeddings;
pub mod eval;
pub mod index;
pub mod jobs;
pub mod parse;
pub mod search;
pub mod settings;
pub mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::TenantId;
use crate::store::{Store, StoreError};
use bm25::Bm25;
use embeddings::{Embedder, EmbeddingSettings};
use index::{EdgeIndex, IndexError, IndexPoint, ServerIndex, VectorIndex};

pub use jobs::Upload;
pub use search::Passage;
pub use settings::{KnowledgeFile, KnowledgeSettings};
pub use store::{DocumentRecord, JobFile, JobRecord};

/// Chunks read from the store per page while rebuilding the index.
const REBUILD_PAGE: i64 = 2_000;

/// What can go wrong; the HTTP layer maps these to 400, 404 and 503.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The knowledge base, shared by handlers, jobs and agents (cheap to clone).
#[derive(Debug, Clone)]
pub struct Knowledge {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    index: VectorIndex,
    bm25: Bm25,
    embedder: Option<Embedder>,
    settings: KnowledgeSettings,
    /// One ingestion job at a time in this process: jobs are I/O and CPU heavy, and the index
    /// has one writer anyway.
    lane: tokio::sync::Mutex<()>,
}

impl Knowledge {
    /// Opens the configured index (Qdrant Edge under the data dir, or the Qdrant server at
    /// `QDRANT_URL`), cleans up after interrupted jobs, and rebuilds the index from the store when
    /// the two disagree.
    pub async fn open(store: Store, config: &Config) -> anyhow::Result<Self> {
        let settings = config.knowledge.clone();
        let embedder = match (&config.llm.embedding_model, &config.llm.api_key) {
            (Some(model), Some(key)) => Some(Embedder::new(EmbeddingSettings {
                api_key: key.clone(),
                base_url: config.llm.base_url.clone(),
                model: model.clone(),
                dimensions: settings.embedding_dimensions,
                timeout: Duration::from_secs(60),
            })),
            (Some(_), None) => {
                anyhow::bail!("PARLEY_EMBEDDING_MODEL is set but OPENAI_API_KEY is not")
            }
            _ => None,
        };
        let dims = embedder.as_ref().map(Embedder::dimensions);
        let (index, fresh) = match &settings.qdrant {
            Some(server) => {
                let (index, fresh) = ServerIndex::open(server, dims)
                    .await
                    .context("QDRANT_URL: cannot open the knowledge collection")?;
                (VectorIndex::Server(index), fresh)
            }
            None => {
                let root = config.data_dir.join("knowledge-index");
                let (index, fresh) =
                    tokio::task::spawn_blocking(move || EdgeIndex::open(&root, dims))
                        .await
                        .context("opening the knowledge index panicked")?
                        .context("cannot open the knowledge index in PARLEY_DATA_DIR")?;
                (VectorIndex::Edge(index), fresh)
            }
        };
        let knowledge = Knowledge {
            inner: Arc::new(Inner {
                store,
                index,
                bm25: Bm25::new(settings.chunk.target_tokens),
                embedder,
                settings,
                lane: tokio::sync::Mutex::new(()),
            }),
        };
        knowledge.recover().await?;
        knowledge.reconcile(fresh).await?;
        Ok(knowledge)
    }

    pub fn settings(&self) -> &KnowledgeSettings {
        &self.inner.settings
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn index(&self) -> &VectorIndex {
        &self.inner.index
    }

    /// The BM25 embedder queries and chunks are embedded with.
    pub fn bm25(&self) -> &Bm25 {
        &self.inner.bm25
    }

    /// `qdrant_edge` or `qdrant_server`.
    pub fn backend_name(&self) -> &'static str {
        self.inner.index.backend_name()
    }

    /// Whether the vector index answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), KnowledgeError> {
        Ok(self.inner.index.ping().await?)
    }

    pub async fn documents(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<DocumentRecord>, KnowledgeError> {
        Ok(store::list_documents(&self.inner.store, tenant.as_str()).await?)
    }

    pub async fn job(&self, tenant: &TenantId, id: Uuid) -> Result<JobRecord, KnowledgeError> {
        store::get_job(&self.inner.store, tenant.as_str(), id)
            .await?
            .ok_or(KnowledgeError::NotFound)
    }

    /// Deletes a document: it leaves search results at once (its chunks leave the store in one
    /// transaction), then its points leave the index.
    pub async fn delete_document(&self, tenant: &TenantId, id: Uuid) -> Result<(), KnowledgeError> {
        let removed = store::delete_document(&self.inner.store, tenant.as_str(), id)
            .await?
            .ok_or(KnowledgeError::NotFound)?;
        self.remove_points(removed).await;
        Ok(())
    }

    /// Removes points whose chunks are gone from the store. A failure only leaves points that
    /// searches already ignore; the start-up comparison removes them.
    async fn remove_points(&self, ids: Vec<Uuid>) {
        if ids.is_empty() {
            return;
        }
        let batch = index::IndexBatch {
            upsert: Vec::new(),
            delete: ids,
        };
        if let Err(err) = self.inner.index.apply(batch).await {
            tracing::warn!(error = %err, "could not remove replaced chunks from the index");
        }
    }

    /// Marks jobs interrupted by a restart as failed and drops the chunks of versions that never
    /// went live. With Qdrant Edge only this process can have been running them; with a shared
    /// server, only jobs silent for ten minutes count as interrupted.
    async fn recover(&self) -> anyhow::Result<()> {
        let now = now_ms();
        let stale_before = match self.inner.index {
            VectorIndex::Edge(_) => now + 1,
            VectorIndex::Server(_) => now - 10 * 60 * 1000,
        };
        let (failed, removed) = store::recover_interrupted(&self.inner.store, stale_before, now)
            .await
            .context("cannot recover interrupted knowledge jobs")?;
        if failed > 0 || !removed.is_empty() {
            tracing::warn!(
                jobs = failed,
                chunks = removed.len(),
                "cleaned up after interrupted knowledge jobs"
            );
        }
        self.remove_points(removed).await;
        Ok(())
    }

    /// Rebuilds the index when it is new or holds a different number of points than the store
    /// holds chunks.
    async fn reconcile(&self, fresh: bool) -> anyhow::Result<()> {
        let stored = store::count_chunks(&self.inner.store).await?;
        let indexed = self.inner.index.count().await?;
        if stored == indexed && !(fresh && stored > 0) {
            tracing::info!(
                chunks = stored,
                backend = self.backend_name(),
                "knowledge index matches the store"
            );
            return Ok(());
        }
        tracing::warn!(
            stored,
            indexed,
            "knowledge index disagrees with the store; rebuilding it"
        );
        let started = std::time::Instant::now();
        let n = self.rebuild_index().await?;
        tracing::info!(
            chunks = n,
            duration_ms = started.elapsed().as_millis() as u64,
            "knowledge index rebuilt"
        );
        Ok(())
    }

    /// Rebuilds the whole index from the store; searches use the old index until it is done.
    pub async fn rebuild_index(&self) -> Result<u64, KnowledgeError> {
        let mut rebuild = self.inner.index.begin_rebuild().await?;
        let mut after = None;
        let mut total = 0u64;
        loop {
            let rows = store::chunks_page(&self.inner.store, after, REBUILD_PAGE).await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.chunk_id);
            total += rows.len() as u64;
            let this = self.clone();
            let points = tokio::task::spawn_blocking(move || {
                rows.into_iter()
                    .map(|row| IndexPoint {
                        id: row.chunk_id,
                        tenant: row.tenant,
                        document_id: row.document_id,
                        version: row.version,
                        tags: row.tags,
                        sparse: this
                            .inner
                            .bm25
                            .document(&chunk::indexed_text(row.section.as_deref(), &row.text)),
                        dense: row.embedding,
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| IndexError::Backend(format!("embedding task failed: {e}")))?;
            rebuild.add(points).await?;
        }
        rebuild.finish().await?;
        Ok(total)
    }

    /// Loads the files of `dir` for `tenant` as one job, unless the tenant already has (or had)
    /// documents. Returns the job id when a job started.
    pub async fn load_folder_at_first_start(
        &self,
        tenant: &TenantId,
        dir: &Path,
    ) -> Result<Option<Uuid>, KnowledgeError> {
        if !dir.is_dir() || store::tenant_has_history(&self.inner.store, tenant.as_str()).await? {
            return Ok(None);
        }
        let uploads = jobs::read_paths(&[dir.to_path_buf()])
            .map_err(|e| KnowledgeError::BadRequest(e.to_string()))?;
        if uploads.is_empty() {
            return Ok(None);
        }
        // Each demo file is tagged with the first word of its name (pricing, projects, faq...).
        let mut job_ids = None;
        let mut by_tag: std::collections::BTreeMap<String, Vec<Upload>> = Default::default();
        for upload in uploads {
            let tag = first_word(&upload.name);
            by_tag.entry(tag).or_default().push(upload);
        }
        let (files, tags): (Vec<Upload>, Vec<Vec<String>>) = by_tag
            .into_iter()
            .flat_map(|(tag, files)| files.into_iter().map(move |f| (f, vec![tag.clone()])))
            .unzip();
        let id = self.start_job_with_tags(tenant, files, tags).await?;
        job_ids.get_or_insert(id);
        tracing::info!(job.id = %id, dir = %dir.display(), "loading the knowledge folder at first start");
        Ok(job_ids)
    }
}

fn first_word(name: &str) -> String {
    let stem = Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name);
    stem.split(|c: char| !c.is_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or(stem)
        .to_ascii_lowercase()
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
