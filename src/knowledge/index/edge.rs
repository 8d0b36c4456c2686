//! Qdrant Edge (`qdrant-edge` 0.7.2) in this process, its files under
//! `<data dir>/knowledge-index/`.
//!
//! This version has three defects (shared/QDRANT-EDGE.md) that shape this wrapper:
//! - its write-ahead log is never replayed, so every batch is flushed before [`EdgeIndex::apply`]
//!   returns; `flush` panics if anything else holds the shard's locks, so it runs under the
//!   exclusive side of `shard` (no query or write at the same time);
//! - its write-ahead log is never truncated, so when it outgrows a limit the shard is rebuilt
//!   from the store into a fresh directory and swapped in (searches keep using the old one until
//!   the swap), and `CURRENT` names the live directory;
//! - upserts slow down as the appendable segment grows and nothing is indexed in the background,
//!   so segments are indexed early (a small indexing threshold) and `optimize` runs after every
//!   large update and after each ingestion job, on a blocking thread, while searches continue.
//!
//! Writes are serialized by one owner: the `writer` mutex is held by each write, by `optimize`,
//! and by a whole rebuild. Searches, updates and `optimize` take `shard` shared (the engine
//! locks its segments itself); only flushes and the swap after a rebuild take it exclusively.
//! All calls into the engine run on blocking threads. An exclusive file lock (`LOCK`) keeps a
//! second process (another `parley serve`, or `parley ingest`) from opening the same files; within
//! one process, opening the same directory again while it is open shares the open index.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, RwLock, Weak};

use qdrant_edge::{
    AnyVariants, Condition, CountRequest, CreateIndex, Distance, EdgeConfig, EdgeOptimizersConfig,
    EdgeShard, EdgeSparseVectorParams, EdgeVectorParams, FieldCondition, FieldIndexOperations,
    Filter, Fusion, JsonPath, KeywordIndexParams, Match, Modifier, NamedQuery, NamedVectors,
    PayloadFieldSchema, PayloadSchemaParams, PointId, PointInsertOperations, PointOperations,
    PointStruct, Prefetch, QueryEnum, QueryRequest, ScoringQuery, SearchParams, UpdateOperation,
    ValueVariants, Vector, WithPayloadInterface, WithVector,
};
use serde_json::json;
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use super::{DENSE, IndexBatch, IndexError, IndexHit, IndexPoint, IndexQuery, SPARSE};

const CURRENT: &str = "CURRENT";
const LOCK: &str = "LOCK";
/// Candidates each branch of a hybrid query contributes before fusion.
const PREFETCH_LIMIT: usize = 50;
/// HNSW beam width for the dense branch (the default misses too much, QDRANT-EDGE.md).
const HNSW_EF: usize = 256;
/// Points per engine update call.
const UPDATE_BATCH: usize = 1_000;
/// A segment is turned into an indexed, immutable one once its vectors take this many KiB (a few
/// thousand BM25 vectors). The engine's default, 10 MB, lets the appendable segment reach about
/// 20,000 points, and each upsert into it walks whole posting lists (QDRANT-EDGE.md defect 3).
/// Chosen with `parley bench-knowledge`: 100,000 chunks went from 985 to about 3,300 chunks/s.
const INDEXING_THRESHOLD_KB: usize = 2_000;
/// Segments are merged up to this size, so a merge never rewrites the whole index.
const MAX_SEGMENT_KB: usize = 32_000;
/// Segments the merge optimizer aims for: more segments, fewer merges; searches visit each
/// (p50 under 2 ms at 100,000 chunks with 8).
const SEGMENT_NUMBER: usize = 8;
/// An update of at least this many points is followed by `optimize`, so the appendable segment
/// stays small during a long ingestion job too.
const OPTIMIZE_AFTER_POINTS: usize = 500;

/// Indexes open in this process, by directory.
static OPEN: LazyLock<std::sync::Mutex<HashMap<PathBuf, Weak<Inner>>>> =
    LazyLock::new(Default::default);

