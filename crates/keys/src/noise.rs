//! Noise handshakes (`XK` and `IK` over 25519 / ChaChaPoly / BLAKE2s) and the transport record
//! layer used when a session negotiates the `noise-transport` capability.
//!
//! Records are `varint(len(ct)) || ct`, one Noise transport message each. The plaintext they
//! carry is a byte stream (encoded CCP frames): a frame larger than one Noise message spans
//! several records and the receiver reassembles it simply by appending plaintext in order.

use bytes::{Buf, BytesMut};
use zeroize::Zeroizing;

/// Default prologue shared by deployed clients and servers.
pub const DEFAULT_PROLOGUE: &[u8] = b"commucat";
/// Largest Noise message.
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// AEAD tag length.
pub const TAG_LEN: usize = 16;
/// Largest plaintext one transport record carries.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_MESSAGE_LEN - TAG_LEN;
/// Length of a Noise handshake hash (BLAKE2s).
pub const HANDSHAKE_HASH_LEN: usize = 32;

/// A Noise handshake pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakePattern {
    /// Three messages; the initiator's static key is sent in message 3.
    Xk,
    /// Two messages; the initiator's static key is sent in message 1.
    Ik,
}

impl HandshakePattern {
    /// Every pattern.
    pub const ALL: [HandshakePattern; 2] = [HandshakePattern::Xk, HandshakePattern::Ik];

    /// The pattern for a HELLO label (`"XK"`, `"IK"`; case-insensitive).
    #[must_use]
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.label().eq_ignore_ascii_case(label))
    }

    /// The label used in HELLO and server-info.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            HandshakePattern::Xk => "XK",
            HandshakePattern::Ik => "IK",
        }
    }

    /// The full Noise protocol name.
    #[must_use]
    pub const fn protocol_name(self) -> &'static str {
        match self {
            HandshakePattern::Xk => "Noise_XK_25519_ChaChaPoly_BLAKE2s",
            HandshakePattern::Ik => "Noise_IK_25519_ChaChaPoly_BLAKE2s",
        }
    }

    /// Number of handshake messages.
    #[must_use]
    pub const fn message_count(self) -> usize {
        match self {
            HandshakePattern::Xk => 3,
            HandshakePattern::Ik => 2,
        }
    }
}

/// A Noise failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoiseError {
    /// The handshake state could not be built (bad key length, unsupported parameters).
    #[error("noise configuration rejected: {0}")]
    Config(String),
    /// A handshake message failed to decrypt or parse, or arrived out of turn.
    #[error("noise handshake message rejected: {0}")]
    Handshake(String),
    /// The handshake is not finished, so there is no transport yet.
    #[error("noise handshake not finished")]
    NotFinished,
    /// A record's declared ciphertext length is shorter than a tag or longer than a Noise message.
    #[error("noise record length {0} outside 16..=65535")]
    RecordLength(u64),
    /// A record failed authentication: tampered, reordered or under the wrong key.
    #[error("noise record failed to decrypt")]
    Decrypt,
    /// Encryption failed (nonce space exhausted).
    #[error("noise encryption failed: {0}")]
    Encrypt(String),
}

/// One side of a handshake in progress.
pub struct Handshake {
    state: snow::HandshakeState,
    pattern: HandshakePattern,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("pattern", &self.pattern)
            .field("initiator", &self.state.is_initiator())
            .field("finished", &self.state.is_handshake_finished())
            .finish_non_exhaustive()
    }
}

/// A snow builder for `pattern` with our resolver (seeded when `seed` is given), prologue and
/// static key.
fn builder<'a>(
    pattern: HandshakePattern,
    local_private: &'a [u8; 32],
    prologue: &'a [u8],
    seed: Option<&[u8; 32]>,
) -> Result<snow::Builder<'a>, NoiseError> {
    let params = pattern
        .protocol_name()
        .parse()
        .map_err(|e: snow::Error| NoiseError::Config(e.to_string()))?;
    let resolver = match seed {
        Some(seed) => crate::noise_dh::seeded_resolver(seed),
        None => crate::noise_dh::resolver(),
    };
    snow::Builder::with_resolver(params, resolver)
        .prologue(prologue)
        .map_err(config_error)?
        .local_private_key(local_private)
        .map_err(config_error)
}

