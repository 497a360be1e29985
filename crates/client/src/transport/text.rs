//! SSE and NDJSON downstream decoding: turns the server's text records back into frame bytes.

use std::io;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use commucat_link::ByteStream;

/// Which text encoding the server uses downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// `text/event-stream`: `data:` lines of `event: frame` events.
    Sse,
    /// `application/x-ndjson`: one `{"channel","data","sequence","type"}` object per line.
    Ndjson,
}

/// A byte stream whose downstream is SSE or NDJSON; upstream bytes pass through unchanged.
#[derive(Debug)]
pub struct TextStream<S> {
    inner: S,
    format: TextFormat,
    buffer: BytesMut,
}

impl<S> TextStream<S> {
    /// Wraps a stream whose response body is in `format`.
    pub fn new(inner: S, format: TextFormat) -> Self {
        Self {
            inner,
            format,
            buffer: BytesMut::new(),
        }
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Decodes the next complete record from the buffer: `Some(bytes)` for a frame, `Some(empty)`
    /// for a keepalive or comment, `None` when more input is needed.
    fn next_record(&mut self) -> io::Result<Option<Bytes>> {
        let separator: &[u8] = match self.format {
            TextFormat::Sse => b"\n\n",
            TextFormat::Ndjson => b"\n",
        };
        let Some(end) = self
            .buffer
            .windows(separator.len())
            .position(|w| w == separator)
        else {
            return Ok(None);
        };
        let record = self.buffer.split_to(end + separator.len());
        let text = std::str::from_utf8(&record)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let bad =
            |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        let data = match self.format {
            TextFormat::Sse => text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim_start)
                .collect::<String>(),
            TextFormat::Ndjson => {
                let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e))?;
                value
                    .get("data")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            }
        };
        let bytes = STANDARD.decode(data.as_bytes()).map_err(|e| bad(&e))?;
        Ok(Some(Bytes::from(bytes)))
    }
}

impl<S: ByteStream> ByteStream for TextStream<S> {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(bytes) = self.next_record()? {
                if bytes.is_empty() {
                    continue;
                }
                return Ok(Some(bytes));
            }
            match self.inner.read().await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.inner.write(bytes).await
    }
}