/// The embedded index.
#[derive(Debug, Clone)]
pub struct EdgeIndex {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    dense_dimensions: Option<usize>,
    shard: RwLock<Live>,
    /// The one owner of writes (see the module documentation).
    writer: Arc<Mutex<()>>,
    _lock: File,
}

#[derive(Debug)]
struct Live {
    /// Dropping an `EdgeShard` flushes it and panics if that fails (qdrant-edge 0.7.2); `Drop`
    /// below only lets that happen while its directory still exists.
    shard: std::mem::ManuallyDrop<EdgeShard>,
    dir: PathBuf,
}

impl Drop for Live {
    fn drop(&mut self) {
        if self.dir.exists() {
            // SAFETY: `shard` is never used again; this is the only place it is dropped.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.shard) };
        } else {
            // The files are gone (a deleted data directory): flushing would panic, and there is
            // nothing left to flush to. The shard's memory is released with the process.
            tracing::warn!(dir = %self.dir.display(), "knowledge index directory vanished; not flushing");
        }
    }
}

impl EdgeIndex {
    /// Opens the index under `root`, creating it when absent. The second value is true when the
    /// files were missing, unreadable or made for other vectors, so the index is new and empty
    /// and must be rebuilt from the store.
    pub fn open(root: &Path, dense_dimensions: Option<usize>) -> Result<(Self, bool), IndexError> {
        std::fs::create_dir_all(root).map_err(IndexError::backend)?;
        let key = root.canonicalize().map_err(IndexError::backend)?;
        let mut open = OPEN.lock().map_err(poisoned)?;
        open.retain(|_, weak| weak.strong_count() > 0);
        if let Some(inner) = open.get(&key).and_then(Weak::upgrade) {
            if inner.dense_dimensions == dense_dimensions {
                return Ok((EdgeIndex { inner }, false));
            }
            return Err(IndexError::Locked(format!(
                "{} is open in this process with other vectors",
                root.display()
            )));
        }
        let lock = File::create(root.join(LOCK)).map_err(IndexError::backend)?;
        lock.try_lock()
            .map_err(|_| IndexError::Locked(root.display().to_string()))?;
        let current = std::fs::read_to_string(root.join(CURRENT))
            .ok()
            .map(|name| root.join(name.trim()))
            .filter(|dir| dir.is_dir());
        let mut fresh = true;
        let mut live = None;
        if let Some(dir) = current {
            match EdgeShard::load(&dir, None) {
                Ok(shard) if matches_config(&shard, dense_dimensions) => {
                    // Indexes made by an earlier release take the current segment settings.
                    if shard.config().optimizers != optimizers_config() {
                        shard
                            .set_optimizers_config(optimizers_config())
                            .map_err(IndexError::backend)?;
                    }
                    fresh = false;
                    live = Some(Live {
                        shard: std::mem::ManuallyDrop::new(shard),
                        dir,
                    });
                }
                Ok(_) => {
                    tracing::warn!("the knowledge index was made for other vectors; rebuilding it");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the knowledge index cannot be loaded; rebuilding it");
                }
            }
        }
        let live = match live {
            Some(live) => live,
            None => {
                let live = create_shard(root, dense_dimensions)?;
                set_current(root, &live.dir)?;
                live
            }
        };
        remove_stale_dirs(root, &live.dir);
        let index = EdgeIndex {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                dense_dimensions,
                shard: RwLock::new(live),
                writer: Arc::new(Mutex::new(())),
                _lock: lock,
            }),
        };
        open.insert(key, Arc::downgrade(&index.inner));
        Ok((index, fresh))
    }

    pub async fn apply(&self, batch: IndexBatch) -> Result<(), IndexError> {
        let _writer = self.inner.writer.lock().await;
        let inner = self.inner.clone();
        blocking(move || {
            {
                // Searches go on during the update (the engine locks its segments itself); only
                // the flush needs the shard alone.
                let live = inner.shard.read().map_err(poisoned)?;
                let upserted = batch.upsert.len();
                write_points(&live.shard, batch.upsert)?;
                if !batch.delete.is_empty() {
                    let ids = batch.delete.into_iter().map(PointId::Uuid).collect();
                    live.shard
                        .update(UpdateOperation::PointOperation(
                            PointOperations::DeletePoints { ids },
                        ))
                        .map_err(IndexError::backend)?;
                }
                if upserted >= OPTIMIZE_AFTER_POINTS {
                    live.shard.optimize().map_err(IndexError::backend)?;
                }
            }
            let live = inner.shard.write().map_err(poisoned)?;
            flush(&live.shard)
        })
        .await
    }

    pub async fn search(&self, query: IndexQuery) -> Result<Vec<IndexHit>, IndexError> {
        let inner = self.inner.clone();
        blocking(move || {
            let request = query_request(&query, inner.dense_dimensions.is_some());
            let live = inner.shard.read().map_err(poisoned)?;
            let points = live.shard.query(request).map_err(IndexError::backend)?;
            Ok(points
                .into_iter()
                .filter_map(|p| match p.id {
                    PointId::Uuid(id) => Some(IndexHit { id, score: p.score }),
                    PointId::NumId(_) => None,
                })
                .collect())
        })
        .await
    }

    /// How many segments the live shard has (the appendable one included).
    pub fn segment_count(&self) -> usize {
        self.inner
            .shard
            .read()
            .map(|live| live.shard.info().segments_count)
            .unwrap_or(0)
    }

    pub async fn count(&self) -> Result<u64, IndexError> {
        let inner = self.inner.clone();
        blocking(move || {
            let live = inner.shard.read().map_err(poisoned)?;
            live.shard
                .count(CountRequest {
                    filter: None,
                    exact: true,
                })
                .map(|n| n as u64)
                .map_err(IndexError::backend)
        })
        .await
    }

    /// Builds the engine's indexes (searches continue meanwhile; writes wait), flushes, and says
    /// whether the write-ahead log is over `wal_limit` bytes.
    pub async fn maintain(&self, wal_limit: u64) -> Result<bool, IndexError> {
        let _writer = self.inner.writer.lock().await;
        let inner = self.inner.clone();
        blocking(move || {
            {
                let live = inner.shard.read().map_err(poisoned)?;
                live.shard.optimize().map_err(IndexError::backend)?;
            }
            let live = inner.shard.write().map_err(poisoned)?;
            flush(&live.shard)?;
            Ok(dir_size(&live.dir.join("wal")) > wal_limit)
        })
        .await
    }

    /// Size of the live shard's write-ahead log in bytes.
    pub fn wal_bytes(&self) -> u64 {
        self.inner
            .shard
            .read()
            .map(|live| dir_size(&live.dir.join("wal")))
            .unwrap_or(0)
    }

    pub async fn begin_rebuild(&self) -> Result<EdgeRebuild, IndexError> {
        let writer = self.inner.writer.clone().lock_owned().await;
        let root = self.inner.root.clone();
        let dims = self.inner.dense_dimensions;
        let fresh = blocking(move || create_shard(&root, dims)).await?;
        Ok(EdgeRebuild {
            index: self.clone(),
            fresh: Some(Arc::new(fresh)),
            _writer: writer,
        })
    }
}

