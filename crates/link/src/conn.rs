//! A session's connection: a byte stream from one of the connect modes, plus its codec.

use std::future::Future;
use std::io;

use bytes::{Bytes, BytesMut};
use commucat_ccp::{Frame, FrameType, Problem};
use serde::Serialize;

use crate::codec::{SequenceExhausted, SessionCodec, StreamError};

/// The bytes of one `/connect` stream, whatever the mode (HTTP/2 body, HTTP/1.1 chunked body,
/// WebSocket messages, …). Adapters implement this; nothing above it knows the mode.
pub trait ByteStream: Send {
    /// The next chunk of bytes from the peer; `Ok(None)` once the peer has finished sending.
    fn read(&mut self) -> impl Future<Output = io::Result<Option<Bytes>>> + Send;
    /// Sends bytes to the peer (waits while the peer is not reading: backpressure).
    fn write(&mut self, bytes: Bytes) -> impl Future<Output = io::Result<()>> + Send;

    /// Sends one plain encoded frame given as its header and its (shared) payload.
    ///
    /// The default joins the two into one buffer and calls [`ByteStream::write`], so adapters
    /// that need one message per frame see exactly that. Streams that queue chunks (HTTP
    /// bodies) override it to pass the payload on as is: a frame fanned out to many
    /// recipients is then never copied per recipient.
    fn write_frame(
        &mut self,
        header: Bytes,
        payload: Bytes,
    ) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            let mut joined = BytesMut::with_capacity(header.len() + payload.len());
            joined.extend_from_slice(&header);
            joined.extend_from_slice(&payload);
            self.write(joined.freeze()).await
        }
    }
}

