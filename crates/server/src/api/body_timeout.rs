//! REST request bodies must arrive within `bounds.rest_body_timeout`: a client that sends its
//! body slowly (or never finishes it) gets 408 `application/problem+json` instead of holding a
//! request open. `/connect` bodies are session streams and are not affected.
//!
//! The body is read here, before the handler runs (every REST handler reads the whole body
//! anyway), and at most [`REST_BODY_LIMIT`] bytes of it (413 beyond).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::AppState;
use super::problem::Problem;
use crate::config::Bound;
use crate::listener::http::PeerAddr;

/// Largest REST request body (axum's default body limit, which the handlers' extractors apply).
pub(crate) const REST_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Middleware: reads the whole REST request body within the configured time.
pub(crate) async fn read_in_time(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/connect" {
        return next.run(request).await;
    }
    let timeout: Duration = state.rest.body_timeout;
    let peer = request.extensions().get::<PeerAddr>().map(|p| p.0);
    let (parts, body) = request.into_parts();
    let collected = tokio::time::timeout(timeout, Limited::new(body, REST_BODY_LIMIT).collect());
    match collected.await {
        Ok(Ok(collected)) => {
            let request = Request::from_parts(parts, Body::from(collected.to_bytes()));
            next.run(request).await
        }
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {REST_BODY_LIMIT} bytes"),
        )
        .into_response(),
        Ok(Err(error)) => {
            Problem::bad_request(format!("request body could not be read: {error}")).into_response()
        }
        Err(_elapsed) => {
            let detail = format!(
                "request body did not arrive within {} s (bounds.rest_body_timeout)",
                timeout.as_secs()
            );
            let who = peer.map_or_else(String::new, |p| p.ip().to_string());
            state.sessions.messaging().refuse(
                Bound::RestBodyTimeout,
                "",
                &format!("{detail}; client {who}"),
            );
            Problem::new(StatusCode::REQUEST_TIMEOUT, detail).into_response()
        }
    }
}
