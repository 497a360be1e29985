//! The `HybridRatchet` of a live session: the hybrid session, the classical secret each step
//! mixes in again, and the one-time keys steps spend, with the record keys each step yields.
//!
//! The encapsulating side (the server) calls [`LiveRatchet::step`]; the decapsulating side
//! (the client) applies what it received with [`LiveRatchet::apply`]. Both give the record
//! keys of the new epoch: the first key of each chain of the re-keyed session (the same rule
//! as the handshake's record keys). Where the switch happens in the record stream is the
//! record layer's business (`commucat_link`).

use core::fmt;

use zeroize::Zeroizing;

use super::PqError;
use super::one_time::{OneTimeKeyPairs, OneTimePublicKeys, RatchetStep};
use super::session::{CLASSICAL_LEN, HybridSession, MessageKey};

/// The record keys of one epoch (zeroized on drop).
pub struct RecordKeys {
    /// Keys the records this side sends.
    pub sending: MessageKey,
    /// Keys the records this side receives.
    pub receiving: MessageKey,
}

impl fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordKeys(<redacted>)")
    }
}

enum OneTime {
    Encapsulator(OneTimePublicKeys),
    Decapsulator(OneTimeKeyPairs),
}

/// A live session's ratchet state. Not `Clone`; every secret is zeroized on drop and replaced
/// in place by a step.
pub struct LiveRatchet {
    session: HybridSession,
    classical: Zeroizing<[u8; CLASSICAL_LEN]>,
    one_time: OneTime,
}

impl fmt::Debug for LiveRatchet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveRatchet")
            .field("epoch", &self.session.epoch())
            .field("one_time_keys_left", &self.remaining())
            .finish_non_exhaustive()
    }
}

fn first_keys(session: &mut HybridSession) -> Result<RecordKeys, PqError> {
    Ok(RecordKeys {
        sending: session.next_sending_key()?,
        receiving: session.next_receiving_key()?,
    })
}

impl LiveRatchet {
    /// The encapsulating side (server): `session` after the handshake, the handshake's
    /// classical secret, the peer's announced one-time keys.
    #[must_use]
    pub fn encapsulator(
        session: HybridSession,
        classical: Zeroizing<[u8; CLASSICAL_LEN]>,
        keys: OneTimePublicKeys,
    ) -> Self {
        Self {
            session,
            classical,
            one_time: OneTime::Encapsulator(keys),
        }
    }

    /// The decapsulating side (client): `session` after the handshake, the handshake's
    /// classical secret, this side's one-time key pairs.
    #[must_use]
    pub fn decapsulator(
        session: HybridSession,
        classical: Zeroizing<[u8; CLASSICAL_LEN]>,
        keys: OneTimeKeyPairs,
    ) -> Self {
        Self {
            session,
            classical,
            one_time: OneTime::Decapsulator(keys),
        }
    }

    /// Whether this is the encapsulating side (the one that starts steps).
    #[must_use]
    pub fn is_encapsulator(&self) -> bool {
        matches!(self.one_time, OneTime::Encapsulator(_))
    }

    /// Steps taken (0 right after the handshake).
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.session.epoch()
    }

    /// One-time keys not yet spent.
    #[must_use]
    pub fn remaining(&self) -> usize {
        match &self.one_time {
            OneTime::Encapsulator(keys) => keys.remaining(),
            OneTime::Decapsulator(keys) => keys.remaining(),
        }
    }

    /// Encapsulating side: spends the next one-time key, re-keys, and returns what to send
    /// with the new epoch's record keys.
    ///
    /// # Errors
    /// [`PqError::OneTimeKeysExhausted`] (nothing changed), [`PqError::RatchetRole`] on the
    /// decapsulating side, or a failed encapsulation.
    pub fn step(&mut self) -> Result<(RatchetStep, RecordKeys), PqError> {
        let OneTime::Encapsulator(keys) = &mut self.one_time else {
            return Err(PqError::RatchetRole);
        };
        let step = self.session.ratchet_encapsulate(keys, &self.classical)?;
        Ok((step, first_keys(&mut self.session)?))
    }

    /// Decapsulating side: applies a received step and returns the new epoch's record keys.
    ///
    /// # Errors
    /// [`PqError::RatchetRole`] on the encapsulating side; an unknown or spent one-time key, a
    /// bad ciphertext (the session is unchanged).
    pub fn apply(&mut self, step: &RatchetStep) -> Result<RecordKeys, PqError> {
        let OneTime::Decapsulator(keys) = &mut self.one_time else {
            return Err(PqError::RatchetRole);
        };
        self.session
            .ratchet_decapsulate(keys, step, &self.classical)?;
        first_keys(&mut self.session)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::kem::KemPublicKey;
    use super::super::session::HybridRole;
    use super::*;

    #[test]
    fn both_sides_reach_the_same_record_keys_until_the_keys_run_out() {
        let client_keys = OneTimeKeyPairs::generate(2).unwrap();
        let announced = client_keys
            .public_keys()
            .map(|k| KemPublicKey::from_bytes(k.as_bytes()).unwrap())
            .collect();
        let derive = |role| HybridSession::derive(&[5; 32], &[6; 32], b"s", role).unwrap();
        let mut server = LiveRatchet::encapsulator(
            derive(HybridRole::Encapsulator),
            Zeroizing::new([5; 32]),
            OneTimePublicKeys::new(announced),
        );
        let mut client = LiveRatchet::decapsulator(
            derive(HybridRole::Decapsulator),
            Zeroizing::new([5; 32]),
            client_keys,
        );
        let mut seen = Vec::new();
        for epoch in 1..=2 {
            let (step, server_keys) = server.step().unwrap();
            let client_keys = client.apply(&step).unwrap();
            assert_eq!(server_keys.sending, client_keys.receiving);
            assert_eq!(server_keys.receiving, client_keys.sending);
            assert_ne!(server_keys.sending, server_keys.receiving);
            assert_eq!((server.epoch(), client.epoch()), (epoch, epoch));
            seen.push(server_keys.sending.as_bytes().to_vec());
            assert_eq!(
                client.apply(&step).unwrap_err(),
                PqError::OneTimeKeyUsed { index: step.index }
            );
        }
        assert_ne!(seen[0], seen[1]);
        assert_eq!(server.step().unwrap_err(), PqError::OneTimeKeysExhausted);
        assert_eq!(client.step().unwrap_err(), PqError::RatchetRole);
        assert_eq!(server.epoch(), 2);
    }
}
