//! A Qdrant server (`QDRANT_URL`, optionally `QDRANT_API_KEY`) through `qdrant-client` (gRPC).
//! One collection (`PARLEY_QDRANT_COLLECTION`) holds every tenant's chunks, with `tenant_id` as a
//! tenant payload index. Every write waits until the server has applied it (`wait = true`), and the
//! server keeps its own write-ahead log, so nothing here needs flushing or housekeeping. A rebuild
//! drops and re-creates the collection (start-up only, when it disagrees with the store).

use std::sync::Arc;

use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, Fusion, KeywordIndexParamsBuilder, Modifier,
    NamedVectors, PointId, PointStruct, PointsIdsList, PrefetchQueryBuilder, Query,
    QueryPointsBuilder, SearchParamsBuilder, SparseVectorParamsBuilder, SparseVectorsConfigBuilder,
    UpsertPointsBuilder, Vector, VectorInput, VectorParamsBuilder, VectorsConfigBuilder,
    point_id::PointIdOptions,
};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;

use qdrant_client::Payload;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{ListValue, Value};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{DENSE, IndexBatch, IndexError, IndexHit, IndexPoint, IndexQuery, SPARSE};

const PREFETCH_LIMIT: u64 = 50;
const HNSW_EF: u64 = 256;
const UPSERT_BATCH: usize = 256;

/// Where the server is.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub url: String,
    pub api_key: Option<SecretString>,
    pub collection: String,
}

/// The Qdrant-server index.
#[derive(Clone)]
pub struct ServerIndex {
    client: Arc<Qdrant>,
    collection: String,
    dense_dimensions: Option<usize>,
    writer: Arc<Mutex<()>>,
}

impl std::fmt::Debug for ServerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIndex")
            .field("collection", &self.collection)
            .finish_non_exhaustive()
    }
}

impl ServerIndex {
    /// Connects and creates the collection when absent. The second value is true when the
    /// collection was just created (so it must be filled from the store).
    pub async fn open(
        settings: &ServerSettings,
        dense_dimensions: Option<usize>,
    ) -> Result<(Self, bool), IndexError> {
        let mut builder =
            Qdrant::from_url(&settings.url).timeout(std::time::Duration::from_secs(30));
        if let Some(key) = &settings.api_key {
            builder = builder.api_key(key.expose_secret().to_owned());
        }
        let client = builder.build().map_err(IndexError::backend)?;
        let index = ServerIndex {
            client: Arc::new(client),
            collection: settings.collection.clone(),
            dense_dimensions,
            writer: Arc::new(Mutex::new(())),
        };
        let exists = index
            .client
            .collection_exists(&index.collection)
            .await
            .map_err(IndexError::backend)?;
        if !exists {
            index.create_collection().await?;
        }
        Ok((index, !exists))
    }

