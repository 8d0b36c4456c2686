//! The vector index: one type, two backends. `Edge` is Qdrant Edge in this process, with its files
//! under the data dir (the default); `Server` is a Qdrant server reached through `qdrant-client`
//! (`QDRANT_URL`). Both hold, per chunk, a BM25 sparse vector (`bm25`) and, when an embedding model
//! is configured, a dense one (`dense`), with the payload `tenant_id`, `document_id`, `version` and
//! `tags` that every query filters on.
//!
//! The index is derived from the SQL store: it can be rebuilt from it at any time
//! ([`VectorIndex::begin_rebuild`]). Writes go through [`VectorIndex::apply`], which makes a batch
//! durable before it returns.

pub mod edge;
pub mod server;

use qdrant_edge::SparseVector;
use uuid::Uuid;

pub use edge::EdgeIndex;
pub use server::ServerIndex;

/// The sparse vector's name in both backends.
pub const SPARSE: &str = "bm25";
/// The dense vector's name in both backends.
pub const DENSE: &str = "dense";

/// A chunk as the index holds it.
#[derive(Debug, Clone)]
pub struct IndexPoint {
    /// The chunk id (also the point id).
    pub id: Uuid,
    pub tenant: String,
    pub document_id: Uuid,
    pub version: i64,
    pub tags: Vec<String>,
    pub sparse: SparseVector,
    pub dense: Option<Vec<f32>>,
}

/// Changes applied, then made durable, as one call.
#[derive(Debug, Default)]
pub struct IndexBatch {
    pub upsert: Vec<IndexPoint>,
    pub delete: Vec<Uuid>,
}

/// A query: always filtered by tenant, and by tags when any are given (a chunk matches when it
/// carries at least one of them).
#[derive(Debug, Clone)]
pub struct IndexQuery {
    pub tenant: String,
    pub tags: Vec<String>,
    pub sparse: SparseVector,
    pub dense: Option<Vec<f32>>,
    pub limit: usize,
}

/// A scored chunk id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexHit {
    pub id: Uuid,
    pub score: f32,
}

/// Errors of either backend.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("vector index: {0}")]
    Backend(String),
    #[error("the vector index files are in use by another process ({0})")]
    Locked(String),
}

impl IndexError {
    pub fn backend(e: impl std::fmt::Display) -> Self {
        IndexError::Backend(e.to_string())
    }
}

/// The vector index.
#[derive(Debug, Clone)]
pub enum VectorIndex {
    Edge(EdgeIndex),
    Server(ServerIndex),
}

/// A rebuild in progress: the new index is filled with [`Rebuild::add`] and takes over at
/// [`Rebuild::finish`]. Until then searches use the old index and other writes wait.
pub enum Rebuild {
    Edge(edge::EdgeRebuild),
    Server(server::ServerRebuild),
}

impl VectorIndex {
    /// `qdrant_edge` or `qdrant_server`, for logs and readiness.
    pub fn backend_name(&self) -> &'static str {
        match self {
            VectorIndex::Edge(_) => "qdrant_edge",
            VectorIndex::Server(_) => "qdrant_server",
        }
    }

    /// Applies upserts then deletes, and returns once they are durable.
    pub async fn apply(&self, batch: IndexBatch) -> Result<(), IndexError> {
        if batch.upsert.is_empty() && batch.delete.is_empty() {
            return Ok(());
        }
        match self {
            VectorIndex::Edge(index) => index.apply(batch).await,
            VectorIndex::Server(index) => index.apply(batch).await,
        }
    }

    pub async fn search(&self, query: IndexQuery) -> Result<Vec<IndexHit>, IndexError> {
        match self {
            VectorIndex::Edge(index) => index.search(query).await,
            VectorIndex::Server(index) => index.search(query).await,
        }
    }

    /// How many points the index holds.
    pub async fn count(&self) -> Result<u64, IndexError> {
        match self {
            VectorIndex::Edge(index) => index.count().await,
            VectorIndex::Server(index) => index.count().await,
        }
    }

    /// Whether the index answers.
    pub async fn ping(&self) -> Result<(), IndexError> {
        match self {
            VectorIndex::Edge(index) => index.count().await.map(|_| ()),
            VectorIndex::Server(index) => index.ping().await,
        }
    }

    /// Housekeeping after an ingestion job, off the request path: Qdrant Edge builds its indexes
    /// (`optimize`) and says whether its write-ahead log has outgrown `wal_limit` bytes, so the
    /// caller should rebuild it from the store. A Qdrant server does this itself.
    pub async fn maintain(&self, wal_limit: u64) -> Result<bool, IndexError> {
        match self {
            VectorIndex::Edge(index) => index.maintain(wal_limit).await,
            VectorIndex::Server(_) => Ok(false),
        }
    }

    /// Starts a rebuild (see [`Rebuild`]).
    pub async fn begin_rebuild(&self) -> Result<Rebuild, IndexError> {
        match self {
            VectorIndex::Edge(index) => index.begin_rebuild().await.map(Rebuild::Edge),
            VectorIndex::Server(index) => index.begin_rebuild().await.map(Rebuild::Server),
        }
    }
}

impl Rebuild {
    pub async fn add(&mut self, points: Vec<IndexPoint>) -> Result<(), IndexError> {
        match self {
            Rebuild::Edge(rebuild) => rebuild.add(points).await,
            Rebuild::Server(rebuild) => rebuild.add(points).await,
        }
    }

    pub async fn finish(self) -> Result<(), IndexError> {
        match self {
            Rebuild::Edge(rebuild) => rebuild.finish().await,
            Rebuild::Server(rebuild) => rebuild.finish().await,
        }
    }
}
