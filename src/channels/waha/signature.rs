//! `X-Webhook-Hmac`: WAHA signs each webhook with hex(HMAC-SHA512(key, raw body)) when a key is
//! configured. Compared in constant time over the bytes as received.

use hmac::{Hmac, Mac};
use sha2::Sha512;

type HmacSha512 = Hmac<Sha512>;

pub const HMAC_HEADER: &str = "X-Webhook-Hmac";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WahaSignatureError {
    #[error("the X-Webhook-Hmac header is missing")]
    Missing,
    #[error("the X-Webhook-Hmac header is not 128 hex digits")]
    Malformed,
    #[error("the X-Webhook-Hmac header does not match the body")]
    Mismatch,
}

pub fn verify(key: &[u8], raw_body: &[u8], header: Option<&str>) -> Result<(), WahaSignatureError> {
    let header = header.ok_or(WahaSignatureError::Missing)?.trim();
    let mut expected = [0u8; 64];
    hex::decode_to_slice(header, &mut expected).map_err(|_| WahaSignatureError::Malformed)?;
    mac(key, raw_body)
        .verify_slice(&expected)
        .map_err(|_| WahaSignatureError::Mismatch)
}

/// The header value WAHA would send for `body` (tests sign with it).
pub fn sign(key: &[u8], body: &[u8]) -> String {
    hex::encode(mac(key, body).finalize().into_bytes())
}

fn mac(key: &[u8], body: &[u8]) -> HmacSha512 {
    let mut mac = HmacSha512::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_documented_vector_verifies_and_a_changed_body_does_not() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vector_waha_hmac_sha512.json"
        );
        let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let key = v["key"].as_str().unwrap().as_bytes();
        let body = v["raw_body"].as_str().unwrap().as_bytes();
        let header = v["headers"]["X-Webhook-Hmac"].as_str().unwrap();
        assert_eq!(sign(key, body), header);
        verify(key, body, Some(header)).unwrap();
        let mut tampered = body.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            verify(key, &tampered, Some(header)),
            Err(WahaSignatureError::Mismatch)
        );
        assert_eq!(verify(key, body, None), Err(WahaSignatureError::Missing));
        assert_eq!(
            verify(key, body, Some("zz")),
            Err(WahaSignatureError::Malformed)
        );
    }
}