#[allow(clippy::needless_pass_by_value)] // used as a `map_err` callback
fn config_error(e: snow::Error) -> NoiseError {
    NoiseError::Config(e.to_string())
}

impl Handshake {
    /// The server side: responds with the static key `local_private`.
    ///
    /// # Errors
    /// [`NoiseError::Config`] if snow rejects the parameters.
    pub fn responder(
        pattern: HandshakePattern,
        local_private: &[u8; 32],
        prologue: &[u8],
    ) -> Result<Self, NoiseError> {
        Self::responder_inner(pattern, local_private, prologue, None)
    }

    /// [`Handshake::responder`] whose randomness (the ephemeral key) is derived from `seed`
    /// (32 bytes from a cryptographic RNG the caller owns), for callers that inject entropy.
    ///
    /// # Errors
    /// [`NoiseError::Config`] if snow rejects the parameters.
    pub fn responder_seeded(
        pattern: HandshakePattern,
        local_private: &[u8; 32],
        prologue: &[u8],
        seed: &[u8; 32],
    ) -> Result<Self, NoiseError> {
        Self::responder_inner(pattern, local_private, prologue, Some(seed))
    }

    fn responder_inner(
        pattern: HandshakePattern,
        local_private: &[u8; 32],
        prologue: &[u8],
        seed: Option<&[u8; 32]>,
    ) -> Result<Self, NoiseError> {
        let state = builder(pattern, local_private, prologue, seed)?
            .build_responder()
            .map_err(config_error)?;
        Ok(Self { state, pattern })
    }

    /// The client side: knows the server's static key in advance (both patterns require it).
    ///
    /// # Errors
    /// [`NoiseError::Config`] if snow rejects the parameters.
    pub fn initiator(
        pattern: HandshakePattern,
        local_private: &[u8; 32],
        remote_static: &[u8; 32],
        prologue: &[u8],
    ) -> Result<Self, NoiseError> {
        Self::initiator_inner(pattern, local_private, remote_static, prologue, None)
    }

    /// [`Handshake::initiator`] whose randomness (the ephemeral key) is derived from `seed`
    /// (32 bytes from a cryptographic RNG the caller owns), for callers that inject entropy.
    ///
    /// # Errors
    /// [`NoiseError::Config`] if snow rejects the parameters.
    pub fn initiator_seeded(
        pattern: HandshakePattern,
        local_private: &[u8; 32],
        remote_static: &[u8; 32],
        prologue: &[u8],
        seed: &[u8; 32],
    ) -> Result<Self, NoiseError> {
        Self::initiator_inner(pattern, local_private, remote_static, prologue, Some(seed))
    }

    fn initiator_inner(
        pattern: HandshakePattern,
        local_private: &[u8; 32],
        remote_static: &[u8; 32],
        prologue: &[u8],
        seed: Option<&[u8; 32]>,
    ) -> Result<Self, NoiseError> {
        let state = builder(pattern, local_private, prologue, seed)?
            .remote_public_key(remote_static)
            .map_err(config_error)?
            .build_initiator()
            .map_err(config_error)?;
        Ok(Self { state, pattern })
    }

    /// The pattern in use.
    #[must_use]
    pub const fn pattern(&self) -> HandshakePattern {
        self.pattern
    }

