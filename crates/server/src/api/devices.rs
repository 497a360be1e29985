//! `GET /api/devices` and `POST /api/devices/revoke` (wire-compat §8).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use commucat_ccp::ProblemKind;
use commucat_store::{DeviceKeyEvent, DeviceRecord};
use serde::{Deserialize, Serialize};

use super::auth::{Authenticated, store_problem};
use super::problem::{Problem, parse_json};
use super::{AppState, rfc3339};
use crate::clock::unix_now;
use crate::registry::key_event;

/// Body of `GET /api/devices`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeviceList {
    /// Every device of the caller's account, revoked ones included, oldest first.
    pub devices: Vec<DeviceEntry>,
}

/// One device in [`DeviceList`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeviceEntry {
    /// Device id.
    pub device_id: String,
    /// `active` or `revoked`.
    pub status: &'static str,
    /// Registration time, RFC 3339.
    pub created_at: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// Whether this is the device of the bearer's session.
    pub current: bool,
}

impl DeviceEntry {
    fn new(device: DeviceRecord, current_device: &str) -> Self {
        Self {
            current: device.device_id == current_device,
            device_id: device.device_id,
            status: device.status.as_str(),
            created_at: rfc3339(device.created_at),
            public_key: hex::encode(device.public_key),
        }
    }
}

/// `GET /api/devices` → 200 [`DeviceList`].
///
/// # Errors
/// 401 without a valid bearer; 503/500 on store failures.
#[utoipa::path(
    get, path = "/api/devices", tag = "devices",
    responses(
        (status = 200, description = "Every device of the account", body = DeviceList),
        (status = 401, description = "No valid bearer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<DeviceList>, Problem> {
    let devices = state
        .store()
        .devices_of_user(&auth.user_id)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(Json(DeviceList {
        devices: devices
            .into_iter()
            .map(|d| DeviceEntry::new(d, &auth.device_id))
            .collect(),
    }))
}

/// Body of `POST /api/devices/revoke`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct RevokeRequest {
    /// The device to revoke.
    pub device_id: String,
}

/// Answer of `POST /api/devices/revoke`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Revoked {
    /// The revoked device.
    pub device_id: String,
    /// Always `revoked`.
    pub status: &'static str,
}

/// `POST /api/devices/revoke` `{"device_id"}` → 200 `{"device_id","status":"revoked"}`.
///
/// Marks the device revoked with a key event (deleting its stored sessions, so its bearer
/// tokens stop working) and ends its live session at once with a `Device Revoked` ERROR.
/// Revoking an already revoked device of the caller's account answers the same 200.
///
/// # Errors
/// 400 bad body; 401 no valid bearer; 404 unknown device; 403 device of another account;
/// 409 the caller's own device; 503/500 on store failures.
#[utoipa::path(
    post, path = "/api/devices/revoke", tag = "devices",
    request_body = RevokeRequest,
    responses(
        (status = 200, description = "Revoked; its live session ended", body = Revoked),
        (status = 400, description = "Body is not the expected JSON or a value is out of range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Device of another account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown device", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The caller's own device", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    auth: Authenticated,
    body: Bytes,
) -> Result<Json<Revoked>, Problem> {
    let request: RevokeRequest = parse_json(&body)?;
    let store = state.store();
    let device = store
        .device(&request.device_id)
        .await
        .map_err(|e| store_problem(&e))?
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                format!("no device {}", request.device_id),
            )
        })?;
    if device.user_id != auth.user_id {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "the device belongs to another account",
        ));
    }
    if device.device_id == auth.device_id {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "a device cannot revoke itself; revoke it from another device",
        ));
    }
    let detail = "this device has been revoked by another device of the account";
    let was_online = revoke_and_disconnect(&state, &device, detail).await?;
    tracing::info!(scope = "device", action = "revoke", device = %device.device_id, by = %auth.device_id, user = %auth.user_id, was_online, "device revoked");
    state.sessions.messaging().ledger.record("device", || {
        serde_json::json!({"event": "revoke", "device": device.device_id, "by": auth.device_id,
                           "user": auth.user_id, "was_online": was_online, "via": "rest"})
    });
    Ok(Json(Revoked {
        device_id: device.device_id,
        status: "revoked",
    }))
}

/// Marks `device` revoked with a key event (deleting its stored sessions) and ends its live
/// session at once with a `Device Revoked` ERROR carrying `detail`. Returns whether a session
/// was online. Used by REST revoke and by the operator console.
///
/// # Errors
/// 503/500 on store failures (nothing changed then).
pub(crate) async fn revoke_and_disconnect(
    state: &AppState,
    device: &DeviceRecord,
    detail: &str,
) -> Result<bool, Problem> {
    let event = key_event(
        &device.device_id,
        device.public_key,
        DeviceKeyEvent::REVOKE,
        unix_now(),
    );
    state
        .store()
        .revoke_device(&device.device_id, event)
        .await
        .map_err(|e| store_problem(&e))?;
    let was_online = state.sessions.hub().disconnect(
        &device.device_id,
        commucat_ccp::Problem::new(ProblemKind::DeviceRevoked).with_detail(detail),
    );
    // Its session may run on another node of the deployment.
    if let Some(cluster) = &state.sessions.messaging().cluster {
        cluster
            .ended(
                &device.device_id,
                crate::cluster::EndReason::Revoked,
                detail,
            )
            .await;
    }
    Ok(was_online)
}
