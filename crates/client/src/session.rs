//! An established session: send and receive frames.

use std::net::SocketAddr;

use bytes::Bytes;
use commucat_ccp::{Frame, FrameType};
use commucat_link::{ByteStream, Connection};
use serde::Serialize;

use crate::ClientError;
use crate::handshake::{DeviceIdentity, HandshakeOptions, ServerParams, SessionInfo, handshake};
use crate::tls::TlsTrust;
use crate::transport::{self, H2Stream};

/// A device's session with the server.
#[derive(Debug)]
pub struct Session<S> {
    conn: Connection<S>,
    info: SessionInfo,
}

/// Connects over TLS + HTTP/2 to `addr` and runs the handshake.
///
/// # Errors
/// Transport failures, or the server's ERROR as [`ClientError::Rejected`].
pub async fn connect(
    addr: SocketAddr,
    server_name: &str,
    trust: &TlsTrust,
    identity: &DeviceIdentity,
    server: &ServerParams,
    options: &HandshakeOptions,
) -> Result<Session<H2Stream>, ClientError> {
    let stream = transport::open(addr, server_name, trust, "/connect").await?;
    Session::handshake(stream, identity, server, options).await
}

impl<S: ByteStream> Session<S> {
    /// Runs the handshake over an already open byte stream.
    ///
    /// # Errors
    /// As [`handshake`].
    pub async fn handshake(
        stream: S,
        identity: &DeviceIdentity,
        server: &ServerParams,
        options: &HandshakeOptions,
    ) -> Result<Self, ClientError> {
        let mut conn = Connection::new(stream, commucat_ccp::MAX_FRAME_LEN);
        let info = handshake(&mut conn, identity, server, options).await?;
        Ok(Self { conn, info })
    }

    /// What the handshake established.
    #[must_use]
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// `HybridRatchet` steps this `pq-hybrid` session has taken (`None` for other sessions).
    /// The SDK applies the server's steps inside [`Session::recv`] and acknowledges them
    /// before its next frame; they never surface as frames.
    #[must_use]
    pub fn pq_ratchet_epoch(&self) -> Option<u64> {
        self.conn.codec().ratchet_epoch()
    }

    /// Sends an opaque-payload frame (MSG, KEY_UPDATE, VOICE_FRAME, VIDEO_FRAME) and returns its
    /// sequence number.
    ///
    /// # Errors
    /// Link failure, or a payload over the limits.
    pub async fn send_bytes(
        &mut self,
        frame_type: FrameType,
        channel_id: u32,
        payload: impl Into<Bytes>,
    ) -> Result<u32, ClientError> {
        let sequence = self.next_sequence()?;
        let frame = Frame::new(frame_type, channel_id, sequence, payload.into())
            .map_err(commucat_link::ConnError::from)?;
        self.conn.send(&frame).await?;
        Ok(sequence)
    }

    /// Sends a control frame and returns its sequence number.
    ///
    /// # Errors
    /// Link failure, or a payload over the limits.
    pub async fn send_control<T: Serialize + ?Sized>(
        &mut self,
        frame_type: FrameType,
        channel_id: u32,
        value: &T,
    ) -> Result<u32, ClientError> {
        let sequence = self.next_sequence()?;
        let frame = Frame::control(frame_type, channel_id, sequence, value)
            .map_err(commucat_link::ConnError::from)?;
        self.conn.send(&frame).await?;
        Ok(sequence)
    }

    /// Sends a frame exactly as given (its sequence number is the caller's business; use this
    /// to test how the server treats out-of-order or malformed traffic).
    ///
    /// # Errors
    /// Link failure.
    pub async fn send_frame(&mut self, frame: &Frame) -> Result<(), ClientError> {
        self.conn.send(frame).await.map_err(ClientError::from)
    }

    /// The next frame from the server; `Ok(None)` when the server ended the stream.
    ///
    /// # Errors
    /// Link failure (malformed bytes, decrypt failure, I/O).
    pub async fn recv(&mut self) -> Result<Option<Frame>, ClientError> {
        self.conn.recv().await.map_err(ClientError::from)
    }

    /// Confirms that every frame the server sent on this connection up to and including
    /// `frame` has been taken (an ACK `{"ack": <its sequence>}`), so the server may delete the
    /// offline envelopes behind them. Does nothing unless `delivery-receipts` was negotiated.
    ///
    /// # Errors
    /// Link failure.
    pub async fn acknowledge(&mut self, frame: &Frame) -> Result<(), ClientError> {
        if !self.info.delivery_receipts() {
            return Ok(());
        }
        let ack = commucat_ccp::control::Ack {
            ack: u64::from(frame.sequence()),
            ..commucat_ccp::control::Ack::default()
        };
        self.send_control(FrameType::Ack, frame.channel_id(), &ack)
            .await
            .map(|_| ())
    }

    fn next_sequence(&mut self) -> Result<u32, ClientError> {
        self.conn
            .codec_mut()
            .next_sequence()
            .map_err(|e| ClientError::Link(e.into()))
    }

    /// The underlying link.
    pub fn connection_mut(&mut self) -> &mut Connection<S> {
        &mut self.conn
    }

    /// Consumes the session, returning its link (codec state and sequence numbers included),
    /// for callers that drive the connection themselves, e.g. reading in a `select!` with
    /// [`Connection::fill`].
    pub fn into_connection(self) -> Connection<S> {
        self.conn
    }
}
