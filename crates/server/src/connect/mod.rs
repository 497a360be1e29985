//! `/connect`: the HTTP side of a session. Each mode is a thin adapter that turns the request
//! into a [`commucat_link::ByteStream`]; the session code above it does not know which mode is
//! in use. See `docs/connect-modes.md`.

pub(crate) mod budget;
mod http_body;
pub(crate) mod mode;
pub(crate) mod ndjson;
pub(crate) mod sse;
mod text_stream;
mod websocket;

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, State, WebSocketUpgrade};
use axum::http::{HeaderValue, Method, Request, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

pub(crate) use http_body::HttpBodyStream;
pub(crate) use mode::ConnectMode;
pub(crate) use text_stream::{TextEncoding, TextStream};
pub(crate) use websocket::WsStream;

use crate::session::Sessions;

/// Downstream chunks buffered per connection before the session task waits for the client.
const DOWNSTREAM_BUFFER: usize = 32;

/// What the adapters need from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectSettings {
    /// `session.keepalive`: SSE/NDJSON keepalive cadence and WebSocket ping cadence / idle
    /// time-out derive from it.
    pub keepalive: Duration,
    /// `limits.max_frame_len`: also the largest WebSocket message accepted.
    pub max_frame_len: usize,
    /// `bounds.transport_buffer_bytes`: bytes a WebSocket or HTTP body holds for a client
    /// that is not reading.
    pub transport_buffer_bytes: usize,
}

/// What the `/connect` handler needs: its settings and the session service.
#[derive(Debug, Clone)]
pub(crate) struct ConnectService {
    /// Adapter settings.
    pub settings: ConnectSettings,
    /// The session service each connection is handed to.
    pub sessions: Sessions,
}

/// `/connect` in every mode: binary (HTTP/2 duplex POST or HTTP/1.1 chunked POST), SSE,
/// NDJSON streaming, and WebSocket (HTTP/1.1 upgrade or HTTP/2 extended CONNECT).
pub(crate) async fn connect(
    State(service): State<ConnectService>,
    request: Request<Body>,
) -> Response {
    let remote = request
        .extensions()
        .get::<crate::listener::http::PeerAddr>()
        .map_or_else(|| "unknown".to_owned(), |peer| peer.0.to_string());
    let h2_websocket = request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    let mode = mode::select(request.uri().query(), request.headers(), h2_websocket);
    // The session's label names the transport: the mode and the HTTP version under it.
    let version = match request.version() {
        Version::HTTP_2 => crate::transport::HttpVersion::H2,
        Version::HTTP_3 => crate::transport::HttpVersion::H3,
        _ => crate::transport::HttpVersion::H1,
    };
    let transport = crate::transport::transport_id(mode.label(), version);
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_traceparent(v))
        .unwrap_or("")
        .to_owned();
    let span = tracing::info_span!(
        "connect",
        mode = mode.label(),
        %remote,
        traceparent = %traceparent,
    );
    let ConnectService { settings, sessions } = service;
    let budget = budget::ByteBudget::new(
        settings.transport_buffer_bytes,
        std::sync::Arc::clone(&sessions.hub().metrics),
    );

    if mode == ConnectMode::WebSocket {
        // The upgraded session outlives this request: it keeps its connection busy (not idle)
        // until it ends.
        let busy = request
            .extensions()
            .get::<crate::listener::activity::Activity>()
            .map(crate::listener::activity::Activity::busy);
        let (mut parts, _body) = request.into_parts();
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => return rejection.into_response(),
        };
        let mut response = upgrade
            .max_message_size(settings.max_frame_len)
            .max_frame_size(settings.max_frame_len)
            .on_upgrade(move |socket| {
                // Axum runs this on the upgrade's own task; the drain tracks it from here.
                let drain = sessions.drain().clone();
                drain.track(
                    async move {
                        let _busy = busy;
                        let stream =
                            WsStream::spawn(socket, DOWNSTREAM_BUFFER, budget, settings.keepalive);
                        sessions.serve(stream, remote, transport).await;
                    }
                    .instrument(span),
                )
            });
        response.headers_mut().insert(
            "x-commucat-connect-mode",
            HeaderValue::from_static(mode.label()),
        );
        return response;
    }

    if request.method() != Method::POST {
        let (method, uri) = (request.method().clone(), request.uri().clone());
        return crate::problem::method_not_allowed(method, uri)
            .await
            .into_response();
    }
    let version = request.version();
    let body = match mode {
        ConnectMode::Binary | ConnectMode::WebSocket => {
            let (stream, downstream) =
                HttpBodyStream::new(request.into_body(), DOWNSTREAM_BUFFER, budget);
            let drain = sessions.drain().clone();
            drain.spawn(
                async move { sessions.serve(stream, remote, transport).await }.instrument(span),
            );
            downstream
        }
        ConnectMode::Sse | ConnectMode::Ndjson => {
            let encoding = if mode == ConnectMode::Sse {
                TextEncoding::Sse
            } else {
                TextEncoding::Ndjson
            };
            let (stream, downstream) = TextStream::new(
                request.into_body(),
                encoding,
                DOWNSTREAM_BUFFER,
                settings.max_frame_len,
                settings.keepalive,
                budget,
            );
            let drain = sessions.drain().clone();
            drain.spawn(
                async move { sessions.serve(stream, remote, transport).await }.instrument(span),
            );
            downstream
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(mode.content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-commucat-connect-mode",
        HeaderValue::from_static(mode.label()),
    );
    // `connection` is a hop-by-hop header HTTP/2 forbids.
    if mode == ConnectMode::Sse && version < Version::HTTP_2 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    response
}

/// W3C trace context: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>` (version 00
/// layout; later versions may append fields after a dash).
fn valid_traceparent(value: &str) -> bool {
    let mut parts = value.split('-');
    let hex = |s: Option<&str>, len: usize| {
        s.is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let version = parts.next();
    hex(version, 2)
        && version != Some("ff")
        && hex(parts.next(), 32)
        && hex(parts.next(), 16)
        && hex(parts.next(), 2)
        && (version != Some("00") || parts.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::valid_traceparent;

    #[test]
    fn traceparent_format() {
        assert!(valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent("00-xyz-00f067aa0ba902b7-01"));
        assert!(!valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        ));
        assert!(!valid_traceparent(""));
    }
}
