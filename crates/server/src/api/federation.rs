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
use commucat_store::IdempotencyKey;

use super::AppState;
use crate::clock::{secs, unix_nanos_now, unix_now};
use crate::federation::inbound::{self, Checked, Refusal};
use crate::federation::{Counters, Federation};
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
    let checked = match inbound::check(&federation, &body, unix_nanos_now(), max_frame_len) {
        Ok(checked) => checked,
        Err(refusal) => return refuse(&state, &federation, &refusal),
    };
    if let Err(wait) = federation.admit(&checked.origin) {
        let refusal = Refusal {
            status: 429,
            title: "RateLimited",
            detail: format!(
                "more than {} events per minute from {}",
                federation.settings().events_per_minute,
                checked.origin
            ),
            origin: Some(checked.origin.clone()),
        };
        let mut response = refuse(&state, &federation, &refusal);
        if let Ok(value) = axum::http::HeaderValue::from_str(&wait.to_string()) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        return response;
    }
    deliver(&state, &federation, checked).await
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
