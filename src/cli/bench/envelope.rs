//! The deliveries the load generator sends: one Meta webhook envelope per message, signed the way
//! Meta signs them, with ids that make every message distinct and let a reply be traced back.
//!
//! Every message gets a fresh `wamid` (`wamid.bench-<run>-<seq>`), unique across runs, so the
//! server never mistakes a benchmark message for a redelivery. Message `seq` goes to simulated
//! prospect `seq % conversations`, so consecutive messages land in different conversations.

use bytes::Bytes;
use reqwest::header::HeaderValue;
use serde_json::json;
use std::fmt;

/// The WhatsApp Business Account id put in `entry[].id`; the server routes by phone number id.
const WABA_ID: &str = "102290129340398";

/// Fictional US numbers `+1 555 nnn nnnn`: seven digits leave room for ten million prospects.
const WA_ID_PREFIX: &str = "1555";

/// The most simulated conversations the wa_id scheme can tell apart.
pub const MAX_CONVERSATIONS: u32 = 9_999_999;

/// The WhatsApp id (digits of the E.164 number, no `+`) of simulated prospect `conversation`.
pub fn wa_id(conversation: u32) -> String {
    format!("{WA_ID_PREFIX}{conversation:07}")
}

/// The inverse of [`wa_id`]: which simulated prospect a recipient is, if it is one of ours.
pub fn conversation_of_wa_id(wa_id: &str) -> Option<u32> {
    let digits = wa_id.strip_prefix(WA_ID_PREFIX)?;
    if digits.len() != 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The provider message id of message `seq` of benchmark run `run`.
pub fn wamid(run: &str, seq: u64) -> String {
    format!("wamid.bench-{run}-{seq}")
}

/// The inverse of [`wamid`] for this run: the `seq` a reply's `context.message_id` points to.
pub fn seq_of_wamid(run: &str, wamid: &str) -> Option<u64> {
    wamid
        .strip_prefix("wamid.bench-")?
        .strip_prefix(run)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// One inbound text message as Meta delivers it to a webhook.
#[derive(Debug, Clone, Copy)]
pub struct InboundText<'a> {
    pub phone_number_id: &'a str,
    pub wa_id: &'a str,
    pub wamid: &'a str,
    /// Unix seconds; Meta sends it as a string.
    pub timestamp: u64,
    pub text: &'a str,
}

/// The webhook body Meta would POST for `message`: the exact bytes that get signed and sent.
pub fn envelope(message: &InboundText<'_>) -> Vec<u8> {
    let value = json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": WABA_ID,
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": "15550000000",
                        "phone_number_id": message.phone_number_id,
                    },
                    "contacts": [{ "profile": { "name": "Bench" }, "wa_id": message.wa_id }],
                    "messages": [{
                        "from": message.wa_id,
                        "id": message.wamid,
                        "timestamp": message.timestamp.to_string(),
                        "type": "text",
                        "text": { "body": message.text },
                    }],
                },
            }],
        }],
    });
    serde_json::to_vec(&value).expect("a JSON value always serialises")
}

/// Signs bench bodies as Meta does, with the server's own signer (`channels::whatsapp::sign`),
/// so the bench and the verifier cannot drift apart. The secret never shows in `Debug`.
#[derive(Clone)]
pub struct Signer {
    app_secret: Vec<u8>,
}

impl Signer {
    pub fn new(app_secret: &[u8]) -> Self {
        Self {
            app_secret: app_secret.to_vec(),
        }
    }

    /// `sha256=<lowercase hex HMAC-SHA256(app secret, body)>`.
    pub fn sign(&self, body: &[u8]) -> String {
        crate::channels::whatsapp::sign(&self.app_secret, body)
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer([REDACTED])")
    }
}

/// A delivery ready to go on the wire: body and signature computed, nothing left to do but send.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub seq: u64,
    pub conversation: u32,
    pub body: Bytes,
    pub signature: HeaderValue,
}

/// Everything that decides what message `seq` looks like.
#[derive(Debug)]
pub struct Workload {
    run: String,
    phone_number_id: String,
    text: String,
    conversations: u32,
    timestamp: u64,
    signer: Signer,
}

impl Workload {
    pub fn new(
        run: String,
        phone_number_id: String,
        text: String,
        conversations: u32,
        timestamp: u64,
        signer: Signer,
    ) -> Self {
        assert!(
            (1..=MAX_CONVERSATIONS).contains(&conversations),
            "conversations out of range"
        );
        Self {
            run,
            phone_number_id,
            text,
            conversations,
            timestamp,
            signer,
        }
    }

