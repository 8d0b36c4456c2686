//! Verifying what a lead told us: email syntax (`email_address`), then whether the domain
//! receives mail (its MX records, through a DNS resolver with a timeout; a failed lookup is
//! "unknown", never "invalid"), whether it is a disposable domain (a committed list), and phone
//! validity and type (`phone`).
//!
//! The resolver is an enum so tests inject answers without a network: `MxResolver::Fixed`.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::phone::PhoneCheck;

static DISPOSABLE: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    include_str!("disposable_domains.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

/// What DNS says about a mail domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MxStatus {
    /// The domain has MX records: it receives mail.
    Found,
    /// The domain does not exist or has no MX records.
    None,
    /// The lookup failed or timed out: nothing is known.
    Unknown,
}

/// How an email address checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailStatus {
    /// Valid syntax, a domain with MX records, not disposable.
    Verified,
    /// Deliverable perhaps, but disposable or without MX records.
    Risky,
    /// Valid syntax; the domain could not be checked.
    Unknown,
    /// Not an email address.
    Invalid,
}

/// The verification of a lead's email and phone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Verification {
    /// The address these email results are for (a new address is checked again).
    pub email_checked: Option<String>,
    pub email: Option<EmailStatus>,
    pub mx: Option<MxStatus>,
    pub disposable: bool,
    pub phone: Option<PhoneCheck>,
}

/// Looks up MX records.
#[derive(Clone)]
pub enum MxResolver {
    /// The system's resolver (`/etc/resolv.conf`), bounded by a timeout.
    Dns {
        resolver: Arc<hickory_resolver::TokioResolver>,
        timeout: Duration,
    },
    /// Fixed answers by domain (tests); unlisted domains are `Unknown`.
    Fixed(Arc<BTreeMap<String, MxStatus>>),
    /// No lookups (`leads.mx_check = false`): every domain is `Unknown`.
    Off,
}

impl std::fmt::Debug for MxResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MxResolver::Dns { timeout, .. } => write!(f, "MxResolver::Dns({timeout:?})"),
            MxResolver::Fixed(map) => write!(f, "MxResolver::Fixed({} domains)", map.len()),
            MxResolver::Off => f.write_str("MxResolver::Off"),
        }
    }
}

