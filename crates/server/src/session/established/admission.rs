//! The last check before a session serves anything: is it still entitled to run?
//!
//! A revocation or key rotation deletes the device's session rows in its transaction, then
//! ends the device's registered hub session. A handshake that stored its session row just
//! before such a change, and joins the hub just after it, would be missed by both steps. So a
//! session confirms its row only after it has joined the hub: a change that committed earlier
//! has deleted the row (seen here), and one that commits later finds the session registered
//! (its disconnect ends it).

use commucat_ccp::ProblemKind;
use commucat_store::DeviceStatus;

use super::{End, Messaging};
use crate::registry::session_key;

/// `Ok` if the stored session still exists; otherwise why the session must end.
pub(super) async fn confirm(m: &Messaging, device_id: &str, session_id: &str) -> Result<(), End> {
    let unavailable = || {
        End::problem(
            ProblemKind::ServiceUnavailable,
            "the session could not be confirmed; reconnect shortly",
        )
    };
    match m.store.session(&session_key(session_id)).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(device = %device_id, error = %e, "session confirmation failed");
            return Err(unavailable());
        }
    }
    Err(match m.store.device(device_id).await {
        Ok(Some(device)) if device.status == DeviceStatus::Active => End::problem(
            ProblemKind::DeviceKeyMismatch,
            "this session ended before it started (the device key was replaced); reconnect \
             with the current key",
        ),
        Ok(_) => End::problem(ProblemKind::DeviceRevoked, "this device has been revoked"),
        Err(e) => {
            tracing::warn!(device = %device_id, error = %e, "device lookup failed");
            unavailable()
        }
    })
}
