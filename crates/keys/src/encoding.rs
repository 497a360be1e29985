//! Hex helpers for fixed-length keys, signatures and proof elements.
//!
//! Encoding always produces lowercase hex (as the deployed client does). Decoding accepts upper
//! and lower case, requires the exact length (`2 * N` characters, no prefix, no whitespace) and
//! reports a typed [`HexError`] instead of panicking.

/// Why a hex string could not be decoded into a fixed-size byte array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The string does not have exactly `expected` bytes (two per decoded byte).
    #[error("invalid hex length {actual}, expected {expected} characters")]
    InvalidLength {
        /// Required number of hex characters.
        expected: usize,
        /// Length of the input in bytes.
        actual: usize,
    },
    /// The byte at `index` is not one of `0-9`, `a-f`, `A-F`.
    #[error("invalid hex character at index {index}")]
    InvalidCharacter {
        /// Byte offset of the first offending character.
        index: usize,
    },
}

/// Encodes bytes as lowercase hex.
#[must_use]
pub fn encode_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Decodes exactly `2 * N` hex characters (either case) into `[u8; N]`.
///
/// # Errors
/// [`HexError::InvalidLength`] if the length is wrong, [`HexError::InvalidCharacter`] if a
/// character is not a hex digit.
pub fn decode_hex_array<const N: usize>(value: &str) -> Result<[u8; N], HexError> {
    let expected = N.saturating_mul(2);
    if value.len() != expected {
        return Err(HexError::InvalidLength {
            expected,
            actual: value.len(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(value, &mut out).map_err(|err| match err {
        hex::FromHexError::InvalidHexCharacter { index, .. } => {
            HexError::InvalidCharacter { index }
        }
        hex::FromHexError::OddLength | hex::FromHexError::InvalidStringLength => {
            HexError::InvalidLength {
                expected,
                actual: value.len(),
            }
        }
    })?;
    Ok(out)
}

/// Decodes a 32-byte key (64 hex characters, either case).
///
/// # Errors
/// See [`decode_hex_array`].
pub fn decode_hex32(value: &str) -> Result<[u8; 32], HexError> {
    decode_hex_array(value)
}

/// Decodes a 64-byte value such as an Ed25519 signature (128 hex characters, either case).
///
/// # Errors
/// See [`decode_hex_array`].
pub fn decode_hex64(value: &str) -> Result<[u8; 64], HexError> {
    decode_hex_array(value)
}

/// `#[serde(with = "…")]` adapter: `[u8; N]` as a lowercase hex string of exactly `2 * N` chars.
pub(crate) mod serde_hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
    {
        serializer.serialize_str(&super::encode_hex(bytes))
    }

    pub(crate) fn deserialize<'de, D, const N: usize>(deserializer: D) -> Result<[u8; N], D::Error>
    where
        D: Deserializer<'de>,
    {
        let text = String::deserialize(deserializer)?;
        super::decode_hex_array(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_lowercase_output() {
        let bytes: [u8; 4] = [0x00, 0x1f, 0xab, 0xff];
        let text = encode_hex(&bytes);
        assert_eq!(text, "001fabff");
        assert_eq!(decode_hex_array::<4>(&text), Ok(bytes));
    }

    #[test]
    fn accepts_upper_and_mixed_case() {
        let upper = "AB".repeat(32);
        assert_eq!(decode_hex32(&upper), Ok([0xab; 32]));
        let mixed = "aB".repeat(32);
        assert_eq!(decode_hex32(&mixed), Ok([0xab; 32]));
    }

    #[test]
    fn rejects_wrong_length() {
        assert_eq!(
            decode_hex32(&"a".repeat(63)),
            Err(HexError::InvalidLength {
                expected: 64,
                actual: 63
            })
        );
        assert_eq!(
            decode_hex32(&"a".repeat(66)),
            Err(HexError::InvalidLength {
                expected: 64,
                actual: 66
            })
        );
        assert_eq!(
            decode_hex32(""),
            Err(HexError::InvalidLength {
                expected: 64,
                actual: 0
            })
        );
        assert!(decode_hex64(&"0".repeat(64)).is_err());
    }

    #[test]
    fn rejects_bad_characters() {
        let mut text = "0".repeat(64);
        text.replace_range(10..11, "g");
        assert_eq!(
            decode_hex32(&text),
            Err(HexError::InvalidCharacter { index: 10 })
        );
        // Prefixes and whitespace are not hex.
        let prefixed = format!("0x{}", "0".repeat(62));
        assert!(matches!(
            decode_hex32(&prefixed),
            Err(HexError::InvalidCharacter { .. })
        ));
        let spaced = format!(" {}", "0".repeat(63));
        assert!(decode_hex32(&spaced).is_err());
        // 32 two-byte characters are 64 bytes long but not hex.
        assert!(decode_hex32(&"é".repeat(32)).is_err());
    }
}
