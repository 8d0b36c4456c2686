//! Shared test support: finding the PostgreSQL and Redis servers the backend suites run against.
//!
//! Suites that need a server read `PARLEY_TEST_DATABASE_URL` / `PARLEY_TEST_REDIS_URL`. Without
//! them they skip with a printed reason, unless `PARLEY_REQUIRE_SERVICES=1` (CI), where a missing
//! server fails the test.

#![allow(dead_code)]

/// Whether CI demands that every backend suite runs.
pub fn services_required() -> bool {
    std::env::var("PARLEY_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The URL in `var`, or `None` after printing why the caller skips. Panics when services are
/// required and the variable is unset.
pub fn service_url(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if services_required() {
                panic!(
                    "PARLEY_REQUIRE_SERVICES=1 but {var} is not set: the {what} suite cannot run"
                );
            }
            eprintln!("skipping: {var} is not set, so the {what} suite does not run");
            None
        }
    }
}

/// The PostgreSQL server for backend suites (for example `postgres://postgres@127.0.0.1/test`).
pub fn postgres_url() -> Option<String> {
    service_url("PARLEY_TEST_DATABASE_URL", "PostgreSQL")
}

/// The Redis server for backend suites (for example `redis://127.0.0.1:6379`).
pub fn redis_url() -> Option<String> {
    service_url("PARLEY_TEST_REDIS_URL", "Redis")
}

/// A unique, lowercase name for a test's own schema or key prefix, so suites run in parallel.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}
