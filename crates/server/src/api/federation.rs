//! `POST /federation/events`: signed events from peer domains (wire-compat §13), and
//! `GET /.well-known/commucat-federation`: this domain's federation key.
//!
//! An event that passes [`crate::federation::inbound::check`] and the peer's rate limit is
//! delivered to its target device: live if connected, else through the offline queue (for
//! frame types that are kept). Its `(origin, event_id)` is recorded first, for the replay
//! window, so a resend is answered `duplicate` and delivered to nobody; if delivery fails the
//! record is dropped again and the peer's retry is judged afresh. Every refusal is
//! `application/problem+json`, counted and (throttled) ledgered.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use commucat_ccp::{Frame, FrameType};
use commucat_store::{DeviceStatus, IdempotencyKey};

use super::AppState;
use crate::clock::{secs, unix_nanos_now, unix_now};
use crate::federation::inbound::{self, Checked, Refusal};
use crate::federation::{Counters, Federation};
use crate::federation::{discovery, friend_request};
use crate::problem::Problem;
use crate::router::relay::queueable;

/// Scope of the idempotency keys recording inbound events of `origin`.
#[must_use]
pub(crate) fn replay_scope(origin: &str) -> String {
    format!("federation:{origin}")
}

/// `POST /federation/events`.
pub(crate) async fn events(State(state): State<AppState>, body: Bytes) -> Response {
    let messaging = state.sessions.messaging();
    let Some(federation) = messaging.federation.clone().filter(|f| f.enabled()) else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "federation is not enabled on this server",
        )
        .into_response();
    };
    let max_frame_len = state.connect.max_frame_len;
    let mut result = inbound::check(&federation, &body, unix_nanos_now(), max_frame_len);
    if let Err(refusal) = &result
        && let Some(origin) = rotated(&federation, refusal).await
    {
        tracing::debug!(peer = %origin, "checking the event again with the peer's new key");
        result = inbound::check(&federation, &body, unix_nanos_now(), max_frame_len);
    }
    let checked = match result {
        Ok(checked) => checked,
        Err(refusal) => return refuse(&state, &federation, &refusal),
    };
    if let Some(limited) = over_rate(&state, &federation, &checked.origin) {
        return limited;
    }
    deliver(&state, &federation, checked).await
}

/// After a signature refusal from a configured origin: whether that peer has rotated its key
/// to one this server now accepts ([`discovery::refresh`], throttled per peer); the origin if
/// so, and the event should be checked again.
async fn rotated(federation: &Federation, refusal: &Refusal) -> Option<String> {
    if refusal.title != "InvalidSignature" {
        return None;
    }
    let origin = refusal.origin.clone()?;
    (discovery::refresh(federation, &origin).await == discovery::Refresh::Learned).then_some(origin)
}

/// The 429 answer when `origin` is over its rate (one token taken otherwise).
fn over_rate(state: &AppState, federation: &Federation, origin: &str) -> Option<Response> {
    let wait = federation.admit(origin).err()?;
    let refusal = Refusal {
        status: 429,
        title: "RateLimited",
        detail: format!(
            "more than {} events per minute from {origin}",
            federation.settings().events_per_minute
        ),
        origin: Some(origin.to_owned()),
    };
    let mut response = refuse(state, federation, &refusal);
    if let Ok(value) = axum::http::HeaderValue::from_str(&wait.to_string()) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
    Some(response)
}

/// `POST /federation/friend-request`: a signed friend request from a peer's user, delivered to
/// every active device of the local user it names (GROUP_EVENT on channel 0, live or queued);
/// a repeated `request_id` is answered `duplicate`.
pub(crate) async fn friend_request(State(state): State<AppState>, body: Bytes) -> Response {
    let messaging = state.sessions.messaging();
    let Some(federation) = messaging.federation.clone().filter(|f| f.enabled()) else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "federation is not enabled on this server",
        )
        .into_response();
    };
    let mut result = friend_request::check(&federation, &body);
    if let Err(refusal) = &result
        && rotated(&federation, refusal).await.is_some()
    {
        result = friend_request::check(&federation, &body);
    }
    let checked = match result {
        Ok(checked) => checked,
        Err(refusal) => return refuse(&state, &federation, &refusal),
    };
    if let Some(limited) = over_rate(&state, &federation, &checked.origin) {
        return limited;
    }
    let store = state.store();
    let user = match store.user_by_handle(&checked.to_handle).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let refusal = Refusal {
                status: 404,
                title: "UnknownUser",
                detail: format!("no user {} here", checked.request.to.trim()),
                origin: Some(checked.origin.clone()),
            };
            return refuse(&state, &federation, &refusal);
        }
        Err(e) => return unavailable(&format!("store: {e}")),
    };
    let devices: Vec<String> = match store.devices_of_user(&user.user_id).await {
        Ok(devices) => devices
            .into_iter()
            .filter(|d| d.status == DeviceStatus::Active)
            .map(|d| d.device_id)
            .collect(),
        Err(e) => return unavailable(&format!("store: {e}")),
    };
    let now = unix_now();
    let scope = format!("federation-friend:{}", checked.origin);
    let key = IdempotencyKey {
        scope: scope.clone(),
        key: checked.request.request_id.clone(),
        expires_at: now.saturating_add(secs(federation.settings().replay_window)),
    };
    match store.claim_key(key, now).await {
        Ok(true) => {}
        Ok(false) => {
            Counters::bump(&federation.counters.duplicates);
            return (
                StatusCode::OK,
                Json(serde_json::json!({"status": "duplicate"})),
            )
                .into_response();
        }
        Err(e) => return unavailable(&format!("store: {e}")),
    }
    let notice = friend_request::notice(&checked, &user.user_id);
    let delivered = match Frame::control(FrameType::GroupEvent, 0, 0, &notice) {
        Ok(frame) => {
            let targets = messaging.hub.targets_of(&devices);
            match messaging
                .relay()
                .durable(checked.request.from.trim(), &frame, targets, None)
                .await
            {
                Ok(routed) if routed.refused.is_empty() => Ok(()),
                Ok(_) => Err("the user's offline queue is over its quota; retry later".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(reason) = delivered {
        if let Err(e) = store.release_key(&scope, &checked.request.request_id).await {
            tracing::warn!(origin = %checked.origin, error = %e, "could not forget a failed friend request's id");
        }
        return unavailable(&reason);
    }
    Counters::bump(&federation.counters.received);
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"status": "accepted"})),
    )
        .into_response()
}