/// Payloads at least this large are handed to [`ByteStream::write_frame`] as shared buffers;
/// smaller ones are cheaper to copy into one write with their header.
pub const SHARE_PAYLOAD_FROM: usize = 1024;

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The peer's bytes are malformed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The underlying stream failed.
    #[error("connection i/o: {0}")]
    Io(#[from] io::Error),
    /// No outgoing sequence numbers are left.
    #[error(transparent)]
    SequenceExhausted(#[from] SequenceExhausted),
    /// A control payload could not be built (over the size limit).
    #[error(transparent)]
    Codec(#[from] commucat_ccp::CodecError),
}

/// A byte stream with its session codec.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    codec: SessionCodec,
    peer_closed: bool,
}

impl<S: ByteStream> Connection<S> {
    /// Wraps a stream.
    pub fn new(stream: S, max_frame_len: usize) -> Self {
        Self {
            stream,
            codec: SessionCodec::new(max_frame_len),
            peer_closed: false,
        }
    }

    /// The codec (sequence numbers, transport mode).
    pub fn codec_mut(&mut self) -> &mut SessionCodec {
        &mut self.codec
    }

    /// The codec, read-only.
    #[must_use]
    pub const fn codec(&self) -> &SessionCodec {
        &self.codec
    }

    /// The next frame; `Ok(None)` when the peer finished sending on a frame boundary.
    ///
    /// # Errors
    /// Malformed bytes, a stream that ends inside a frame ([`commucat_ccp::CodecError::TruncatedFrame`]),
    /// or an I/O failure.
    pub async fn recv(&mut self) -> Result<Option<Frame>, ConnError> {
        loop {
            // Before reading on, so a frame taken below is never lost to a cancelled write.
            self.flush_pending().await?;
            if let Some(frame) = self.next_buffered()? {
                return Ok(Some(frame));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// The next frame already received and buffered, without reading from the stream.
    ///
    /// # Errors
    /// Malformed bytes.
    pub fn next_buffered(&mut self) -> Result<Option<Frame>, ConnError> {
        Ok(self.codec.next_frame()?)
    }

    /// Writes the records the codec sealed itself (a ratchet acknowledgement), if any.
    /// [`Connection::recv`] and [`Connection::send`] do it on their own; callers that read
    /// with [`Connection::fill`] and [`Connection::next_buffered`] call this after reading.
    ///
    /// # Errors
    /// I/O failure.
    pub async fn flush_pending(&mut self) -> Result<(), ConnError> {
        if let Some(bytes) = self.codec.outgoing() {
            self.stream.write(bytes).await?;
            self.codec.outgoing_written();
        }
        Ok(())
    }

    /// Server side of a `pq-hybrid` ratchet step: sends the step message with `sequence` and
    /// switches the sending key (see [`SessionCodec::start_ratchet`]).
    ///
    /// # Errors
    /// Every one-time key spent ([`crate::RatchetError::Exhausted`]), a step already waiting,
    /// not a `pq-hybrid` session, I/O failure.
    pub async fn ratchet(
        &mut self,
        sequence: u32,
        now: std::time::Instant,
    ) -> Result<(), ConnError> {
        let mut out = BytesMut::new();
        self.codec.start_ratchet(sequence, now, &mut out)?;
        self.stream.write(out.freeze()).await?;
        Ok(())
    }

    /// Reads one chunk from the stream into the codec. Returns `false` once the peer has
    /// finished sending. Cancel-safe when the stream's `read` is: use it in `select!` beside a
    /// mailbox and call [`Connection::next_buffered`] after it.
    ///
    /// # Errors
    /// I/O failure, a record that fails to decrypt, or a stream that ends inside a frame.
    pub async fn fill(&mut self) -> Result<bool, ConnError> {
        if self.peer_closed {
            return Ok(false);
        }
        match self.stream.read().await? {
            Some(bytes) => {
                self.codec.feed(&bytes)?;
                Ok(true)
            }
            None => {
                self.peer_closed = true;
                if self.codec.buffered() > 0 {
                    return Err(StreamError::Codec(commucat_ccp::CodecError::TruncatedFrame(
                        commucat_ccp::Truncation::Header,
                    ))
                    .into());
                }
                Ok(false)
            }
        }
    }

    /// Whether the peer has finished sending.
    #[must_use]
    pub const fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Sends a frame as it is (its sequence number already assigned).
    ///
    /// # Errors
    /// I/O or encryption failure.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), ConnError> {
        if !self.codec.is_encrypted()
            && !self.codec.is_fec()
            && frame.payload().len() >= SHARE_PAYLOAD_FROM
        {
            let mut header = BytesMut::with_capacity(16);
            frame.encode_header(&mut header);
            self.stream
                .write_frame(header.freeze(), frame.payload().clone())
                .await?;
            return Ok(());
        }
        let mut out = BytesMut::with_capacity(frame.encoded_len() + 32);
        self.codec.encode(frame, &mut out)?;
        self.stream.write(out.freeze()).await?;
        Ok(())
    }

    /// Sends a control payload with the next sequence number.
    ///
    /// # Errors
    /// Sequence exhaustion, oversize payload, I/O or encryption failure.
    pub async fn send_control<T: Serialize + ?Sized>(
        &mut self,
        frame_type: FrameType,
        channel_id: u32,
        value: &T,
    ) -> Result<(), ConnError> {
        let sequence = self.codec.next_sequence()?;
        let frame = Frame::control(frame_type, channel_id, sequence, value)?;
        self.send(&frame).await
    }

    /// Sends an ERROR frame on channel 0. Uses the last sequence number if only that is left.
    ///
    /// # Errors
    /// I/O or encryption failure.
    pub async fn send_problem(&mut self, problem: &Problem) -> Result<(), ConnError> {
        self.send_control(FrameType::Error, 0, problem).await
    }

    /// The stream (e.g. to reach a transport's own controls).
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Consumes the connection, returning the stream.
    pub fn into_stream(self) -> S {
        self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the connection hands to the stream.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Bytes>,
        frames: Vec<(Bytes, Bytes)>,
    }

    impl ByteStream for Recorder {
        async fn read(&mut self) -> io::Result<Option<Bytes>> {
            Ok(None)
        }

        async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
            self.writes.push(bytes);
            Ok(())
        }

        async fn write_frame(&mut self, header: Bytes, payload: Bytes) -> io::Result<()> {
            self.frames.push((header, payload));
            Ok(())
        }
    }

    #[tokio::test]
    async fn large_payloads_are_shared_small_ones_joined() {
        let mut conn = Connection::new(Recorder::default(), commucat_ccp::MAX_FRAME_LEN);
        let big = Frame::new(FrameType::Msg, 7, 9, vec![1u8; SHARE_PAYLOAD_FROM]).unwrap();
        let small = Frame::new(FrameType::Msg, 7, 10, &b"hi"[..]).unwrap();
        conn.send(&big).await.unwrap();
        conn.send(&small).await.unwrap();
        let recorder = conn.into_stream();
        let (header, payload) = &recorder.frames[0];
        // The same buffer, not a copy; header + payload are the frame's exact encoding.
        assert_eq!(payload.as_ptr(), big.payload().as_ptr());
        assert_eq!([header.as_ref(), payload.as_ref()].concat(), big.to_bytes());
        assert_eq!(recorder.writes, [small.to_bytes()]);
    }

    #[tokio::test]
    async fn the_default_write_frame_joins_header_and_payload() {
        let mut stream = crate::memory::pair();
        let frame = Frame::new(FrameType::Msg, 1, 2, vec![3u8; 4096]).unwrap();
        let mut header = BytesMut::new();
        frame.encode_header(&mut header);
        stream
            .0
            .write_frame(header.freeze(), frame.payload().clone())
            .await
            .unwrap();
        assert_eq!(stream.1.read().await.unwrap(), Some(frame.to_bytes()));
    }
}
