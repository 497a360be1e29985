//! Bearer authentication of REST requests: `Authorization: Bearer <session id>`.
//!
//! The token is the session id a device received at the end of its handshake. Sessions are
//! stored under [`session_key`] (a BLAKE3 hash, never the token itself) with an expiry that
//! the session task moves forward while the device stays connected (`session.ttl`). A token
//! is valid while its session row exists, has not expired, and its device is active.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use commucat_store::{DeviceStatus, Store, StoreError};

use super::AppState;
use super::problem::Problem;
use crate::clock::unix_now;
use crate::registry::session_key;

/// The device and user behind a valid bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authenticated {
    /// The device whose session the token is.
    pub device_id: String,
    /// Its owner.
    pub user_id: String,
    /// The stored key of the session (hash of the token).
    pub session_key: String,
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, detail)
}

/// 503 for an unreachable store, 500 for anything else it reports.
#[must_use]
pub(crate) fn store_problem(error: &StoreError) -> Problem {
    match error {
        StoreError::Unavailable(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage is unavailable; retry shortly",
        ),
        other => {
            tracing::error!(error = %other, "store failure in a REST handler");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "storage failure")
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(parts: &Parts) -> Result<&str, Problem> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <session id>"))?
        .to_str()
        .map_err(|_| unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| unauthorized("Authorization must be Bearer <session id>"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(unauthorized("Authorization must be Bearer <session id>"));
    }
    Ok(token)
}

/// Checks `token` against the store at time `now`.
///
/// # Errors
/// 401 for an unknown or expired session or an inactive device; 503/500 for store failures.
pub(crate) async fn authenticate(
    store: &dyn Store,
    token: &str,
    now: i64,
) -> Result<Authenticated, Problem> {
    let key = session_key(token);
    let session = store
        .session(&key)
        .await
        .map_err(|e| store_problem(&e))?
        .ok_or_else(|| unauthorized("unknown session"))?;
    if session.expires_at <= now {
        return Err(unauthorized("session expired; connect again"));
    }
    let device = store
        .device(&session.device_id)
        .await
        .map_err(|e| store_problem(&e))?;
    match device {
        Some(device) if device.status == DeviceStatus::Active => Ok(Authenticated {
            device_id: session.device_id,
            user_id: session.user_id,
            session_key: key,
        }),
        _ => Err(unauthorized("the session's device is not active")),
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = bearer(parts)?;
        authenticate(state.store().as_ref(), token, unix_now()).await
    }
}