impl MxResolver {
    /// The system resolver; `Off` (with a warning) when the system has no DNS configuration.
    pub fn system(timeout: Duration) -> Self {
        match hickory_resolver::TokioResolver::builder_tokio() {
            Ok(mut builder) => {
                builder.options_mut().timeout = timeout;
                builder.options_mut().attempts = 1;
                match builder.build() {
                    Ok(resolver) => MxResolver::Dns {
                        resolver: Arc::new(resolver),
                        timeout,
                    },
                    Err(err) => {
                        tracing::warn!(error = %err, "no DNS resolver; email domains stay unverified");
                        MxResolver::Off
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "no DNS configuration; email domains stay unverified");
                MxResolver::Off
            }
        }
    }

    /// Fixed answers, for tests.
    pub fn fixed(answers: impl IntoIterator<Item = (&'static str, MxStatus)>) -> Self {
        MxResolver::Fixed(Arc::new(
            answers
                .into_iter()
                .map(|(d, s)| (d.to_owned(), s))
                .collect(),
        ))
    }

    /// Whether `domain` receives mail.
    pub async fn lookup(&self, domain: &str) -> MxStatus {
        match self {
            MxResolver::Dns { resolver, timeout } => {
                let fqdn = format!("{}.", domain.trim_end_matches('.'));
                match tokio::time::timeout(*timeout, resolver.mx_lookup(fqdn)).await {
                    Ok(Ok(lookup)) if !lookup.answers().is_empty() => MxStatus::Found,
                    Ok(Ok(_)) => MxStatus::None,
                    Ok(Err(err)) if err.is_nx_domain() || err.is_no_records_found() => {
                        MxStatus::None
                    }
                    Ok(Err(_)) => {
                        // The error names the domain (personal data): not logged.
                        tracing::debug!("MX lookup failed");
                        MxStatus::Unknown
                    }
                    Err(_) => MxStatus::Unknown,
                }
            }
            MxResolver::Fixed(map) => map.get(domain).copied().unwrap_or(MxStatus::Unknown),
            MxResolver::Off => MxStatus::Unknown,
        }
    }
}

/// Whether `domain` (or a parent of it) is a known disposable-mail domain.
pub fn is_disposable(domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    DISPOSABLE
        .iter()
        .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
}

/// Checks an email address: syntax, disposable list, then MX.
pub async fn check_email(address: &str, resolver: &MxResolver) -> (EmailStatus, MxStatus, bool) {
    let Ok(parsed) = address.parse::<email_address::EmailAddress>() else {
        return (EmailStatus::Invalid, MxStatus::Unknown, false);
    };
    let domain = parsed.domain().to_ascii_lowercase();
    if !domain.contains('.') {
        return (EmailStatus::Invalid, MxStatus::Unknown, false);
    }
    let disposable = is_disposable(&domain);
    let mx = resolver.lookup(&domain).await;
    let status = match (disposable, mx) {
        (true, _) | (false, MxStatus::None) => EmailStatus::Risky,
        (false, MxStatus::Found) => EmailStatus::Verified,
        (false, MxStatus::Unknown) => EmailStatus::Unknown,
    };
    (status, mx, disposable)
}

/// Whether the email needs a (possibly slow) MX lookup before `refresh` is complete.
pub fn needs_email_check(verification: &Verification, email: Option<&str>) -> bool {
    email.is_some() && verification.email_checked.as_deref() != email
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver() -> MxResolver {
        MxResolver::fixed([
            ("example.com", MxStatus::Found),
            ("nomail.example", MxStatus::None),
            ("mailinator.com", MxStatus::Found),
        ])
    }

    #[tokio::test]
    async fn a_domain_with_mx_records_verifies_the_email() {
        let (status, mx, disposable) = check_email("asha@example.com", &resolver()).await;
        assert_eq!(
            (status, mx, disposable),
            (EmailStatus::Verified, MxStatus::Found, false)
        );
    }

    #[tokio::test]
    async fn disposable_or_mailless_domains_are_risky() {
        assert_eq!(
            check_email("x@mailinator.com", &resolver()).await.0,
            EmailStatus::Risky
        );
        assert_eq!(
            check_email("x@sub.yopmail.com", &resolver()).await.0,
            EmailStatus::Risky
        );
        assert_eq!(
            check_email("x@nomail.example", &resolver()).await.0,
            EmailStatus::Risky
        );
    }

    #[tokio::test]
    async fn a_failed_lookup_is_unknown_not_invalid() {
        let (status, mx, _) = check_email("x@unlisted.example", &resolver()).await;
        assert_eq!((status, mx), (EmailStatus::Unknown, MxStatus::Unknown));
        assert_eq!(
            check_email("x@example.com", &MxResolver::Off).await.0,
            EmailStatus::Unknown
        );
    }

    #[tokio::test]
    async fn bad_syntax_is_invalid() {
        for bad in ["not-an-email", "a@b", "@example.com"] {
            assert_eq!(
                check_email(bad, &resolver()).await.0,
                EmailStatus::Invalid,
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_real_resolver_times_out_into_unknown() {
        // A resolver pointed at a port nobody answers: the lookup ends in `Unknown`, in time.
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        let config = ResolverConfig::from_parts(
            None,
            vec![],
            vec![NameServerConfig::udp("127.0.0.1".parse().unwrap())],
        );
        let mut builder =
            hickory_resolver::TokioResolver::builder_with_config(config, Default::default());
        builder.options_mut().timeout = Duration::from_millis(200);
        builder.options_mut().attempts = 1;
        let resolver = MxResolver::Dns {
            resolver: Arc::new(builder.build().unwrap()),
            timeout: Duration::from_millis(300),
        };
        let started = std::time::Instant::now();
        assert_eq!(resolver.lookup("example.com").await, MxStatus::Unknown);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
