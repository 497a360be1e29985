//! A throwaway PostgreSQL schema per test, on the server named by `COMMUCAT_TEST_POSTGRES`.
//!
//! Shared by the store suite, the server's integration tests and the store benchmarks
//! (included with `#[path]`). When the variable is unset the callers skip their PostgreSQL
//! variant; when it is set, a server that cannot be reached fails the test.

#![allow(dead_code, unreachable_pub, clippy::panic, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commucat_store::{PostgresSettings, PostgresStore};
use sqlx::Connection;

/// Set to a PostgreSQL URL (`postgres://postgres@127.0.0.1:5432/test`) to run the PostgreSQL
/// variants of the tests.
pub const POSTGRES_ENV: &str = "COMMUCAT_TEST_POSTGRES";

/// How long setting up or dropping a schema may take before the test fails.
const SETUP_WAIT: Duration = Duration::from_secs(20);

/// The configured test server, if any.
pub fn test_url() -> Option<String> {
    std::env::var(POSTGRES_ENV)
        .ok()
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
}

/// A schema of its own (`commucat_test_<unique>`) for one test: the store creates it on
/// connect, and it is dropped with everything in it when this value is dropped, even when
/// the test panics.
pub struct TestSchema {
    url: String,
    /// The schema name.
    pub name: String,
}

impl TestSchema {
    /// A fresh schema name on the test server; `None` when `COMMUCAT_TEST_POSTGRES` is unset.
    ///
    /// # Panics
    /// When the variable is set but the server cannot be reached.
    pub async fn new() -> Option<Self> {
        let url = test_url()?;
        // Reachability first, with a clear message.
        let conn = tokio::time::timeout(SETUP_WAIT, sqlx::PgConnection::connect(&url)).await;
        match conn {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(e)) => panic!("{POSTGRES_ENV}={url} is set but unusable: {e}"),
            Err(_) => panic!("{POSTGRES_ENV}={url} is set but did not answer in {SETUP_WAIT:?}"),
        }
        Some(Self {
            url,
            name: unique_name(),
        })
    }

    /// The server URL (without the schema).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Pool settings that put every table in this schema.
    pub fn settings(&self) -> PostgresSettings {
        PostgresSettings {
            schema: Some(self.name.clone()),
            ..PostgresSettings::default()
        }
    }

    /// A store on this schema (created and migrated on first use).
    pub async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.url, &self.settings())
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL store on schema {}: {e}", self.name))
    }

    /// A plain connection whose `search_path` is this schema, for raw SQL in tests.
    pub async fn raw(&self) -> sqlx::PgConnection {
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .expect("raw PostgreSQL connection");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET search_path TO {}",
            self.name
        )))
        .execute(&mut conn)
        .await
        .expect("search_path");
        conn
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop runs outside async code (possibly while unwinding inside a runtime): a thread
        // with its own small runtime does the clean-up, bounded in time.
        let url = self.url.clone();
        let statement = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let _ = tokio::time::timeout(SETUP_WAIT, async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(statement))
                            .execute(&mut conn)
                            .await;
                        let _ = conn.close().await;
                    }
                })
                .await;
            });
        });
        let _ = cleanup.join();
    }
}

/// `commucat_test_<pid>_<nanos>_<counter>`: unique across parallel tests and processes.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    #[allow(
        clippy::disallowed_methods,
        reason = "a unique schema name, not a time the server reads"
    )]
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "commucat_test_{}_{nanos:x}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
