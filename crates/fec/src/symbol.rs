//! The symbol wire format and its validating parser.
//!
//! ```text
//! symbol     = version:u8 object_id:u64 oti:12 payload_id:4 data[T]
//! version    = 0x01
//! object_id  = big-endian, assigned by the sender, strictly increasing per direction
//! oti        = RFC 6330 §3.3.2/§3.3.3 ObjectTransmissionInformation (F:40, reserved:8 = 0,
//!              T:16, Z:8 = 1, N:16 = 1, Al:8 = 8)
//! payload_id = RFC 6330 §3.2 (SBN:8 = 0, ESI:24)
//! data       = exactly T bytes
//! ```
//!
//! Every symbol carries the whole OTI, so any path can start decoding an object from whichever
//! of its symbols arrives first.

use raptorq::{ObjectTransmissionInformation, PayloadId};

use crate::MAX_SOURCE_SYMBOLS;
use crate::params::SYMBOL_ALIGNMENT;

/// Wire version of the symbol format.
pub const SYMBOL_VERSION: u8 = 1;
/// Bytes before the symbol data: version, object id, OTI, payload id.
pub const SYMBOL_HEADER_LEN: usize = 1 + 8 + OTI_LEN + 4;
/// Serialized length of the `ObjectTransmissionInformation`.
pub const OTI_LEN: usize = 12;

/// Why a symbol was refused. Every malformed input maps to one of these; none panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolError {
    /// Shorter than the header, or than the header plus one byte of data.
    #[error("symbol truncated ({len} bytes)")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// The first byte is not [`SYMBOL_VERSION`].
    #[error("unknown symbol version {0}")]
    UnknownVersion(u8),
    /// The OTI's reserved byte is not zero.
    #[error("OTI reserved byte is not zero")]
    ReservedOtiByte,
    /// The OTI's transfer length is zero.
    #[error("OTI transfer length is zero")]
    EmptyObject,
    /// Symbol alignment is not 8, or the symbol size is zero or not a multiple of it.
    #[error("OTI symbol size {symbol_size} / alignment {alignment} unsupported")]
    Alignment {
        /// OTI symbol size `T`.
        symbol_size: u16,
        /// OTI alignment `Al`.
        alignment: u8,
    },
    /// More than one source block or sub-block (objects are always one block).
    #[error("OTI with {source_blocks} source blocks / {sub_blocks} sub-blocks unsupported")]
    Blocks {
        /// OTI `Z`.
        source_blocks: u8,
        /// OTI `N`.
        sub_blocks: u16,
    },
    /// The payload id names a source block other than 0.
    #[error("source block number {0} out of range")]
    SourceBlockNumber(u8),
    /// The object needs more source symbols than one RaptorQ block holds.
    #[error("object needs more than {MAX_SOURCE_SYMBOLS} source symbols")]
    TooManySourceSymbols,
    /// The data length differs from the OTI symbol size.
    #[error("symbol data is {got} bytes, OTI says {expected}")]
    DataLength {
        /// OTI symbol size.
        expected: usize,
        /// Data bytes received.
        got: usize,
    },
    /// The symbol size differs from the negotiated one.
    #[error("symbol size {got} differs from the negotiated {negotiated}")]
    SymbolSizeMismatch {
        /// Negotiated symbol size.
        negotiated: u16,
        /// Symbol size in the OTI.
        got: u16,
    },
    /// The object is larger than the receiver accepts.
    #[error("object of {len} bytes exceeds the {max}-byte limit")]
    ObjectTooLarge {
        /// OTI transfer length.
        len: u64,
        /// Receiver limit.
        max: usize,
    },
    /// Another symbol of the same object carried a different OTI.
    #[error("object {object_id}: OTI differs from its earlier symbols")]
    OtiMismatch {
        /// The object.
        object_id: u64,
    },
    /// The object alone needs more memory than the session's reassembly budget.
    #[error("object of {len} bytes does not fit the reassembly budget")]
    OverBudget {
        /// OTI transfer length.
        len: u64,
    },
}

