//! The vector index conformance suite: the same tests for Qdrant Edge (in-process, always) and a
//! Qdrant server (`PARLEY_TEST_QDRANT_URL`, e.g. http://127.0.0.1:6334; skipped with a printed
//! reason when unset, whatever `PARLEY_REQUIRE_SERVICES` says, since that variable is about
//! PostgreSQL and Redis).

use parley::knowledge::bm25::Bm25;
use parley::knowledge::index::server::ServerSettings;
use parley::knowledge::index::{
    EdgeIndex, IndexBatch, IndexPoint, IndexQuery, ServerIndex, VectorIndex,
};
use uuid::Uuid;

use crate::common;

const DIMS: usize = 8;

fn qdrant_url() -> Option<String> {
    match std::env::var("PARLEY_TEST_QDRANT_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipping: PARLEY_TEST_QDRANT_URL is not set, so the Qdrant server suite does not run"
            );
            None
        }
    }
}

struct Corpus {
    bm25: Bm25,
}

impl Corpus {
    fn new() -> Self {
        Corpus {
            bm25: Bm25::new(50),
        }
    }

    fn point(&self, tenant: &str, tags: &[&str], text: &str, dense: bool) -> IndexPoint {
        IndexPoint {
            id: Uuid::new_v4(),
            tenant: tenant.to_owned(),
            document_id: Uuid::new_v4(),
            version: 1,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            sparse: self.bm25.document(text),
            dense: dense.then(|| direction(text)),
        }
    }

    fn query(&self, tenant: &str, tags: &[&str], text: &str, dense: bool) -> IndexQuery {
        IndexQuery {
            tenant: tenant.to_owned(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            sparse: self.bm25.query(text),
            dense: dense.then(|| direction(text)),
            limit: 10,
        }
    }
}

/// A dense vector that points one way for texts about pools and another for parking.
fn direction(text: &str) -> Vec<f32> {
    let mut v = vec![0.1f32; DIMS];
    if text.contains("pool") {
        v[0] = 1.0;
    }
    if text.contains("parking") {
        v[1] = 1.0;
    }
    v
}

/// The suite every backend passes.
async fn conformance(index: VectorIndex, dense: bool) {
    let corpus = Corpus::new();
    let a_pool = corpus.point(
        "tenant_a",
        &["amenities"],
        "the swimming pool opens at six",
        dense,
    );
    let a_parking = corpus.point(
        "tenant_a",
        &["pricing"],
        "covered parking costs four lakh",
        dense,
    );
    let b_pool = corpus.point(
        "tenant_b",
        &["amenities"],
        "our pool is heated in winter pool",
        dense,
    );
    index
        .apply(IndexBatch {
            upsert: vec![a_pool.clone(), a_parking.clone(), b_pool.clone()],
            delete: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(index.count().await.unwrap(), 3);

    // Tenant filter: tenant_a never sees tenant_b's better-matching chunk.
    let hits = index
        .search(corpus.query("tenant_a", &[], "pool", dense))
        .await
        .unwrap();
    assert_eq!(hits.first().map(|h| h.id), Some(a_pool.id));
    assert!(hits.iter().all(|h| h.id != b_pool.id), "{hits:?}");
    let hits = index
        .search(corpus.query("tenant_b", &[], "pool parking", dense))
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![b_pool.id]
    );
    let hits = index
        .search(corpus.query("tenant_c", &[], "pool", dense))
        .await
        .unwrap();
    assert!(hits.is_empty());

    // Tag filter: any of the given tags.
    let hits = index
        .search(corpus.query("tenant_a", &["pricing"], "pool parking", dense))
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![a_parking.id]
    );
    let hits = index
        .search(corpus.query("tenant_a", &["pricing", "amenities"], "pool parking", dense))
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);

    // Delete.
    index
        .apply(IndexBatch {
            upsert: Vec::new(),
            delete: vec![a_pool.id],
        })
        .await
        .unwrap();
    let hits = index
        .search(corpus.query("tenant_a", &[], "pool", dense))
        .await
        .unwrap();
    assert!(hits.iter().all(|h| h.id != a_pool.id));
    assert_eq!(index.count().await.unwrap(), 2);

    // A rebuild replaces the content; searches see the new content afterwards.
    let mut rebuild = index.begin_rebuild().await.unwrap();
    let fresh = corpus.point("tenant_a", &[], "a new clubhouse with a pool", dense);
    rebuild.add(vec![fresh.clone()]).await.unwrap();
    rebuild.finish().await.unwrap();
    assert_eq!(index.count().await.unwrap(), 1);
    let hits = index
        .search(corpus.query("tenant_a", &[], "pool", dense))
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![fresh.id]
    );

    index.ping().await.unwrap();
    assert!(!index.maintain(u64::MAX).await.unwrap());
}

