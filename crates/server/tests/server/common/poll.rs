//! Waiting for state that announces itself with no event a test can await (a file the ledger
//! thread appends to, a database row, a Redis key, a `/metrics` sample): look, and look again
//! after [`POLL_EVERY`], until it holds or a deadline passes. The pause is only the interval
//! between two looks; nothing here waits a fixed time for something to have happened.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Interval between two looks.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Looks with `check` until it yields a value, for at most `limit`; `None` if it never did.
pub async fn within<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Looks with `check` until it yields a value; fails the test naming `what` if it has not
/// after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match within(limit, check).await {
        Some(value) => value,
        None => panic!("{what}: not within {limit:?}"),
    }
}