/// A parsed, structurally valid symbol borrowing its data from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolRef<'a> {
    /// The object this symbol belongs to.
    pub object_id: u64,
    /// The object's transmission information.
    pub oti: ObjectTransmissionInformation,
    /// Encoding symbol id (`< K` for source symbols, `>= K` for repair symbols).
    pub esi: u32,
    /// Exactly `oti.symbol_size()` bytes.
    pub data: &'a [u8],
}

impl<'a> SymbolRef<'a> {
    /// Parses and structurally validates one symbol.
    ///
    /// # Errors
    /// A [`SymbolError`] for anything that is not a well-formed single-block symbol.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SymbolError> {
        if bytes.len() <= SYMBOL_HEADER_LEN {
            return Err(SymbolError::Truncated { len: bytes.len() });
        }
        let (header, data) = bytes.split_at(SYMBOL_HEADER_LEN);
        let (version, rest) = header.split_at(1);
        if version != [SYMBOL_VERSION] {
            return Err(SymbolError::UnknownVersion(
                version.first().copied().unwrap_or(0),
            ));
        }
        let (id, rest) = rest.split_at(8);
        let (oti_bytes, payload_id) = rest.split_at(OTI_LEN);
        let object_id = u64::from_be_bytes(id.try_into().map_err(|_| truncated(bytes))?);
        let oti_array: &[u8; OTI_LEN] = oti_bytes.try_into().map_err(|_| truncated(bytes))?;
        let pid_array: &[u8; 4] = payload_id.try_into().map_err(|_| truncated(bytes))?;
        let oti = validate_oti(oti_array)?;
        let pid = PayloadId::deserialize(pid_array);
        if pid.source_block_number() != 0 {
            return Err(SymbolError::SourceBlockNumber(pid.source_block_number()));
        }
        if data.len() != usize::from(oti.symbol_size()) {
            return Err(SymbolError::DataLength {
                expected: usize::from(oti.symbol_size()),
                got: data.len(),
            });
        }
        Ok(Self {
            object_id,
            oti,
            esi: pid.encoding_symbol_id(),
            data,
        })
    }

    /// Number of source symbols of the object (`K`).
    #[must_use]
    pub fn source_symbols(&self) -> usize {
        source_symbols(&self.oti)
    }

    /// Whether this is a source (systematic) symbol.
    #[must_use]
    pub fn is_source(&self) -> bool {
        (self.esi as usize) < self.source_symbols()
    }
}

fn truncated(bytes: &[u8]) -> SymbolError {
    SymbolError::Truncated { len: bytes.len() }
}

/// Number of source symbols for a validated OTI.
pub(crate) fn source_symbols(oti: &ObjectTransmissionInformation) -> usize {
    // Validated: symbol_size > 0 and the quotient fits MAX_SOURCE_SYMBOLS.
    oti.transfer_length()
        .div_ceil(u64::from(oti.symbol_size().max(1)))
        .try_into()
        .unwrap_or(usize::MAX)
}

/// Validates a serialized OTI for the single-block layout this crate uses.
fn validate_oti(bytes: &[u8; OTI_LEN]) -> Result<ObjectTransmissionInformation, SymbolError> {
    if bytes[5] != 0 {
        return Err(SymbolError::ReservedOtiByte);
    }
    let oti = ObjectTransmissionInformation::deserialize(bytes);
    if oti.transfer_length() == 0 {
        return Err(SymbolError::EmptyObject);
    }
    let align = u16::from(oti.symbol_alignment());
    if align != SYMBOL_ALIGNMENT
        || oti.symbol_size() == 0
        || !oti.symbol_size().is_multiple_of(align)
    {
        return Err(SymbolError::Alignment {
            symbol_size: oti.symbol_size(),
            alignment: oti.symbol_alignment(),
        });
    }
    if oti.source_blocks() != 1 || oti.sub_blocks() != 1 {
        return Err(SymbolError::Blocks {
            source_blocks: oti.source_blocks(),
            sub_blocks: oti.sub_blocks(),
        });
    }
    if source_symbols(&oti) > MAX_SOURCE_SYMBOLS {
        return Err(SymbolError::TooManySourceSymbols);
    }
    Ok(oti)
}