    /// Writes the next handshake message carrying `payload` (encrypted once a key exists).
    ///
    /// # Errors
    /// [`NoiseError::Handshake`] if it is not this side's turn or the payload is too large.
    pub fn write_message(&mut self, payload: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let mut buf = vec![0u8; MAX_MESSAGE_LEN];
        let len = self
            .state
            .write_message(payload, &mut buf)
            .map_err(|e| NoiseError::Handshake(e.to_string()))?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Reads the peer's next handshake message, returning its decrypted payload.
    ///
    /// # Errors
    /// [`NoiseError::Handshake`] if the message does not decrypt or arrives out of turn.
    pub fn read_message(&mut self, message: &[u8]) -> Result<Zeroizing<Vec<u8>>, NoiseError> {
        let mut buf = Zeroizing::new(vec![0u8; message.len()]);
        let len = self
            .state
            .read_message(message, &mut buf)
            .map_err(|e| NoiseError::Handshake(e.to_string()))?;
        buf.truncate(len);
        Ok(buf)
    }

    /// The peer's static key, once the handshake has revealed it (IK: after message 1;
    /// XK: after message 3, on the responder).
    #[must_use]
    pub fn remote_static(&self) -> Option<[u8; 32]> {
        self.state
            .get_remote_static()
            .and_then(|key| <[u8; 32]>::try_from(key).ok())
    }

    /// Whether all handshake messages have been processed.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.state.is_handshake_finished()
    }

    /// The handshake hash (channel binding), final once the handshake is finished.
    #[must_use]
    pub fn handshake_hash(&self) -> [u8; HANDSHAKE_HASH_LEN] {
        let mut out = [0u8; HANDSHAKE_HASH_LEN];
        for (dst, src) in out.iter_mut().zip(self.state.get_handshake_hash()) {
            *dst = *src;
        }
        out
    }

    /// The classical secret of a `pq-hybrid` session: the first output of the Noise `Split()`
    /// of the finished handshake (`k1`, 32 bytes, the key a classical `noise-transport` session
    /// would use for initiator → responder records). Both sides get the same bytes.
    ///
    /// # Errors
    /// [`NoiseError::NotFinished`] before the last handshake message.
    pub fn split_secret(&mut self) -> Result<Zeroizing<[u8; 32]>, NoiseError> {
        if !self.state.is_handshake_finished() {
            return Err(NoiseError::NotFinished);
        }
        let (first, mut second) = self.state.dangerously_get_raw_split();
        let secret = Zeroizing::new(first);
        let mut first = first;
        zeroize::Zeroize::zeroize(&mut first);
        zeroize::Zeroize::zeroize(&mut second);
        Ok(secret)
    }

    /// Switches to transport mode with record keys of the caller's choosing (a `pq-hybrid`
    /// session's keys) in place of the Noise `Split()` outputs: `initiator_egress` keys the
    /// records the initiator (client) sends, `responder_egress` those the responder sends. The
    /// record format is that of [`Handshake::into_transport`]; nonces start at 0.
    ///
    /// # Errors
    /// [`NoiseError::NotFinished`] before the last handshake message.
    pub fn into_transport_with_keys(
        self,
        initiator_egress: &[u8; 32],
        responder_egress: &[u8; 32],
    ) -> Result<Transport, NoiseError> {
        let mut transport = self.into_transport()?;
        transport
            .state
            .rekey_manually(Some(initiator_egress), Some(responder_egress));
        Ok(transport)
    }

    /// Switches to transport mode.
    ///
    /// # Errors
    /// [`NoiseError::NotFinished`] before the last handshake message.
    pub fn into_transport(self) -> Result<Transport, NoiseError> {
        if !self.state.is_handshake_finished() {
            return Err(NoiseError::NotFinished);
        }
        let state = self
            .state
            .into_transport_mode()
            .map_err(|e| NoiseError::Handshake(e.to_string()))?;
        Ok(Transport {
            state,
            rx: BytesMut::new(),
            ratchet: None,
        })
    }
}

