//! `GET /metrics`: the server's counters in the Prometheus text format
//! ([`crate::metrics::Metrics`]). Unauthenticated: it exposes only counts (no admin token is
//! configurable yet).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;

/// Content type of the Prometheus text exposition format 0.0.4.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics` → 200 Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        state.sessions.hub().metrics.render(),
    )
}
