//! `GET /healthz`: liveness; `GET /readyz`: readiness (the store answers).

use axum::Json;
use serde::Serialize;

/// Body of `GET /healthz`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Health {
    /// `"ok"` (liveness) or `"ready"` (readiness).
    pub status: &'static str,
}

/// `GET /healthz` → 200 `{"status":"ok"}`.
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz` → 200 `{"status":"ready"}` when the store answers a ping, else a 503 problem.
///
/// # Errors
/// 503 when the store does not answer.
pub async fn readyz(
    axum::extract::State(state): axum::extract::State<super::AppState>,
) -> Result<Json<Health>, super::problem::Problem> {
    match state.store().ping().await {
        Ok(()) => Ok(Json(Health { status: "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store unreachable");
            Err(super::problem::Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("store unreachable: {e}"),
            ))
        }
    }
}
