//! Dense embeddings from an OpenAI-compatible `/embeddings` endpoint (`PARLEY_EMBEDDING_MODEL`
//! with `OPENAI_API_KEY` and `OPENAI_BASE_URL`), through `async-openai`. Texts are sent in
//! batches; a vector whose length is not the configured `PARLEY_EMBEDDING_DIMENSIONS` is an
//! error, since the index is built for one length.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::{CreateEmbeddingRequestArgs, EmbeddingInput};
use secrecy::{ExposeSecret, SecretString};

/// Texts per request.
const BATCH: usize = 64;

/// How to reach the embedding model.
#[derive(Debug, Clone)]
pub struct EmbeddingSettings {
    pub api_key: SecretString,
    pub base_url: Option<String>,
    pub model: String,
    pub dimensions: usize,
    pub timeout: Duration,
}

/// Why embedding failed. Never carries the texts or the key.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error("the embedding API failed: {0}")]
    Api(String),
    #[error("the embedding API answered {got} vectors for {sent} texts")]
    Count { sent: usize, got: usize },
    #[error(
        "the embedding model answered vectors of {got} dimensions, not the configured {expected} (PARLEY_EMBEDDING_DIMENSIONS)"
    )]
    Dimensions { expected: usize, got: usize },
}

/// The embedding client.
#[derive(Clone)]
pub struct Embedder {
    client: Client<OpenAIConfig>,
    model: String,
    dimensions: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    pub fn new(settings: EmbeddingSettings) -> Self {
        let mut config = OpenAIConfig::new().with_api_key(settings.api_key.expose_secret());
        if let Some(base) = &settings.base_url {
            config = config.with_api_base(base.trim_end_matches('/'));
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .unwrap_or_default();
        let retries = backoff::ExponentialBackoffBuilder::new()
            .with_max_elapsed_time(Some(Duration::from_secs(30)))
            .build();
        let client = Client::with_config(config)
            .with_http_client(http)
            .with_backoff(retries);
        Embedder {
            client,
            model: settings.model,
            dimensions: settings.dimensions,
        }
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// One vector per text, in order.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            let request = CreateEmbeddingRequestArgs::default()
                .model(&self.model)
                .input(EmbeddingInput::StringArray(batch.to_vec()))
                .build()
                .map_err(|e| EmbeddingError::Api(e.to_string()))?;
            let response = self
                .client
                .embeddings()
                .create(request)
                .await
                .map_err(|e| EmbeddingError::Api(short(&e.to_string())))?;
            if response.data.len() != batch.len() {
                return Err(EmbeddingError::Count {
                    sent: batch.len(),
                    got: response.data.len(),
                });
            }
            let mut data = response.data;
            data.sort_by_key(|e| e.index);
            for embedding in data {
                if embedding.embedding.len() != self.dimensions {
                    return Err(EmbeddingError::Dimensions {
                        expected: self.dimensions,
                        got: embedding.embedding.len(),
                    });
                }
                out.push(embedding.embedding);
            }
        }
        Ok(out)
    }

    pub async fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbeddingError> {
        let mut vectors = self.embed(&[text.to_owned()]).await?;
        vectors
            .pop()
            .ok_or(EmbeddingError::Count { sent: 1, got: 0 })
    }
}

/// Vectors as stored in the SQL store: little-endian f32s.
pub fn to_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn short(message: &str) -> String {
    message.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn stored_vectors_read_back_exactly() {
        let v = vec![0.25f32, -1.5, 3.0e-7];
        assert_eq!(super::from_bytes(&super::to_bytes(&v)), v);
    }
}