/// Writes one symbol: header then data.
pub(crate) fn write_symbol(
    out: &mut Vec<u8>,
    object_id: u64,
    oti: &ObjectTransmissionInformation,
    payload_id: &PayloadId,
    data: &[u8],
) {
    out.reserve(SYMBOL_HEADER_LEN + data.len());
    out.push(SYMBOL_VERSION);
    out.extend_from_slice(&object_id.to_be_bytes());
    out.extend_from_slice(&oti.serialize());
    out.extend_from_slice(&payload_id.serialize());
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbol(oti: [u8; 12], pid: [u8; 4], data_len: usize) -> Vec<u8> {
        let mut v = vec![SYMBOL_VERSION];
        v.extend_from_slice(&7u64.to_be_bytes());
        v.extend_from_slice(&oti);
        v.extend_from_slice(&pid);
        v.extend(std::iter::repeat_n(0xab, data_len));
        v
    }

    fn good_oti() -> [u8; 12] {
        ObjectTransmissionInformation::new(100, 64, 1, 1, 8).serialize()
    }

    #[test]
    fn parses_a_well_formed_symbol() {
        let bytes = symbol(good_oti(), [0, 0, 0, 1], 64);
        let s = SymbolRef::parse(&bytes).expect("valid");
        assert_eq!(s.object_id, 7);
        assert_eq!(s.esi, 1);
        assert_eq!(s.source_symbols(), 2);
        assert!(s.is_source());
        assert_eq!(s.data.len(), 64);
    }

    #[test]
    fn every_malformation_is_a_typed_error() {
        let ok = symbol(good_oti(), [0, 0, 0, 0], 64);
        assert_eq!(
            SymbolRef::parse(&ok[..SYMBOL_HEADER_LEN]),
            Err(SymbolError::Truncated {
                len: SYMBOL_HEADER_LEN
            })
        );
        assert_eq!(
            SymbolRef::parse(&[]),
            Err(SymbolError::Truncated { len: 0 })
        );
        let mut v = ok.clone();
        v[0] = 2;
        assert_eq!(SymbolRef::parse(&v), Err(SymbolError::UnknownVersion(2)));
        let mut oti = good_oti();
        oti[5] = 1;
        assert_eq!(
            SymbolRef::parse(&symbol(oti, [0; 4], 64)),
            Err(SymbolError::ReservedOtiByte)
        );
        let mut oti = good_oti();
        oti[..5].fill(0);
        assert_eq!(
            SymbolRef::parse(&symbol(oti, [0; 4], 64)),
            Err(SymbolError::EmptyObject)
        );
        let mut oti = good_oti();
        oti[11] = 1;
        assert!(matches!(
            SymbolRef::parse(&symbol(oti, [0; 4], 64)),
            Err(SymbolError::Alignment { .. })
        ));
        let mut oti = good_oti();
        oti[6..8].copy_from_slice(&0u16.to_be_bytes());
        assert!(matches!(
            SymbolRef::parse(&symbol(oti, [0; 4], 64)),
            Err(SymbolError::Alignment { .. })
        ));
        let mut oti = good_oti();
        oti[8] = 2;
        assert!(matches!(
            SymbolRef::parse(&symbol(oti, [0; 4], 64)),
            Err(SymbolError::Blocks { .. })
        ));
        let mut oti = good_oti();
        oti[10] = 3;
        assert!(matches!(
            SymbolRef::parse(&symbol(oti, [0; 4], 64)),
            Err(SymbolError::Blocks { .. })
        ));
        assert_eq!(
            SymbolRef::parse(&symbol(good_oti(), [1, 0, 0, 0], 64)),
            Err(SymbolError::SourceBlockNumber(1))
        );
        assert_eq!(
            SymbolRef::parse(&symbol(good_oti(), [0; 4], 63)),
            Err(SymbolError::DataLength {
                expected: 64,
                got: 63
            })
        );
        // 2^40 - 1 bytes in 64-byte symbols: far beyond one block.
        let mut oti = good_oti();
        oti[..5].fill(0xff);
        assert_eq!(
            SymbolRef::parse(&symbol(oti, [0; 4], 64)),
            Err(SymbolError::TooManySourceSymbols)
        );
    }
}
