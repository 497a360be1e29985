//! One HTTP/3 request through the server's router.
//!
//! The request stream is split: its receive half becomes the request body (for `/connect`, the
//! session's upstream bytes) and the router's response body is written to its send half (the
//! session's downstream). The session code behind `/connect` is the one HTTP/2 and HTTP/1.1
//! use; it does not know the bytes travel over QUIC.

use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use bytes::{Buf, Bytes};
use http::Version;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::activity::Activity;
use super::http::PeerAddr;

type Resolver = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;
type RecvHalf = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// Hop-by-hop headers HTTP/3 forbids (RFC 9114 §4.2).
const HOP_BY_HOP: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Reads the request, runs it through `router` and streams the response back. The request
/// counts as in progress on its connection until its response has been sent.
pub(super) async fn request(
    resolver: Resolver,
    router: Router,
    peer: SocketAddr,
    activity: Activity,
) {
    let _busy = activity.busy();
    let (head, stream) = match resolver.resolve_request().await {
        Ok(resolved) => resolved,
        Err(error) => {
            tracing::debug!(%peer, %error, "HTTP/3 request headers unreadable");
            return;
        }
    };
    let (mut send, recv) = stream.split();
    let (mut parts, ()) = head.into_parts();
    parts.version = Version::HTTP_3;
    parts.extensions.insert(PeerAddr(peer));
    parts.extensions.insert(activity.clone());
    let request = http::Request::from_parts(parts, Body::from_stream(upstream(recv)));
    let Ok(response) = router.oneshot(request).await;
    let (mut parts, mut body) = response.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    if let Err(error) = send
        .send_response(http::Response::from_parts(parts, ()))
        .await
    {
        tracing::debug!(%peer, %error, "HTTP/3 response headers not sent");
        return;
    }
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                // Trailers: none of the routes send any.
                Err(_) => continue,
            },
            Err(error) => {
                tracing::debug!(%peer, %error, "HTTP/3 response body failed");
                return;
            }
        };
        if data.is_empty() {
            continue;
        }
        if let Err(error) = send.send_data(data).await {
            // The client reset the stream or the connection ended: dropping the body ends a
            // session's downstream, and so the session.
            tracing::debug!(%peer, %error, "HTTP/3 response stream closed");
            return;
        }
    }
    if let Err(error) = send.finish().await {
        tracing::debug!(%peer, %error, "HTTP/3 response not finished");
    }
}

/// The receive half of a request stream as a body stream; it ends after the first error.
fn upstream(recv: RecvHalf) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
    futures_util::stream::unfold(Some(recv), |state| async move {
        let mut recv = state?;
        match recv.recv_data().await {
            Ok(Some(mut chunk)) => {
                let bytes = chunk.copy_to_bytes(chunk.remaining());
                Some((Ok(bytes), Some(recv)))
            }
            Ok(None) => None,
            Err(error) => Some((Err(io::Error::other(error.to_string())), None)),
        }
    })
}
