//! `POST /api/devices/rotate`: a device replaces its Ed25519 key, proving the change with its
//! current key.
//!
//! A known device's key never changes silently: the handshake refuses a HELLO whose key
//! differs from the stored one (`Device Key Mismatch`). This endpoint is the explicit way: the
//! bearer's device signs [`commucat_keys::rotation_message`] with its current key, and on
//! success the server stores the new key with a `rotate` key event, deletes the device's
//! stored sessions (every bearer token of the old key stops working), ends its live session,
//! records a `device`/`rotate` ledger entry and answers a certificate for the new key. The
//! device then connects again with the new key.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commucat_ccp::ProblemKind;
use commucat_keys::{RotationError, decode_hex64, verify_rotation};
use commucat_store::{DeviceKeyEvent, DeviceStatus, KeyRotation, RotateOutcome};
use serde::{Deserialize, Serialize};

use super::auth::{Authenticated, store_problem};
use super::pairing::{issue_certificate, parse_device_public};
use super::problem::{Problem, parse_json};
use super::{AppState, rfc3339};
use crate::clock::unix_now;
use crate::registry::key_event;

/// `devices.rotation_*` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RotationPolicy {
    /// Whether the endpoint accepts rotations.
    pub enabled: bool,
    /// Shortest time between two rotations of one device, seconds.
    pub min_interval_secs: i64,
    /// Largest distance between `issued_at` and the server clock, seconds.
    pub proof_ttl_secs: i64,
}

/// Body of `POST /api/devices/rotate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateRequest {
    /// The device whose key changes: the bearer's own device.
    pub device_id: String,
    /// The new Ed25519 public key, 64 hex characters.
    pub public_key: String,
    /// When the proof was made, unix seconds; within `proof_ttl_seconds` of the server clock.
    pub issued_at: i64,
    /// Ed25519 signature by the current device key over the rotation message, 128 hex
    /// characters (docs/rest.md gives the byte layout).
    pub proof: String,
}

/// Answer of `POST /api/devices/rotate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Rotated {
    /// The device.
    pub device_id: String,
    /// Always `rotated`.
    pub status: &'static str,
    /// The key now stored, hex.
    pub public_key: String,
    /// The replaced key, hex; the handshake refuses it from now on.
    pub previous_public_key: String,
    /// Time of the change, RFC 3339.
    pub rotated_at: String,
    /// Device certificate for the new key (same JSON as the handshake's).
    #[schema(value_type = Object)]
    pub device_certificate: serde_json::Value,
    /// Device-CA public key, hex.
    pub device_ca_public: String,
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    Problem::new(status, detail).into_response()
}

fn store_failure(error: &commucat_store::StoreError) -> Response {
    store_problem(error).into_response()
}

