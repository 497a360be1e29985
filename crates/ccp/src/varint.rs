//! Unsigned LEB128 varints as used by every CCP-1 length and identifier field.
//!
//! Seven data bits per byte, least-significant group first, `0x80` marks "more bytes follow".
//! The encoder always writes the minimal form. The decoder accepts non-minimal forms (deployed
//! encoders never produce them, but nothing forbids them) and rejects anything longer than
//! [`MAX_LEN`] bytes or carrying bits beyond the 64th.

use bytes::BufMut;

/// Longest varint that can carry a `u64`.
pub const MAX_LEN: usize = 10;

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The buffer ended inside the varint: more bytes may complete it.
    Incomplete,
    /// The varint is longer than 10 bytes or its value does not fit in 64 bits.
    Overflow,
}

/// Number of bytes [`encode`] writes for `value`.
#[must_use]
pub const fn encoded_len(value: u64) -> usize {
    // 1 byte for 0..=127, +1 for every further 7 bits.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends the minimal LEB128 encoding of `value` to `out`.
#[allow(clippy::cast_possible_truncation)] // masking to 7 bits is the point
pub fn encode(mut value: u64, out: &mut impl BufMut) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Reads one varint from the start of `buf`, returning the value and the bytes consumed.
///
/// # Errors
/// [`VarintError::Incomplete`] when `buf` ends inside the varint (and fewer than 10 bytes were
/// seen); [`VarintError::Overflow`] when the encoding exceeds 10 bytes or 64 bits.
pub fn decode(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut value = 0u64;
    for (index, &byte) in buf.iter().take(MAX_LEN).enumerate() {
        let part = u64::from(byte & 0x7f);
        if index == MAX_LEN - 1 && part > 1 {
            // The 10th byte holds only bit 63.
            return Err(VarintError::Overflow);
        }
        value |= part << (7 * index);
        if byte & 0x80 == 0 {
            return Ok((value, index + 1));
        }
    }
    if buf.len() >= MAX_LEN {
        Err(VarintError::Overflow)
    } else {
        Err(VarintError::Incomplete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode(value, &mut out);
        out
    }

    #[test]
    fn known_encodings() {
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(1), [0x01]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(
            enc(u64::MAX),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn decodes_u64_max_and_rejects_bit_64() {
        let max = enc(u64::MAX);
        assert_eq!(decode(&max), Ok((u64::MAX, 10)));
        let mut over = max.clone();
        over[9] = 0x02;
        assert_eq!(decode(&over), Err(VarintError::Overflow));
    }

    #[test]
    fn rejects_eleven_bytes() {
        let mut long = vec![0x80; 10];
        long.push(0x00);
        assert_eq!(decode(&long), Err(VarintError::Overflow));
        // Ten continuation bytes are already an overflow, whatever follows.
        assert_eq!(decode(&[0xff; 10]), Err(VarintError::Overflow));
    }

    #[test]
    fn incomplete_until_ten_bytes() {
        assert_eq!(decode(&[]), Err(VarintError::Incomplete));
        assert_eq!(decode(&[0x80]), Err(VarintError::Incomplete));
        assert_eq!(decode(&[0x80; 9]), Err(VarintError::Incomplete));
    }

    #[test]
    fn accepts_non_minimal_forms() {
        assert_eq!(decode(&[0x81, 0x80, 0x00]), Ok((1, 3)));
    }

    proptest! {
        #[test]
        fn round_trip(value in any::<u64>(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut bytes = enc(value);
            prop_assert_eq!(bytes.len(), encoded_len(value));
            let len = bytes.len();
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(decode(&bytes), Ok((value, len)));
        }

        #[test]
        fn every_strict_prefix_is_incomplete(value in any::<u64>()) {
            let bytes = enc(value);
            for cut in 0..bytes.len() {
                prop_assert_eq!(decode(&bytes[..cut]), Err(VarintError::Incomplete));
            }
        }
    }
}
