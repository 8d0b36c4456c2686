//! Intent classification through an OpenAI-compatible chat completions API (OpenAI, Azure's
//! `/openai/v1` endpoint, Groq, Gemini's OpenAI endpoint, Ollama, vLLM), using `async-openai`
//! with a custom base URL.
//!
//! The request asks for a JSON object through `response_format: json_schema`: `intent` (one of
//! the catalogue's names or `out_of_scope`), `confidence` (0..1) and `entities` (an object).
//! The answer is validated: anything else is an [`LlmError`], never a guess. A call is a single
//! attempt bounded by the configured timeout (async-openai's own rate-limit retries are turned
//! off): a message waiting on a retry loop is worse than the offline answer the detector falls
//! back to.
//!
//! When the model times out, rate-limits us, cannot be reached or answers with a server error,
//! the client stops asking it for a cool-down (`PARLEY_LLM_COOLDOWN_MS`, default 30 s): every
//! call in that time fails at once with [`LlmError::Unavailable`], so each message falls back to
//! the offline brain promptly instead of each model call of each message waiting out its own
//! timeout. (Without it, a message whose intent call and answer call both time out waited twice
//! the timeout, 16 s by default, and every message behind it as long.) The first call after the
//! cool-down tries the model again. A malformed answer does not trip it: the model is up.
//!
//! Neither the message text nor the key ever reaches a log line or an error message.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessageArgs,
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs, ResponseFormat,
    ResponseFormatJsonSchema,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::catalog::IntentCatalog;
use super::prediction::{IntentPrediction, PredictionSource};

/// The `intent` value with which the model declines every catalogue intent.
pub const OUT_OF_SCOPE: &str = "out_of_scope";

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
const SCHEMA_NAME: &str = "intent_classification";

/// How to reach the model.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    pub api_key: SecretString,
    /// The API root, e.g. `http://localhost:11434/v1` for Ollama; OpenAI's when `None`.
    pub base_url: Option<String>,
    pub chat_model: String,
    /// Upper bound on one classification call, connection included.
    pub timeout: std::time::Duration,
}

/// Why an LLM classification failed. Messages carry no message text, key or model output.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the language model did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the language model API is rate limiting us")]
    RateLimited,
    #[error("the language model API refused the request ({0})")]
    Api(String),
    #[error("the language model API could not be reached: {0}")]
    Transport(String),
    #[error("the language model's answer does not follow the schema: {0}")]
    Malformed(&'static str),
    #[error("the language model answered an intent that is not in the catalogue")]
    UnknownIntent,
    #[error("the language model failed recently; not asked again until its cool-down ends")]
    Unavailable,
}

impl LlmError {
    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Timeout(_) => "timeout",
            LlmError::RateLimited => "rate_limited",
            LlmError::Api(_) => "api",
            LlmError::Transport(_) => "transport",
            LlmError::Malformed(_) => "malformed",
            LlmError::UnknownIntent => "unknown_intent",
            LlmError::Unavailable => "unavailable",
        }
    }

    /// Whether the failure says the model is down or overloaded (and should be left alone for
    /// a while), rather than that one answer was wrong.
    fn model_is_down(&self) -> bool {
        match self {
            LlmError::Timeout(_) | LlmError::RateLimited | LlmError::Transport(_) => true,
            LlmError::Api(kind) => kind.contains("server_error") || kind.is_empty(),
            _ => false,
        }
    }

    fn from_openai(e: OpenAIError, timeout: Duration) -> Self {
        match e {
            OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout(timeout),
            OpenAIError::Reqwest(e) => LlmError::Transport(e.without_url().to_string()),
            OpenAIError::ApiError(api)
                if api.code.as_deref() == Some("rate_limit_exceeded")
                    || api.r#type.as_deref() == Some("insufficient_quota") =>
            {
                LlmError::RateLimited
            }
            OpenAIError::ApiError(api) => LlmError::Api(
                [api.r#type, api.code]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("/"),
            ),
            OpenAIError::JSONDeserialize(..) => {
                LlmError::Malformed("the response is not a chat completion")
            }
            OpenAIError::InvalidArgument(_) => LlmError::Api("invalid request".into()),
            _ => LlmError::Transport("unexpected client error".into()),
        }
    }
}

