//! `X-Hub-Signature-256`: Meta signs every webhook delivery with HMAC-SHA256 over the raw body,
//! keyed by the app secret, and sends `sha256=<lowercase hex>`.
//!
//! The HTTP layer must hand us the bytes exactly as received: Meta escapes non-ASCII as `\uXXXX`,
//! so re-serialised JSON would never match. The comparison is constant time (`verify_slice`), and
//! no error message carries the secret, the body or the expected digest.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header Meta signs webhook deliveries with.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

const PREFIX: &str = "sha256=";

/// Why a delivery's signature was refused. The HTTP layer answers 401 for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not `sha256=` followed by 64 hex digits")]
    Malformed,
    #[error("the X-Hub-Signature-256 header does not match the body")]
    Mismatch,
}

/// Checks `header` (the `X-Hub-Signature-256` value, if any) against `raw_body`.
pub fn verify_signature(
    app_secret: &[u8],
    raw_body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_digest = header
        .strip_prefix(PREFIX)
        .ok_or(SignatureError::Malformed)?;
    let mut expected = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut expected).map_err(|_| SignatureError::Malformed)?;
    mac(app_secret, raw_body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The header value Meta would send for `body`: `sha256=<lowercase hex>`. Used by tests and the
/// load generator to sign the deliveries they make.
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let digest = mac(app_secret, body).finalize().into_bytes();
    format!("{PREFIX}{}", hex::encode(digest))
}

fn mac(app_secret: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(app_secret).expect("HMAC accepts any key length");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    /// The real delivery and its header, from `vector_meta_x_hub_signature_256.json`.
    fn vector() -> (Vec<u8>, Vec<u8>, String) {
        let v: serde_json::Value =
            serde_json::from_slice(&fixture("vector_meta_x_hub_signature_256.json")).unwrap();
        let body = fixture(v["body_file"].as_str().unwrap());
        assert_eq!(body.len() as u64, v["body_length"].as_u64().unwrap());
        (
            v["app_secret"].as_str().unwrap().as_bytes().to_vec(),
            body,
            v["x_hub_signature_256"].as_str().unwrap().to_owned(),
        )
    }

    #[test]
    fn the_real_meta_delivery_verifies_with_its_app_secret() {
        let (secret, body, header) = vector();
        assert_eq!(verify_signature(&secret, &body, Some(&header)), Ok(()));
    }

    #[test]
    fn signing_the_real_delivery_reproduces_metas_header() {
        let (secret, body, header) = vector();
        assert_eq!(sign(&secret, &body), header);
    }

    #[test]
    fn a_single_flipped_body_byte_is_a_mismatch() {
        let (secret, mut body, header) = vector();
        body[100] ^= 0x01;
        assert_eq!(
            verify_signature(&secret, &body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_trailing_newline_added_to_the_body_is_a_mismatch() {
        let (secret, mut body, header) = vector();
        body.push(b'\n');
        assert_eq!(
            verify_signature(&secret, &body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_wrong_app_secret_is_a_mismatch() {
        let (_, body, header) = vector();
        assert_eq!(
            verify_signature(b"not-the-app-secret", &body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_missing_header_is_refused_as_missing() {
        let (secret, body, _) = vector();
        assert_eq!(
            verify_signature(&secret, &body, None),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn malformed_headers_are_refused_as_malformed() {
        let (secret, body, header) = vector();
        let hex = header.strip_prefix("sha256=").unwrap();
        for bad in [
            String::new(),
            hex.to_owned(),                     // no prefix
            format!("sha1={hex}"),              // wrong algorithm
            format!("sha256={}", &hex[..62]),   // too short
            format!("sha256={hex}00"),          // too long
            format!("sha256={}zz", &hex[..62]), // not hex
            "sha256=".to_owned(),
        ] {
            assert_eq!(
                verify_signature(&secret, &body, Some(&bad)),
                Err(SignatureError::Malformed),
                "header {bad:?}"
            );
        }
    }

    #[test]
    fn error_messages_never_contain_the_secret_or_the_digest() {
        let (secret, body, header) = vector();
        let err = verify_signature(b"x", &body, Some(&header)).unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains(std::str::from_utf8(&secret).unwrap()));
        assert!(!shown.contains(&header[7..]));
    }
}
