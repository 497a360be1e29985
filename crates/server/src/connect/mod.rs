//! `/connect`: the HTTP side of a session. Each mode is a thin adapter that turns the request
//! into a [`commucat_link::ByteStream`]; the session code above it does not know which mode is
//! in use.

mod http_body;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::Response;

pub use http_body::HttpBodyStream;

use crate::api::AppState;

/// Downstream chunks buffered per connection before the session task waits for the client.
const DOWNSTREAM_BUFFER: usize = 32;

/// `POST /connect` in binary mode: the request body carries frames upstream, the response body
/// carries frames downstream, both streamed. Works over HTTP/2 (full duplex on one stream) and
/// HTTP/1.1 (chunked request and response bodies).
pub async fn connect(State(state): State<AppState>, request: Request<Body>) -> Response {
    let remote = request
        .extensions()
        .get::<crate::listener::http::PeerAddr>()
        .map_or_else(|| "unknown".to_owned(), |peer| peer.0.to_string());
    let (stream, downstream) = HttpBodyStream::new(request.into_body(), DOWNSTREAM_BUFFER);
    let sessions = state.sessions.clone();
    tokio::spawn(async move {
        sessions.serve(stream, remote).await;
    });
    let mut response = Response::new(downstream);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-commucat-connect-mode",
        HeaderValue::from_static("binary"),
    );
    response
}