/// The default cool-down after the model failed (see the module documentation).
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);

/// A chat-completions client for intent classification. Clones share the cool-down state.
#[derive(Clone)]
pub struct LlmClient {
    client: Client<OpenAIConfig>,
    model: String,
    base_url: String,
    timeout: Duration,
    cooldown: Duration,
    /// Until when the model is not asked (it failed in a way that says it is down).
    resting_until: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Answer {
    intent: String,
    confidence: f64,
    #[serde(default = "empty_object")]
    entities: Value,
}

fn empty_object() -> Value {
    json!({})
}

impl LlmClient {
    pub fn new(settings: LlmSettings) -> Self {
        let base_url = settings
            .base_url
            .as_deref()
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/')
            .to_string();
        let config = OpenAIConfig::new()
            .with_api_base(&base_url)
            .with_api_key(settings.api_key.expose_secret());
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .unwrap_or_default();
        // One attempt only: the detector's fallback is the retry policy.
        let no_retry = backoff::ExponentialBackoffBuilder::new()
            .with_max_elapsed_time(Some(Duration::ZERO))
            .build();
        let client = Client::with_config(config)
            .with_http_client(http)
            .with_backoff(no_retry);
        Self {
            client,
            model: settings.chat_model,
            base_url,
            timeout: settings.timeout,
            cooldown: DEFAULT_COOLDOWN,
            resting_until: Default::default(),
        }
    }

