//! Ingestion jobs. An upload (HTTP, `parley ingest`, or the knowledge folder at first start)
//! becomes a job recorded in the store; its files are ingested one after another, and the job
//! record says how many files and chunks are done and why any file failed. A failing file never
//! stops the others.
//!
//! One file: parse and chunk (on a blocking thread), embed when a model is configured, store
//! the chunks under a new version, index them (durably), then publish the version in one
//! statement and remove the replaced chunks. Re-uploading identical bytes with the same tags
//! changes nothing.

use std::path::PathBuf;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::chunk::{Chunk, chunk_document};
use super::index::{IndexBatch, IndexPoint};
use super::parse::{self, Format, ParseError};
use super::store::{self, JobFile, JobRecord, NewChunk, Publication};
use super::{Knowledge, KnowledgeError, now_ms};
use crate::domain::TenantId;

/// Chunks stored and indexed per step (progress is saved after each).
const STEP: usize = 1_000;

/// A file to ingest.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The document's name (a file name; a re-upload with the same name replaces it).
    pub name: String,
    pub bytes: Bytes,
}

/// How one file went.
struct FileOutcome {
    document_id: Uuid,
    chunks: u64,
    unchanged: bool,
}

struct FileFailure {
    document_id: Option<Uuid>,
    reason: String,
}

/// The errors a file's ingestion can stop on, each reported as the file's reason.
macro_rules! file_failure_from {
    ($($error:ty),*) => {$(
        impl From<$error> for FileFailure {
            fn from(e: $error) -> Self {
                FileFailure {
                    document_id: None,
                    reason: e.to_string(),
                }
            }
        }
    )*};
}
file_failure_from!(ParseError, crate::store::StoreError, String);

/// Reads files, and the files of folders (recursively, skipping hidden ones), in name order.
pub fn read_paths(paths: &[PathBuf]) -> std::io::Result<Vec<Upload>> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path)?;
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("unnamed")
                .to_owned();
            Ok(Upload {
                name,
                bytes: Bytes::from(bytes),
            })
        })
        .collect()
}