/// Noise transport mode with the record layer.
pub struct Transport {
    state: snow::TransportState,
    /// Received bytes not yet opened.
    rx: BytesMut,
    /// The `HybridRatchet` of a `pq-hybrid` session.
    ratchet: Option<Box<crate::pq::LiveRatchet>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("sending_nonce", &self.state.sending_nonce())
            .field("receiving_nonce", &self.state.receiving_nonce())
            .field("buffered", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Encrypts `plaintext` into as many records as it needs, appended to `out`.
    ///
    /// # Errors
    /// [`NoiseError::Encrypt`] if the sending nonce is exhausted.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), NoiseError> {
        for chunk in plaintext.chunks(MAX_RECORD_PLAINTEXT) {
            let ct_len = chunk.len() + TAG_LEN;
            out.reserve(commucat_ccp::varint::MAX_LEN + ct_len);
            commucat_ccp::varint::encode(ct_len as u64, out);
            // Encrypt straight into the tail of `out`: split it off (sharing the allocation),
            // fill it, and join it back.
            let mut body = out.split_off(out.len());
            body.resize(ct_len, 0);
            let written = self
                .state
                .write_message(chunk, &mut body)
                .map_err(|e| NoiseError::Encrypt(e.to_string()))?;
            body.truncate(written);
            out.unsplit(body);
        }
        Ok(())
    }

    /// Appends received ciphertext bytes and decrypts every whole record, appending the
    /// plaintext to `plain_out` (typically a frame decoder's buffer).
    ///
    /// # Errors
    /// [`NoiseError::RecordLength`] for an impossible record length, [`NoiseError::Decrypt`] for
    /// a record that fails authentication. Both are terminal for the session.
    pub fn open(&mut self, ciphertext: &[u8], plain_out: &mut BytesMut) -> Result<(), NoiseError> {
        self.push(ciphertext);
        while self.open_next(plain_out)? {}
        Ok(())
    }

    /// Appends received ciphertext bytes without opening them (see [`Transport::open_next`]).
    pub fn push(&mut self, ciphertext: &[u8]) {
        self.rx.extend_from_slice(ciphertext);
    }

    /// Opens the next whole record received, appending its plaintext to `plain_out`; `false`
    /// when no whole record is buffered. Opening records one at a time lets the caller change
    /// the receiving key between two records (a ratchet step).
    ///
    /// # Errors
    /// As [`Transport::open`].
    pub fn open_next(&mut self, plain_out: &mut BytesMut) -> Result<bool, NoiseError> {
        let (len, prefix) = match commucat_ccp::varint::decode(&self.rx) {
            Ok(v) => v,
            Err(commucat_ccp::varint::VarintError::Incomplete) => return Ok(false),
            Err(commucat_ccp::varint::VarintError::Overflow) => {
                return Err(NoiseError::RecordLength(u64::MAX));
            }
        };
        if len < TAG_LEN as u64 || len > MAX_MESSAGE_LEN as u64 {
            return Err(NoiseError::RecordLength(len));
        }
        // Lossless: len <= 65535.
        let len = usize::try_from(len).unwrap_or(MAX_MESSAGE_LEN);
        let Some(record) = self.rx.get(prefix..prefix + len) else {
            return Ok(false);
        };
        plain_out.reserve(len);
        let mut body = plain_out.split_off(plain_out.len());
        body.resize(len, 0);
        let read = self
            .state
            .read_message(record, &mut body)
            .map_err(|_| NoiseError::Decrypt)?;
        body.truncate(read);
        plain_out.unsplit(body);
        self.rx.advance(prefix + len);
        Ok(true)
    }

    /// Attaches the `HybridRatchet` of a `pq-hybrid` session.
    #[must_use]
    pub fn with_ratchet(mut self, ratchet: crate::pq::LiveRatchet) -> Self {
        self.ratchet = Some(Box::new(ratchet));
        self
    }

    /// The session's `HybridRatchet`, when it is a `pq-hybrid` one.
    pub fn ratchet_mut(&mut self) -> Option<&mut crate::pq::LiveRatchet> {
        self.ratchet.as_deref_mut()
    }

    /// The session's `HybridRatchet`, when it is a `pq-hybrid` one.
    #[must_use]
    pub fn ratchet(&self) -> Option<&crate::pq::LiveRatchet> {
        self.ratchet.as_deref()
    }

    /// Replaces the key of the records this side sends from now on (the cipher's key is
    /// overwritten in place; the nonce counter continues).
    pub fn rekey_sending(&mut self, key: &[u8; 32]) {
        if self.state.is_initiator() {
            self.state.rekey_initiator_manually(key);
        } else {
            self.state.rekey_responder_manually(key);
        }
    }

