//! `GET /healthz`: liveness; `GET /readyz`: readiness (the store and the presence registry
//! answer).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Body of `GET /healthz`.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `"ok"` (liveness) or `"ready"` (readiness).
    pub status: &'static str,
}

/// `GET /healthz` → 200 `{"status":"ok"}`.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health))
)]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The 503 body of `GET /readyz`: a problem details object that also lists what is down.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub(crate) struct NotReady {
    /// `about:blank`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `Service Unavailable`.
    pub title: &'static str,
    /// 503.
    pub status: u16,
    /// One sentence per dependency that did not answer.
    pub detail: String,
    /// The dependencies that did not answer: `"store"`, `"presence"`.
    pub down: Vec<&'static str>,
}

impl IntoResponse for NotReady {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(super::problem::PROBLEM_JSON),
        );
        response
    }
}

/// `GET /readyz` → 200 `{"status":"ready"}` when the store answers a ping and the presence
/// registry (Redis, when configured) answers a PING; otherwise 503 naming what is down. Both
/// are asked at once, so the answer takes at most the slower one's timeout
/// (`store.acquire_timeout`, the Redis response timeout).
///
/// # Errors
/// 503 when a dependency does not answer.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The store and the presence registry answer", body = Health),
        (status = 503, description = "A dependency is down (`down` names it)", body = NotReady, content_type = "application/problem+json")
    )
)]
pub(crate) async fn readyz(
    axum::extract::State(state): axum::extract::State<super::AppState>,
) -> Result<Json<Health>, NotReady> {
    let presence = &state.sessions.messaging().presence;
    let (store, registry) = tokio::join!(state.store().ping(), presence.ping());
    let mut down = Vec::new();
    let mut details = Vec::new();
    if let Err(e) = store {
        tracing::warn!(error = %e, "readiness check: store unreachable");
        down.push("store");
        details.push(format!("store unreachable: {e}"));
    }
    if let Err(e) = registry {
        tracing::warn!(error = %e, backend = presence.backend(), "readiness check: presence registry unreachable");
        down.push("presence");
        details.push(format!(
            "presence registry ({}) unreachable: {e}",
            presence.backend()
        ));
    }
    if down.is_empty() {
        return Ok(Json(Health { status: "ready" }));
    }
    Err(NotReady {
        kind: "about:blank",
        title: "Service Unavailable",
        status: 503,
        detail: details.join("; "),
        down,
    })
}