    /// Sets how long the model is left alone after it failed (zero: always ask).
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Whether the model is resting after a failure.
    fn resting(&self) -> bool {
        let mut until = self
            .resting_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *until {
            Some(t) if std::time::Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// Records how a call went: a failure that says the model is down starts its cool-down.
    fn note<T>(&self, result: &Result<T, LlmError>) {
        let Err(error) = result else { return };
        if !error.model_is_down() || self.cooldown.is_zero() {
            return;
        }
        let mut until = self
            .resting_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if until.is_none() {
            tracing::warn!(
                error.kind = error.kind(),
                cooldown_ms = self.cooldown.as_millis() as u64,
                "the language model failed; the offline brain answers until the cool-down ends"
            );
        }
        *until = Some(std::time::Instant::now() + self.cooldown);
    }

    /// The model name sent with each request.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Asks the model for the intent of `text` among the catalogue's intents.
    pub async fn classify_intent(
        &self,
        text: &str,
        catalog: &IntentCatalog,
    ) -> Result<IntentPrediction, LlmError> {
        let content = self
            .complete_json(
                &system_prompt(catalog),
                text,
                SCHEMA_NAME,
                Some("The intent of the customer's message"),
                response_schema(catalog),
            )
            .await?;
        parse_answer(&content, catalog)
    }
}

impl LlmClient {
    /// One structured-output call: `system` and `user` messages, an answer constrained to
    /// `schema` (JSON schema named `schema_name`); returns the answer's JSON text, unparsed.
    /// Intent classification and lead fact extraction use it; bounded by the timeout, one
    /// attempt.
    pub async fn complete_json(
        &self,
        system: &str,
        user: &str,
        schema_name: &str,
        description: Option<&str>,
        schema: Value,
    ) -> Result<String, LlmError> {
        self.complete_json_with_usage(system, user, schema_name, description, schema)
            .await
            .map(|c| c.text)
    }

    /// `complete_json`, with the tokens the call used (for per-tenant usage records).
    pub async fn complete_json_with_usage(
        &self,
        system: &str,
        user: &str,
        schema_name: &str,
        description: Option<&str>,
        schema: Value,
    ) -> Result<JsonCompletion, LlmError> {
        if self.resting() {
            return Err(LlmError::Unavailable);
        }
        let result = self
            .call_json(system, user, schema_name, description, schema)
            .await;
        self.note(&result);
        result
    }

    async fn call_json(
        &self,
        system: &str,
        user: &str,
        schema_name: &str,
        description: Option<&str>,
        schema: Value,
    ) -> Result<JsonCompletion, LlmError> {
        let invalid = |_| LlmError::Api("invalid request".into());
        let messages: Vec<ChatCompletionRequestMessage> = vec![
            ChatCompletionRequestSystemMessageArgs::default()
                .content(system)
                .build()
                .map_err(invalid)?
                .into(),
            ChatCompletionRequestUserMessageArgs::default()
                .content(user)
                .build()
                .map_err(invalid)?
                .into(),
        ];
        let request = CreateChatCompletionRequestArgs::default()
            .model(&self.model)
            .temperature(0.0)
            .messages(messages)
            .response_format(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: description.map(str::to_owned),
                    name: schema_name.into(),
                    schema: Some(schema),
                    strict: Some(false),
                },
            })
            .build()
            .map_err(|_| LlmError::Api("invalid request".into()))?;
        let response = tokio::time::timeout(self.timeout, self.client.chat().create(request))
            .await
            .map_err(|_| LlmError::Timeout(self.timeout))?
            .map_err(|e| LlmError::from_openai(e, self.timeout))?;
        let (prompt_tokens, completion_tokens) = response
            .usage
            .as_ref()
            .map(|u| (u.prompt_tokens, u.completion_tokens))
            .unwrap_or((0, 0));
        let text = response
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or(LlmError::Malformed("the answer has no content"))?;
        Ok(JsonCompletion {
            text,
            prompt_tokens,
            completion_tokens,
        })
    }
}

/// A structured answer and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonCompletion {
    /// The answer's JSON text, unparsed.
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// The instructions and the intent list.
pub fn system_prompt(catalog: &IntentCatalog) -> String {
    let mut prompt = String::from(
        "You classify one message that a customer sent to a business's sales assistant.\n\
         Answer with a JSON object: \"intent\" is the one intent below that the message expresses, \
         or \"out_of_scope\" when none fits; \"confidence\" is how sure you are, from 0 to 1; \
         \"entities\" holds details the message states (for example name, email, phone, budget, \
         location, project, unit_type, date), or {} when there are none.\n\nIntents:\n",
    );
    for intent in catalog.intents() {
        prompt.push_str("- ");
        prompt.push_str(&intent.name);
        if !intent.description.is_empty() {
            prompt.push_str(": ");
            prompt.push_str(&intent.description);
        }
        prompt.push('\n');
    }
    prompt
}

/// The JSON schema of the answer: the intent is an enum of the catalogue's names plus
/// `out_of_scope`.
pub fn response_schema(catalog: &IntentCatalog) -> Value {
    let names: Vec<&str> = catalog.names().chain([OUT_OF_SCOPE]).collect();
    json!({
        "type": "object",
        "properties": {
            "intent": { "type": "string", "enum": names },
            "confidence": { "type": "number", "minimum": 0, "maximum": 1 },
            "entities": { "type": "object" }
        },
        "required": ["intent", "confidence", "entities"],
        "additionalProperties": false
    })
}

/// The JSON inside an answer: some OpenAI-compatible servers wrap the object in a Markdown code
/// fence.
pub fn strip_code_fence(content: &str) -> &str {
    let body = content.trim();
    body.strip_prefix("```json")
        .or_else(|| body.strip_prefix("```"))
        .and_then(|b| b.strip_suffix("```"))
        .unwrap_or(body)
        .trim()
}

/// Validates the model's JSON answer and turns it into a prediction (abstaining on
/// `out_of_scope`, an out-of-scope intent, or a confidence below the catalogue's threshold).
pub fn parse_answer(content: &str, catalog: &IntentCatalog) -> Result<IntentPrediction, LlmError> {
    let answer: Answer = serde_json::from_str(strip_code_fence(content))
        .map_err(|_| LlmError::Malformed("the answer is not the expected JSON object"))?;
    if !answer.confidence.is_finite() || !(0.0..=1.0).contains(&answer.confidence) {
        return Err(LlmError::Malformed("the confidence is not between 0 and 1"));
    }
    if !answer.entities.is_object() {
        return Err(LlmError::Malformed("the entities are not an object"));
    }
    let out_of_scope = answer.intent == OUT_OF_SCOPE;
    if !out_of_scope && !catalog.contains(&answer.intent) {
        return Err(LlmError::UnknownIntent);
    }
    let confidence = answer.confidence as f32;
    let act = !out_of_scope
        && !catalog.is_out_of_scope(&answer.intent)
        && confidence >= catalog.threshold();
    Ok(IntentPrediction {
        intent: act.then(|| answer.intent.clone()),
        best: answer.intent,
        confidence,
        runner_up: None,
        entities: answer.entities,
        source: PredictionSource::Llm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::catalog::LabeledText;

    fn catalog() -> IntentCatalog {
        IntentCatalog::from_labeled(
            [
                ("hi", "greeting"),
                ("price?", "pricing"),
                ("weather", "other"),
            ]
            .map(|(t, l)| LabeledText {
                text: t.into(),
                label: l.into(),
            })
            .to_vec(),
        )
    }

    #[test]
    fn the_schema_enumerates_the_catalogue_and_out_of_scope() {
        let schema = response_schema(&catalog());
        assert_eq!(
            schema["properties"]["intent"]["enum"],
            json!(["greeting", "pricing", "other", "out_of_scope"])
        );
        assert_eq!(
            schema["required"],
            json!(["intent", "confidence", "entities"])
        );
    }

    #[test]
    fn the_prompt_lists_every_intent() {
        let prompt = system_prompt(&catalog());
        assert!(prompt.contains("- greeting\n") && prompt.contains("- pricing\n"));
    }

    #[test]
    fn a_valid_answer_becomes_an_llm_prediction_with_entities() {
        let p = parse_answer(
            r#"{"intent":"pricing","confidence":0.92,"entities":{"location":"Baner"}}"#,
            &catalog(),
        )
        .unwrap();
        assert_eq!(p.intent.as_deref(), Some("pricing"));
        assert_eq!(p.source, PredictionSource::Llm);
        assert_eq!(p.entities["location"], "Baner");
        assert!((p.confidence - 0.92).abs() < 1e-6);
    }

    #[test]
    fn out_of_scope_and_low_confidence_answers_abstain() {
        let c = catalog();
        let oos = parse_answer(
            r#"{"intent":"out_of_scope","confidence":0.9,"entities":{}}"#,
            &c,
        )
        .unwrap();
        assert_eq!((oos.intent, oos.best.as_str()), (None, "out_of_scope"));
        let other =
            parse_answer(r#"{"intent":"other","confidence":0.9,"entities":{}}"#, &c).unwrap();
        assert_eq!(other.intent, None);
        let unsure =
            parse_answer(r#"{"intent":"pricing","confidence":0.1,"entities":{}}"#, &c).unwrap();
        assert_eq!(unsure.intent, None);
    }

    #[test]
    fn a_fenced_answer_is_accepted() {
        let p = parse_answer(
            "```json\n{\"intent\":\"greeting\",\"confidence\":1,\"entities\":{}}\n```",
            &catalog(),
        );
        assert_eq!(p.unwrap().intent.as_deref(), Some("greeting"));
    }

    #[test]
    fn malformed_or_unknown_answers_are_errors() {
        let c = catalog();
        for bad in [
            "not json",
            r#"{"intent":"pricing"}"#,
            r#"{"intent":"pricing","confidence":1.5,"entities":{}}"#,
            r#"{"intent":"pricing","confidence":0.5,"entities":[]}"#,
        ] {
            assert!(
                matches!(parse_answer(bad, &c), Err(LlmError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_answer(r#"{"intent":"refund","confidence":0.5,"entities":{}}"#, &c),
            Err(LlmError::UnknownIntent)
        ));
    }
}
