//! FEC framing of an established session (capability `fec`): every frame after the handshake
//! travels as RaptorQ symbols, each in a unit `len:u16be symbol[len]` (in plain mode straight on
//! the stream, in transport mode inside the Noise records). See docs/multipath.md.

use std::time::Instant;

use bytes::{Buf, BufMut, BytesMut};
use commucat_fec::{
    Accepted, EncodeError, Encoder, FecParams, Reassembler, ReassemblyLimits, SYMBOL_HEADER_LEN,
    SymbolError,
};

/// Why FEC framing failed (terminal for the session).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FecError {
    /// A received symbol is malformed or inconsistent.
    #[error("FEC symbol: {0}")]
    Symbol(#[from] SymbolError),
    /// A unit length is zero or larger than a symbol can be.
    #[error("FEC unit of {len} bytes (at most {max})")]
    UnitLength {
        /// Declared length.
        len: usize,
        /// Largest symbol at the negotiated size.
        max: usize,
    },
    /// A frame could not be encoded.
    #[error("FEC encode: {0}")]
    Encode(#[from] EncodeError),
}

/// FEC counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FecCounters {
    /// Symbols generated for sending.
    pub symbols_sent: u64,
    /// Symbols received (accepted or dropped as duplicates).
    pub symbols_received: u64,
    /// Frames rebuilt from symbols.
    pub frames_recovered: u64,
}

/// FEC state of one session.
#[derive(Debug)]
pub(crate) struct FecLink {
    encoder: Encoder,
    reassembler: Reassembler,
    units: BytesMut,
    max_unit: usize,
    counters: FecCounters,
    unreported: u64,
}

impl FecLink {
    pub(crate) fn new(params: FecParams, max_frame_len: usize) -> Result<Self, FecError> {
        let encoder = Encoder::new(params)?;
        let max_unit = SYMBOL_HEADER_LEN + usize::from(params.symbol_size);
        if max_unit > usize::from(u16::MAX) {
            return Err(FecError::UnitLength {
                len: max_unit,
                max: usize::from(u16::MAX),
            });
        }
        // An object is one encoded frame: its header (≤ 16 bytes) plus at most max_frame_len.
        let max_object_len = (max_frame_len + 16).min(params.max_object_len());
        let per_symbol = usize::from(params.symbol_size) + 32;
        let min_budget = max_object_len.div_ceil(usize::from(params.symbol_size)) * per_symbol;
        let limits = ReassemblyLimits {
            max_object_len,
            max_bytes: ReassemblyLimits::default().max_bytes.max(min_budget),
            ..ReassemblyLimits::default()
        };
        Ok(Self {
            encoder,
            reassembler: Reassembler::new(params.symbol_size, limits),
            units: BytesMut::new(),
            max_unit,
            counters: FecCounters::default(),
            unreported: 0,
        })
    }

    pub(crate) const fn counters(&self) -> FecCounters {
        self.counters
    }

    /// Symbols generated since the last call.
    pub(crate) fn take_unreported(&mut self) -> u64 {
        std::mem::take(&mut self.unreported)
    }

    pub(crate) fn buffered(&self) -> usize {
        self.units.len() + self.reassembler.bytes_in_flight()
    }

    pub(crate) fn units_mut(&mut self) -> &mut BytesMut {
        &mut self.units
    }

    /// Parses the whole units received so far; appends rebuilt frames' bytes to `frames`.
    pub(crate) fn drain(&mut self, now: Instant, frames: &mut BytesMut) -> Result<(), FecError> {
        while let Some(prefix) = self.units.first_chunk::<2>() {
            let len = usize::from(u16::from_be_bytes(*prefix));
            if len == 0 || len > self.max_unit {
                return Err(FecError::UnitLength {
                    len,
                    max: self.max_unit,
                });
            }
            if self.units.len() < 2 + len {
                break;
            }
            self.units.advance(2);
            let symbol = self.units.split_to(len);
            self.counters.symbols_received += 1;
            if let Accepted::Delivered { data, .. } = self.reassembler.accept(now, &symbol)? {
                self.counters.frames_recovered += 1;
                frames.extend_from_slice(&data);
            }
        }
        Ok(())
    }

