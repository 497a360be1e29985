//! `GET /healthz`: liveness.

use axum::Json;
use serde::Serialize;

/// Body of `GET /healthz`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Health {
    /// Always `"ok"` while the server answers.
    pub status: &'static str,
}

/// `GET /healthz` → 200 `{"status":"ok"}`.
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}
