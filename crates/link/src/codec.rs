//! The per-session framing state, sans-IO: frame decoding, optional Noise transport records, and
//! the server's outgoing sequence counter.

use std::time::Instant;

use bytes::BytesMut;
use commucat_ccp::{CodecError, Frame, FrameDecoder};
use commucat_fec::FecParams;
use commucat_keys::{NoiseError, Transport};

use crate::fec::{FecCounters, FecError, FecLink};

/// Why a session's byte stream cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Malformed frame bytes.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A Noise transport record failed (only with `noise-transport`).
    #[error(transparent)]
    Noise(#[from] NoiseError),
    /// FEC framing failed (only with `fec`).
    #[error(transparent)]
    Fec(#[from] FecError),
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
    fec: Option<Box<FecLink>>,
    max_frame_len: usize,
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
            fec: None,
            max_frame_len,
            next_sequence: 1,
        }
    }

    /// Whether frames travel as Noise transport records.
    #[must_use]
    pub const fn is_encrypted(&self) -> bool {
        self.transport.is_some()
    }

    /// Whether frames travel as FEC symbols.
    #[must_use]
    pub const fn is_fec(&self) -> bool {
        self.fec.is_some()
    }

    /// FEC counters (zero without `fec`).
    #[must_use]
    pub fn fec_counters(&self) -> FecCounters {
        self.fec.as_ref().map(|f| f.counters()).unwrap_or_default()
    }

    /// FEC symbols generated since the last call (for a `fec_packets` counter; 0 without `fec`).
    pub fn take_fec_symbols_sent(&mut self) -> u64 {
        self.fec.as_mut().map_or(0, |f| f.take_unreported())
    }

    /// Feeds received bytes (records in transport mode, frame bytes otherwise) at the current
    /// time (see [`SessionCodec::feed_at`]).
    ///
    /// # Errors
    /// A record that fails to decrypt; a malformed FEC symbol.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        self.feed_at(Instant::now(), bytes)
    }

    /// Feeds received bytes at `now` (FEC reassembly expiry is measured against it).
    ///
    /// # Errors
    /// A record that fails to decrypt; a malformed FEC symbol.
    pub fn feed_at(&mut self, now: Instant, bytes: &[u8]) -> Result<(), StreamError> {
        match (&mut self.transport, &mut self.fec) {
            (Some(transport), Some(fec)) => {
                transport.open(bytes, fec.units_mut())?;
                fec.drain(now, self.decoder.buffer_mut())?;
            }
            (None, Some(fec)) => {
                fec.units_mut().extend_from_slice(bytes);
                fec.drain(now, self.decoder.buffer_mut())?;
            }
            (Some(transport), None) => transport.open(bytes, self.decoder.buffer_mut())?,
            (None, None) => self.decoder.extend(bytes),
        }
        Ok(())
    }

    /// Switches both directions to FEC framing (after [`SessionCodec::enable_transport`] when
    /// both are negotiated). Frame bytes received but not yet decoded arrived after the
    /// handshake's last message and are FEC units: they are reassembled now.
    ///
    /// # Errors
    /// Unusable parameters, or a pending unit that is malformed.
    pub fn enable_fec(&mut self, params: FecParams) -> Result<(), StreamError> {
        let mut fec = Box::new(FecLink::new(params, self.max_frame_len)?);
        let pending = self.decoder.buffer_mut().split();
        fec.units_mut().extend_from_slice(&pending);
        fec.drain(Instant::now(), self.decoder.buffer_mut())?;
        self.fec = Some(fec);
        Ok(())
    }

    /// The next whole frame received, if any.
    ///
    /// # Errors
    /// Malformed frame bytes (terminal).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, CodecError> {
        self.decoder.next_frame()
    }

    /// Bytes received and not yet decoded.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
            + self.transport.as_ref().map_or(0, Transport::buffered)
            + self.fec.as_ref().map_or(0, |f| f.buffered())
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
    /// Noise encryption failure (nonce exhaustion); FEC encoding failure.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), StreamError> {
        if let Some(fec) = &mut self.fec {
            let mut plain = BytesMut::with_capacity(frame.encoded_len());
            frame.encode(&mut plain);
            let mut units = BytesMut::new();
            fec.encode(&plain, &mut units)?;
            match &mut self.transport {
                Some(transport) => transport.seal(&units, out)?,
                None => out.extend_from_slice(&units),
            }
            return Ok(());
        }
        match &mut self.transport {
            Some(transport) => {
                let mut plain = BytesMut::with_capacity(frame.encoded_len());
                frame.encode(&mut plain);
                transport.seal(&plain, out)?;
            }
            None => frame.encode(out),
        }
        Ok(())
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
