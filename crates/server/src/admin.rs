//! Operator actions for the `commucat` command line: what a device would do through the REST
//! API, done by the operator on the server's store. Key-change records are
//! [`crate::registry::key_event`].

use commucat_store::{PairingRecord, Store, StoreError};

/// The lifetime of a pairing code asked for with `requested` seconds (`None`: the configured
/// one): at most `configured` (`devices.pairing_ttl`), and within the accepted range.
#[must_use]
pub fn pairing_ttl(requested: Option<i64>, configured: i64) -> i64 {
    crate::api::pairing::effective_ttl(requested, configured)
}

/// Stores a fresh pairing code for `user_id`, issued by `issuer_device_id` at `now` and
/// valid until `expires_at`, as `POST /api/pair` does.
///
/// # Errors
/// The store failed, or no free code was found.
pub async fn issue_pairing_code(
    store: &dyn Store,
    user_id: &str,
    issuer_device_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<PairingRecord, StoreError> {
    crate::api::pairing::create_code(store, user_id, issuer_device_id, now, expires_at).await
}