#[tokio::test]
async fn qdrant_edge_passes_the_index_conformance_suite_with_bm25() {
    let dir = tempfile::tempdir().unwrap();
    let (index, fresh) = EdgeIndex::open(dir.path(), None).unwrap();
    assert!(fresh);
    conformance(VectorIndex::Edge(index), false).await;
}

#[tokio::test]
async fn qdrant_edge_passes_the_index_conformance_suite_with_hybrid_search() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = EdgeIndex::open(dir.path(), Some(DIMS)).unwrap();
    conformance(VectorIndex::Edge(index), true).await;
}

async fn server_index(dense: Option<usize>) -> Option<ServerIndex> {
    let url = qdrant_url()?;
    let settings = ServerSettings {
        url,
        api_key: std::env::var("PARLEY_TEST_QDRANT_API_KEY")
            .ok()
            .map(Into::into),
        collection: common::unique_name("it"),
    };
    let (index, fresh) = ServerIndex::open(&settings, dense).await.unwrap();
    assert!(fresh);
    Some(index)
}

#[tokio::test]
async fn a_qdrant_server_passes_the_index_conformance_suite_with_bm25() {
    let Some(index) = server_index(None).await else {
        return;
    };
    conformance(VectorIndex::Server(index.clone()), false).await;
    index.drop_collection().await.unwrap();
}

#[tokio::test]
async fn a_qdrant_server_passes_the_index_conformance_suite_with_hybrid_search() {
    let Some(index) = server_index(Some(DIMS)).await else {
        return;
    };
    conformance(VectorIndex::Server(index.clone()), true).await;
    index.drop_collection().await.unwrap();
}

#[tokio::test]
async fn qdrant_edge_keeps_flushed_writes_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::new();
    let point = corpus.point("tenant_a", &[], "the gym is on the roof", false);
    {
        let (index, _) = EdgeIndex::open(dir.path(), None).unwrap();
        let index = VectorIndex::Edge(index);
        index
            .apply(IndexBatch {
                upsert: vec![point.clone()],
                delete: Vec::new(),
            })
            .await
            .unwrap();
    }
    let (index, fresh) = EdgeIndex::open(dir.path(), None).unwrap();
    assert!(!fresh);
    let index = VectorIndex::Edge(index);
    assert_eq!(index.count().await.unwrap(), 1);
    let hits = index
        .search(corpus.query("tenant_a", &[], "gym roof", false))
        .await
        .unwrap();
    assert_eq!(hits[0].id, point.id);
}

#[tokio::test]
async fn qdrant_edge_made_for_other_vectors_is_reported_fresh_so_it_gets_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    drop(EdgeIndex::open(dir.path(), None).unwrap());
    let (_, fresh) = EdgeIndex::open(dir.path(), Some(DIMS)).unwrap();
    assert!(fresh);
}

#[tokio::test]
async fn qdrant_edge_indexes_segments_during_a_long_ingestion_so_upserts_stay_fast() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::new();
    let (edge, _) = EdgeIndex::open(dir.path(), None).unwrap();
    let index = VectorIndex::Edge(edge.clone());
    let words = [
        "apartment",
        "tower",
        "garden",
        "payment",
        "booking",
        "clubhouse",
        "parking",
        "visit",
        "possession",
        "loan",
        "balcony",
        "kitchen",
        "lobby",
        "security",
        "pool",
        "school",
    ];
    let mut needle = None;
    for batch in 0..8 {
        let points: Vec<IndexPoint> = (0..1_000)
            .map(|i| {
                let n = batch * 1_000 + i;
                let text: Vec<String> = (0..60)
                    .map(|w| format!("{}{}", words[(n * 7 + w * 13) % words.len()], (n + w) % 97))
                    .chain([format!("marker{n}")])
                    .collect();
                corpus.point("tenant_a", &[], &text.join(" "), false)
            })
            .collect();
        if batch == 3 {
            needle = Some(points[500].id);
        }
        index
            .apply(IndexBatch {
                upsert: points,
                delete: Vec::new(),
            })
            .await
            .unwrap();
    }
    // 8,000 points of 61 terms are about 4 MB of sparse vectors: with the engine's default
    // (10 MB) they would all sit in the one appendable segment.
    assert!(
        edge.segment_count() > 1,
        "the appendable segment was never indexed: {} segment(s)",
        edge.segment_count()
    );
    assert_eq!(index.count().await.unwrap(), 8_000);
    let hits = index
        .search(corpus.query("tenant_a", &[], "marker3500", false))
        .await
        .unwrap();
    assert_eq!(hits.first().map(|h| h.id), needle);
    drop(index);
    drop(edge);
    let (reopened, fresh) = EdgeIndex::open(dir.path(), None).unwrap();
    assert!(!fresh);
    assert_eq!(VectorIndex::Edge(reopened).count().await.unwrap(), 8_000);
}
