//! Temperature: moves on top of the score's tier. Three or more engagements move a cold lead to
//! warm; a direct purchase inquiry or a meeting request moves it to hot; each `silence_days`
//! without engagement moves it down one tier. Each move comes with its reason, which the lead's
//! history records.

use super::config::LeadsConfig;
use super::facts::Engagement;
use super::score::Tier;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The tier after temperature moves, and why it moved.
pub fn apply(
    score_tier: Tier,
    engagement: &Engagement,
    config: &LeadsConfig,
    now_ms: i64,
) -> (Tier, Vec<String>) {
    let rules = &config.temperature;
    let mut tier = score_tier;
    let mut reasons = Vec::new();
    if tier == Tier::Cold && engagement.replies >= rules.warm_after_engagements {
        tier = Tier::Warm;
        reasons.push(format!(
            "{} engagements moved it from cold to warm",
            engagement.replies
        ));
    }
    if tier < Tier::Hot && (engagement.purchase_inquiries > 0 || engagement.visit_requests > 0) {
        let what = if engagement.purchase_inquiries > 0 {
            "a purchase inquiry"
        } else {
            "a meeting request"
        };
        reasons.push(format!("{what} moved it from {} to hot", tier.as_str()));
        tier = Tier::Hot;
    }
    if let Some(last) = engagement.last_at {
        let period = rules.silence_days.max(1) * DAY_MS;
        let periods = (now_ms - last).max(0) / period;
        if periods > 0 {
            let before = tier;
            for _ in 0..periods.min(5) {
                tier = tier.cooler();
            }
            if tier != before {
                reasons.push(format!(
                    "{} days without engagement moved it from {} to {}",
                    (now_ms - last) / DAY_MS,
                    before.as_str(),
                    tier.as_str()
                ));
            }
        }
    }
    (tier, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn engaged(replies: u32, visits: u32, purchases: u32, days_ago: i64) -> Engagement {
        Engagement {
            replies,
            pricing_questions: 0,
            visit_requests: visits,
            purchase_inquiries: purchases,
            last_at: Some(NOW - days_ago * DAY_MS),
        }
    }

    #[test]
    fn three_engagements_move_cold_to_warm_but_two_do_not() {
        let config = LeadsConfig::default();
        let (tier, reasons) = apply(Tier::Cold, &engaged(3, 0, 0, 0), &config, NOW);
        assert_eq!(tier, Tier::Warm);
        assert_eq!(reasons, ["3 engagements moved it from cold to warm"]);
        assert_eq!(
            apply(Tier::Cold, &engaged(2, 0, 0, 0), &config, NOW).0,
            Tier::Cold
        );
        assert_eq!(
            apply(Tier::Low, &engaged(5, 0, 0, 0), &config, NOW).0,
            Tier::Low
        );
    }

    #[test]
    fn a_purchase_inquiry_or_meeting_request_moves_to_hot() {
        let config = LeadsConfig::default();
        let (tier, reasons) = apply(Tier::Warm, &engaged(1, 0, 1, 0), &config, NOW);
        assert_eq!(tier, Tier::Hot);
        assert_eq!(reasons, ["a purchase inquiry moved it from warm to hot"]);
        let (tier, reasons) = apply(Tier::Cold, &engaged(1, 1, 0, 0), &config, NOW);
        assert_eq!(tier, Tier::Hot);
        assert_eq!(reasons, ["a meeting request moved it from cold to hot"]);
    }

    #[test]
    fn thirty_silent_days_move_down_one_tier_per_period() {
        let config = LeadsConfig::default();
        assert_eq!(
            apply(Tier::Warm, &engaged(1, 0, 0, 29), &config, NOW).0,
            Tier::Warm
        );
        let (tier, reasons) = apply(Tier::Warm, &engaged(1, 0, 0, 30), &config, NOW);
        assert_eq!(tier, Tier::Cold);
        assert_eq!(
            reasons,
            ["30 days without engagement moved it from warm to cold"]
        );
        assert_eq!(
            apply(Tier::Hot, &engaged(1, 1, 0, 61), &config, NOW).0,
            Tier::Cold
        );
    }
}