    /// Replaces the key of the records this side opens from now on (records already buffered
    /// and not yet opened are opened under it).
    pub fn rekey_receiving(&mut self, key: &[u8; 32]) {
        if self.state.is_initiator() {
            self.state.rekey_responder_manually(key);
        } else {
            self.state.rekey_initiator_manually(key);
        }
    }

    /// Bytes received that do not yet form a whole record.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.rx.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::x25519_public;

    fn keys(byte: u8) -> ([u8; 32], [u8; 32]) {
        let private = [byte; 32];
        (private, x25519_public(&private))
    }

    #[test]
    fn split_secret_agrees_and_keyed_transports_use_the_given_keys() {
        let (server_priv, server_pub) = keys(1);
        let (client_priv, _) = keys(2);
        let mut server = Handshake::responder(HandshakePattern::Ik, &server_priv, b"p").unwrap();
        let mut client =
            Handshake::initiator(HandshakePattern::Ik, &client_priv, &server_pub, b"p").unwrap();
        server
            .read_message(&client.write_message(b"").unwrap())
            .unwrap();
        assert_eq!(server.split_secret().unwrap_err(), NoiseError::NotFinished);
        client
            .read_message(&server.write_message(b"").unwrap())
            .unwrap();
        let secret = client.split_secret().unwrap();
        assert_eq!(*secret, *server.split_secret().unwrap());
        assert_ne!(
            *secret,
            client.handshake_hash(),
            "a secret, not the transcript hash"
        );

        let (up, down) = ([5u8; 32], [6u8; 32]);
        let mut client = client.into_transport_with_keys(&up, &down).unwrap();
        let mut server = server.into_transport_with_keys(&up, &down).unwrap();
        let mut sealed = BytesMut::new();
        client.seal(b"up", &mut sealed).unwrap();
        let mut plain = BytesMut::new();
        server.open(&sealed, &mut plain).unwrap();
        assert_eq!(&plain[..], b"up");
        // The record is sealed with `up` (ChaCha20-Poly1305, nonce 0), not the Split() key.
        let (_, mut classical_server, _) = pair(HandshakePattern::Ik);
        assert!(
            classical_server
                .open(&sealed, &mut BytesMut::new())
                .is_err()
        );
    }

