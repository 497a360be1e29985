//! `GET /metrics`: the server's counters in the Prometheus text format 0.0.4, or OpenMetrics 1.0
//! text when `Accept` asks for `application/openmetrics-text` ([`crate::metrics::exposition`]);
//! `GET /api/security-stats`: the `commucat_security_*` counters as JSON.
//!
//! Both need `Authorization: Bearer <metrics.admin_token>` when that token is configured (401
//! otherwise), and are open when it is not: they expose only counts.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;
use super::problem::Problem;
use crate::metrics::{Format, LedgerCounts, SecuritySnapshot};

/// Checks the admin bearer token if one is configured (hashes compared in constant time).
fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), Problem> {
    let Some(expected) = &state.rest.admin_token else {
        return Ok(());
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match token {
        Some(token) if blake3::hash(token.as_bytes()) == *expected => Ok(()),
        Some(_) => Err(Problem::new(StatusCode::UNAUTHORIZED, "wrong admin token")),
        None => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <metrics.admin_token>",
        )),
    }
}

/// `GET /metrics` → 200 Prometheus text 0.0.4 or OpenMetrics 1.0 text (by `Accept`).
///
/// # Errors
/// 401 without the configured admin token.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4 (default) or OpenMetrics 1.0 text (`Accept: application/openmetrics-text`)", content((String = "text/plain; version=0.0.4; charset=utf-8"), (String = "application/openmetrics-text; version=1.0.0; charset=utf-8"))),
        (status = 401, description = "Admin token configured and not given", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("admin" = []))
)]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, Problem> {
    admin(&state, &headers)?;
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let text = exposition(&state, format).await.map_err(|_| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], text))
}

/// Every metric in `format`, as `GET /metrics` answers it.
///
/// # Errors
/// The encoder failed (it writes into a `String`, so only on a bug).
pub(crate) async fn exposition(
    state: &AppState,
    format: Format,
) -> Result<String, std::fmt::Error> {
    let hub = state.sessions.hub();
    let federation = state.sessions.messaging().federation.clone();
    let outbox = match &federation {
        Some(_) => state
            .store()
            .outbox_stats(crate::clock::unix_now())
            .await
            .ok(),
        None => None,
    };
    hub.metrics.encode_with(
        format,
        hub.gauges(),
        LedgerCounts::of(&state.sessions.messaging().ledger),
        &crate::session::established::SENDER_CHECKED,
        |registry| {
            if let Some(federation) = &federation {
                federation.counters.register(registry, outbox.as_deref());
            }
        },
    )
}

/// `GET /api/security-stats` → 200 [`SecuritySnapshot`].
///
/// # Errors
/// 401 without the configured admin token.
#[utoipa::path(
    get, path = "/api/security-stats", tag = "operations",
    responses(
        (status = 200, description = "The security counters", body = SecuritySnapshot),
        (status = 401, description = "Admin token configured and not given", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("admin" = []))
)]
pub(crate) async fn security_stats(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<SecuritySnapshot>, Problem> {
    admin(&state, &headers)?;
    Ok(Json(state.sessions.hub().metrics.security()))
}