/// A fresh shard being filled from the store while the old one serves searches.
pub struct EdgeRebuild {
    index: EdgeIndex,
    fresh: Option<Arc<Live>>,
    _writer: OwnedMutexGuard<()>,
}

impl EdgeRebuild {
    pub async fn add(&mut self, points: Vec<IndexPoint>) -> Result<(), IndexError> {
        let fresh = self.fresh.clone().expect("rebuild in progress");
        blocking(move || write_points(&fresh.shard, points)).await
    }

    /// Optimizes and flushes the fresh shard, swaps it in, and deletes the old one.
    pub async fn finish(mut self) -> Result<(), IndexError> {
        let fresh = self.fresh.take().expect("rebuild in progress");
        let inner = self.index.inner.clone();
        blocking(move || {
            let fresh = Arc::try_unwrap(fresh)
                .map_err(|_| IndexError::Backend("the rebuilt shard is still in use".into()))?;
            fresh.shard.optimize().map_err(IndexError::backend)?;
            flush(&fresh.shard)?;
            set_current(&inner.root, &fresh.dir)?;
            let old = {
                let mut live = inner.shard.write().map_err(poisoned)?;
                std::mem::replace(&mut *live, fresh)
            };
            let old_dir = old.dir.clone();
            drop(old);
            if let Err(err) = std::fs::remove_dir_all(&old_dir) {
                tracing::warn!(error = %err, "could not remove the replaced knowledge index");
            }
            Ok(())
        })
        .await
    }
}