    /// Encodes one frame's bytes as units appended to `out`.
    pub(crate) fn encode(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), FecError> {
        let object = self.encoder.encode(frame)?;
        out.reserve(object.len() * (2 + self.max_unit));
        for symbol in object.symbols() {
            // Every symbol is max_unit bytes, checked to fit a u16 in `new`.
            out.put_u16(u16::try_from(symbol.len()).unwrap_or(u16::MAX));
            out.extend_from_slice(symbol);
        }
        self.counters.symbols_sent += object.len() as u64;
        self.unreported += object.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use bytes::BytesMut;
    use commucat_ccp::{Frame, FrameType, MAX_FRAME_LEN};
    use commucat_fec::FecParams;

    use super::FecError;
    use crate::{SessionCodec, StreamError};

    fn pair() -> (SessionCodec, SessionCodec) {
        let mut a = SessionCodec::new(MAX_FRAME_LEN);
        let mut b = SessionCodec::new(MAX_FRAME_LEN);
        a.enable_fec(FecParams::default()).unwrap();
        b.enable_fec(FecParams::default()).unwrap();
        (a, b)
    }

    fn frames() -> Vec<Frame> {
        (1..=20u32)
            .map(|i| Frame::new(FrameType::Msg, 7, i, vec![i as u8; (i as usize) * 700]).unwrap())
            .collect()
    }

    #[test]
    fn frames_cross_as_symbols_byte_by_byte_in_order() {
        let (mut a, mut b) = pair();
        let mut wire = BytesMut::new();
        for f in frames() {
            a.encode(&f, &mut wire).unwrap();
        }
        let plain: usize = frames().iter().map(Frame::encoded_len).sum();
        // 35 % repair plus a 27-byte unit header per 1,152-byte symbol.
        assert!(wire.len() > plain * 13 / 10);
        let sent = a.fec_counters().symbols_sent;
        assert!(sent > 20);
        let mut got = Vec::new();
        for byte in wire.iter() {
            b.feed(&[*byte]).unwrap();
            while let Some(f) = b.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames());
        let c = b.fec_counters();
        assert_eq!((c.symbols_received, c.frames_recovered), (sent, 20));
        assert_eq!(b.buffered(), 0);
    }

    #[test]
    fn bytes_pending_at_the_switch_are_reassembled() {
        let mut a = SessionCodec::new(MAX_FRAME_LEN);
        a.enable_fec(FecParams::default()).unwrap();
        let mut wire = BytesMut::new();
        let f = Frame::new(FrameType::Msg, 1, 1, &b"early"[..]).unwrap();
        a.encode(&f, &mut wire).unwrap();
        let mut b = SessionCodec::new(MAX_FRAME_LEN);
        b.feed(&wire).unwrap(); // arrives before b switches
        b.enable_fec(FecParams::default()).unwrap();
        assert_eq!(b.next_frame().unwrap(), Some(f));
    }

    #[test]
    fn malformed_units_and_symbols_are_typed_errors() {
        let (_, mut b) = pair();
        let err = b.feed(&[0, 0]).unwrap_err();
        assert!(matches!(
            err,
            StreamError::Fec(FecError::UnitLength { len: 0, .. })
        ));
        let (_, mut b) = pair();
        let err = b.feed(&[0xff, 0xff]).unwrap_err();
        assert!(matches!(
            err,
            StreamError::Fec(FecError::UnitLength { len: 65_535, .. })
        ));
        let (_, mut b) = pair();
        let mut unit = vec![0, 30];
        unit.extend_from_slice(&[9u8; 30]);
        let err = b.feed(&unit).unwrap_err();
        assert!(matches!(err, StreamError::Fec(FecError::Symbol(_))));
    }

    #[test]
    fn a_peer_with_another_symbol_size_is_refused() {
        let mut a = SessionCodec::new(MAX_FRAME_LEN);
        a.enable_fec(FecParams {
            symbol_size: 512,
            repair_percent: 35,
        })
        .unwrap();
        let (_, mut b) = pair();
        let mut wire = BytesMut::new();
        a.encode(
            &Frame::new(FrameType::Msg, 1, 1, &b"x"[..]).unwrap(),
            &mut wire,
        )
        .unwrap();
        assert!(matches!(
            b.feed(&wire).unwrap_err(),
            StreamError::Fec(FecError::Symbol(
                commucat_fec::SymbolError::SymbolSizeMismatch { .. }
            ))
        ));
    }
}
