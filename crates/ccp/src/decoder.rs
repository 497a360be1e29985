//! Streaming frame decoder: feed it byte chunks as they arrive, take frames out.

use bytes::{Buf, BytesMut};

use crate::MAX_FRAME_LEN;
use crate::error::CodecError;
use crate::frame::{Frame, Header};

/// Reassembles frames from a byte stream split at arbitrary points.
///
/// Chunks may end anywhere (inside a varint, a header or a payload) and may hold many frames.
/// [`FrameDecoder::next_frame`] tells three outcomes apart:
/// - `Ok(Some(frame))`: a whole frame was decoded;
/// - `Ok(None)`: the buffer holds a prefix of a well-formed frame, so more bytes are needed;
/// - `Err(_)`: the stream is malformed and no further bytes can repair it (zero-length frames,
///   payloads overrunning their frame, bad control JSON, over-limit lengths). The decoder then
///   stays failed and returns the same error on every later call.
///
/// Payloads are sliced out of the internal buffer without copying.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame_len: usize,
    failed: Option<CodecError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder enforcing the protocol's 16 MiB frame limit.
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_frame_len(MAX_FRAME_LEN)
    }

    /// A decoder with a lower frame limit (values above 16 MiB are clamped to it).
    #[must_use]
    pub fn with_max_frame_len(max_frame_len: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame_len: max_frame_len.min(MAX_FRAME_LEN),
            failed: None,
        }
    }

    /// The frame length limit in force.
    #[must_use]
    pub const fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Appends received bytes. A failed decoder discards them: nothing after a malformed frame
    /// can be trusted, and buffering it would only hold memory.
    pub fn extend(&mut self, chunk: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The receive buffer, for readers that fill it in place (`AsyncReadExt::read_buf`).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received but not yet returned as frames.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the decoder has failed.
    #[must_use]
    pub const fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Takes the next whole frame out of the buffer.
    ///
    /// # Errors
    /// The first [`CodecError`] the stream produced; it is returned again on every later call.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, CodecError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        match Header::parse(&self.buf, self.max_frame_len) {
            Ok(None) => Ok(None),
            Ok(Some(header)) => {
                let mut frame_bytes = self.buf.split_to(header.total_len);
                frame_bytes.advance(header.payload_start);
                frame_bytes.truncate(header.payload_len);
                header
                    .frame(frame_bytes.freeze())
                    .map(Some)
                    .map_err(|e| self.fail(e))
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    fn fail(&mut self, error: CodecError) -> CodecError {
        self.buf = BytesMut::new();
        self.failed = Some(error.clone());
        error
    }
}
