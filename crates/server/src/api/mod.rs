//! The HTTP API: one module per resource, assembled into one [`axum::Router`].

pub(crate) mod auth;
pub(crate) mod body_timeout;
pub(crate) mod devices;
pub(crate) mod federation;
pub(crate) mod friend_requests;
pub(crate) mod friends;
pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod openapi;
pub(crate) mod p2p;
pub(crate) mod pairing;
pub(crate) mod pairing_guard;

pub(crate) mod rate_limit;
pub(crate) mod rotate;
pub(crate) mod server_info;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{any, get, post};
use commucat_keys::DeviceKeyPair;
use commucat_store::Store;

pub(crate) use server_info::ServerInfo;

use crate::connect::ConnectService;
use crate::problem;

/// State shared by the handlers.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    /// The `/api/server-info` body; a key reload replaces its Noise keys.
    pub server_info: crate::live::Live<ServerInfo>,
    /// The `/connect` session service.
    pub sessions: crate::session::Sessions,
    /// `/connect` adapter settings.
    pub connect: crate::connect::ConnectSettings,
    /// What the REST handlers need beyond the session service.
    pub rest: Arc<RestSettings>,
}

impl axum::extract::FromRef<AppState> for ConnectService {
    fn from_ref(state: &AppState) -> Self {
        Self {
            settings: state.connect,
            sessions: state.sessions.clone(),
        }
    }
}

impl AppState {
    /// The store (shared with the sessions).
    #[must_use]
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.sessions.messaging().store
    }
}

/// Settings and keys of the REST handlers.
#[derive(Debug)]
pub(crate) struct RestSettings {
    /// Longest pairing-code lifetime (`devices.pairing_ttl`), seconds.
    pub pairing_ttl_secs: i64,
    /// Validity of certificates issued to claimed devices, seconds.
    pub certificate_validity_secs: i64,
    /// The device CA that signs device certificates.
    pub device_ca: DeviceKeyPair,
    /// What `/api/p2p/assist` publishes.
    pub p2p: p2p::P2pSettings,
    /// Per-IP limiters.
    pub rate_limits: rate_limit::RateLimits,
    /// BLAKE3 of `metrics.admin_token`, if set.
    pub admin_token: Option<blake3::Hash>,
    /// `POST /api/devices/rotate` policy.
    pub rotation: rotate::RotationPolicy,
    /// Wrong pairing guesses per address and account, and the per-code cap.
    pub pairing_guard: pairing_guard::PairingGuard,
    /// Failed claims after which a code is dead (`bounds.pairing_guesses_per_code`).
    pub pairing_attempts_per_code: u32,
    /// `bounds.rest_body_timeout`: time a REST request body may take to arrive.
    pub body_timeout: std::time::Duration,
}

impl RestSettings {
    /// The settings `config` asks for, with the server's device CA and post-quantum keys.
    ///
    /// # Errors
    /// The key bundle could not be signed.
    pub(crate) fn new(
        config: &crate::config::Config,
        keys: &crate::keys::ServerKeys,
        pq: &crate::keys::pq::PqKeys,
    ) -> Result<Self, crate::keys::pq::PqError> {
        use crate::clock::secs;
        let bundle = p2p::PqBundle::new(
            &config.server.domain,
            pq,
            &keys.device_ca.public_key(),
            &keys.noise.public(),
        )?;
        Ok(Self {
            pairing_ttl_secs: secs(config.devices.pairing_ttl),
            certificate_validity_secs: secs(config.devices.certificate_validity),
            device_ca: keys.device_ca.clone(),
            p2p: p2p::P2pSettings {
                prologue_hex: hex::encode(config.crypto.prologue.as_bytes()),
                bundle: crate::live::Live::new(bundle),
                relay_address: config.server.domain.clone(),
                relay_port: config.server.listen.port(),
            },
            rate_limits: rate_limit::RateLimits::new(
                &config.rate_limits,
                config.federation.events_per_minute,
            ),
            admin_token: config
                .metrics
                .admin_token
                .as_ref()
                .map(|t| blake3::hash(t.0.as_bytes())),
            rotation: rotate::RotationPolicy {
                enabled: config.devices.rotation_enabled,
                min_interval_secs: secs(config.devices.rotation_min_interval),
                proof_ttl_secs: secs(config.devices.rotation_proof_ttl),
            },
            pairing_guard: pairing_guard::PairingGuard::new(&config.bounds),
            pairing_attempts_per_code: u32::try_from(config.bounds.pairing_guesses_per_code)
                .unwrap_or(u32::MAX),
            body_timeout: config.bounds.rest_body_timeout,
        })
    }
}

pub(crate) use crate::clock::rfc3339;