    /// The simulated prospect that sends message `seq`: round robin.
    pub fn conversation_of(&self, seq: u64) -> u32 {
        (seq % u64::from(self.conversations)) as u32
    }

    /// Builds and signs message `seq`.
    pub fn prepare(&self, seq: u64) -> Prepared {
        let conversation = self.conversation_of(seq);
        let wa_id = wa_id(conversation);
        let wamid = wamid(&self.run, seq);
        let body = envelope(&InboundText {
            phone_number_id: &self.phone_number_id,
            wa_id: &wa_id,
            wamid: &wamid,
            timestamp: self.timestamp,
            text: &self.text,
        });
        let signature = HeaderValue::from_str(&self.signer.sign(&body))
            .expect("a hex signature is a valid header value");
        Prepared {
            seq,
            conversation,
            body: Bytes::from(body),
            signature,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const FIXTURE_BODY: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pywa_signed_webhook_body.json"
    ));

    #[test]
    fn signer_reproduces_metas_signature_over_a_real_delivery() {
        let signer = Signer::new(b"1222e786b144d0e85b9f365372d93676");
        assert_eq!(FIXTURE_BODY.len(), 511);
        assert_eq!(
            signer.sign(FIXTURE_BODY),
            "sha256=54edfa1d7259e0eb13c677cc7d73d1b5c86cfa12433d19156e058ab9251bc441"
        );
    }

    #[test]
    fn signer_debug_output_hides_the_key() {
        assert_eq!(
            format!("{:?}", Signer::new(b"top-secret")),
            "Signer([REDACTED])"
        );
    }

    #[test]
    fn envelope_has_the_shape_meta_sends() {
        let body = envelope(&InboundText {
            phone_number_id: "123456",
            wa_id: "15550000042",
            wamid: "wamid.bench-r-7",
            timestamp: 1_700_000_000,
            text: "Olá \"quoted\"\nnext line",
        });
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "whatsapp_business_account");
        let change = &v["entry"][0]["changes"][0];
        assert_eq!(change["field"], "messages");
        let value = &change["value"];
        assert_eq!(value["messaging_product"], "whatsapp");
        assert_eq!(value["metadata"]["phone_number_id"], "123456");
        assert_eq!(value["contacts"][0]["wa_id"], "15550000042");
        assert_eq!(value["contacts"][0]["profile"]["name"], "Bench");
        let message = &value["messages"][0];
        assert_eq!(message["from"], "15550000042");
        assert_eq!(message["id"], "wamid.bench-r-7");
        assert_eq!(message["timestamp"], "1700000000");
        assert_eq!(message["type"], "text");
        assert_eq!(message["text"]["body"], "Olá \"quoted\"\nnext line");
    }

    #[test]
    fn wa_ids_and_wamids_round_trip() {
        assert_eq!(wa_id(42), "15550000042");
        assert_eq!(wa_id(MAX_CONVERSATIONS), "15559999999");
        assert_eq!(conversation_of_wa_id("15550000042"), Some(42));
        assert_eq!(conversation_of_wa_id("15550000042 "), None);
        assert_eq!(conversation_of_wa_id("4915550000042"), None);
        assert_eq!(conversation_of_wa_id("1555000004"), None);

        let id = wamid("abc", 99);
        assert_eq!(seq_of_wamid("abc", &id), Some(99));
        assert_eq!(seq_of_wamid("abd", &id), None);
        assert_eq!(seq_of_wamid("abc", "wamid.HBgLMTU1"), None);
    }

    #[test]
    fn prepared_messages_are_distinct_spread_and_correctly_signed() {
        let signer = Signer::new(b"secret");
        let workload = Workload::new(
            "run1".into(),
            "pnid".into(),
            "hello".into(),
            3,
            1,
            signer.clone(),
        );
        let prepared: Vec<Prepared> = (0..6).map(|seq| workload.prepare(seq)).collect();
        let conversations: Vec<u32> = prepared.iter().map(|p| p.conversation).collect();
        assert_eq!(conversations, [0, 1, 2, 0, 1, 2]);
        for p in &prepared {
            assert_eq!(
                p.signature.to_str().unwrap(),
                signer.sign(&p.body),
                "signature covers the exact bytes sent"
            );
            let v: Value = serde_json::from_slice(&p.body).unwrap();
            let message = &v["entry"][0]["changes"][0]["value"]["messages"][0];
            assert_eq!(message["id"], wamid("run1", p.seq));
            assert_eq!(message["from"], wa_id(p.conversation));
        }
        let distinct: std::collections::HashSet<&Bytes> =
            prepared.iter().map(|p| &p.body).collect();
        assert_eq!(distinct.len(), 6);
    }
}
