//! The hybrid handshake transcript the client signs with ML-DSA-65.
//!
//! ```text
//! TRANSCRIPT_DOMAIN                29 bytes, ASCII "commucat.hybrid.transcript.v1"
//! 0x00                              1 byte separator
//! field(handshake_hash)             Noise handshake hash `h` after the last message
//! field(pq_ciphertext)              ML-KEM-768 ciphertext the server sent in AUTH
//! field(salt)                       `pq_context.salt`, decoded (may be empty)
//! field(device_id)                  UTF-8
//! list(offered_capabilities)        HELLO.capabilities, in the client's order
//! list(accepted_capabilities)       AUTH.accepted_capabilities, in the server's order
//!
//! field(x) = len(x) as u32 big-endian ‖ x
//! list(v)  = count as u32 big-endian ‖ field(v[0]) ‖ field(v[1]) ‖ …
//! ```
//!
//! Every variable part is length-prefixed, so no two different transcripts encode alike, and
//! the domain tag keeps the signature from being valid for any other CommuCat message.

use super::PqError;
use super::dsa::{SignaturePublicKey, SigningKeyPair};

/// Domain tag that starts every encoded transcript.
pub const TRANSCRIPT_DOMAIN: &[u8] = b"commucat.hybrid.transcript.v1";

/// The negotiated facts of a hybrid handshake that the client's ML-DSA signature binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HybridTranscript<'a> {
    /// Noise handshake hash after the final handshake message.
    pub handshake_hash: &'a [u8],
    /// The ML-KEM-768 ciphertext from the server's AUTH.
    pub pq_ciphertext: &'a [u8],
    /// The HKDF salt from `pq_context`, decoded.
    pub salt: &'a [u8],
    /// The device the session is for.
    pub device_id: &'a str,
    /// Capabilities the client listed in HELLO.
    pub offered_capabilities: &'a [String],
    /// Capabilities the server echoed in AUTH.
    pub accepted_capabilities: &'a [String],
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), PqError> {
    let len = u32::try_from(bytes.len()).map_err(|_| PqError::TranscriptTooLong)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn list(out: &mut Vec<u8>, items: &[String]) -> Result<(), PqError> {
    let count = u32::try_from(items.len()).map_err(|_| PqError::TranscriptTooLong)?;
    out.extend_from_slice(&count.to_be_bytes());
    items
        .iter()
        .try_for_each(|item| field(out, item.as_bytes()))
}

impl HybridTranscript<'_> {
    /// The exact bytes that are signed (layout in the module docs).
    ///
    /// # Errors
    /// [`PqError::TranscriptTooLong`] when a part exceeds `u32::MAX` bytes or items.
    pub fn encode(&self) -> Result<Vec<u8>, PqError> {
        let mut out = Vec::with_capacity(
            TRANSCRIPT_DOMAIN.len()
                + 1
                + 4 * 6
                + self.handshake_hash.len()
                + self.pq_ciphertext.len()
                + self.salt.len()
                + self.device_id.len(),
        );
        out.extend_from_slice(TRANSCRIPT_DOMAIN);
        out.push(0);
        field(&mut out, self.handshake_hash)?;
        field(&mut out, self.pq_ciphertext)?;
        field(&mut out, self.salt)?;
        field(&mut out, self.device_id.as_bytes())?;
        list(&mut out, self.offered_capabilities)?;
        list(&mut out, self.accepted_capabilities)?;
        Ok(out)
    }
}

impl SigningKeyPair {
    /// Signs the encoded `transcript`.
    ///
    /// # Errors
    /// [`PqError::TranscriptTooLong`], [`PqError::Signing`].
    pub fn sign_transcript(&self, transcript: &HybridTranscript<'_>) -> Result<Vec<u8>, PqError> {
        self.sign(&transcript.encode()?)
    }
}

impl SignaturePublicKey {
    /// Verifies a signature over the encoded `transcript`.
    ///
    /// # Errors
    /// [`PqError::TranscriptTooLong`], [`PqError::SignatureLength`], [`PqError::BadSignature`].
    pub fn verify_transcript(
        &self,
        transcript: &HybridTranscript<'_>,
        signature: &[u8],
    ) -> Result<(), PqError> {
        self.verify(&transcript.encode()?, signature)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn caps(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn encoding_is_exact_and_unambiguous() {
        let offered = caps(&["pq-hybrid", "noise-transport"]);
        let accepted = caps(&["pq-hybrid"]);
        let t = HybridTranscript {
            handshake_hash: &[0xaa; 2],
            pq_ciphertext: &[0xbb],
            salt: &[],
            device_id: "d",
            offered_capabilities: &offered,
            accepted_capabilities: &accepted,
        };
        let mut want = b"commucat.hybrid.transcript.v1\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 2, 0xaa, 0xaa, 0, 0, 0, 1, 0xbb, 0, 0, 0, 0]);
        want.extend_from_slice(&[0, 0, 0, 1, b'd', 0, 0, 0, 2, 0, 0, 0, 9]);
        want.extend_from_slice(b"pq-hybrid");
        want.extend_from_slice(&[0, 0, 0, 15]);
        want.extend_from_slice(b"noise-transport");
        want.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 9]);
        want.extend_from_slice(b"pq-hybrid");
        assert_eq!(t.encode().unwrap(), want);

        // Moving a capability from one list to the other changes the bytes.
        let none = caps(&[]);
        let both = caps(&["pq-hybrid", "noise-transport", "pq-hybrid"]);
        let moved = HybridTranscript {
            offered_capabilities: &both,
            accepted_capabilities: &none,
            ..t
        };
        assert_ne!(moved.encode().unwrap(), t.encode().unwrap());
    }

    #[test]
    fn signature_binds_every_field() {
        let pair = SigningKeyPair::from_seed(&[3; 32]).unwrap();
        let offered = caps(&["pq-hybrid"]);
        let t = HybridTranscript {
            handshake_hash: &[1; 32],
            pq_ciphertext: &[2; 1088],
            salt: &[5; 32],
            device_id: "device-1",
            offered_capabilities: &offered,
            accepted_capabilities: &offered,
        };
        let signature = pair.sign_transcript(&t).unwrap();
        pair.public().verify_transcript(&t, &signature).unwrap();
        let other_device = HybridTranscript {
            device_id: "device-2",
            ..t
        };
        assert_eq!(
            pair.public()
                .verify_transcript(&other_device, &signature)
                .unwrap_err(),
            PqError::BadSignature
        );
        let other_hash = HybridTranscript {
            handshake_hash: &[9; 32],
            ..t
        };
        assert_eq!(
            pair.public()
                .verify_transcript(&other_hash, &signature)
                .unwrap_err(),
            PqError::BadSignature
        );
    }
}