/// `POST /api/devices/rotate` → 200 [`Rotated`].
///
/// # Errors
/// 400 bad body, key or proof encoding, or a new key equal to the current one; 401 no valid
/// bearer; 403 rotation disabled, another device than the bearer's, a revoked device, a
/// proof outside the time window or one that does not verify under the current key; 409 the
/// key changed meanwhile or the new key was used by this device before; 429 (with
/// `retry-after`) sooner than `min_interval_seconds` after the device's last rotation; 503/500 on
/// store failures.
#[utoipa::path(
    post, path = "/api/devices/rotate", tag = "devices",
    request_body = RotateRequest,
    responses(
        (status = 200, description = "Key replaced; the device's sessions ended", body = Rotated),
        (status = 400, description = "Body, key or proof malformed, or the key is unchanged", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Rotation disabled, another device, revoked device, stale or invalid proof", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key changed meanwhile, or the new key was used before", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too soon after the last rotation (see retry-after)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn rotate(
    State(state): State<AppState>,
    auth: Authenticated,
    body: Bytes,
) -> Result<Json<Rotated>, Response> {
    let policy = state.rest.rotation;
    if !policy.enabled {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "device key rotation is disabled on this server",
        ));
    }
    let request: RotateRequest = parse_json(&body).map_err(IntoResponse::into_response)?;
    if request.device_id != auth.device_id {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "a device can only rotate its own key; use that device's session",
        ));
    }
    let new_key = parse_device_public(&request.public_key).map_err(IntoResponse::into_response)?;
    let proof = decode_hex64(request.proof.trim()).map_err(|e| {
        problem(
            StatusCode::BAD_REQUEST,
            format!("proof: expected 128 hex characters: {e}"),
        )
    })?;
    let store = state.store();
    let device = store
        .device(&auth.device_id)
        .await
        .map_err(|e| store_failure(&e))?
        .filter(|d| d.status == DeviceStatus::Active)
        .ok_or_else(|| problem(StatusCode::FORBIDDEN, "the device is revoked"))?;
    let now = unix_now();
    if request.issued_at.abs_diff(now) > policy.proof_ttl_secs.unsigned_abs() {
        return Err(problem(
            StatusCode::FORBIDDEN,
            format!(
                "proof issued_at {} is more than {} s from the server clock ({now}); sign again",
                request.issued_at, policy.proof_ttl_secs
            ),
        ));
    }
    verify_rotation(
        &device.device_id,
        &device.public_key,
        &new_key,
        request.issued_at,
        &proof,
    )
    .map_err(|e| match e {
        RotationError::BadSignature => problem(
            StatusCode::FORBIDDEN,
            "proof is not a signature by the device's current key over this rotation",
        ),
        RotationError::SameKey
        | RotationError::BadKey { .. }
        | RotationError::DeviceIdTooLong { .. } => problem(StatusCode::BAD_REQUEST, e.to_string()),
    })?;
    let device_certificate = issue_certificate(
        &state.rest,
        &device.user_id,
        &device.device_id,
        new_key,
        now,
    )
    .map_err(IntoResponse::into_response)?;
    let outcome = store
        .rotate_device_key(KeyRotation {
            device_id: device.device_id.clone(),
            old_public_key: device.public_key,
            event: key_event(&device.device_id, new_key, DeviceKeyEvent::ROTATE, now),
            min_interval_secs: policy.min_interval_secs,
        })
        .await
        .map_err(|e| store_failure(&e))?;
    match outcome {
        RotateOutcome::Rotated => {}
        RotateOutcome::Revoked => {
            return Err(problem(StatusCode::FORBIDDEN, "the device is revoked"));
        }
        RotateOutcome::KeyChanged => {
            return Err(problem(
                StatusCode::CONFLICT,
                "the device key changed meanwhile; sign again with the current key",
            ));
        }
        RotateOutcome::KeyReused => {
            return Err(problem(
                StatusCode::CONFLICT,
                "this device used that key before; rotate to a fresh key",
            ));
        }
        RotateOutcome::TooSoon { last_change_at } => {
            let retry = last_change_at
                .saturating_add(policy.min_interval_secs)
                .saturating_sub(now)
                .max(1);
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "the device key was last rotated at {}; the next rotation is allowed in {retry} s",
                    rfc3339(last_change_at)
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry));
            return Err(response);
        }
    }
    let detail = "this device's key was rotated; connect again with the new key";
    let was_online = state.sessions.hub().disconnect(
        &device.device_id,
        commucat_ccp::Problem::new(ProblemKind::DeviceKeyMismatch).with_detail(detail),
    );
    // Its session may run on another node of the deployment.
    if let Some(cluster) = &state.sessions.messaging().cluster {
        cluster
            .ended(
                &device.device_id,
                crate::cluster::EndReason::KeyRotated,
                detail,
            )
            .await;
    }
    let previous = hex::encode(device.public_key);
    let public_key = hex::encode(new_key);
    tracing::info!(scope = "device", action = "rotate", device = %device.device_id, user = %device.user_id, was_online, "device key rotated");
    state.sessions.messaging().ledger.record("device", || {
        serde_json::json!({"event": "rotate", "device": device.device_id, "user": device.user_id,
                           "previous_public_key": previous, "public_key": public_key,
                           "was_online": was_online, "via": "rest"})
    });
    Ok(Json(Rotated {
        device_id: device.device_id,
        status: "rotated",
        public_key,
        previous_public_key: previous,
        rotated_at: rfc3339(now),
        device_certificate,
        device_ca_public: state.rest.device_ca.public_key_hex(),
    }))
}