impl Drop for EdgeRebuild {
    fn drop(&mut self) {
        // An abandoned rebuild leaves a directory that `open` removes next time.
        if let Some(fresh) = self.fresh.take() {
            tracing::warn!(dir = %fresh.dir.display(), "knowledge index rebuild abandoned");
        }
    }
}

fn optimizers_config() -> EdgeOptimizersConfig {
    EdgeOptimizersConfig {
        default_segment_number: Some(SEGMENT_NUMBER),
        max_segment_size: Some(MAX_SEGMENT_KB),
        indexing_threshold: Some(INDEXING_THRESHOLD_KB),
        ..EdgeOptimizersConfig::default()
    }
}

fn edge_config(dense_dimensions: Option<usize>) -> EdgeConfig {
    let mut builder = EdgeConfig::builder()
        .sparse_vector(
            SPARSE,
            EdgeSparseVectorParams::builder()
                .modifier(Modifier::Idf)
                .build(),
        )
        .optimizers(optimizers_config());
    if let Some(dims) = dense_dimensions {
        builder = builder.vector(
            DENSE,
            EdgeVectorParams::builder(dims, Distance::Cosine).build(),
        );
    }
    builder.build()
}

fn matches_config(shard: &EdgeShard, dense_dimensions: Option<usize>) -> bool {
    let config = shard.config();
    let dense = config.vectors.get(DENSE).map(|v| v.size);
    config.sparse_vectors.contains_key(SPARSE) && dense == dense_dimensions
}

/// A new, empty shard in a new directory under `root`, with its payload indexes.
fn create_shard(root: &Path, dense_dimensions: Option<usize>) -> Result<Live, IndexError> {
    let dir = root.join(format!("shard-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(IndexError::backend)?;
    let shard = EdgeShard::new(&dir, edge_config(dense_dimensions)).map_err(IndexError::backend)?;
    for (field, is_tenant) in [("tenant_id", true), ("document_id", false), ("tags", false)] {
        let params = KeywordIndexParams {
            is_tenant: Some(is_tenant),
            ..KeywordIndexParams::default()
        };
        shard
            .update(UpdateOperation::FieldIndexOperation(
                FieldIndexOperations::CreateIndex(CreateIndex {
                    field_name: json_path(field),
                    field_schema: Some(PayloadFieldSchema::FieldParams(
                        PayloadSchemaParams::Keyword(params),
                    )),
                }),
            ))
            .map_err(IndexError::backend)?;
    }
    flush(&shard)?;
    Ok(Live {
        shard: std::mem::ManuallyDrop::new(shard),
        dir,
    })
}

fn write_points(shard: &EdgeShard, points: Vec<IndexPoint>) -> Result<(), IndexError> {
    let mut points = points.into_iter().peekable();
    while points.peek().is_some() {
        let batch: Vec<_> = points
            .by_ref()
            .take(UPDATE_BATCH)
            .map(|p| point_struct(p).map(|p| p.0))
            .collect::<Result<_, _>>()?;
        shard
            .update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(batch)),
            ))
            .map_err(IndexError::backend)?;
    }
    Ok(())
}

