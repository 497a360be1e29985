//! The operator web console at `/admin`: server-rendered HTML pages (working without
//! JavaScript) behind the admin token, with everything they need embedded in the binary.
//!
//! - [`auth`]: login form and login (admin token → operator session cookie), logout, CSRF;
//! - [`operator_sessions`]: the bounded table of operator sessions with server-side expiry;
//! - [`sessions`]: live sessions of every node;
//! - [`pages`]: devices and key events, pairing codes, groups, offline queues;
//! - [`federation`]: federation peers and the outbox per peer;
//! - [`actions`]: revoking a device (ends its live session, as REST revoke does);
//! - [`metrics_view`]: metric values and live charts (the embedded `charts.js`);
//! - [`html`]: escaping, layout, the error page, security headers.
//!
//! Every request counts against the per-IP REST budget (the API router's rate-limit layer
//! wraps these routes too); login attempts have their own cap. Every action (login, failed
//! login, logout, revoke) writes a ledger record. See `docs/console.md`.

pub(crate) mod actions;
pub(crate) mod auth;
pub(crate) mod federation;
pub(crate) mod html;
pub(crate) mod metrics_view;
pub(crate) mod operator_sessions;
pub(crate) mod pages;
pub(crate) mod sessions;

use std::sync::Arc;

use axum::Router;
use axum::response::Redirect;
use axum::routing::{get, post};

use crate::api::AppState;
use crate::api::rate_limit::Limiter;

/// The console's own state.
#[derive(Debug)]
pub(crate) struct Console {
    /// Operator sessions.
    pub sessions: operator_sessions::OperatorSessions,
    /// Login attempts per client address.
    pub login_limiter: Limiter,
    /// BLAKE3 of `metrics.admin_token`; `None` disables the console.
    pub admin_token: Option<blake3::Hash>,
}

/// What console handlers get: the API's state and the console's.
#[derive(Debug, Clone)]
pub(crate) struct ConsoleState {
    /// The REST handlers' state (store, sessions, settings).
    pub app: AppState,
    /// Operator sessions and the login cap.
    pub console: Arc<Console>,
}

impl ConsoleState {
    /// This node's id, shown in every page's header.
    #[must_use]
    pub(crate) fn node(&self) -> String {
        self.app.sessions.messaging().settings.node_id.clone()
    }
}

/// The console's routes, to be merged into the API router (under its rate-limit and
/// body-timeout layers).
pub(crate) fn routes(app: AppState) -> Router<AppState> {
    let console = Arc::new(Console {
        sessions: operator_sessions::OperatorSessions::default(),
        login_limiter: Limiter::per_minute(auth::LOGIN_ATTEMPTS_PER_MINUTE),
        admin_token: app.rest.admin_token,
    });
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/sessions") }))
        .route("/admin/", get(|| async { Redirect::to("/admin/sessions") }))
        .route("/admin/login", get(auth::login_form).post(auth::login))
        .route("/admin/logout", post(auth::logout))
        .route("/admin/sessions", get(sessions::sessions))
        .route("/admin/devices", get(pages::devices))
        .route("/admin/devices/revoke", post(actions::revoke))
        .route("/admin/pairing", get(pages::pairing))
        .route("/admin/groups", get(pages::groups))
        .route("/admin/queues", get(pages::queues))
        .route("/admin/federation", get(federation::page_handler))
        .route("/admin/metrics", get(metrics_view::page_handler))
        .route("/admin/metrics.json", get(metrics_view::json))
        .route("/admin/charts.js", get(metrics_view::script))
        .route("/admin/console.css", get(metrics_view::stylesheet))
        .with_state(ConsoleState { app, console })
}
