//! The HTTP API: one module per resource, assembled into one [`axum::Router`].

pub mod health;
pub mod problem;
pub mod server_info;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get};

pub use server_info::ServerInfo;

/// State shared by the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The `/api/server-info` body, fixed at startup.
    pub server_info: Arc<ServerInfo>,
    /// The `/connect` session service.
    pub sessions: crate::session::Sessions,
    /// `/connect` adapter settings.
    pub connect: crate::connect::ConnectSettings,
}

/// All routes. Unknown paths and methods answer `application/problem+json`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/connect", any(crate::connect::connect))
        .route("/healthz", get(health::healthz))
        .route("/api/server-info", get(server_info::server_info))
        .route("/api/server/info", get(server_info::server_info))
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode, header};
    use commucat_keys::DeviceKeyPair;
    use tower::ServiceExt;

    use super::*;
    use crate::config::Config;
    use crate::keys::{NoiseStaticKey, ServerKeys};

    async fn app() -> Router {
        let keys = ServerKeys {
            noise: NoiseStaticKey::from_private(&[5; 32]),
            device_ca: DeviceKeyPair::from_seed(&[6; 32]),
        };
        let store: Arc<dyn commucat_store::Store> =
            Arc::new(commucat_store::SqliteStore::open_in_memory().await.unwrap());
        let config = Config::default();
        let sessions = crate::server::sessions(&config, &keys, store);
        router(AppState {
            server_info: Arc::new(ServerInfo::new(&config, &keys)),
            sessions,
            connect: crate::connect::ConnectSettings {
                keepalive: config.session.keepalive,
                max_frame_len: config.limits.max_frame_len,
            },
        })
    }

    async fn call(method: &str, uri: &str) -> (StatusCode, Option<String>, serde_json::Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = app().await.oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, content_type, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn healthz_is_ok() {
        let (status, content_type, body) = call("GET", "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(body, serde_json::json!({"status": "ok"}));
    }

    #[tokio::test]
    async fn server_info_and_its_alias_agree() {
        let (status, _, info) = call("GET", "/api/server-info").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            info["noise_public"],
            hex::encode(commucat_keys::x25519_public(&[5; 32]))
        );
        let (status, _, alias) = call("GET", "/api/server/info").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(info, alias);
    }

    #[tokio::test]
    async fn unknown_path_is_a_404_problem() {
        let (status, content_type, body) = call("GET", "/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(content_type.as_deref(), Some(problem::PROBLEM_JSON));
        assert_eq!(
            body,
            serde_json::json!({
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": "no resource at GET /nowhere",
            })
        );
    }

    #[tokio::test]
    async fn wrong_method_is_a_405_problem() {
        let (status, content_type, body) = call("POST", "/healthz").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(content_type.as_deref(), Some(problem::PROBLEM_JSON));
        assert_eq!(body["title"], "Method Not Allowed");
        assert_eq!(body["status"], 405);
    }
}
