//! Fact extraction with a language model: one structured-output call (JSON schema) through the
//! OpenAI-compatible client. The answer is normalised exactly as the rules' findings are (email
//! syntax and case, phone to E.164 and only when valid, budget in whole units), so both
//! extractors give the same `MessageSignals` and are tested on the same examples.

use serde::Deserialize;
use serde_json::{Value, json};

use super::facts::{Budget, LeadFacts, MessageSignals};
use super::phone;
use crate::llm::{LlmClient, LlmError};

const SCHEMA_NAME: &str = "lead_facts";

const SYSTEM_PROMPT: &str = "You read one message a prospect sent to an Indian real-estate \
business's sales assistant, in English or Hinglish. Return only what the message itself states, \
as JSON following the schema; use null for anything not stated. budget_amount is in whole \
currency units (1 crore = 10000000, 1 lakh = 100000) and budget_currency an ISO 4217 code (INR \
for crore and lakh). property_type is like \"2 BHK\", \"villa\", \"plot\". keywords are interest \
words such as investment, home loan, possession, parking. pricing_question: asks about price or \
cost; visit_request: asks for a site visit, meeting or call; purchase_inquiry: says they want to \
buy or book.";

/// The schema of the answer.
pub fn schema() -> Value {
    let text = json!({"type": ["string", "null"]});
    json!({
        "type": "object",
        "properties": {
            "first_name": text, "last_name": text, "email": text, "phone": text,
            "company": text, "timeline": text, "location": text, "property_type": text,
            "budget_amount": {"type": ["number", "null"]},
            "budget_currency": text,
            "keywords": {"type": "array", "items": {"type": "string"}},
            "pricing_question": {"type": "boolean"},
            "visit_request": {"type": "boolean"},
            "purchase_inquiry": {"type": "boolean"}
        },
        "required": ["first_name", "last_name", "email", "phone", "company", "timeline",
                     "location", "property_type", "budget_amount", "budget_currency", "keywords",
                     "pricing_question", "visit_request", "purchase_inquiry"],
        "additionalProperties": false
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Answer {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    company: Option<String>,
    timeline: Option<String>,
    location: Option<String>,
    property_type: Option<String>,
    budget_amount: Option<f64>,
    budget_currency: Option<String>,
    keywords: Vec<String>,
    pricing_question: bool,
    visit_request: bool,
    purchase_inquiry: bool,
}

/// Asks the model for the facts and signals of `text`.
pub async fn extract(
    llm: &LlmClient,
    text: &str,
    region: phonenumber::country::Id,
    currency: &str,
) -> Result<MessageSignals, LlmError> {
    let content = llm
        .complete_json(SYSTEM_PROMPT, text, SCHEMA_NAME, None, schema())
        .await?;
    parse(&content, region, currency)
}

/// Validates and normalises the model's answer.
pub fn parse(
    content: &str,
    region: phonenumber::country::Id,
    currency: &str,
) -> Result<MessageSignals, LlmError> {
    let answer: Answer = serde_json::from_str(crate::llm::openai::strip_code_fence(content))
        .map_err(|_| LlmError::Malformed("the answer is not the lead-facts object"))?;
    let clean = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let mut keywords: Vec<String> = Vec::new();
    for k in answer.keywords {
        let k = k.trim().to_lowercase();
        if !k.is_empty() && !keywords.contains(&k) {
            keywords.push(k);
        }
    }
    let facts = LeadFacts {
        first_name: clean(answer.first_name),
        last_name: clean(answer.last_name),
        email: clean(answer.email)
            .map(|e| e.to_ascii_lowercase())
            .filter(|e| email_address::EmailAddress::is_valid(e)),
        phone: clean(answer.phone)
            .and_then(|p| phone::check(&p, region))
            .filter(|p| p.valid)
            .map(|p| p.e164),
        company: clean(answer.company),
        budget: answer
            .budget_amount
            .filter(|a| a.is_finite() && *a >= 1.0 && *a < 1e15)
            .map(|amount| Budget {
                amount: amount.round() as u64,
                currency: clean(answer.budget_currency)
                    .map(|c| c.to_ascii_uppercase())
                    .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
                    .unwrap_or_else(|| currency.to_owned()),
            }),
        timeline: clean(answer.timeline).map(|t| t.to_lowercase()),
        location: clean(answer.location),
        property_type: clean(answer.property_type),
        keywords,
    };
    Ok(MessageSignals {
        facts,
        pricing_question: answer.pricing_question,
        visit_request: answer.visit_request,
        purchase_inquiry: answer.purchase_inquiry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leads::extract::tests::EXAMPLES;
    use crate::llm::LlmSettings;
    use crate::testkit::fake_openai::{FakeOpenAi, ScriptedReply};

    /// What a model answers for each shared example (same order as `EXAMPLES`).
    fn model_answers() -> Vec<Value> {
        let none = json!({
            "first_name": null, "last_name": null, "email": null, "phone": null, "company": null,
            "timeline": null, "location": null, "property_type": null, "budget_amount": null,
            "budget_currency": null, "keywords": [], "pricing_question": false,
            "visit_request": false, "purchase_inquiry": false
        });
        let with = |fields: Value| {
            let mut answer = none.clone();
            for (k, v) in fields.as_object().unwrap() {
                answer[k] = v.clone();
            }
            answer
        };
        vec![
            with(
                json!({"first_name": "Asha", "last_name": "Rao", "email": "Asha.Rao@example.com"}),
            ),
            with(
                json!({"first_name": "Rohit", "last_name": "Sharma", "budget_amount": 15000000, "budget_currency": "INR"}),
            ),
            with(
                json!({"phone": "9876543210", "property_type": "3 BHK", "location": "Baner", "visit_request": true}),
            ),
            with(
                json!({"company": "Infosys", "property_type": "villa", "timeline": "within 6 months", "keywords": ["home loan", "possession"]}),
            ),
            with(
                json!({"property_type": "2 BHK", "location": "Wakad", "timeline": "agle mahine", "pricing_question": true, "purchase_inquiry": true}),
            ),
            with(
                json!({"first_name": "Priya", "location": "Dubai", "budget_amount": 300000, "budget_currency": "USD", "visit_request": true}),
            ),
            with(
                json!({"property_type": "plot", "budget_amount": 15000000, "budget_currency": "INR", "timeline": "this month", "purchase_inquiry": true}),
            ),
            with(
                json!({"phone": "+91 98765 43210", "company": "Tata Motors", "visit_request": true}),
            ),
            none.clone(),
        ]
    }

    #[tokio::test]
    async fn the_llm_extractor_meets_the_shared_examples_through_the_client() {
        let fake = FakeOpenAi::start().await;
        let answers = model_answers();
        assert_eq!(answers.len(), EXAMPLES.len());
        for answer in &answers {
            fake.push_reply(ScriptedReply::json(answer.clone()));
        }
        let llm = LlmClient::new(LlmSettings {
            api_key: "sk-test".to_owned().into(),
            base_url: Some(fake.base_url()),
            chat_model: "gpt-test".into(),
            timeout: std::time::Duration::from_secs(5),
        });
        for example in EXAMPLES {
            let signals = extract(&llm, example.text, phonenumber::country::Id::IN, "INR")
                .await
                .unwrap();
            let outcome = std::panic::catch_unwind(|| (example.expect)(&signals));
            assert!(
                outcome.is_ok(),
                "example {:?} gave {signals:#?}",
                example.text
            );
        }
        let requests = fake.requests();
        assert_eq!(requests.len(), EXAMPLES.len());
        let first = &requests[0].body;
        assert_eq!(first["response_format"]["json_schema"]["name"], SCHEMA_NAME);
        assert_eq!(first["messages"][1]["content"], EXAMPLES[0].text);
        assert_eq!(requests[0].authorization.as_deref(), Some("Bearer sk-test"));
    }

    #[test]
    fn a_malformed_answer_is_an_error_and_bad_values_are_dropped() {
        assert!(matches!(
            parse("not json", phonenumber::country::Id::IN, "INR"),
            Err(LlmError::Malformed(_))
        ));
        let s = parse(
            r#"{"email": "not an email", "phone": "12345", "budget_amount": -3}"#,
            phonenumber::country::Id::IN,
            "INR",
        )
        .unwrap();
        assert_eq!(s.facts, LeadFacts::default());
    }
}