fn collect(path: &std::path::Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'));
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?.path();
            let hidden_child = entry
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if !hidden_child {
                collect(&entry, out)?;
            }
        }
    } else if !hidden || out.is_empty() {
        if !path.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", path.display()),
            ));
        }
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Checks tags: lowercase letters, digits, `-` and `_`, at most 64 characters, at most 32 tags.
pub fn parse_tags<'a>(
    raw: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, KnowledgeError> {
    let mut tags: Vec<String> = Vec::new();
    for piece in raw.into_iter().flat_map(|r| r.split(',')) {
        let tag = piece.trim().to_ascii_lowercase();
        if tag.is_empty() {
            continue;
        }
        let valid = tag.len() <= 64
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(KnowledgeError::BadRequest(format!(
                "tag `{tag}` is not valid: use letters, digits, - and _ (at most 64)"
            )));
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.len() > 32 {
        return Err(KnowledgeError::BadRequest("at most 32 tags".into()));
    }
    tags.sort();
    Ok(tags)
}

/// A document name from an uploaded file name: the last path component, trimmed.
pub fn document_name(raw: &str) -> Option<String> {
    let name = raw.rsplit(['/', '\\']).next().unwrap_or(raw).trim();
    (!name.is_empty() && name.len() <= 255 && !name.chars().any(char::is_control))
        .then(|| name.to_owned())
}

impl Knowledge {
    /// Records a job for `uploads` (all with `tags`) and runs it in the background.
    pub async fn start_job(
        &self,
        tenant: &TenantId,
        uploads: Vec<Upload>,
        tags: Vec<String>,
    ) -> Result<Uuid, KnowledgeError> {
        let per_file = vec![tags; uploads.len()];
        self.start_job_with_tags(tenant, uploads, per_file).await
    }

    /// Like [`Knowledge::start_job`], with tags per file.
    pub async fn start_job_with_tags(
        &self,
        tenant: &TenantId,
        uploads: Vec<Upload>,
        tags: Vec<Vec<String>>,
    ) -> Result<Uuid, KnowledgeError> {
        let job = self.create_job(tenant, &uploads).await?;
        let id = job.id;
        let this = self.clone();
        tokio::spawn(async move {
            this.run_job(job, uploads, tags, &mut |_| {}).await;
        });
        Ok(id)
    }

    /// Runs a job to its end in the caller's task, reporting progress after each step
    /// (`parley ingest` draws its progress bar from it).
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        uploads: Vec<Upload>,
        tags: Vec<String>,
        progress: &mut (dyn FnMut(&JobRecord) + Send),
    ) -> Result<JobRecord, KnowledgeError> {
        let job = self.create_job(tenant, &uploads).await?;
        let per_file = vec![tags; uploads.len()];
        Ok(self.run_job(job, uploads, per_file, progress).await)
    }

    async fn create_job(
        &self,
        tenant: &TenantId,
        uploads: &[Upload],
    ) -> Result<JobRecord, KnowledgeError> {
        if uploads.is_empty() {
            return Err(KnowledgeError::BadRequest("no files to ingest".into()));
        }
        let now = now_ms();
        let job = JobRecord {
            id: Uuid::now_v7(),
            tenant: tenant.as_str().to_owned(),
            status: "running".into(),
            files_total: uploads.len() as i64,
            files_done: 0,
            chunks_done: 0,
            files: uploads
                .iter()
                .map(|u| JobFile {
                    name: u.name.clone(),
                    status: "pending".into(),
                    chunks: 0,
                    document_id: None,
                    error: None,
                })
                .collect(),
            created_at: now,
            updated_at: now,
        };
        store::create_job(&self.inner.store, &job).await?;
        Ok(job)
    }

    #[tracing::instrument(skip_all, fields(job.id = %job.id, tenant.id = %job.tenant, files = uploads.len()))]
    async fn run_job(
        &self,
        mut job: JobRecord,
        uploads: Vec<Upload>,
        tags: Vec<Vec<String>>,
        progress: &mut (dyn FnMut(&JobRecord) + Send),
    ) -> JobRecord {
        let _lane = self.inner.lane.lock().await;
        let started = std::time::Instant::now();
        for (i, (upload, tags)) in uploads.into_iter().zip(tags).enumerate() {
            job.files[i].status = "processing".into();
            self.save_job(&mut job, progress).await;
            let tenant = job.tenant.clone();
            match self
                .ingest_file(&tenant, &upload, &tags, &mut job, i, progress)
                .await
            {
                Ok(outcome) => {
                    let file = &mut job.files[i];
                    file.status = if outcome.unchanged {
                        "unchanged"
                    } else {
                        "done"
                    }
                    .into();
                    file.chunks = outcome.chunks;
                    file.document_id = Some(outcome.document_id);
                }
                Err(failure) => {
                    tracing::info!(file = i, reason = %failure.reason, "a knowledge file was rejected");
                    let file = &mut job.files[i];
                    file.status = "failed".into();
                    file.document_id = failure.document_id;
                    file.error = Some(failure.reason);
                }
            }
            job.files_done += 1;
            self.save_job(&mut job, progress).await;
        }
        job.status = "done".into();
        self.save_job(&mut job, progress).await;
        tracing::info!(
            chunks = job.chunks_done,
            duration_ms = started.elapsed().as_millis() as u64,
            "knowledge job done"
        );
        drop(_lane);
        self.after_job().await;
        job
    }

    /// Index housekeeping after a job (off the request path: jobs run in the background).
    async fn after_job(&self) {
        match self
            .inner
            .index
            .maintain(self.inner.settings.wal_limit_bytes)
            .await
        {
            Ok(true) => {
                tracing::info!(
                    "the knowledge index's write-ahead log is over its limit; rebuilding"
                );
                if let Err(err) = self.rebuild_index().await {
                    tracing::error!(error = %err, "rebuilding the knowledge index failed");
                }
            }
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "knowledge index housekeeping failed"),
        }
    }

    async fn save_job(&self, job: &mut JobRecord, progress: &mut (dyn FnMut(&JobRecord) + Send)) {
        job.updated_at = now_ms();
        if let Err(err) = store::update_job(&self.inner.store, job).await {
            tracing::warn!(error = %err, "could not save knowledge job progress");
        }
        progress(job);
    }

    async fn ingest_file(
        &self,
        tenant: &str,
        upload: &Upload,
        tags: &[String],
        job: &mut JobRecord,
        file_index: usize,
        progress: &mut (dyn FnMut(&JobRecord) + Send),
    ) -> Result<FileOutcome, FileFailure> {
        let store = &self.inner.store;
        let format = Format::from_name(&upload.name).ok_or(ParseError::Unsupported)?;
        let claim =
            store::claim_version(store, tenant, &upload.name, format.media_type(), now_ms())
                .await?;
        let document_id = claim.document_id;
        let content_hash = hex::encode(Sha256::digest(&upload.bytes));
        if claim.live_version > 0
            && claim.live_hash.as_deref() == Some(content_hash.as_str())
            && claim.live_tags == tags
        {
            return Ok(FileOutcome {
                document_id,
                chunks: 0,
                unchanged: true,
            });
        }
        let result = self
            .write_version(
                tenant,
                upload,
                tags,
                format,
                &claim,
                &content_hash,
                job,
                file_index,
                progress,
            )
            .await;
        match result {
            Ok(chunks) => Ok(FileOutcome {
                document_id,
                chunks,
                unchanged: false,
            }),
            Err(reason) => {
                match store::fail_version(store, document_id, claim.version, &reason, now_ms())
                    .await
                {
                    Ok(removed) => self.remove_points(removed).await,
                    Err(err) => {
                        tracing::warn!(error = %err, "could not record a failed knowledge file")
                    }
                }
                Err(FileFailure {
                    document_id: Some(document_id),
                    reason,
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_version(
        &self,
        tenant: &str,
        upload: &Upload,
        tags: &[String],
        format: Format,
        claim: &store::ClaimedVersion,
        content_hash: &str,
        job: &mut JobRecord,
        file_index: usize,
        progress: &mut (dyn FnMut(&JobRecord) + Send),
    ) -> Result<u64, String> {
        let settings = self.inner.settings.clone();
        let bytes = upload.bytes.clone();
        let name = upload.name.clone();
        let chunks: Vec<Chunk> = tokio::task::spawn_blocking(move || {
            let document = parse::parse(&name, &bytes, settings.max_file_bytes)?;
            Ok::<_, ParseError>(chunk_document(&document, settings.chunk))
        })
        .await
        .map_err(|_| "the file could not be processed".to_owned())?
        .map_err(|e| e.to_string())?;
        if chunks.is_empty() {
            return Err(ParseError::NoText.to_string());
        }
        let total = chunks.len() as u64;
        for step in chunks.chunks(STEP) {
            let dense = match &self.inner.embedder {
                Some(embedder) => {
                    let texts: Vec<String> = step.iter().map(Chunk::indexed_text).collect();
                    Some(embedder.embed(&texts).await.map_err(|e| e.to_string())?)
                }
                None => None,
            };
            let new: Vec<NewChunk> = step
                .iter()
                .enumerate()
                .map(|(i, chunk)| NewChunk {
                    id: chunk_id(claim.document_id, claim.version, &chunk.content_hash),
                    chunk: chunk.clone(),
                    embedding: dense.as_ref().map(|d| d[i].clone()),
                })
                .collect();
            // The rows and the BM25 vectors are independent: the vectors are computed on a
            // blocking thread while the rows are written.
            let (stored, points) = tokio::join!(
                store::insert_chunks(
                    &self.inner.store,
                    tenant,
                    claim.document_id,
                    claim.version,
                    &new,
                    now_ms(),
                ),
                self.points(tenant, claim, tags, new.clone()),
            );
            stored.map_err(|e| format!("the chunks could not be stored: {e}"))?;
            let points = points?;
            self.inner
                .index
                .apply(IndexBatch {
                    upsert: points,
                    delete: Vec::new(),
                })
                .await
                .map_err(|e| format!("the chunks could not be indexed: {e}"))?;
            job.chunks_done += step.len() as i64;
            job.files[file_index].chunks += step.len() as u64;
            self.save_job(job, progress).await;
        }
        let publication = Publication {
            document_id: claim.document_id,
            version: claim.version,
            tags,
            media_type: format.media_type(),
            content_hash,
            chunks: total as i64,
        };
        let (published, removed) =
            store::publish_version(&self.inner.store, &publication, now_ms())
                .await
                .map_err(|e| format!("the new version could not be published: {e}"))?;
        self.remove_points(removed).await;
        if !published {
            return Err("a newer upload of this document was published first".into());
        }
        Ok(total)
    }

    async fn points(
        &self,
        tenant: &str,
        claim: &store::ClaimedVersion,
        tags: &[String],
        chunks: Vec<NewChunk>,
    ) -> Result<Vec<IndexPoint>, String> {
        let this = self.clone();
        let tenant = tenant.to_owned();
        let tags = tags.to_vec();
        let (document_id, version) = (claim.document_id, claim.version);
        tokio::task::spawn_blocking(move || {
            chunks
                .into_iter()
                .map(|new| IndexPoint {
                    id: new.id,
                    tenant: tenant.clone(),
                    document_id,
                    version,
                    tags: tags.clone(),
                    sparse: this.inner.bm25.document(&new.chunk.indexed_text()),
                    dense: new.embedding,
                })
                .collect()
        })
        .await
        .map_err(|_| "the chunks could not be embedded".to_owned())
    }
}

/// Chunk ids are derived from the document, version and content, so a retried step writes the
/// same rows and points.
fn chunk_id(document_id: Uuid, version: i64, content_hash: &str) -> Uuid {
    Uuid::new_v5(&document_id, format!("{version}:{content_hash}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_normalised_and_checked() {
        assert_eq!(
            parse_tags(["Pricing, faq", "faq"]).unwrap(),
            vec!["faq".to_owned(), "pricing".to_owned()]
        );
        assert!(parse_tags(["no spaces allowed"]).is_err());
    }

    #[test]
    fn document_names_are_the_last_path_component() {
        assert_eq!(
            document_name("C:\\docs\\price.pdf").as_deref(),
            Some("price.pdf")
        );
        assert_eq!(document_name("a/b/faq.csv").as_deref(), Some("faq.csv"));
        assert_eq!(document_name("  "), None);
    }
}