    async fn create_collection(&self) -> Result<(), IndexError> {
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(
            SPARSE,
            SparseVectorParamsBuilder::default().modifier(Modifier::Idf as i32),
        );
        let mut create =
            CreateCollectionBuilder::new(&self.collection).sparse_vectors_config(sparse);
        if let Some(dims) = self.dense_dimensions {
            let mut dense = VectorsConfigBuilder::default();
            dense.add_named_vector_params(
                DENSE,
                VectorParamsBuilder::new(dims as u64, Distance::Cosine),
            );
            create = create.vectors_config(dense);
        }
        self.client
            .create_collection(create)
            .await
            .map_err(IndexError::backend)?;
        for (field, is_tenant) in [("tenant_id", true), ("document_id", false), ("tags", false)] {
            self.client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(
                        &self.collection,
                        field,
                        FieldType::Keyword,
                    )
                    .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(is_tenant))
                    .wait(true),
                )
                .await
                .map_err(IndexError::backend)?;
        }
        Ok(())
    }

    pub async fn apply(&self, batch: IndexBatch) -> Result<(), IndexError> {
        let _writer = self.writer.lock().await;
        self.upsert(batch.upsert).await?;
        if !batch.delete.is_empty() {
            let ids: Vec<PointId> = batch
                .delete
                .iter()
                .map(|id| id.to_string().into())
                .collect();
            self.client
                .delete_points(
                    DeletePointsBuilder::new(&self.collection)
                        .points(PointsIdsList { ids })
                        .wait(true),
                )
                .await
                .map_err(IndexError::backend)?;
        }
        Ok(())
    }

    async fn upsert(&self, points: Vec<IndexPoint>) -> Result<(), IndexError> {
        let mut points = points.into_iter().peekable();
        while points.peek().is_some() {
            let batch: Vec<PointStruct> = points
                .by_ref()
                .take(UPSERT_BATCH)
                .map(point_struct)
                .collect::<Result<_, _>>()?;
            self.client
                .upsert_points(UpsertPointsBuilder::new(&self.collection, batch).wait(true))
                .await
                .map_err(IndexError::backend)?;
        }
        Ok(())
    }

    pub async fn search(&self, query: IndexQuery) -> Result<Vec<IndexHit>, IndexError> {
        let mut conditions = vec![Condition::matches("tenant_id", query.tenant.clone())];
        if !query.tags.is_empty() {
            conditions.push(Condition::matches("tags", query.tags.clone()));
        }
        let filter = Filter::must(conditions);
        let sparse = Query::new_nearest(VectorInput::new_sparse(
            query.sparse.indices.clone(),
            query.sparse.values.clone(),
        ));
        let mut request = QueryPointsBuilder::new(&self.collection)
            .filter(filter)
            .limit(query.limit as u64)
            .with_payload(false);
        match (&query.dense, self.dense_dimensions) {
            (Some(dense), Some(_)) => {
                let prefetch_limit = PREFETCH_LIMIT.max(query.limit as u64);
                request = request
                    .add_prefetch(
                        PrefetchQueryBuilder::default()
                            .query(sparse)
                            .using(SPARSE)
                            .limit(prefetch_limit),
                    )
                    .add_prefetch(
                        PrefetchQueryBuilder::default()
                            .query(Query::new_nearest(VectorInput::new_dense(dense.clone())))
                            .using(DENSE)
                            .params(SearchParamsBuilder::default().hnsw_ef(HNSW_EF))
                            .limit(prefetch_limit),
                    )
                    .query(Query::new_fusion(Fusion::Rrf));
            }
            _ => request = request.query(sparse).using(SPARSE),
        }
        let response = self
            .client
            .query(request)
            .await
            .map_err(IndexError::backend)?;
        Ok(response
            .result
            .into_iter()
            .filter_map(|point| {
                let id = match point.id?.point_id_options? {
                    PointIdOptions::Uuid(id) => uuid::Uuid::parse_str(&id).ok()?,
                    PointIdOptions::Num(_) => return None,
                };
                Some(IndexHit {
                    id,
                    score: point.score,
                })
            })
            .collect())
    }

    pub async fn count(&self) -> Result<u64, IndexError> {
        let response = self
            .client
            .count(CountPointsBuilder::new(&self.collection).exact(true))
            .await
            .map_err(IndexError::backend)?;
        Ok(response.result.map(|r| r.count).unwrap_or(0))
    }

    pub async fn ping(&self) -> Result<(), IndexError> {
        self.client
            .health_check()
            .await
            .map(|_| ())
            .map_err(IndexError::backend)
    }

    pub async fn begin_rebuild(&self) -> Result<ServerRebuild, IndexError> {
        let writer = self.writer.clone().lock_owned().await;
        self.client
            .delete_collection(&self.collection)
            .await
            .map_err(IndexError::backend)?;
        self.create_collection().await?;
        Ok(ServerRebuild {
            index: self.clone(),
            _writer: writer,
        })
    }

    /// Drops the collection (tests clean up after themselves with this).
    pub async fn drop_collection(&self) -> Result<(), IndexError> {
        self.client
            .delete_collection(&self.collection)
            .await
            .map(|_| ())
            .map_err(IndexError::backend)
    }
}

/// Re-filling the re-created collection.
pub struct ServerRebuild {
    index: ServerIndex,
    _writer: OwnedMutexGuard<()>,
}

impl ServerRebuild {
    pub async fn add(&mut self, points: Vec<IndexPoint>) -> Result<(), IndexError> {
        self.index.upsert(points).await
    }

    pub async fn finish(self) -> Result<(), IndexError> {
        Ok(())
    }
}

fn point_struct(point: IndexPoint) -> Result<PointStruct, IndexError> {
    let mut vectors = NamedVectors::default().add_vector(
        SPARSE,
        Vector::new_sparse(point.sparse.indices, point.sparse.values),
    );
    if let Some(dense) = point.dense {
        vectors = vectors.add_vector(DENSE, Vector::new_dense(dense));
    }
    let tags = Value {
        kind: Some(Kind::ListValue(ListValue {
            values: point.tags.into_iter().map(Value::from).collect(),
        })),
    };
    let payload = Payload::from(HashMap::from([
        ("tenant_id", Value::from(point.tenant)),
        ("document_id", Value::from(point.document_id.to_string())),
        ("version", Value::from(point.version)),
        ("tags", tags),
    ]));
    Ok(PointStruct::new(point.id.to_string(), vectors, payload))
}
