//! Phone numbers: found in free text, normalised to E.164 with the `phonenumber` crate (national
//! numbers read in the tenant's region, India by default), and checked for validity and type.

use std::sync::LazyLock;

use phonenumber::country;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Digits with the separators people type: `+91 98765 43210`, `(020) 2567-1234`.
static CANDIDATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\d[\d\s\-().]{6,18}\d").expect("the phone pattern compiles"));

/// A checked phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneCheck {
    /// E.164.
    pub e164: String,
    pub valid: bool,
    /// `mobile`, `fixed_line`, `fixed_line_or_mobile`, `toll_free`, `voip`, ... or `unknown`.
    pub kind: String,
}

/// The region a national number is read in (`IN`, `US`, ...); unknown codes fall back to India.
pub fn region(code: &str) -> country::Id {
    code.to_ascii_uppercase().parse().unwrap_or(country::Id::IN)
}

/// Parses one number; `None` when it is not a phone number at all.
pub fn check(raw: &str, region: country::Id) -> Option<PhoneCheck> {
    let number = phonenumber::parse(Some(region), raw).ok()?;
    let valid = phonenumber::is_valid(&number);
    let kind = format!("{:?}", number.number_type(&phonenumber::metadata::DATABASE));
    Some(PhoneCheck {
        e164: number.format().mode(phonenumber::Mode::E164).to_string(),
        valid,
        kind: snake_case(&kind),
    })
}

/// The E.164 form of a WhatsApp address (its digits are the international number).
pub fn from_whatsapp_address(address: &str) -> Option<PhoneCheck> {
    if address.is_empty() || !address.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Parsing with the metadata costs far more than the rest of a message's lead update, and the
    // same prospects write again and again.
    WHATSAPP_NUMBERS.get_with(address.to_owned(), || {
        check(&format!("+{address}"), country::Id::IN)
    })
}

/// WhatsApp addresses checked recently (kept in memory only, never logged).
static WHATSAPP_NUMBERS: LazyLock<moka::sync::Cache<String, Option<PhoneCheck>>> =
    LazyLock::new(|| moka::sync::Cache::new(10_000));

/// The first valid phone number in `text`, as E.164.
pub fn find_in_text(text: &str, region: country::Id) -> Option<PhoneCheck> {
    CANDIDATE
        .find_iter(text)
        .filter_map(|m| {
            let digits = m.as_str().bytes().filter(u8::is_ascii_digit).count();
            (8..=15)
                .contains(&digits)
                .then(|| check(m.as_str(), region))?
        })
        .find(|c| c.valid)
}

fn snake_case(camel: &str) -> String {
    let mut out = String::new();
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indian_mobiles_in_text_become_e164() {
        for text in [
            "call me at 9876543210",
            "mujhe 98765 43210 pe call karo",
            "my number is +91-98765-43210",
            "reach me on 09876543210",
        ] {
            let found = find_in_text(text, country::Id::IN).expect(text);
            assert_eq!(found.e164, "+919876543210", "{text}");
            assert!(found.valid);
            assert_eq!(found.kind, "mobile");
        }
    }

    #[test]
    fn a_whatsapp_address_is_its_e164_digits() {
        let check = from_whatsapp_address("919876543210").unwrap();
        assert_eq!(check.e164, "+919876543210");
        assert!(check.valid);
        assert!(from_whatsapp_address("visitor-1").is_none());
    }

    #[test]
    fn short_or_invalid_numbers_are_not_phones() {
        assert!(find_in_text("3 BHK for 2 Cr", country::Id::IN).is_none());
        assert!(find_in_text("call 12345", country::Id::IN).is_none());
        let invalid = check("+1 123 456 7890", country::Id::IN).unwrap();
        assert!(!invalid.valid);
    }
}
