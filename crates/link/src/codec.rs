//! The per-session framing state, sans-IO: frame decoding, optional Noise transport records, and
//! the server's outgoing sequence counter.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use commucat_ccp::{CodecError, Frame, FrameDecoder};
use commucat_fec::FecParams;
use commucat_keys::pq::{MessageKey, PqError};
use commucat_keys::{NoiseError, Transport};

use crate::obf::{ObfError, Obfuscator};

use crate::ratchet::{self, RatchetError, RatchetPolicy, Schedule};

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
    /// An `adaptive-obf` wrapper failed its check (only with `adaptive-obf`).
    #[error(transparent)]
    Obfuscation(#[from] ObfError),
    /// A `pq-hybrid` ratchet step failed (only with `pq-hybrid`).
    #[error(transparent)]
    Ratchet(#[from] RatchetError),
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
    /// `adaptive-obf` wrapping (inside the transport records) and the decrypted bytes not yet
    /// forming a whole packet.
    obf: Option<(Obfuscator, BytesMut)>,
    fec: Option<Box<FecLink>>,
    max_frame_len: usize,
    /// When bytes were last fed (FEC reassembly expiry while records are opened).
    last_feed: Instant,
    /// Sequence number of the next frame the server sends.
    next_sequence: u32,
    /// Records sealed by the codec itself (a ratchet acknowledgement) not yet handed out;
    /// they go before anything sealed later.
    outgoing: BytesMut,
    /// When the server starts ratchet steps (`pq-hybrid`, server side).
    schedule: Option<Schedule>,
    /// The receiving key of a step sent and not yet acknowledged, with its epoch.
    pending: Option<(u64, MessageKey)>,
}

/// Appends `frame` to `plain` as it travels inside the records: wrapped in an `adaptive-obf`
/// packet when that is on, encoded as is otherwise.
fn encode_plain(
    obf: &mut Option<(Obfuscator, BytesMut)>,
    frame: &Frame,
    plain: &mut BytesMut,
) -> Result<(), StreamError> {
    match obf {
        Some((obfuscator, _)) => obfuscator.wrap_into(frame, plain)?,
        None => frame.encode(plain),
    }
    Ok(())
}

/// Takes `next` as a sequence number (see [`SessionCodec::next_sequence`]).
fn take_sequence(next: &mut u32) -> Result<u32, SequenceExhausted> {
    let sequence = *next;
    if sequence == 0 {
        return Err(SequenceExhausted);
    }
    // Wrapping to 0 marks exhaustion: 0 is never handed out after the start.
    *next = sequence.wrapping_add(1);
    Ok(sequence)
}

impl SessionCodec {
    /// A codec with the given frame limit, in plain mode, whose first frame gets sequence 1.
    #[must_use]
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            decoder: FrameDecoder::with_max_frame_len(max_frame_len),
            transport: None,
            obf: None,
            fec: None,
            max_frame_len,
            last_feed: Instant::now(),
            next_sequence: 1,
            outgoing: BytesMut::new(),
            schedule: None,
            pending: None,
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
    /// time (see [`SessionCodec::feed_at`]). Records are opened by
    /// [`SessionCodec::next_frame`], one at a time.
    ///
    /// # Errors
    /// A malformed FEC symbol (without transport records; records are opened later).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        self.feed_at(Instant::now(), bytes)
    }

    /// Feeds received bytes at `now` (FEC reassembly expiry is measured against it).
    ///
    /// # Errors
    /// A malformed FEC symbol (without transport records; records are opened later).
    pub fn feed_at(&mut self, now: Instant, bytes: &[u8]) -> Result<(), StreamError> {
        self.last_feed = now;
        match (&mut self.transport, &mut self.fec) {
            (Some(transport), _) => transport.push(bytes),
            (None, Some(fec)) => {
                fec.units_mut().extend_from_slice(bytes);
                fec.drain(now, self.decoder.buffer_mut())?;
            }
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

    /// The next whole frame received, if any. In transport mode records are opened one at a
    /// time, only when no whole frame is buffered, so a ratchet message (which ends its
    /// record) switches the receiving key before the next record is opened. Ratchet messages
    /// are consumed here; they are never returned.
    ///
    /// # Errors
    /// Malformed frame bytes, a record that fails to decrypt, a failed ratchet step or, with
    /// `adaptive-obf`, a wrapper that fails its check (all terminal).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        loop {
            let (frame, buffered) = match &mut self.obf {
                Some((obfuscator, plain)) => (obfuscator.next_frame(plain)?, plain.len()),
                None => (self.decoder.next_frame()?, self.decoder.buffered()),
            };
            if let Some(frame) = frame {
                if self.is_hybrid() && ratchet::is_signal(&frame) {
                    if buffered > 0 {
                        return Err(RatchetError::NotAtRecordEnd.into());
                    }
                    self.on_signal(&frame)?;
                    continue;
                }
                self.count_frame();
                return Ok(Some(frame));
            }
            let Some(transport) = &mut self.transport else {
                return Ok(None);
            };
            match (&mut self.fec, &mut self.obf) {
                (Some(fec), _) => {
                    if !transport.open_next(fec.units_mut())? {
                        return Ok(None);
                    }
                    fec.drain(self.last_feed, self.decoder.buffer_mut())?;
                }
                (None, Some((_, plain))) => {
                    if !transport.open_next(plain)? {
                        return Ok(None);
                    }
                }
                (None, None) => {
                    if !transport.open_next(self.decoder.buffer_mut())? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Whether the session is a `pq-hybrid` one (its transport has a ratchet).
    #[must_use]
    pub fn is_hybrid(&self) -> bool {
        self.transport
            .as_ref()
            .is_some_and(|t| t.ratchet().is_some())
    }

    /// Ratchet steps taken, in a `pq-hybrid` session.
    #[must_use]
    pub fn ratchet_epoch(&self) -> Option<u64> {
        self.transport
            .as_ref()
            .and_then(Transport::ratchet)
            .map(commucat_keys::pq::LiveRatchet::epoch)
    }

    /// One-time keys not yet spent, in a `pq-hybrid` session.
    #[must_use]
    pub fn one_time_keys_left(&self) -> Option<usize> {
        self.transport
            .as_ref()
            .and_then(Transport::ratchet)
            .map(commucat_keys::pq::LiveRatchet::remaining)
    }

    /// Starts the server's ratchet schedule (`pq-hybrid` server side only; otherwise nothing
    /// happens and `false` is returned).
    pub fn schedule_ratchet(&mut self, policy: RatchetPolicy, now: Instant) -> bool {
        let server = self
            .transport
            .as_ref()
            .and_then(Transport::ratchet)
            .is_some_and(commucat_keys::pq::LiveRatchet::is_encapsulator);
        if server {
            self.schedule = Some(Schedule::new(policy, now));
        }
        server
    }

    /// Whether the schedule calls for a step now (none is waiting for its acknowledgement).
    #[must_use]
    pub fn ratchet_due(&self, now: Instant) -> bool {
        self.pending.is_none() && self.schedule.as_ref().is_some_and(|s| s.due(now))
    }

    /// When the schedule's interval runs out, unless a step is waiting for its
    /// acknowledgement.
    #[must_use]
    pub fn ratchet_deadline(&self) -> Option<Instant> {
        if self.pending.is_some() {
            return None;
        }
        self.schedule.as_ref().and_then(Schedule::deadline)
    }

    /// Server side of a step: spends the next one-time key, appends the step message (with
    /// `sequence`) sealed under the current sending key to `out`, and switches the sending
    /// key; the receiving key switches when the client's acknowledgement is read.
    ///
    /// # Errors
    /// [`RatchetError::Exhausted`] when every one-time key is spent (nothing changed),
    /// [`RatchetError::Pending`], [`RatchetError::NotHybrid`], or a failed encapsulation.
    pub fn start_ratchet(
        &mut self,
        sequence: u32,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), StreamError> {
        if self.pending.is_some() {
            return Err(RatchetError::Pending.into());
        }
        let transport = self.transport.as_mut().ok_or(RatchetError::NotHybrid)?;
        let live = transport.ratchet_mut().ok_or(RatchetError::NotHybrid)?;
        let (step, keys) = live.step().map_err(|e| match e {
            PqError::OneTimeKeysExhausted => RatchetError::Exhausted,
            other => RatchetError::Crypto(other),
        })?;
        let epoch = live.epoch();
        let frame = ratchet::step_frame(epoch, &step, sequence)?;
        out.extend_from_slice(&self.outgoing.split());
        let mut plain = BytesMut::with_capacity(frame.encoded_len());
        encode_plain(&mut self.obf, &frame, &mut plain)?;
        transport.seal(&plain, out)?;
        transport.rekey_sending(keys.sending.as_bytes());
        self.pending = Some((epoch, keys.receiving));
        if let Some(schedule) = &mut self.schedule {
            schedule.restart(now);
        }
        Ok(())
    }

    /// A copy of the records the codec sealed itself (a ratchet acknowledgement) that must be
    /// written before anything else ([`SessionCodec::encode`] also puts them first); call
    /// [`SessionCodec::outgoing_written`] once they are written.
    #[must_use]
    pub fn outgoing(&self) -> Option<Bytes> {
        if self.outgoing.is_empty() {
            return None;
        }
        Some(Bytes::copy_from_slice(&self.outgoing))
    }

    /// The records of [`SessionCodec::outgoing`] have been written.
    pub fn outgoing_written(&mut self) {
        self.outgoing.clear();
    }

    /// The transport, for tests that seal records by hand.
    #[cfg(test)]
    #[allow(clippy::expect_used)]
    pub(crate) fn transport_mut_for_tests(&mut self) -> &mut Transport {
        self.transport.as_mut().expect("transport mode")
    }

    fn count_frame(&mut self) {
        if let Some(schedule) = &mut self.schedule {
            schedule.frames = schedule.frames.saturating_add(1);
        }
    }

    /// A ratchet message read under the old receiving key.
    fn on_signal(&mut self, frame: &Frame) -> Result<(), StreamError> {
        let Self {
            transport,
            next_sequence,
            outgoing,
            pending,
            obf,
            ..
        } = self;
        let transport = transport.as_mut().ok_or(RatchetError::NotHybrid)?;
        let live = transport.ratchet_mut().ok_or(RatchetError::NotHybrid)?;
        if live.is_encapsulator() {
            let epoch = ratchet::parse_ack(frame)?;
            let Some((expected, key)) = pending.take() else {
                return Err(
                    RatchetError::Message("pq-ratchet-ack without a step".to_owned()).into(),
                );
            };
            if epoch != expected {
                return Err(RatchetError::Message(format!(
                    "pq-ratchet-ack for epoch {epoch}; the step sent was epoch {expected}"
                ))
                .into());
            }
            transport.rekey_receiving(key.as_bytes());
            return Ok(());
        }
        let (epoch, step) = ratchet::parse_step(frame)?;
        if Some(epoch) != live.epoch().checked_add(1) {
            return Err(RatchetError::Message(format!(
                "pq-ratchet for epoch {epoch}; this session is at epoch {}",
                live.epoch()
            ))
            .into());
        }
        let sequence = take_sequence(next_sequence).map_err(|_| RatchetError::SequenceExhausted)?;
        let keys = live.apply(&step).map_err(RatchetError::Crypto)?;
        transport.rekey_receiving(keys.receiving.as_bytes());
        let ack = ratchet::ack_frame(epoch, sequence)?;
        let mut plain = BytesMut::with_capacity(ack.encoded_len());
        encode_plain(obf, &ack, &mut plain)?;
        transport.seal(&plain, outgoing)?;
        transport.rekey_sending(keys.sending.as_bytes());
        Ok(())
    }

    /// Bytes received and not yet decoded.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
            + self.transport.as_ref().map_or(0, Transport::buffered)
            + self.obf.as_ref().map_or(0, |(_, plain)| plain.len())
            + self.fec.as_ref().map_or(0, |f| f.buffered())
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
        take_sequence(&mut self.next_sequence)
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
    /// Noise encryption failure (nonce exhaustion), a frame too large to wrap, FEC encoding
    /// failure.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), StreamError> {
        self.count_frame();
        if let Some(fec) = &mut self.fec {
            let mut plain = BytesMut::with_capacity(frame.encoded_len());
            frame.encode(&mut plain);
            match &mut self.transport {
                Some(transport) => {
                    let mut units = BytesMut::new();
                    fec.encode(&plain, &mut units)?;
                    transport.seal(&units, out)?;
                }
                // Plain units go straight to the output, without a staging copy.
                None => fec.encode(&plain, out)?,
            }
            return Ok(());
        }
        match &mut self.transport {
            Some(transport) => {
                out.extend_from_slice(&self.outgoing.split());
                let mut plain = BytesMut::with_capacity(frame.encoded_len());
                encode_plain(&mut self.obf, frame, &mut plain)?;
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
    /// decoded arrived after the handshake's last message and are records: they are opened
    /// with the next frames.
    ///
    /// # Errors
    /// None today; kept for stream errors on the switch.
    pub fn enable_transport(&mut self, mut transport: Transport) -> Result<(), StreamError> {
        let pending = self.decoder.buffer_mut().split();
        transport.push(&pending);
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