    fn pair(pattern: HandshakePattern) -> (Transport, Transport, [u8; 32]) {
        let (server_priv, server_pub) = keys(1);
        let (client_priv, client_pub) = keys(2);
        let mut server = Handshake::responder(pattern, &server_priv, DEFAULT_PROLOGUE).unwrap();
        let mut client =
            Handshake::initiator(pattern, &client_priv, &server_pub, DEFAULT_PROLOGUE).unwrap();
        let msg1 = client.write_message(b"").unwrap();
        server.read_message(&msg1).unwrap();
        let msg2 = server.write_message(br#"{"session":"abcdefgh"}"#).unwrap();
        let payload = client.read_message(&msg2).unwrap();
        assert_eq!(payload.as_slice(), br#"{"session":"abcdefgh"}"#);
        if pattern == HandshakePattern::Xk {
            assert_eq!(msg1.len(), 48);
            assert_eq!(server.remote_static(), None);
            let msg3 = client.write_message(b"").unwrap();
            assert_eq!(msg3.len(), 64);
            server.read_message(&msg3).unwrap();
        }
        assert_eq!(server.remote_static(), Some(client_pub));
        assert_eq!(server.handshake_hash(), client.handshake_hash());
        (
            client.into_transport().unwrap(),
            server.into_transport().unwrap(),
            client_pub,
        )
    }

    #[test]
    fn labels() {
        assert_eq!(
            HandshakePattern::from_label("xk"),
            Some(HandshakePattern::Xk)
        );
        assert_eq!(
            HandshakePattern::from_label("IK"),
            Some(HandshakePattern::Ik)
        );
        assert_eq!(HandshakePattern::from_label("NN"), None);
    }

    #[test]
    fn records_round_trip_in_both_patterns_and_directions() {
        for pattern in HandshakePattern::ALL {
            let (mut client, mut server, _) = pair(pattern);
            let mut wire = BytesMut::new();
            client.seal(b"frame one", &mut wire).unwrap();
            client.seal(b"frame two", &mut wire).unwrap();
            let mut plain = BytesMut::new();
            server.open(&wire, &mut plain).unwrap();
            assert_eq!(plain.as_ref(), b"frame oneframe two");
            let mut back = BytesMut::new();
            server.seal(b"reply", &mut back).unwrap();
            let mut plain = BytesMut::new();
            client.open(&back, &mut plain).unwrap();
            assert_eq!(plain.as_ref(), b"reply");
        }
    }

    #[test]
    fn large_plaintext_splits_and_reassembles_across_arbitrary_chunks() {
        let (mut client, mut server, _) = pair(HandshakePattern::Xk);
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = BytesMut::new();
        client.seal(&big, &mut wire).unwrap();
        // 200000 bytes need three full records (3-byte length prefix) and one of 3443 bytes
        // (2-byte prefix).
        assert_eq!(big.len() - 3 * MAX_RECORD_PLAINTEXT, 3443);
        assert_eq!(wire.len(), big.len() + 3 * (TAG_LEN + 3) + (TAG_LEN + 2));
        let mut plain = BytesMut::new();
        for chunk in wire.chunks(7_777) {
            server.open(chunk, &mut plain).unwrap();
        }
        assert_eq!(plain.as_ref(), big.as_slice());
        assert_eq!(server.buffered(), 0);
    }

    #[test]
    fn tampered_or_reordered_records_fail() {
        let (mut client, mut server, _) = pair(HandshakePattern::Xk);
        let mut first = BytesMut::new();
        client.seal(b"one", &mut first).unwrap();
        let mut second = BytesMut::new();
        client.seal(b"two", &mut second).unwrap();
        let mut plain = BytesMut::new();
        assert_eq!(server.open(&second, &mut plain), Err(NoiseError::Decrypt));

        let (mut client, mut server, _) = pair(HandshakePattern::Xk);
        let mut wire = BytesMut::new();
        client.seal(b"one", &mut wire).unwrap();
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert_eq!(server.open(&wire, &mut plain), Err(NoiseError::Decrypt));
    }

    #[test]
    fn impossible_record_lengths_fail_at_once() {
        let (_, mut server, _) = pair(HandshakePattern::Xk);
        let mut plain = BytesMut::new();
        assert_eq!(
            server.open(&[0x05], &mut plain),
            Err(NoiseError::RecordLength(5))
        );
        let (_, mut server, _) = pair(HandshakePattern::Xk);
        assert_eq!(
            server.open(&[0x80, 0x80, 0x04], &mut plain),
            Err(NoiseError::RecordLength(65_536))
        );
    }

    #[test]
    fn wrong_server_key_or_prologue_fails_message_one() {
        let (_, server_pub) = keys(1);
        let (client_priv, _) = keys(2);
        let mut client = Handshake::initiator(
            HandshakePattern::Xk,
            &client_priv,
            &server_pub,
            DEFAULT_PROLOGUE,
        )
        .unwrap();
        let msg1 = client.write_message(b"").unwrap();
        let mut other =
            Handshake::responder(HandshakePattern::Xk, &[9; 32], DEFAULT_PROLOGUE).unwrap();
        assert!(matches!(
            other.read_message(&msg1),
            Err(NoiseError::Handshake(_))
        ));
        let mut wrong_prologue =
            Handshake::responder(HandshakePattern::Xk, &[1; 32], b"other").unwrap();
        assert!(wrong_prologue.read_message(&msg1).is_err());
    }

    #[test]
    fn transport_requires_a_finished_handshake() {
        let server =
            Handshake::responder(HandshakePattern::Xk, &[1; 32], DEFAULT_PROLOGUE).unwrap();
        assert_eq!(
            server.into_transport().unwrap_err(),
            NoiseError::NotFinished
        );
    }
}
