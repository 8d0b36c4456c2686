//! Search, for the HTTP API and the agents: BM25 (and, with an embedding model, dense vectors
//! fused by reciprocal rank) over one tenant's chunks, optionally limited to tags. The index
//! proposes candidates; the store keeps only chunks of live document versions, which is what
//! makes a re-upload atomic and a deletion immediate for searches.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::index::IndexQuery;
use super::{Knowledge, KnowledgeError, store};
use crate::domain::TenantId;

/// The longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 2_000;
/// The most results one search returns.
pub const MAX_LIMIT: usize = 50;

/// A retrieved passage.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    pub chunk_id: Uuid,
    pub text: String,
    /// BM25 score, or the fused (RRF) score in hybrid search: higher is better.
    pub score: f32,
    pub document_id: Uuid,
    pub document_name: String,
    /// The heading path, `Title > Section`, when the document has headings.
    pub section: Option<String>,
    /// The 1-based page, for PDFs.
    pub page: Option<u32>,
}

impl Knowledge {
    /// The `limit` passages of `tenant`'s knowledge that best match `query`; with `tags`, only
    /// documents carrying at least one of them.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant, limit))]
    pub async fn search(
        &self,
        tenant: &TenantId,
        query: &str,
        tags: &[String],
        limit: usize,
    ) -> Result<Vec<Passage>, KnowledgeError> {
        let query = query.trim();
        if query.is_empty() {
            return Err(KnowledgeError::BadRequest("the query is empty".into()));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(KnowledgeError::BadRequest(format!(
                "the query is longer than {MAX_QUERY_CHARS} characters"
            )));
        }
        let limit = limit.clamp(1, MAX_LIMIT);
        let sparse = self.inner.bm25.query(query);
        let dense = match &self.inner.embedder {
            Some(embedder) => match embedder.embed_one(query).await {
                Ok(vector) => Some(vector),
                Err(err) => {
                    tracing::warn!(tenant.id = %tenant, error = %err, "query embedding failed; searching with BM25 only");
                    None
                }
            },
            None => None,
        };
        if sparse.indices.is_empty() && dense.is_none() {
            return Ok(Vec::new());
        }
        // Room for candidates of versions being replaced, which the store filters out.
        let query = IndexQuery {
            tenant: tenant.as_str().to_owned(),
            tags: tags.to_vec(),
            sparse,
            dense,
            limit: limit * 3 + 10,
        };
        let mut attempt = 0;
        let (hits, mut by_id) = loop {
            attempt += 1;
            let hits = self.inner.index.search(query.clone()).await?;
            let ids: Vec<Uuid> = hits.iter().map(|h| h.id).collect();
            let rows = store::passages(&self.inner.store, tenant.as_str(), &ids).await?;
            // A version published between the two reads can leave only stale candidates: ask
            // the index once more, which by then holds the new version's points.
            if attempt == 1 && rows.len() < limit.min(hits.len()) {
                continue;
            }
            let by_id: HashMap<Uuid, store::PassageRow> =
                rows.into_iter().map(|r| (r.chunk_id, r)).collect();
            break (hits, by_id);
        };
        let mut seen = HashSet::new();
        let mut passages = Vec::with_capacity(limit);
        for hit in hits {
            let Some(row) = by_id.remove(&hit.id) else {
                continue;
            };
            if !seen.insert(row.content_hash.clone()) {
                continue;
            }
            passages.push(Passage {
                chunk_id: row.chunk_id,
                text: row.text,
                score: hit.score,
                document_id: row.document_id,
                document_name: row.document_name,
                section: row.section,
                page: row.page.map(|p| p as u32),
            });
            if passages.len() == limit {
                break;
            }
        }
        Ok(passages)
    }
}
