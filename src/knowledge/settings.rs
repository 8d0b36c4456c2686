//! Knowledge-base settings: the `[knowledge]` table of `parley.toml`, overridden by environment
//! variables. `Config` holds one [`KnowledgeSettings`].

use secrecy::SecretString;
use serde::Deserialize;

use super::chunk::ChunkSettings;
use super::index::server::ServerSettings;

/// Validated knowledge settings.
#[derive(Debug, Clone)]
pub struct KnowledgeSettings {
    /// `QDRANT_URL` (+ `QDRANT_API_KEY`, `PARLEY_QDRANT_COLLECTION`): a Qdrant server instead of
    /// the embedded Qdrant Edge index.
    pub qdrant: Option<ServerSettings>,
    /// `PARLEY_KNOWLEDGE_AUTOLOAD`: load the knowledge folder at first start (default true).
    pub autoload: bool,
    /// `PARLEY_CHUNK_TOKENS` and `PARLEY_CHUNK_OVERLAP`.
    pub chunk: ChunkSettings,
    /// `PARLEY_KNOWLEDGE_MAX_FILE_BYTES`: the largest accepted file (default 20 MiB).
    pub max_file_bytes: usize,
    /// `PARLEY_KNOWLEDGE_MAX_UPLOAD_BYTES`: the largest upload request (default 100 MiB).
    pub max_upload_bytes: usize,
    /// `PARLEY_EMBEDDING_DIMENSIONS`: the embedding model's vector length (default 1536).
    pub embedding_dimensions: usize,
    /// `PARLEY_INDEX_WAL_LIMIT_BYTES`: rebuild the Qdrant Edge index when its write-ahead log
    /// passes this size (default 256 MiB).
    pub wal_limit_bytes: u64,
}

/// The `[knowledge]` table of `parley.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeFile {
    qdrant_url: Option<String>,
    qdrant_api_key: Option<SecretString>,
    qdrant_collection: Option<String>,
    autoload: Option<bool>,
    chunk_tokens: Option<usize>,
    chunk_overlap: Option<usize>,
    max_file_bytes: Option<usize>,
    max_upload_bytes: Option<usize>,
    embedding_dimensions: Option<usize>,
    wal_limit_bytes: Option<u64>,
}

impl KnowledgeSettings {
    /// Merges the file table with the environment (`var` returns a non-empty variable). The error
    /// is one sentence naming the setting.
    pub fn from_sources(
        var: &dyn Fn(&str) -> Option<String>,
        file: Option<KnowledgeFile>,
    ) -> Result<Self, String> {
        let file = file.unwrap_or_default();
        let number =
            |name: &str, from_file: Option<usize>, default: usize| -> Result<usize, String> {
                match var(name) {
                    Some(raw) => raw
                        .trim()
                        .parse()
                        .map_err(|_| format!("{name} `{raw}` is not a valid non-negative number")),
                    None => Ok(from_file.unwrap_or(default)),
                }
            };
        let qdrant = match var("QDRANT_URL").or(file.qdrant_url) {
            Some(url) => {
                match url::Url::parse(&url) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    _ => {
                        return Err(format!(
                            "QDRANT_URL `{url}` is not an http(s) URL (the gRPC port, e.g. http://localhost:6334)"
                        ));
                    }
                }
                Some(ServerSettings {
                    url,
                    api_key: var("QDRANT_API_KEY")
                        .map(SecretString::from)
                        .or(file.qdrant_api_key),
                    collection: var("PARLEY_QDRANT_COLLECTION")
                        .or(file.qdrant_collection)
                        .unwrap_or_else(|| "parley_knowledge".to_owned()),
                })
            }
            None => None,
        };
        let autoload = match var("PARLEY_KNOWLEDGE_AUTOLOAD") {
            Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(format!(
                        "PARLEY_KNOWLEDGE_AUTOLOAD `{raw}` is not a boolean; use true or false"
                    ));
                }
            },
            None => file.autoload.unwrap_or(true),
        };
        let chunk = ChunkSettings {
            target_tokens: number("PARLEY_CHUNK_TOKENS", file.chunk_tokens, 200)?,
            overlap_tokens: number("PARLEY_CHUNK_OVERLAP", file.chunk_overlap, 30)?,
        };
        if chunk.target_tokens < 16 || chunk.overlap_tokens >= chunk.target_tokens / 2 {
            return Err(
                "PARLEY_CHUNK_TOKENS must be at least 16 and PARLEY_CHUNK_OVERLAP below half of it"
                    .to_owned(),
            );
        }
        let wal_limit_bytes = match var("PARLEY_INDEX_WAL_LIMIT_BYTES") {
            Some(raw) => raw.trim().parse().map_err(|_| {
                format!("PARLEY_INDEX_WAL_LIMIT_BYTES `{raw}` is not a valid non-negative number")
            })?,
            None => file.wal_limit_bytes.unwrap_or(256 * 1024 * 1024),
        };
        let settings = KnowledgeSettings {
            qdrant,
            autoload,
            chunk,
            max_file_bytes: number(
                "PARLEY_KNOWLEDGE_MAX_FILE_BYTES",
                file.max_file_bytes,
                20 * 1024 * 1024,
            )?,
            max_upload_bytes: number(
                "PARLEY_KNOWLEDGE_MAX_UPLOAD_BYTES",
                file.max_upload_bytes,
                100 * 1024 * 1024,
            )?,
            embedding_dimensions: number(
                "PARLEY_EMBEDDING_DIMENSIONS",
                file.embedding_dimensions,
                1536,
            )?,
            wal_limit_bytes,
        };
        if settings.embedding_dimensions == 0 {
            return Err("PARLEY_EMBEDDING_DIMENSIONS must be at least 1".to_owned());
        }
        Ok(settings)
    }
}

impl Default for KnowledgeSettings {
    fn default() -> Self {
        Self::from_sources(&|_| None, None).expect("the defaults are valid")
    }
}
