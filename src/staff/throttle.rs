//! The sign-in rate limit: failed attempts counted per account and per client address in a fixed
//! window. Past the limit an attempt is refused before the password is checked, so guessing is
//! slow and costs no argon2 time. Counters live in this replica's memory: with several replicas
//! the limit is per replica (documented in the README).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use moka::sync::Cache;

/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed attempts an account may see in a window.
pub const ACCOUNT_FAILURES: u32 = 5;
/// Failed attempts one address may make in a window (over all accounts).
pub const ADDRESS_FAILURES: u32 = 20;

/// Failed sign-ins per account and per address.
pub struct LoginThrottle {
    accounts: Cache<String, Arc<AtomicU32>>,
    addresses: Cache<IpAddr, Arc<AtomicU32>>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("accounts", &self.accounts.entry_count())
            .field("addresses", &self.addresses.entry_count())
            .finish()
    }
}

impl Default for LoginThrottle {
    fn default() -> Self {
        // The entry's time to live starts when its first failure is counted: increments change
        // the counter in place, so the window is fixed rather than sliding.
        Self {
            accounts: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(WINDOW)
                .build(),
            addresses: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(WINDOW)
                .build(),
        }
    }
}

fn count<K: std::hash::Hash + Eq + Send + Sync + 'static>(
    cache: &Cache<K, Arc<AtomicU32>>,
    key: &K,
) -> u32 {
    cache.get(key).map_or(0, |c| c.load(Ordering::Relaxed))
}

impl LoginThrottle {
    /// The account key: tenant and lowercase email.
    fn account_key(tenant: &str, email: &str) -> String {
        format!("{tenant}\u{0}{}", email.trim().to_lowercase())
    }

    /// Whether another attempt may be checked now.
    pub fn allows(&self, tenant: &str, email: &str, address: Option<IpAddr>) -> bool {
        count(&self.accounts, &Self::account_key(tenant, email)) < ACCOUNT_FAILURES
            && address.is_none_or(|a| count(&self.addresses, &a) < ADDRESS_FAILURES)
    }

    /// Counts a failed attempt.
    pub fn failed(&self, tenant: &str, email: &str, address: Option<IpAddr>) {
        self.accounts
            .get_with(Self::account_key(tenant, email), Default::default)
            .fetch_add(1, Ordering::Relaxed);
        if let Some(address) = address {
            self.addresses
                .get_with(address, Default::default)
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A successful sign-in clears the account's failures (not the address's).
    pub fn succeeded(&self, tenant: &str, email: &str) {
        self.accounts.invalidate(&Self::account_key(tenant, email));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_locked_after_its_failures_and_others_are_not() {
        let throttle = LoginThrottle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..ACCOUNT_FAILURES {
            assert!(throttle.allows("default", "a@x.example", Some(ip)));
            throttle.failed("default", "A@x.example ", Some(ip));
        }
        assert!(!throttle.allows("default", "a@x.example", Some(ip)));
        assert!(throttle.allows("default", "b@x.example", Some(ip)));
        assert!(throttle.allows("other", "a@x.example", Some(ip)));
    }

    #[test]
    fn an_address_is_locked_after_failures_over_many_accounts() {
        let throttle = LoginThrottle::default();
        let ip: IpAddr = "192.0.2.2".parse().unwrap();
        for i in 0..ADDRESS_FAILURES {
            throttle.failed("default", &format!("u{i}@x.example"), Some(ip));
        }
        assert!(!throttle.allows("default", "fresh@x.example", Some(ip)));
        let other: IpAddr = "192.0.2.3".parse().unwrap();
        assert!(throttle.allows("default", "fresh@x.example", Some(other)));
    }

    #[test]
    fn success_clears_the_account() {
        let throttle = LoginThrottle::default();
        for _ in 0..ACCOUNT_FAILURES {
            throttle.failed("default", "c@x.example", None);
        }
        throttle.succeeded("default", "c@x.example");
        assert!(throttle.allows("default", "c@x.example", None));
    }
}
