//! Budgets as prospects write them: "2 Cr", "₹1.5 crore", "$300k", "budget 1.5 cr hai",
//! "80 lakhs", "Rs. 75,00,000". Indian units: 1 crore = 10,000,000, 1 lakh = 100,000.
//!
//! A number counts as a budget only when something says it is money: a currency sign or code, a
//! money unit (crore, lakh, k, million), or the word "budget" nearby. Phone numbers and "3 BHK"
//! are therefore never budgets.

use std::sync::LazyLock;

use regex::Regex;

use super::facts::Budget;

static AMOUNT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        (?P<cur>₹|rs\.?|inr|us\$|\$|usd|€|eur|£|gbp)?\s*
        (?P<num>\d{1,3}(?:,\d{2,3})+(?:\.\d+)?|\d+(?:\.\d+)?)
        \s*(?P<unit>crores?|cr|lakhs?|lacs?|lac|l|k|thousand|mn|million|m|bn|billion)?\b",
    )
    .expect("the amount pattern compiles")
});

static BUDGET_WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(budget|price range|afford|spend|investment of)\b")
        .expect("the budget-word pattern compiles")
});

/// The first budget stated in `text`, if any. `default_currency` applies to Indian units and
/// to bare numbers next to the word "budget".
pub fn parse_budget(text: &str, default_currency: &str) -> Option<Budget> {
    let budget_context = BUDGET_WORD.is_match(text);
    for caps in AMOUNT.captures_iter(text) {
        let number = caps.name("num")?.as_str().replace(',', "");
        let digits = number.split('.').next().unwrap_or("").len();
        let Ok(value) = number.parse::<f64>() else {
            continue;
        };
        let currency = caps.name("cur").map(|c| currency_of(c.as_str()));
        let unit = caps.name("unit").map(|u| u.as_str().to_ascii_lowercase());
        let multiplier = match unit.as_deref() {
            Some("crore" | "crores" | "cr") => 10_000_000.0,
            Some("lakh" | "lakhs" | "lac" | "lacs" | "l") => 100_000.0,
            Some("k" | "thousand") => 1_000.0,
            // A bare "m" is a money unit only after a currency sign ("$2m"), not "5 m" of land.
            Some("m") if currency.is_none() => continue,
            Some("mn" | "million" | "m") => 1_000_000.0,
            Some("bn" | "billion") => 1_000_000_000.0,
            _ => 1.0,
        };
        let has_unit = multiplier > 1.0;
        if currency.is_none() && !has_unit && !(budget_context && value >= 1_000.0) {
            continue;
        }
        // Ten or more digits with no currency is a phone number, not a budget.
        if currency.is_none() && !has_unit && digits >= 10 {
            continue;
        }
        let amount = (value * multiplier).round();
        if !(1.0..1e15).contains(&amount) {
            continue;
        }
        let indian_unit = matches!(multiplier, 10_000_000.0 | 100_000.0);
        let currency = match currency {
            Some(code) => code,
            None if indian_unit => "INR",
            None => default_currency,
        };
        return Some(Budget {
            amount: amount as u64,
            currency: currency.to_owned(),
        });
    }
    None
}

fn currency_of(sign: &str) -> &'static str {
    match sign.to_ascii_lowercase().as_str() {
        "$" | "us$" | "usd" => "USD",
        "€" | "eur" => "EUR",
        "£" | "gbp" => "GBP",
        _ => "INR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inr(amount: u64) -> Option<Budget> {
        Some(Budget {
            amount,
            currency: "INR".into(),
        })
    }

    #[test]
    fn indian_units_and_signs_parse() {
        let cases = [
            ("2 Cr", inr(20_000_000)),
            ("₹1.5 crore", inr(15_000_000)),
            ("budget 1.5 cr hai", inr(15_000_000)),
            ("around 80 lakhs", inr(8_000_000)),
            ("75L max", inr(7_500_000)),
            ("Rs. 75,00,000", inr(7_500_000)),
            ("my budget is 9000000", inr(9_000_000)),
            ("INR 1.2cr", inr(12_000_000)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_budget(text, "INR"), expected, "{text}");
        }
    }

    #[test]
    fn dollars_and_other_currencies_parse() {
        assert_eq!(
            parse_budget("$300k", "INR"),
            Some(Budget {
                amount: 300_000,
                currency: "USD".into()
            })
        );
        assert_eq!(
            parse_budget("about €2m", "INR"),
            Some(Budget {
                amount: 2_000_000,
                currency: "EUR".into()
            })
        );
    }

    #[test]
    fn numbers_that_are_not_money_are_ignored() {
        for text in [
            "3 BHK please",
            "call me at 9876543210",
            "budget? call 9876543210",
            "I have 2 kids",
            "plot of 5 m width",
        ] {
            assert_eq!(parse_budget(text, "INR"), None, "{text}");
        }
    }
}
