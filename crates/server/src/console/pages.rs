//! The read-only pages (live sessions are in [`super::sessions`]): devices (with key events
//! and a revoke button), pairing codes, groups and rosters, offline queue depth per device.
//! Each lists at most [`LIST_LIMIT`] rows and says so when it is cut.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Response;
use commucat_store::{DeviceStatus, UsageScope};

use super::ConsoleState;
use super::auth::Operator;
use super::html::{ConsoleError, csrf_field, esc, page, table, time};
use crate::api::auth::store_problem;
use crate::clock::unix_now;

/// Most rows a page lists.
pub(crate) const LIST_LIMIT: u32 = 500;

fn cut_note(shown: usize) -> String {
    if u32::try_from(shown).unwrap_or(u32::MAX) >= LIST_LIMIT {
        format!("<p class=\"note\">Only the first {LIST_LIMIT} are listed.</p>")
    } else {
        String::new()
    }
}

pub(crate) fn code(text: &str) -> String {
    format!("<code>{}</code>", esc(text))
}

fn store_error(e: &commucat_store::StoreError) -> ConsoleError {
    ConsoleError::from(store_problem(e))
}

/// `GET /admin/devices`: every device, its account, state, key events and a revoke button.
///
/// # Errors
/// 503/500 on store failures.
pub(crate) async fn devices(
    State(state): State<ConsoleState>,
    op: Operator,
) -> Result<Response, ConsoleError> {
    let store = state.app.store();
    let devices = store
        .list_devices(LIST_LIMIT)
        .await
        .map_err(|e| store_error(&e))?;
    let hub = state.app.sessions.hub();
    let mut handles: HashMap<String, String> = HashMap::new();
    let mut rows = Vec::with_capacity(devices.len());
    for device in &devices {
        if !handles.contains_key(&device.user_id) {
            let handle = store
                .user(&device.user_id)
                .await
                .map_err(|e| store_error(&e))?
                .map(|u| u.handle)
                .unwrap_or_default();
            handles.insert(device.user_id.clone(), handle);
        }
        let events = store
            .key_events(&device.device_id)
            .await
            .map_err(|e| store_error(&e))?;
        let mut history = String::from("<ul>");
        for e in &events {
            let _ = write!(
                history,
                "<li>{} {} <code>{}…</code></li>",
                time(e.recorded_at),
                esc(&e.action),
                esc(&hex::encode(&e.public_key[..8]))
            );
        }
        history.push_str("</ul>");
        let status = device.status.as_str();
        let action = if device.status == DeviceStatus::Active {
            format!(
                "<form method=\"post\" action=\"/admin/devices/revoke\" class=\"inline\">{}\
                 <input type=\"hidden\" name=\"device_id\" value=\"{id}\">\
                 <button type=\"submit\" class=\"danger\" data-device=\"{id}\">Revoke</button>\
                 </form>",
                csrf_field(&op.csrf),
                id = esc(&device.device_id)
            )
        } else {
            String::new()
        };
        rows.push(vec![
            code(&device.device_id),
            format!(
                "{}<br>{}",
                esc(handles.get(&device.user_id).map_or("", String::as_str)),
                code(&device.user_id)
            ),
            format!("<span class=\"status-{status}\">{status}</span>"),
            if hub.is_online(&device.device_id) {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            time(device.created_at),
            history,
            action,
        ]);
    }
    let body = format!(
        "{}{}",
        table(
            "devices",
            &[
                "Device",
                "User",
                "Status",
                "Online",
                "Registered",
                "Key events",
                ""
            ],
            &rows,
            "No device is registered.",
        ),
        cut_note(devices.len())
    );
    Ok(page(
        "Devices",
        "/admin/devices",
        Some(&op.csrf),
        &state.node(),
        &body,
    ))
}

/// `GET /admin/pairing`: pairing codes, newest first, with their state.
///
/// # Errors
/// 503/500 on store failures.
pub(crate) async fn pairing(
    State(state): State<ConsoleState>,
    op: Operator,
) -> Result<Response, ConsoleError> {
    let codes = state
        .app
        .store()
        .list_pairings(LIST_LIMIT)
        .await
        .map_err(|e| store_error(&e))?;
    let now = unix_now();
    let cap = state.app.rest.pairing_attempts_per_code;
    let rows: Vec<Vec<String>> = codes
        .iter()
        .map(|p| {
            let state_cell = match (&p.redeemed_device_id, p.redeemed_at) {
                (Some(device), Some(at)) => {
                    format!("redeemed by {} at {}", code(device), time(at))
                }
                _ if p.expires_at <= now => "<span class=\"state-expired\">expired</span>".into(),
                _ if p.attempts >= cap => {
                    "<span class=\"state-dead\">too many wrong guesses</span>".into()
                }
                _ => "<span class=\"state-active\">open</span>".into(),
            };
            vec![
                code(&p.code),
                code(&p.user_id),
                code(&p.issuer_device_id),
                time(p.issued_at),
                time(p.expires_at),
                format!("{} of {cap}", p.attempts),
                state_cell,
            ]
        })
        .collect();
    let body = format!(
        "{}{}",
        table(
            "pairing",
            &[
                "Code",
                "User",
                "Issued by",
                "Issued",
                "Expires",
                "Failed claims",
                "State"
            ],
            &rows,
            "No pairing code is stored (expired codes are purged).",
        ),
        cut_note(codes.len())
    );
    Ok(page(
        "Pairing codes",
        "/admin/pairing",
        Some(&op.csrf),
        &state.node(),
        &body,
    ))
}

/// `GET /admin/groups`: every group and its roster.
///
/// # Errors
/// 503/500 on store failures.
pub(crate) async fn groups(
    State(state): State<ConsoleState>,
    op: Operator,
) -> Result<Response, ConsoleError> {
    let store = state.app.store();
    let groups = store
        .list_groups(LIST_LIMIT)
        .await
        .map_err(|e| store_error(&e))?;
    let mut rows = Vec::with_capacity(groups.len());
    for g in &groups {
        let members = store
            .group_members(&g.group_id)
            .await
            .map_err(|e| store_error(&e))?;
        let mut roster = String::from("<ul>");
        for m in &members {
            let _ = write!(
                roster,
                "<li>{} — {} since {}</li>",
                code(&m.device_id),
                m.role.as_str(),
                time(m.joined_at)
            );
        }
        roster.push_str("</ul>");
        rows.push(vec![
            code(&g.group_id),
            esc(g.name.as_deref().unwrap_or("")),
            code(&g.owner_device),
            if g.relay { "relay" } else { "peer-to-peer" }.to_owned(),
            time(g.created_at),
            roster,
        ]);
    }
    let body = format!(
        "{}{}",
        table(
            "groups",
            &["Group", "Name", "Owner", "Media", "Created", "Roster"],
            &rows,
            "No group exists.",
        ),
        cut_note(groups.len())
    );
    Ok(page(
        "Groups",
        "/admin/groups",
        Some(&op.csrf),
        &state.node(),
        &body,
    ))
}

/// `GET /admin/queues`: offline queue depth per device, deepest first, and the total.
///
/// # Errors
/// 503/500 on store failures.
pub(crate) async fn queues(
    State(state): State<ConsoleState>,
    op: Operator,
) -> Result<Response, ConsoleError> {
    let store = state.app.store();
    let depths = store
        .queue_depths(unix_now(), LIST_LIMIT)
        .await
        .map_err(|e| store_error(&e))?;
    let total = store
        .queue_usage(UsageScope::Total)
        .await
        .map_err(|e| store_error(&e))?;
    let hub = state.app.sessions.hub();
    let rows: Vec<Vec<String>> = depths
        .iter()
        .map(|(device, depth)| {
            vec![
                code(device),
                depth.to_string(),
                if hub.is_online(device) { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    let body = format!(
        "<p id=\"queue-total\">{} queue entries, {} bytes in total (expired entries count \
         until purged).</p>{}{}",
        total.frames,
        total.bytes,
        table(
            "queues",
            &["Device", "Envelopes waiting", "Online"],
            &rows,
            "No envelope is waiting.",
        ),
        cut_note(depths.len())
    );
    Ok(page(
        "Offline queues",
        "/admin/queues",
        Some(&op.csrf),
        &state.node(),
        &body,
    ))
}
