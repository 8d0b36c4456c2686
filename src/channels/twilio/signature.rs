//! `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + every POST parameter's name and
//! value, sorted by name)). Twilio signs the URL exactly as it was configured, and its own
//! validators accept it with or without the scheme's default port, so both forms are tried.
//!
//! Parameters are sorted byte-wise by name; a name sent several times contributes each distinct
//! value once, in sorted order (what Twilio's reference validator does). JSON webhooks sign the
//! URL alone and carry `bodySHA256` (hex SHA-256 of the raw body) in its query.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha1 = Hmac<Sha1>;

/// The header Twilio signs webhook requests with.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Why a request's signature was refused; the HTTP layer answers 401 for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TwilioSignatureError {
    #[error("the X-Twilio-Signature header is missing")]
    Missing,
    #[error("the X-Twilio-Signature header does not match the URL and parameters")]
    Mismatch,
    #[error("the body does not match the bodySHA256 the URL carries")]
    BodyMismatch,
}

/// The signature Twilio would send for a form POST of `params` to `url`.
pub fn sign_form(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    let mut sorted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, value) in params {
        sorted.entry(name).or_default().insert(value);
    }
    let mut mac = HmacSha1::new_from_slice(auth_token).expect("HMAC accepts any key length");
    mac.update(url.as_bytes());
    for (name, values) in sorted {
        for value in values {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a form POST's signature against `url` (with and without its default port).
pub fn verify_form(
    auth_token: &[u8],
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), TwilioSignatureError> {
    let header = header.ok_or(TwilioSignatureError::Missing)?.trim();
    let matches = url_variants(url)
        .iter()
        .any(|candidate| equal(&sign_form(auth_token, candidate, params), header));
    if matches {
        Ok(())
    } else {
        Err(TwilioSignatureError::Mismatch)
    }
}

/// Checks a JSON webhook: the signature covers the URL only, and the URL's `bodySHA256` must be
/// the SHA-256 of the raw body.
pub fn verify_json(
    auth_token: &[u8],
    url: &str,
    raw_body: &[u8],
    header: Option<&str>,
) -> Result<(), TwilioSignatureError> {
    verify_form(auth_token, url, &[], header)?;
    let claimed = url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "bodySHA256")
                .map(|(_, v)| v.into_owned())
        })
        .ok_or(TwilioSignatureError::BodyMismatch)?;
    let actual = hex::encode(Sha256::digest(raw_body));
    if equal(&actual, &claimed.to_ascii_lowercase()) {
        Ok(())
    } else {
        Err(TwilioSignatureError::BodyMismatch)
    }
}

/// `url` as given, plus the same URL with its scheme's default port added or removed
/// (`https://h/p` and `https://h:443/p`). Other ports are kept as they are.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_start = authority.rfind('@').map(|i| i + 1).unwrap_or(0);
    let (userinfo, host_port) = authority.split_at(host_start);
    // An IPv6 literal's colons are inside the brackets.
    let port_sep = match host_port.rfind(']') {
        Some(close) => host_port[close..].find(':').map(|i| close + i),
        None => host_port.rfind(':'),
    };
    let other = match port_sep {
        Some(i) if &host_port[i + 1..] == default_port => {
            format!("{scheme}://{userinfo}{}{tail}", &host_port[..i])
        }
        Some(_) => return out,
        None => format!("{scheme}://{userinfo}{host_port}:{default_port}{tail}"),
    };
    out.push(other);
    out
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vector_twilio_signature.json"
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn params_of(case: &Value) -> Vec<(String, String)> {
        if let Some(multi) = case["params_multi"].as_array() {
            return multi
                .iter()
                .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
                .collect();
        }
        case["params"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn all_seven_published_vectors_verify() {
        let vectors = vectors();
        let token = vectors["auth_token"].as_str().unwrap().as_bytes();
        let cases = vectors["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 7);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let url = case["url"].as_str().unwrap();
            let expected = case["expected_signature"].as_str().unwrap();
            if let Some(raw) = case["raw_body"].as_str() {
                verify_json(token, url, raw.as_bytes(), Some(expected))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    verify_json(token, url, b"{\"property\": \"other\"}", Some(expected)),
                    Err(TwilioSignatureError::BodyMismatch),
                    "{name}: a changed body must be refused"
                );
            } else {
                let params = params_of(case);
                assert_eq!(sign_form(token, url, &params), expected, "{name}");
                verify_form(token, url, &params, Some(expected))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }

    #[test]
    fn a_signature_made_without_the_default_port_verifies_against_a_url_configured_with_it() {
        let vectors = vectors();
        let token = vectors["auth_token"].as_str().unwrap().as_bytes();
        let case = &vectors["cases"][0];
        let params = params_of(case);
        let signed_without_port = case["expected_signature"].as_str().unwrap();
        verify_form(
            token,
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params,
            Some(signed_without_port),
        )
        .unwrap();
        let signed_with_port = vectors["cases"][1]["expected_signature"].as_str().unwrap();
        verify_form(
            token,
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &params,
            Some(signed_with_port),
        )
        .unwrap();
    }

    #[test]
    fn a_changed_parameter_or_missing_header_is_refused() {
        let vectors = vectors();
        let token = vectors["auth_token"].as_str().unwrap().as_bytes();
        let case = &vectors["cases"][0];
        let url = case["url"].as_str().unwrap();
        let expected = case["expected_signature"].as_str().unwrap();
        let mut params = params_of(case);
        params[1].1.push('9');
        assert_eq!(
            verify_form(token, url, &params, Some(expected)),
            Err(TwilioSignatureError::Mismatch)
        );
        params.push(("Extra".into(), "1".into()));
        assert_eq!(
            verify_form(token, url, &params_of(case), None),
            Err(TwilioSignatureError::Missing)
        );
    }

    #[test]
    fn url_variants_add_or_remove_only_the_default_port() {
        assert_eq!(
            url_variants("https://h.example/a?b=1"),
            vec!["https://h.example/a?b=1", "https://h.example:443/a?b=1"]
        );
        assert_eq!(
            url_variants("http://h.example:80/a"),
            vec!["http://h.example:80/a", "http://h.example/a"]
        );
        assert_eq!(
            url_variants("http://h.example:1234/a"),
            vec!["http://h.example:1234/a"]
        );
        assert_eq!(
            url_variants("https://[::1]/x"),
            vec!["https://[::1]/x", "https://[::1]:443/x"]
        );
    }
}
