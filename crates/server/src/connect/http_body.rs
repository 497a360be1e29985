//! A streamed HTTP request body (upstream) and response body (downstream) as a byte stream.

use std::io;

use axum::body::Body;
use bytes::Bytes;
use commucat_link::ByteStream;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::budget::{ByteBudget, Reserved};

/// A downstream chunk and the transport bytes it holds until the response body yields it.
type Chunk = (Bytes, Option<Reserved>);

/// The two bodies of one `/connect` exchange.
#[derive(Debug)]
pub(crate) struct HttpBodyStream {
    upstream: Body,
    downstream: mpsc::Sender<Chunk>,
    budget: ByteBudget,
}

impl HttpBodyStream {
    /// Wraps the request body; returns the stream and the response body it feeds. `buffer`
    /// bounds the chunks and `budget` the bytes queued for a client that is not reading.
    pub(crate) fn new(upstream: Body, buffer: usize, budget: ByteBudget) -> (Self, Body) {
        // At least two slots: `write_frame` queues a header and a payload together.
        let (tx, rx) = mpsc::channel::<Chunk>(buffer.max(2));
        let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
            // The reservation ends here: the chunk is the HTTP layer's from now on.
            rx.recv()
                .await
                .map(|(chunk, _reserved)| (Ok::<_, io::Error>(chunk), rx))
        });
        (
            Self {
                upstream,
                downstream: tx,
                budget,
            },
            Body::from_stream(chunks),
        )
    }
}

impl ByteStream for HttpBodyStream {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        read_body(&mut self.upstream).await
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        let reserved = self.budget.reserve(bytes.len()).await?;
        self.downstream
            .send((bytes, Some(reserved)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }

    /// Header and payload go out as two body chunks: the payload is the relayed frame's shared
    /// buffer, not a copy. Both slots are reserved before either chunk is queued, so a session
    /// that stops waiting (cancellation) never leaves half a frame on the wire.
    async fn write_frame(&mut self, header: Bytes, payload: Bytes) -> io::Result<()> {
        let reserved = self.budget.reserve(header.len() + payload.len()).await?;
        let mut permits = self
            .downstream
            .reserve_many(2)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))?;
        for chunk in [(header, None), (payload, Some(reserved))] {
            if let Some(permit) = permits.next() {
                permit.send(chunk);
            }
        }
        Ok(())
    }
}

/// The next non-empty data chunk of a request body; `Ok(None)` at its end.
pub(super) async fn read_body(body: &mut Body) -> io::Result<Option<Bytes>> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(io::Error::other(e)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if data.is_empty() => {}
                Ok(data) => return Ok(Some(data)),
                // Trailers carry no frame bytes.
                Err(_trailers) => {}
            },
        }
    }
}
