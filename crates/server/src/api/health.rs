//! `GET /healthz`: liveness; `GET /readyz`: readiness (the store answers).

use axum::Json;
use serde::Serialize;

use super::problem::Problem;

/// Body of `GET /healthz`.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Health {
    /// `"ok"` (liveness) or `"ready"` (readiness).
    pub status: &'static str,
}

/// `GET /healthz` → 200 `{"status":"ok"}`.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz` → 200 `{"status":"ready"}` when the store answers a ping, else a 503 problem.
///
/// # Errors
/// 503 when the store does not answer.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The store answers", body = Health),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn readyz(
    axum::extract::State(state): axum::extract::State<super::AppState>,
) -> Result<Json<Health>, Problem> {
    match state.store().ping().await {
        Ok(()) => Ok(Json(Health { status: "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store unreachable");
            Err(Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("store unreachable: {e}"),
            ))
        }
    }
}