/// All routes. Unknown paths and methods answer `application/problem+json`.
#[cfg(test)]
pub(crate) fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// All routes plus `extra` (the operator console), under the same rate-limit and body-timeout
/// layers. Unknown paths and methods answer `application/problem+json`.
pub(crate) fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let event_limit = state
        .sessions
        .messaging()
        .federation
        .as_ref()
        .map_or(64 * 1024, |f| f.settings().max_event_bytes);
    Router::new()
        .merge(extra)
        .route(
            "/federation/events",
            post(federation::events).layer(axum::extract::DefaultBodyLimit::max(event_limit)),
        )
        .route(
            "/federation/friend-request",
            post(federation::friend_request),
        )
        .route(
            crate::keys::federation::WELL_KNOWN_PATH,
            get(federation::well_known),
        )
        .route("/connect", any(crate::connect::connect))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/security-stats", get(metrics::security_stats))
        .route("/openapi.json", get(openapi::openapi))
        .route("/api/p2p/assist", post(p2p::handle).get(p2p::handle))
        .route("/api/server-info", get(server_info::server_info))
        .route("/api/server/info", get(server_info::server_info))
        .route("/api/devices", get(devices::list))
        .route("/api/devices/revoke", post(devices::revoke))
        .route("/api/devices/rotate", post(rotate::rotate))
        .route("/api/pair", post(pairing::issue))
        .route("/api/pairing", post(pairing::issue))
        .route("/api/pair/claim", post(pairing::claim))
        .route("/api/pairing/claim", post(pairing::claim))
        .route("/api/friends", get(friends::list).put(friends::replace))
        .route("/api/friends/requests", post(friend_requests::send))
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            body_timeout::read_in_time,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit,
        ))
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
        let store = commucat_store::SqliteStore::open_in_memory().await.unwrap();
        app_on(Arc::new(store))
    }

    fn app_on(store: Arc<dyn commucat_store::Store>) -> Router {
        app_with(
            store,
            Arc::new(crate::router::presence::LocalPresence::new()),
        )
    }

    fn app_with(
        store: Arc<dyn commucat_store::Store>,
        presence: Arc<dyn crate::router::presence::Presence>,
    ) -> Router {
        let keys = ServerKeys {
            noise: NoiseStaticKey::from_private(&[5; 32]),
            device_ca: DeviceKeyPair::from_seed(&[6; 32]),
        };
        let config = Config::default();
        let sessions = crate::server::sessions(&config, &keys, store, presence);
        // One key set for every app of the test binary, so answers compare across apps.
        static PQ: std::sync::OnceLock<crate::keys::pq::PqKeys> = std::sync::OnceLock::new();
        let pq = PQ.get_or_init(|| crate::keys::pq::PqKeys::generate().unwrap());
        router(AppState {
            server_info: crate::live::Live::new(ServerInfo::new(&config, &keys, pq)),
            rest: Arc::new(RestSettings::new(&config, &keys, pq).unwrap()),
            sessions,
            connect: crate::connect::ConnectSettings {
                keepalive: config.session.keepalive,
                max_frame_len: config.limits.max_frame_len,
                transport_buffer_bytes: crate::config::as_usize(
                    config.bounds.transport_buffer_bytes,
                ),
            },
        })
    }

    async fn call(method: &str, uri: &str) -> (StatusCode, Option<String>, serde_json::Value) {
        call_on(app().await, method, uri).await
    }

    async fn call_on(
        app: Router,
        method: &str,
        uri: &str,
    ) -> (StatusCode, Option<String>, serde_json::Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
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
    async fn readyz_follows_the_store() {
        let store = Arc::new(commucat_store::SqliteStore::open_in_memory().await.unwrap());
        let (status, _, body) = call_on(app_on(store.clone()), "GET", "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({"status": "ready"}));
        store.close().await;
        let (status, content_type, body) = call_on(app_on(store), "GET", "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(content_type.as_deref(), Some(problem::PROBLEM_JSON));
        assert_eq!(body["title"], "Service Unavailable");
        assert_eq!(body["down"], serde_json::json!(["store"]));
    }

    /// A registry whose backend is gone.
    #[derive(Debug)]
    struct DownRegistry;

    #[async_trait::async_trait]
    impl crate::router::presence::Presence for DownRegistry {
        async fn set(
            &self,
            _: &str,
            _: crate::router::presence::PresenceEntry,
        ) -> Result<(), PresenceError> {
            Err(down())
        }
        async fn get(
            &self,
            _: &str,
            _: i64,
        ) -> Result<Option<crate::router::presence::PresenceEntry>, PresenceError> {
            Err(down())
        }
        async fn remove(&self, _: &str) -> Result<(), PresenceError> {
            Err(down())
        }
        async fn set_route(
            &self,
            _: &str,
            _: &str,
            _: std::time::Duration,
        ) -> Result<(), PresenceError> {
            Err(down())
        }
        async fn route(&self, _: &str) -> Result<Option<String>, PresenceError> {
            Err(down())
        }
        async fn remove_route(&self, _: &str, _: &str) -> Result<bool, PresenceError> {
            Err(down())
        }
        async fn ping(&self) -> Result<(), PresenceError> {
            Err(down())
        }
        fn backend(&self) -> &'static str {
            "redis"
        }
    }

    use crate::router::presence::PresenceError;

    fn down() -> PresenceError {
        PresenceError("redis: connection refused".to_owned())
    }

    #[tokio::test]
    async fn readyz_names_every_dependency_that_is_down() {
        let store = Arc::new(commucat_store::SqliteStore::open_in_memory().await.unwrap());
        let (status, content_type, body) = call_on(
            app_with(store.clone(), Arc::new(DownRegistry)),
            "GET",
            "/readyz",
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(content_type.as_deref(), Some(problem::PROBLEM_JSON));
        assert_eq!(body["status"], 503);
        assert_eq!(body["down"], serde_json::json!(["presence"]));
        assert_eq!(
            body["detail"],
            "presence registry (redis) unreachable: presence registry unavailable: redis: connection refused"
        );
        store.close().await;
        let (_, _, body) = call_on(app_with(store, Arc::new(DownRegistry)), "GET", "/readyz").await;
        assert_eq!(body["down"], serde_json::json!(["store", "presence"]));
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let request = Request::builder()
            .uri("/metrics")
            .body(Body::empty())
            .unwrap();
        let response = app().await.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            crate::metrics::exposition::PROMETHEUS_TEXT
        );
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains("commucat_handshakes_total{result=\"ok\"} 0\n"),
            "{text}"
        );
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
