//! Encoder: one object (an encoded CCP frame) → source and repair symbols.

use raptorq::{ObjectTransmissionInformation, SourceBlockEncoder};

use crate::params::{FecParams, SYMBOL_ALIGNMENT};
use crate::symbol::write_symbol;

/// [`SYMBOL_ALIGNMENT`] as the OTI's one-byte field.
const ALIGNMENT_U8: u8 = 8;
const _: () = assert!(ALIGNMENT_U8 as u16 == SYMBOL_ALIGNMENT);

/// Why an object cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Objects are at least one byte.
    #[error("cannot encode an empty object")]
    Empty,
    /// The object exceeds one RaptorQ source block at this symbol size.
    #[error("object of {len} bytes exceeds {max} bytes")]
    TooLarge {
        /// Object length.
        len: usize,
        /// Largest encodable object.
        max: usize,
    },
    /// The parameters are unusable (symbol size zero or unaligned).
    #[error("symbol size {0} is not a non-zero multiple of 8")]
    SymbolSize(u16),
    /// Every object id of this direction has been used: the session must reconnect.
    #[error("object ids exhausted")]
    IdsExhausted,
}

/// One encoded object: its id and serialized symbols (each ready to be a carrier payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedObject {
    /// The id every symbol carries.
    pub object_id: u64,
    /// Systematic symbols, ESI `0..K`, in order.
    pub source: Vec<Vec<u8>>,
    /// Repair symbols.
    pub repair: Vec<Vec<u8>>,
}

impl EncodedObject {
    /// All symbols: source first, then repair.
    pub fn symbols(&self) -> impl Iterator<Item = &[u8]> {
        self.source.iter().chain(&self.repair).map(Vec::as_slice)
    }

    /// Total number of symbols (the `fec_packets` this object adds).
    #[must_use]
    pub fn len(&self) -> usize {
        self.source.len() + self.repair.len()
    }

    /// Never true: every object has at least one source symbol.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Encoder state of one direction of a session: the parameters and the next object id.
#[derive(Debug, Clone)]
pub struct Encoder {
    params: FecParams,
    next_object_id: Option<u64>,
}

impl Encoder {
    /// An encoder whose first object gets id 0.
    ///
    /// # Errors
    /// [`EncodeError::SymbolSize`] for a zero or unaligned symbol size.
    pub fn new(params: FecParams) -> Result<Self, EncodeError> {
        if params.symbol_size == 0 || !params.symbol_size.is_multiple_of(SYMBOL_ALIGNMENT) {
            return Err(EncodeError::SymbolSize(params.symbol_size));
        }
        Ok(Self {
            params,
            next_object_id: Some(0),
        })
    }

    /// The parameters in use.
    #[must_use]
    pub const fn params(&self) -> FecParams {
        self.params
    }

    /// Encodes one object into `K` source symbols and `ceil(K × overhead)` repair symbols.
    ///
    /// # Errors
    /// [`EncodeError::Empty`], [`EncodeError::TooLarge`], [`EncodeError::IdsExhausted`].
    pub fn encode(&mut self, object: &[u8]) -> Result<EncodedObject, EncodeError> {
        if object.is_empty() {
            return Err(EncodeError::Empty);
        }
        let max = self.params.max_object_len();
        if object.len() > max {
            return Err(EncodeError::TooLarge {
                len: object.len(),
                max,
            });
        }
        let object_id = self.next_object_id.ok_or(EncodeError::IdsExhausted)?;
        self.next_object_id = object_id.checked_add(1);

        let symbol_size = self.params.symbol_size;
        let k = self.params.source_symbols(object.len());
        let oti = ObjectTransmissionInformation::new(
            object.len() as u64,
            symbol_size,
            1,
            1,
            ALIGNMENT_U8,
        );
        let mut padded = Vec::with_capacity(k * usize::from(symbol_size));
        padded.extend_from_slice(object);
        padded.resize(k * usize::from(symbol_size), 0);
        let block = SourceBlockEncoder::new(0, &oti, &padded);

        let repair_count = self.params.repair_symbols(k);
        let serialize = |packets: Vec<raptorq::EncodingPacket>| {
            packets
                .into_iter()
                .map(|p| {
                    let mut out = Vec::new();
                    write_symbol(&mut out, object_id, &oti, p.payload_id(), p.data());
                    out
                })
                .collect::<Vec<_>>()
        };
        let source = serialize(block.source_packets());
        // repair_count ≤ K × 655 % ≤ 56,403 × 6.55: fits a u32.
        let repair_count = u32::try_from(repair_count).unwrap_or(u32::MAX);
        let repair = serialize(block.repair_packets(0, repair_count));
        Ok(EncodedObject {
            object_id,
            source,
            repair,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbol::{SYMBOL_HEADER_LEN, SymbolRef};

    #[test]
    fn symbol_counts_follow_the_parameters() {
        let mut enc = Encoder::new(FecParams::default()).expect("params");
        let obj = enc.encode(&[1u8; 10 * 1152 + 1]).expect("encode");
        assert_eq!(obj.object_id, 0);
        assert_eq!(obj.source.len(), 11);
        assert_eq!(obj.repair.len(), 4); // ceil(11 × 0.35)
        assert!(obj.symbols().all(|s| s.len() == SYMBOL_HEADER_LEN + 1152));
        let first = SymbolRef::parse(&obj.source[0]).expect("parse");
        assert_eq!(first.oti.transfer_length(), 10 * 1152 + 1);
        assert_eq!(first.data, &[1u8; 1152][..]);
        let repair = SymbolRef::parse(&obj.repair[0]).expect("parse");
        assert!(!repair.is_source());
        assert_eq!(enc.encode(b"x").expect("encode").object_id, 1);
    }

    #[test]
    fn refuses_empty_oversized_and_unaligned() {
        let mut enc = Encoder::new(FecParams {
            symbol_size: 64,
            repair_percent: 0,
        })
        .expect("params");
        assert_eq!(enc.encode(&[]), Err(EncodeError::Empty));
        let max = enc.params().max_object_len();
        assert_eq!(
            enc.encode(&vec![0; max + 1]),
            Err(EncodeError::TooLarge { len: max + 1, max })
        );
        assert_eq!(enc.encode(b"abc").expect("encode").repair.len(), 0);
        assert_eq!(
            Encoder::new(FecParams {
                symbol_size: 100,
                repair_percent: 35
            })
            .map(|_| ()),
            Err(EncodeError::SymbolSize(100))
        );
    }

    #[test]
    fn ids_run_out_with_a_typed_error() {
        let mut enc = Encoder::new(FecParams::default()).expect("params");
        enc.next_object_id = Some(u64::MAX);
        assert_eq!(enc.encode(b"a").expect("last").object_id, u64::MAX);
        assert_eq!(enc.encode(b"a"), Err(EncodeError::IdsExhausted));
    }
}