fn point_struct(point: IndexPoint) -> Result<PointStruct, IndexError> {
    let mut vectors = NamedVectors::default().add_vector(
        SPARSE,
        Vector::new_sparse(point.sparse.indices, point.sparse.values)
            .map_err(IndexError::backend)?,
    );
    if let Some(dense) = point.dense {
        vectors = vectors.add_vector(DENSE, Vector::new_dense(dense));
    }
    Ok(PointStruct::new(
        PointId::Uuid(point.id),
        vectors,
        json!({
            "tenant_id": point.tenant,
            "document_id": point.document_id.to_string(),
            "version": point.version,
            "tags": point.tags,
        }),
    ))
}

fn keyword(field: &str, value: &str) -> Condition {
    Condition::Field(FieldCondition::new_match(
        json_path(field),
        Match::new_value(ValueVariants::String(value.to_owned())),
    ))
}

fn query_filter(query: &IndexQuery) -> Filter {
    let mut filter = Filter::new_must(keyword("tenant_id", &query.tenant));
    if !query.tags.is_empty() {
        let any = Condition::Field(FieldCondition::new_match(
            json_path("tags"),
            Match::new_any(AnyVariants::Strings(query.tags.iter().cloned().collect())),
        ));
        filter.must.get_or_insert_with(Vec::new).push(any);
    }
    filter
}

fn query_request(query: &IndexQuery, has_dense: bool) -> QueryRequest {
    let filter = Some(query_filter(query));
    let sparse = ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
        query: qdrant_edge::VectorInternal::Sparse(query.sparse.clone()),
        using: Some(SPARSE.into()),
    }));
    let dense = match (&query.dense, has_dense) {
        (Some(vector), true) => Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
            query: qdrant_edge::VectorInternal::Dense(vector.clone()),
            using: Some(DENSE.into()),
        }))),
        _ => None,
    };
    let base = QueryRequest {
        prefetches: Vec::new(),
        query: None,
        filter,
        score_threshold: None,
        limit: query.limit,
        offset: 0,
        params: None,
        with_vector: WithVector::Bool(false),
        with_payload: WithPayloadInterface::Bool(false),
    };
    match dense {
        None => QueryRequest {
            query: Some(sparse),
            ..base
        },
        Some(dense) => {
            let prefetch_limit = PREFETCH_LIMIT.max(query.limit);
            let prefetch = |query: ScoringQuery, params: Option<SearchParams>| Prefetch {
                prefetches: Vec::new(),
                query: Some(query),
                limit: prefetch_limit,
                params,
                filter: None,
                score_threshold: None,
            };
            let dense_params = SearchParams {
                hnsw_ef: Some(HNSW_EF),
                ..SearchParams::default()
            };
            QueryRequest {
                prefetches: vec![prefetch(sparse, None), prefetch(dense, Some(dense_params))],
                query: Some(ScoringQuery::Fusion(Fusion::Rrf {
                    k: 60,
                    weights: None,
                })),
                ..base
            }
        }
    }
}

fn json_path(field: &str) -> JsonPath {
    field
        .parse()
        .expect("a plain field name is a valid JSON path")
}

fn flush(shard: &EdgeShard) -> Result<(), IndexError> {
    // `flush` panics when it cannot take its locks or write; callers hold the shard exclusively.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.flush()))
        .map_err(|_| IndexError::Backend("flushing the knowledge index failed".into()))
}

fn set_current(root: &Path, dir: &Path) -> Result<(), IndexError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| IndexError::Backend("bad shard directory name".into()))?;
    let tmp = root.join(format!("{CURRENT}.tmp"));
    std::fs::write(&tmp, name).map_err(IndexError::backend)?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(IndexError::backend)?;
    std::fs::rename(&tmp, root.join(CURRENT)).map_err(IndexError::backend)
}

/// Removes shard directories other than the live one (left by an interrupted rebuild).
fn remove_stale_dirs(root: &Path, live: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_shard = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("shard-"));
        if is_shard && path != live && path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn poisoned<T>(_: T) -> IndexError {
    IndexError::Backend("the knowledge index lock is poisoned".into())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, IndexError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| IndexError::Backend(format!("index task failed: {e}")))?
}
