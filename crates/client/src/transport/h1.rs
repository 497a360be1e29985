//! HTTP/1.1 `POST /connect` with chunked request and response bodies, as a [`ByteStream`].

use std::convert::Infallible;
use std::io;

use bytes::Bytes;
use commucat_link::ByteStream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use crate::ClientError;

type Upstream =
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

enum Downstream {
    Pending(tokio::task::JoinHandle<hyper::Result<hyper::Response<Incoming>>>),
    Open(Incoming),
    Done,
}

/// The duplex chunked bodies of one HTTP/1.1 `/connect` request.
pub struct H1Stream {
    send: Option<mpsc::Sender<Bytes>>,
    recv: Downstream,
}

impl std::fmt::Debug for H1Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Stream").finish_non_exhaustive()
    }
}

/// Starts `POST {path}` over an established TLS stream (ALPN `http/1.1` or none).
pub(crate) async fn start<T>(io: T, authority: &str, path: &str) -> Result<H1Stream, ClientError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let transport = |e: &dyn std::fmt::Display| ClientError::Transport(e.to_string());
    let (mut sender, connection) = http1::handshake::<_, Upstream>(TokioIo::new(io))
        .await
        .map_err(|e| transport(&e))?;
    #[allow(
        clippy::disallowed_methods,
        reason = "the HTTP/1.1 connection driver; it ends with the connection"
    )]
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "http/1.1 connection ended");
        }
    });
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
    });
    let body: Upstream = StreamBody::new(Box::pin(chunks));
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .header(http::header::TRANSFER_ENCODING, "chunked")
        .body(body)
        .map_err(|e| transport(&e))?;
    // The response arrives while the request body is still open: wait for it in the background.
    #[allow(
        clippy::disallowed_methods,
        reason = "the response future; its handle is kept and awaited"
    )]
    let response = tokio::spawn(sender.send_request(request));
    Ok(H1Stream {
        send: Some(tx),
        recv: Downstream::Pending(response),
    })
}

impl H1Stream {
    /// Ends the request body (the final empty chunk).
    pub fn finish(&mut self) {
        self.send = None;
    }
}

impl ByteStream for H1Stream {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match &mut self.recv {
                Downstream::Pending(response) => {
                    let response = response
                        .await
                        .map_err(io::Error::other)?
                        .map_err(io::Error::other)?;
                    if response.status() != http::StatusCode::OK {
                        return Err(io::Error::other(format!(
                            "/connect answered HTTP {}",
                            response.status().as_u16()
                        )));
                    }
                    self.recv = Downstream::Open(response.into_body());
                }
                Downstream::Open(body) => match body.frame().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if !data.is_empty() => return Ok(Some(data)),
                        _ => {}
                    },
                    Some(Err(e)) => return Err(io::Error::other(e)),
                    None => {
                        self.recv = Downstream::Done;
                        return Ok(None);
                    }
                },
                Downstream::Done => return Ok(None),
            }
        }
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        let closed = || io::Error::new(io::ErrorKind::BrokenPipe, "request body closed");
        self.send
            .as_ref()
            .ok_or_else(closed)?
            .send(bytes)
            .await
            .map_err(|_| closed())
    }
}
