//! Console actions (POST, CSRF-checked, written to the ledger): revoking a device.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::ConsoleState;
use super::auth::{Operator, form};
use super::html::{ConsoleError, esc, page};
use crate::api::auth::store_problem;
use crate::api::devices::revoke_and_disconnect;

/// `POST /admin/devices/revoke` `csrf=…&device_id=…`: revokes the device as REST revoke does
/// (key event, stored sessions deleted) and ends its live session at once with a `Device
/// Revoked` ERROR. Revoking a revoked device changes nothing and says so.
///
/// # Errors
/// 403 without the CSRF token; 400 without a device id; 404 unknown device; 503/500 on store
/// failures.
pub(crate) async fn revoke(
    State(state): State<ConsoleState>,
    op: Operator,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let fields = form(&body);
    op.check_csrf(&fields)?;
    let device_id = fields
        .get("device_id")
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| ConsoleError::new(StatusCode::BAD_REQUEST, "no device_id in the form"))?;
    let device = state
        .app
        .store()
        .device(&device_id)
        .await
        .map_err(|e| ConsoleError::from(store_problem(&e)))?
        .ok_or_else(|| {
            ConsoleError::new(StatusCode::NOT_FOUND, format!("no device {device_id}"))
        })?;
    let node = state.node();
    if device.status == commucat_store::DeviceStatus::Revoked {
        let body = format!(
            "<p id=\"result\">Device <code>{}</code> was already revoked; nothing changed.</p>\
             <p><a href=\"/admin/devices\">Back to the devices</a></p>",
            esc(&device.device_id)
        );
        return Ok(page(
            "Device revoked",
            "/admin/devices",
            Some(&op.csrf),
            &node,
            &body,
        ));
    }
    let was_online = revoke_and_disconnect(
        &state.app,
        &device,
        "this device has been revoked by the server's operator",
    )
    .await?;
    tracing::info!(scope = "device", action = "revoke", device = %device.device_id, by = "console", user = %device.user_id, was_online, "device revoked from the console");
    state.app.sessions.messaging().ledger.record("device", || {
        serde_json::json!({"event": "revoke", "device": device.device_id, "by": "operator",
                           "user": device.user_id, "was_online": was_online, "via": "console"})
    });
    let ended = if was_online {
        "its live session was ended"
    } else {
        "it was not connected"
    };
    let body = format!(
        "<p id=\"result\">Device <code>{}</code> revoked; {ended}.</p>\
         <p><a href=\"/admin/devices\">Back to the devices</a></p>",
        esc(&device.device_id)
    );
    Ok(page(
        "Device revoked",
        "/admin/devices",
        Some(&op.csrf),
        &node,
        &body,
    ))
}
