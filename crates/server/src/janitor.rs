//! Periodic clean-up of expired rows: sessions, offline envelopes, idempotency keys and
//! pairing codes.

use std::sync::Arc;
use std::time::Duration;

use commucat_store::Store;

use crate::session::established::unix_now;

/// How often expired rows are purged.
pub(crate) const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Purges expired rows now and then every `every`, until the task is dropped or aborted.
pub(crate) async fn run(store: Arc<dyn Store>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        purge(store.as_ref()).await;
    }
}

/// Purges every expired session, offline envelope and idempotency key once.
pub(crate) async fn purge(store: &dyn Store) {
    let now = unix_now();
    let results = [
        ("sessions", store.purge_expired_sessions(now).await),
        ("envelopes", store.purge_expired_envelopes(now).await),
        (
            "idempotency keys",
            store.purge_expired_idempotency(now).await,
        ),
        ("pairing codes", store.purge_expired_pairings(now).await),
        ("federation events", store.purge_expired_outbox(now).await),
    ];
    for (what, result) in results {
        match result {
            Ok(0) => {}
            Ok(n) => tracing::debug!(what, purged = n, "expired rows purged"),
            Err(e) => tracing::warn!(what, error = %e, "purging expired rows failed"),
        }
    }
}
