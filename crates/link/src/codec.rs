//! The per-session framing state, sans-IO: frame decoding, optional Noise transport records, and
//! the server's outgoing sequence counter.

use bytes::BytesMut;
use commucat_ccp::{CodecError, Frame, FrameDecoder};
use commucat_keys::{NoiseError, Transport};

use crate::obf::{ObfError, Obfuscator};

/// Why a session's byte stream cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Malformed frame bytes.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A Noise transport record failed (only with `noise-transport`).
    #[error(transparent)]
    Noise(#[from] NoiseError),
    /// An `adaptive-obf` wrapper failed its check (only with `adaptive-obf`).
    #[error(transparent)]
    Obfuscation(#[from] ObfError),
}

/// Outgoing sequence numbers are exhausted: the peer must reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outgoing sequence numbers exhausted")]
pub struct SequenceExhausted;

/// Framing state of one session. Owned by the session's task; never shared.
#[derive(Debug)]
pub struct SessionCodec {
    decoder: FrameDecoder,
    transport: Option<Transport>,
    /// `adaptive-obf` wrapping (inside the transport records) and the decrypted bytes not yet
    /// forming a whole packet.
    obf: Option<(Obfuscator, BytesMut)>,
    /// Sequence number of the next frame the server sends.
    next_sequence: u32,
}

impl SessionCodec {
    /// A codec with the given frame limit, in plain mode, whose first frame gets sequence 1.
    #[must_use]
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            decoder: FrameDecoder::with_max_frame_len(max_frame_len),
            transport: None,
            obf: None,
            next_sequence: 1,
        }
    }

    /// The frame length limit.
    #[must_use]
    pub const fn max_frame_len(&self) -> usize {
        self.decoder.max_frame_len()
    }

    /// Whether frames travel as Noise transport records.
    #[must_use]
    pub const fn is_encrypted(&self) -> bool {
        self.transport.is_some()
    }

    /// Feeds received bytes (records in transport mode, frame bytes otherwise).
    ///
    /// # Errors
    /// A record that fails to decrypt.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        match (&mut self.transport, &mut self.obf) {
            (Some(transport), Some((_, plain))) => transport.open(bytes, plain)?,
            (Some(transport), None) => transport.open(bytes, self.decoder.buffer_mut())?,
            (None, _) => self.decoder.extend(bytes),
        }
        Ok(())
    }

    /// The next whole frame received, if any.
    ///
    /// # Errors
    /// Malformed frame bytes or, with `adaptive-obf`, a wrapper that fails its check
    /// (terminal).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        match &mut self.obf {
            Some((obfuscator, plain)) => Ok(obfuscator.next_frame(plain)?),
            None => Ok(self.decoder.next_frame()?),
        }
    }

    /// Bytes received and not yet decoded.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
            + self.transport.as_ref().map_or(0, Transport::buffered)
            + self.obf.as_ref().map_or(0, |(_, plain)| plain.len())
    }

    /// Whether frames travel wrapped in `adaptive-obf` packets.
    #[must_use]
    pub const fn is_obfuscated(&self) -> bool {
        self.obf.is_some()
    }

    /// The `adaptive-obf` state, when enabled (key epochs, for tests and metrics).
    #[must_use]
    pub const fn obfuscator(&self) -> Option<&Obfuscator> {
        match &self.obf {
            Some((obfuscator, _)) => Some(obfuscator),
            None => None,
        }
    }

    /// Wraps every later frame, both directions, in `adaptive-obf` packets inside the
    /// transport records. Call right after [`SessionCodec::enable_transport`]: bytes already
    /// decrypted but not decoded are packets and move to the packet buffer.
    pub fn enable_obfuscation(&mut self, obfuscator: Obfuscator) {
        let pending = self.decoder.buffer_mut().split();
        self.obf = Some((obfuscator, pending));
    }

    /// Takes the next outgoing sequence number. Sequence numbers are strictly increasing for the
    /// life of the connection; after `u32::MAX` has been used there are none left.
    ///
    /// # Errors
    /// [`SequenceExhausted`] once `u32::MAX` has been handed out.
    pub fn next_sequence(&mut self) -> Result<u32, SequenceExhausted> {
        let sequence = self.next_sequence;
        if sequence == 0 {
            return Err(SequenceExhausted);
        }
        // Wrapping to 0 marks exhaustion: 0 is never handed out after the start.
        self.next_sequence = sequence.wrapping_add(1);
        Ok(sequence)
    }

    /// Skips outgoing sequence numbers so that the next one is `next`. Only moves forward (a
    /// lower `next` changes nothing), so sequence numbers stay strictly increasing. Tests use it
    /// to reach `u32::MAX` without sending four billion frames.
    pub fn skip_sequences_to(&mut self, next: u32) {
        if self.next_sequence != 0 && next > self.next_sequence {
            self.next_sequence = next;
        }
    }

    /// Whether the sequence after the current one would be unavailable, i.e. exactly one
    /// number (`u32::MAX`) is left, which the server keeps for the closing ERROR.
    #[must_use]
    pub const fn sequence_nearly_exhausted(&self) -> bool {
        self.next_sequence == u32::MAX || self.next_sequence == 0
    }

    /// Appends `frame`, plain or sealed, to `out`.
    ///
    /// # Errors
    /// Noise encryption failure (nonce exhaustion), or a frame too large to wrap.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), StreamError> {
        match &mut self.transport {
            Some(transport) => {
                let mut plain = BytesMut::with_capacity(frame.encoded_len());
                match &mut self.obf {
                    Some((obfuscator, _)) => obfuscator.wrap_into(frame, &mut plain)?,
                    None => frame.encode(&mut plain),
                }
                transport.seal(&plain, out)?;
            }
            None => frame.encode(out),
        }
        Ok(())
    }

    /// Seals `plain` as transport records without framing or wrapping it (bytes the caller
    /// has already framed, e.g. a hand-built `adaptive-obf` packet in a test of the peer's
    /// checks) and appends them to `out`.
    ///
    /// # Errors
    /// Not in transport mode, or encryption failure.
    pub fn seal_plain(&mut self, plain: &[u8], out: &mut BytesMut) -> Result<(), StreamError> {
        match &mut self.transport {
            Some(transport) => Ok(transport.seal(plain, out)?),
            None => Err(StreamError::Noise(NoiseError::NotFinished)),
        }
    }

    /// Switches both directions to Noise transport records. Bytes already received but not yet
    /// decoded arrived after the handshake's last message and are records: they are decrypted
    /// now.
    ///
    /// # Errors
    /// A pending record that fails to decrypt.
    pub fn enable_transport(&mut self, mut transport: Transport) -> Result<(), StreamError> {
        let pending = self.decoder.buffer_mut().split();
        transport.open(&pending, self.decoder.buffer_mut())?;
        self.transport = Some(transport);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_run_from_one_to_u32_max_then_stop() {
        let mut codec = SessionCodec::new(commucat_ccp::MAX_FRAME_LEN);
        assert_eq!(codec.next_sequence(), Ok(1));
        assert_eq!(codec.next_sequence(), Ok(2));
        codec.next_sequence = u32::MAX - 1;
        assert!(!codec.sequence_nearly_exhausted());
        assert_eq!(codec.next_sequence(), Ok(u32::MAX - 1));
        assert!(codec.sequence_nearly_exhausted());
        assert_eq!(codec.next_sequence(), Ok(u32::MAX));
        assert_eq!(codec.next_sequence(), Err(SequenceExhausted));
        assert_eq!(codec.next_sequence(), Err(SequenceExhausted));
    }

    #[test]
    fn skipping_only_moves_forward() {
        let mut codec = SessionCodec::new(commucat_ccp::MAX_FRAME_LEN);
        codec.skip_sequences_to(10);
        assert_eq!(codec.next_sequence(), Ok(10));
        codec.skip_sequences_to(5);
        assert_eq!(codec.next_sequence(), Ok(11));
        codec.skip_sequences_to(u32::MAX);
        assert!(codec.sequence_nearly_exhausted());
        assert_eq!(codec.next_sequence(), Ok(u32::MAX));
        codec.skip_sequences_to(u32::MAX);
        assert_eq!(codec.next_sequence(), Err(SequenceExhausted));
    }

    #[test]
    fn plain_frames_pass_through() {
        let mut codec = SessionCodec::new(commucat_ccp::MAX_FRAME_LEN);
        let frame = Frame::new(commucat_ccp::FrameType::Msg, 5, 3, &b"hi"[..]).unwrap();
        let mut out = BytesMut::new();
        codec.encode(&frame, &mut out).unwrap();
        assert_eq!(out.as_ref(), frame.to_bytes().as_ref());
        codec.feed(&out).unwrap();
        assert_eq!(codec.next_frame().unwrap(), Some(frame));
    }
}
