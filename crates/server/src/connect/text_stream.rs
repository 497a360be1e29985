//! The SSE and NDJSON modes as one [`ByteStream`]: raw frame bytes upstream (the request body),
//! one text record per frame downstream, keepalive records while idle.
//!
//! The downstream encodings need frame boundaries and sequence numbers, so the adapter decodes
//! each chunk the session writes (plain mode writes exactly the encoded frames). Noise transport
//! records carry no visible frames, so a HELLO asking for `noise-transport` is refused here with
//! an ERROR frame: the session above never learns which mode it runs in.

use std::io;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use commucat_ccp::{Frame, FrameDecoder, FrameType, Problem, ProblemKind};
use commucat_link::ByteStream;
use tokio::sync::mpsc;

use super::budget::{ByteBudget, Reserved};
use super::http_body::read_body;
use super::{ndjson, sse};

/// Capabilities the text modes cannot carry (both change the byte stream under the frames).
const BYTE_LEVEL_CAPABILITIES: [&str; 2] = ["noise-transport", "fec"];
/// Keepalive cadence before the handshake has completed (wire-compat §2.2).
const PRE_HANDSHAKE_KEEPALIVE: Duration = Duration::from_secs(25);

/// Which text encoding the downstream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextEncoding {
    /// `text/event-stream`.
    Sse,
    /// `application/x-ndjson`.
    Ndjson,
}

impl TextEncoding {
    fn encode(self, frame: &Frame, out: &mut Vec<u8>) {
        match self {
            Self::Sse => sse::encode(frame, out),
            Self::Ndjson => ndjson::encode(frame, out),
        }
    }

    const fn keepalive(self) -> &'static [u8] {
        match self {
            Self::Sse => sse::KEEPALIVE,
            Self::Ndjson => ndjson::KEEPALIVE,
        }
    }

    const fn preamble(self) -> &'static [u8] {
        match self {
            Self::Sse => sse::PREAMBLE,
            Self::Ndjson => b"",
        }
    }
}

/// The keepalive cadence once established: `max(max(keepalive/2, 1 s), 5 s)` (§2.2).
#[must_use]
pub(crate) fn keepalive_cadence(keepalive: Duration) -> Duration {
    (keepalive / 2)
        .max(Duration::from_secs(1))
        .max(Duration::from_secs(5))
}

/// A downstream chunk, and whether it completed the handshake (switches the keepalive cadence).
#[derive(Debug)]
struct Down {
    text: Bytes,
    established: bool,
    /// Transport bytes held until the response body yields the chunk.
    reserved: Option<Reserved>,
}

/// One SSE or NDJSON `/connect` exchange.
#[derive(Debug)]
pub(crate) struct TextStream {
    upstream: Body,
    downstream: Option<mpsc::Sender<Down>>,
    encoding: TextEncoding,
    max_frame_len: usize,
    /// Watches upstream bytes until the HELLO has been seen.
    hello: Option<FrameDecoder>,
    established: bool,
    budget: ByteBudget,
}

impl TextStream {
    /// Wraps the request body; returns the stream and the response body it feeds.
    /// `keepalive` is the configured `session.keepalive`; `budget` bounds the bytes queued for
    /// a client that is not reading.
    pub(crate) fn new(
        upstream: Body,
        encoding: TextEncoding,
        buffer: usize,
        max_frame_len: usize,
        keepalive: Duration,
        budget: ByteBudget,
    ) -> (Self, Body) {
        let (tx, rx) = mpsc::channel::<Down>(buffer.max(1));
        let cadence = keepalive_cadence(keepalive);
        let preamble = Bytes::from_static(encoding.preamble());
        let state = (rx, PRE_HANDSHAKE_KEEPALIVE, Some(preamble));
        let chunks =
            futures_util::stream::unfold(state, move |(mut rx, every, first)| async move {
                if let Some(first) = first.filter(|p| !p.is_empty()) {
                    return Some((Ok::<_, io::Error>(first), (rx, every, None)));
                }
                match tokio::time::timeout(every, rx.recv()).await {
                    Ok(Some(down)) => {
                        let every = if down.established { cadence } else { every };
                        Some((Ok(down.text), (rx, every, None)))
                    }
                    Ok(None) => None,
                    Err(_idle) => Some((
                        Ok(Bytes::from_static(encoding.keepalive())),
                        (rx, every, None),
                    )),
                }
            });
        (
            Self {
                upstream,
                downstream: Some(tx),
                encoding,
                max_frame_len,
                hello: Some(FrameDecoder::with_max_frame_len(max_frame_len)),
                established: false,
                budget,
            },
            Body::from_stream(chunks),
        )
    }

    async fn send(&mut self, mut down: Down) -> io::Result<()> {
        let closed = || io::Error::new(io::ErrorKind::BrokenPipe, "client went away");
        let tx = self.downstream.as_ref().ok_or_else(closed)?;
        down.reserved = Some(self.budget.reserve(down.text.len()).await?);
        tx.send(down).await.map_err(|_| closed())
    }

    /// Refuses a HELLO that asks for Noise transport records or FEC framing: ERROR frame, then
    /// end of stream.
    async fn refuse_capability(&mut self, capability: &str) -> io::Result<Option<Bytes>> {
        let problem = Problem::new(ProblemKind::UnexpectedFrame).with_detail(format!(
            "{capability} needs the binary or websocket connect mode"
        ));
        let mut text = Vec::new();
        if let Ok(frame) = problem.to_frame(0, 1) {
            self.encoding.encode(&frame, &mut text);
        }
        let _ = self
            .send(Down {
                text: text.into(),
                established: false,
                reserved: None,
            })
            .await;
        self.downstream = None;
        Ok(None)
    }
}

/// The first capability a HELLO asks for that the text modes cannot carry.
fn byte_level_capability(frame: &Frame) -> Option<&'static str> {
    if frame.frame_type() != FrameType::Hello {
        return None;
    }
    let caps = frame
        .parse_control::<serde_json::Value>()
        .ok()?
        .get("capabilities")?
        .as_array()?
        .clone();
    BYTE_LEVEL_CAPABILITIES
        .into_iter()
        .find(|cap| caps.iter().any(|c| c.as_str() == Some(cap)))
}

impl ByteStream for TextStream {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        if self.downstream.is_none() {
            return Ok(None);
        }
        let chunk = read_body(&mut self.upstream).await?;
        if let (Some(watch), Some(bytes)) = (&mut self.hello, &chunk) {
            watch.extend(bytes);
            match watch.next_frame() {
                Ok(None) => {}
                Ok(Some(frame)) => {
                    self.hello = None;
                    if let Some(capability) = byte_level_capability(&frame) {
                        return self.refuse_capability(capability).await;
                    }
                }
                // Malformed: the session's own decoder reports it.
                Err(_) => self.hello = None,
            }
        }
        Ok(chunk)
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        let mut text = Vec::with_capacity(bytes.len() * 4 / 3 + 64);
        let mut buf = bytes;
        let mut established = false;
        while !buf.is_empty() {
            let (frame, used) = Frame::decode_with_limit(&buf, self.max_frame_len)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text connect modes carry whole plain frames only",
                    )
                })?;
            if !self.established
                && frame.frame_type() == FrameType::Ack
                && frame
                    .parse_control::<serde_json::Value>()
                    .is_ok_and(|v| v.get("handshake").is_some())
            {
                self.established = true;
                established = true;
            }
            self.encoding.encode(&frame, &mut text);
            let _ = buf.split_to(used);
        }
        self.send(Down {
            text: text.into(),
            established,
            reserved: None,
        })
        .await
    }
}