async fn deliver(state: &AppState, federation: &Federation, checked: Checked) -> Response {
    let messaging = state.sessions.messaging();
    let store = state.store();
    match store
        .active_devices_among(std::slice::from_ref(&checked.target))
        .await
    {
        Ok(known) if known.is_empty() => {
            let refusal = Refusal {
                status: 404,
                title: "UnknownDevice",
                detail: format!("{} is not a device of this server", checked.target),
                origin: Some(checked.origin.clone()),
            };
            return refuse(state, federation, &refusal);
        }
        Ok(_) => {}
        Err(e) => return unavailable(&format!("store: {e}")),
    }
    let now = unix_now();
    let scope = replay_scope(&checked.origin);
    let key = IdempotencyKey {
        scope: scope.clone(),
        key: checked.event_id.clone(),
        expires_at: now.saturating_add(secs(federation.settings().replay_window)),
    };
    match store.claim_key(key, now).await {
        Ok(true) => {}
        Ok(false) => {
            Counters::bump(&federation.counters.duplicates);
            return (
                StatusCode::OK,
                Json(serde_json::json!({"status": "duplicate"})),
            )
                .into_response();
        }
        Err(e) => return unavailable(&format!("store: {e}")),
    }
    let relay = messaging.relay();
    let targets = messaging
        .hub
        .targets_of(std::slice::from_ref(&checked.target));
    let delivered = if queueable(checked.frame.frame_type()) {
        match relay
            .durable(&checked.sender, &checked.frame, targets, None)
            .await
        {
            Ok(routed) if routed.refused.is_empty() => Ok(()),
            Ok(_) => Err(format!(
                "the offline queue of {} is over its quota; retry later",
                checked.target
            )),
            Err(e) => Err(e.to_string()),
        }
    } else {
        relay.live(&checked.sender, &checked.frame, targets);
        Ok(())
    };
    if let Err(reason) = delivered {
        if let Err(e) = store.release_key(&scope, &checked.event_id).await {
            tracing::warn!(origin = %checked.origin, error = %e, "could not forget a failed event's id; its retry will be answered duplicate");
        }
        return unavailable(&reason);
    }
    Counters::bump(&federation.counters.received);
    tracing::debug!(origin = %checked.origin, event_id = %checked.event_id, target = %checked.target, "federation event delivered");
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"status": "accepted"})),
    )
        .into_response()
}

/// Counts, ledgers and answers a refusal.
fn refuse(state: &AppState, federation: &Federation, refusal: &Refusal) -> Response {
    Counters::bump(&federation.counters.refused);
    federation.record_refusal(&state.sessions.messaging().ledger, refusal);
    tracing::info!(origin = ?refusal.origin, status = refusal.status, title = refusal.title, detail = %refusal.detail, "federation event refused");
    Problem {
        kind: "about:blank",
        title: refusal.title,
        status: refusal.status,
        detail: refusal.detail.clone(),
        retry_after: None,
    }
    .into_response()
}

fn unavailable(detail: &str) -> Response {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail)
        .with_retry_after(5)
        .into_response()
}

/// `GET /.well-known/commucat-federation`.
pub(crate) async fn well_known(State(state): State<AppState>) -> Response {
    match state.server_info.load().federation.clone() {
        Some(info) => Json(info).into_response(),
        None => {
            Problem::new(StatusCode::NOT_FOUND, "this server has no federation key").into_response()
        }
    }
}
