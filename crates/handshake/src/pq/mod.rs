//! The `pq-hybrid` part of the handshake, for both machines: the client's bundle, the
//! server's ML-KEM-768 encapsulation and `pq_context`, the signed transcript and the transport
//! records keyed from the hybrid material. The cryptography (ML-KEM, ML-DSA, the
//! HKDF-SHA3-512 derivation of commucat-crypto 1.0.41, the transcript encoding) is
//! `commucat_keys::pq`'s; this module decides what goes where on the wire (see
//! `docs/pq-hybrid.md`, "Handshake").
//!
//! - Classical secret: the first output of the Noise `Split()` of the finished handshake
//!   ([`commucat_keys::Handshake::split_secret`]).
//! - Salt: 32 random bytes the server draws and sends as `pq_context.salt`.
//! - Roles: the server encapsulates, so it derives as the initiator of commucat-crypto's
//!   `encapsulate_hybrid` (its sending chain is the first chain), the client as the responder.
//! - Record keys: the first step of each side's sending chain (BLAKE3 keyed by the chain over
//!   counter 0): the client's keys the records the client sends, the server's those it sends.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use commucat_ccp::control::{PqBundle, PqContext};
use commucat_keys::pq::{
    HybridRole, HybridSession, HybridTranscript, KemKeyPair, KemPublicKey, KemSharedSecret,
    LiveRatchet, OneTimeKeyPairs, OneTimePublicKeys, SignaturePublicKey, SigningKeyPair,
    encode_bundle, validate_bundle,
};
use commucat_keys::{Handshake, Transport};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::{FailReason, HandshakeError};

pub use commucat_keys::pq::MAX_ONE_TIME_KEYS;

/// `pq_context.label`: the HKDF info of the session derivation
/// ([`commucat_keys::pq::SESSION_LABEL`]).
pub const SESSION_LABEL: &str = "commucat.hybrid.session.v1";

/// `pq_context.kdf`.
pub const KDF: &str = "hkdf-sha3-512";
/// Length of the salt the server draws.
pub const SALT_LEN: usize = 32;

/// What the transcript binds, borrowed from the machine that builds it.
pub(crate) struct TranscriptParts<'a> {
    pub(crate) handshake_hash: &'a [u8; 32],
    pub(crate) device_id: &'a str,
    pub(crate) offered: &'a [String],
    pub(crate) accepted: &'a [String],
}

impl TranscriptParts<'_> {
    fn with<'b>(&'b self, ciphertext: &'b [u8], salt: &'b [u8]) -> HybridTranscript<'b> {
        HybridTranscript {
            handshake_hash: self.handshake_hash,
            pq_ciphertext: ciphertext,
            salt,
            device_id: self.device_id,
            offered_capabilities: self.offered,
            accepted_capabilities: self.accepted,
        }
    }
}

/// The client's post-quantum credentials as the server checked them.
pub(crate) struct Offer {
    kem_public: KemPublicKey,
    signature_public: SignaturePublicKey,
    /// The announced one-time keys, spent by the session's ratchet steps.
    one_time_keys: Vec<KemPublicKey>,
}

impl std::fmt::Debug for Offer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offer").finish_non_exhaustive()
    }
}

impl Offer {
    /// Checks HELLO's `pq_bundle` (present, base64, sizes, keys that decode, distinct one-time
    /// keys within [`MAX_ONE_TIME_KEYS`]).
    pub(crate) fn check(bundle: Option<&PqBundle>) -> Result<Self, HandshakeError> {
        let fail = |detail: String| HandshakeError::new(FailReason::PqBundle, detail);
        let bundle =
            bundle.ok_or_else(|| fail("pq-hybrid needs a pq_bundle in HELLO".to_owned()))?;
        let valid = validate_bundle(bundle).map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            kem_public: valid.kem_public,
            signature_public: valid.signature_public,
            one_time_keys: valid.one_time_keys,
        })
    }
}

/// The server's half of the exchange: the ciphertext sent, the shared secret and the salt.
pub(crate) struct ServerExchange {
    ciphertext: Vec<u8>,
    shared: KemSharedSecret,
    salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for ServerExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerExchange").finish_non_exhaustive()
    }
}

impl ServerExchange {
    /// Encapsulates to the offer's `kem_public` and draws the salt from `rng`.
    pub(crate) fn start<R: RngCore + CryptoRng>(
        offer: &Offer,
        rng: &mut R,
    ) -> Result<Self, HandshakeError> {
        let (ciphertext, shared) = offer
            .kem_public
            .encapsulate()
            .map_err(|e| HandshakeError::new(FailReason::CryptoInternal, e.to_string()))?;
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        Ok(Self {
            ciphertext,
            shared,
            salt,
        })
    }

    /// `pq_ciphertext`.
    pub(crate) fn ciphertext_base64(&self) -> String {
        BASE64.encode(&self.ciphertext)
    }

    /// `pq_context`.
    pub(crate) fn context(&self) -> PqContext {
        PqContext {
            kdf: KDF.to_owned(),
            salt: BASE64.encode(self.salt),
            label: SESSION_LABEL.to_owned(),
        }
    }

    /// Verifies the client's base64 ML-DSA-65 `signature` of the transcript of `parts` with
    /// this exchange's ciphertext and salt, under the offer's `signature_public`.
    pub(crate) fn verify(
        &self,
        offer: &Offer,
        parts: &TranscriptParts<'_>,
        signature: Option<&str>,
    ) -> Result<(), HandshakeError> {
        let fail = |detail: &str| HandshakeError::new(FailReason::PqSignature, detail);
        let signature = signature.ok_or_else(|| fail("pq-hybrid: AUTH has no pq_signature"))?;
        let signature = BASE64
            .decode(signature)
            .map_err(|_| fail("pq_signature is not base64"))?;
        offer
            .signature_public
            .verify_transcript(&parts.with(&self.ciphertext, &self.salt), &signature)
            .map_err(|e| {
                fail(&format!(
                    "pq_signature does not verify for this transcript under the bundle's signature_public ({e})"
                ))
            })
    }

    /// The transport of the finished handshake `noise`, keyed from the hybrid material, with
    /// the ratchet that spends `offer`'s one-time keys.
    pub(crate) fn into_transport(
        self,
        noise: Handshake,
        offer: Offer,
    ) -> Result<(Transport, HybridRoot), HandshakeError> {
        let one_time = OneTimePublicKeys::new(offer.one_time_keys);
        hybrid_transport(noise, &self.shared, &self.salt, Ratchet::Server(one_time))
            .map_err(|e| HandshakeError::new(FailReason::CryptoInternal, e))
    }
}

/// The client's half: the ciphertext received, the shared secret and the salt.
pub(crate) struct ClientExchange {
    ciphertext: Vec<u8>,
    shared: KemSharedSecret,
    salt: Vec<u8>,
}

impl std::fmt::Debug for ClientExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientExchange").finish_non_exhaustive()
    }
}

impl ClientExchange {
    /// Checks the server AUTH's `pq_ciphertext` and `pq_context` and decapsulates.
    pub(crate) fn accept(
        keys: &DeviceKeys,
        ciphertext: Option<&str>,
        context: Option<&PqContext>,
    ) -> Result<Self, String> {
        let ciphertext = ciphertext.ok_or("pq-hybrid accepted without pq_ciphertext")?;
        let context = context.ok_or("pq-hybrid accepted without pq_context")?;
        if context.kdf != KDF || context.label != SESSION_LABEL {
            return Err(format!(
                "pq_context names kdf {:?} / label {:?}; expected {KDF:?} / {SESSION_LABEL:?}",
                context.kdf, context.label
            ));
        }
        let salt = BASE64
            .decode(&context.salt)
            .map_err(|_| "pq_context.salt is not base64".to_owned())?;
        let ciphertext = BASE64
            .decode(ciphertext)
            .map_err(|_| "pq_ciphertext is not base64".to_owned())?;
        let shared = keys
            .kem
            .decapsulate(&ciphertext)
            .map_err(|e| format!("pq_ciphertext: {e}"))?;
        Ok(Self {
            ciphertext,
            shared,
            salt,
        })
    }

    /// Base64 ML-DSA-65 signature by `keys` of the transcript of `parts` with this
    /// exchange's ciphertext and salt.
    pub(crate) fn sign(
        &self,
        keys: &DeviceKeys,
        parts: &TranscriptParts<'_>,
    ) -> Result<String, String> {
        keys.signing
            .sign_transcript(&parts.with(&self.ciphertext, &self.salt))
            .map(|s| BASE64.encode(s))
            .map_err(|e| e.to_string())
    }

    /// The transport of the finished handshake `noise`, keyed from the hybrid material, with
    /// the ratchet that spends `one_time` (the key pairs announced in this HELLO).
    pub(crate) fn into_transport(
        self,
        noise: Handshake,
        one_time: OneTimeKeyPairs,
    ) -> Result<(Transport, HybridRoot), String> {
        hybrid_transport(noise, &self.shared, &self.salt, Ratchet::Client(one_time))
    }
}

/// A `pq-hybrid` session's root key, kept for the `adaptive-obf` key schedule.
pub(crate) type HybridRoot = zeroize::Zeroizing<[u8; 32]>;

/// The one-time keys of a session's ratchet, by side.
pub(crate) enum Ratchet {
    /// The peer's announced public keys (the server encapsulates).
    Server(OneTimePublicKeys),
    /// This device's key pairs (the client decapsulates).
    Client(OneTimeKeyPairs),
}

/// Splits the finished handshake, derives the hybrid session, keys its records with the
/// first key of each chain and attaches the session's ratchet (the classical secret of every
/// ratchet step is the same `Split()` output as the handshake's).
fn hybrid_transport(
    mut noise: Handshake,
    shared: &KemSharedSecret,
    salt: &[u8],
    ratchet: Ratchet,
) -> Result<(Transport, HybridRoot), String> {
    let role = match ratchet {
        Ratchet::Server(_) => HybridRole::Encapsulator,
        Ratchet::Client(_) => HybridRole::Decapsulator,
    };
    let classical = noise.split_secret().map_err(|e| e.to_string())?;
    let mut session = HybridSession::derive(&classical, shared.as_bytes(), salt, role)
        .map_err(|e| e.to_string())?;
    let sending = session.next_sending_key().map_err(|e| e.to_string())?;
    let receiving = session.next_receiving_key().map_err(|e| e.to_string())?;
    // The Noise initiator is the client (the decapsulator).
    let (client_egress, server_egress) = match role {
        HybridRole::Decapsulator => (&sending, &receiving),
        HybridRole::Encapsulator => (&receiving, &sending),
    };
    let root = zeroize::Zeroizing::new(*session.root_key());
    let transport = noise
        .into_transport_with_keys(client_egress.as_bytes(), server_egress.as_bytes())
        .map_err(|e| e.to_string())?;
    let live = match ratchet {
        Ratchet::Server(keys) => LiveRatchet::encapsulator(session, classical, keys),
        Ratchet::Client(keys) => LiveRatchet::decapsulator(session, classical, keys),
    };
    Ok((transport.with_ratchet(live), root))
}

/// A device's post-quantum keys: the ML-KEM-768 key pair whose public half is `kem_public`,
/// the ML-DSA-65 key that signs transcripts, and one-time ML-KEM-768 keys announced for later
/// ratchet steps. `Debug` shows no secret.
pub struct DeviceKeys {
    kem: KemKeyPair,
    signing: SigningKeyPair,
    one_time: Vec<KemKeyPair>,
}

impl std::fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("one_time_keys", &self.one_time.len())
            .finish_non_exhaustive()
    }
}

/// The secret bytes of [`DeviceKeys`], for storage (zeroized on drop).
#[derive(Clone)]
pub struct DeviceSecrets {
    /// ML-KEM-768 decapsulation key (2400 bytes).
    pub kem_secret: Zeroizing<Vec<u8>>,
    /// ML-DSA-65 seed (32 bytes).
    pub signing_seed: Zeroizing<Vec<u8>>,
    /// One-time ML-KEM-768 decapsulation keys.
    pub one_time: Vec<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for DeviceSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceSecrets(<redacted>)")
    }
}

fn too_many(count: usize) -> Result<(), String> {
    if count > MAX_ONE_TIME_KEYS {
        return Err(format!(
            "{count} one-time keys; at most {MAX_ONE_TIME_KEYS}"
        ));
    }
    Ok(())
}

impl DeviceKeys {
    /// Fresh keys with `one_time_keys` one-time keys (at most [`MAX_ONE_TIME_KEYS`]).
    ///
    /// # Errors
    /// Key generation failed, or too many one-time keys.
    pub fn generate(one_time_keys: usize) -> Result<Self, String> {
        too_many(one_time_keys)?;
        let e = |e: commucat_keys::pq::PqError| e.to_string();
        Ok(Self {
            kem: KemKeyPair::generate().map_err(e)?,
            signing: SigningKeyPair::generate().map_err(e)?,
            one_time: (0..one_time_keys)
                .map(|_| KemKeyPair::generate().map_err(e))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The keys stored as `secrets`.
    ///
    /// # Errors
    /// A secret of the wrong size or that does not decode.
    pub fn from_secrets(secrets: &DeviceSecrets) -> Result<Self, String> {
        too_many(secrets.one_time.len())?;
        let kem = |bytes: &Zeroizing<Vec<u8>>| {
            KemKeyPair::from_secret_bytes(bytes).map_err(|e| e.to_string())
        };
        let seed: &[u8; commucat_keys::pq::DSA_SEED_LEN] = secrets
            .signing_seed
            .as_slice()
            .try_into()
            .map_err(|_| "ML-DSA-65 seed must be 32 bytes".to_owned())?;
        Ok(Self {
            kem: kem(&secrets.kem_secret)?,
            signing: SigningKeyPair::from_seed(seed).map_err(|e| e.to_string())?,
            one_time: secrets.one_time.iter().map(kem).collect::<Result<_, _>>()?,
        })
    }

    /// The secret bytes, for storage.
    ///
    /// # Errors
    /// A key could not be exported.
    pub fn secrets(&self) -> Result<DeviceSecrets, String> {
        let e = |e: commucat_keys::pq::PqError| e.to_string();
        Ok(DeviceSecrets {
            kem_secret: self.kem.secret_bytes().map_err(e)?,
            signing_seed: Zeroizing::new(self.signing.seed().to_vec()),
            one_time: self
                .one_time
                .iter()
                .map(|k| k.secret_bytes().map_err(e))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The ML-DSA-65 verification key.
    #[must_use]
    pub fn signature_public(&self) -> &[u8] {
        self.signing.public().as_bytes()
    }

    /// How many one-time keys a HELLO of this device announces.
    #[must_use]
    pub fn one_time_count(&self) -> usize {
        self.one_time.len()
    }

    /// HELLO's `pq_bundle` with fresh one-time keys (as many as [`DeviceKeys::one_time_count`]),
    /// returned beside it: a session spends only the keys its own HELLO announced, so no
    /// one-time key is ever offered to two sessions.
    ///
    /// # Errors
    /// Key generation failed.
    pub fn fresh_bundle(&self) -> Result<(PqBundle, OneTimeKeyPairs), String> {
        let one_time = OneTimeKeyPairs::generate(self.one_time.len()).map_err(|e| e.to_string())?;
        let bundle = encode_bundle(
            self.kem.public(),
            self.signing.public(),
            one_time.public_keys(),
        );
        Ok((bundle, one_time))
    }

    /// HELLO's `pq_bundle` with the stored one-time keys.
    #[must_use]
    pub fn bundle(&self) -> PqBundle {
        encode_bundle(
            self.kem.public(),
            self.signing.public(),
            self.one_time.iter().map(KemKeyPair::public),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use bytes::BytesMut;
    use commucat_keys::{HandshakePattern, x25519_public};

    use super::*;

    /// One finished XK handshake, the same bytes every time.
    fn finished() -> (Handshake, Handshake) {
        let (server_private, client_private) = ([1u8; 32], [2u8; 32]);
        let mut server =
            Handshake::responder_seeded(HandshakePattern::Xk, &server_private, b"p", &[3; 32])
                .unwrap();
        let mut client = Handshake::initiator_seeded(
            HandshakePattern::Xk,
            &client_private,
            &x25519_public(&server_private),
            b"p",
            &[4; 32],
        )
        .unwrap();
        server
            .read_message(&client.write_message(&[]).unwrap())
            .unwrap();
        client
            .read_message(&server.write_message(&[]).unwrap())
            .unwrap();
        server
            .read_message(&client.write_message(&[]).unwrap())
            .unwrap();
        (client, server)
    }

    fn opens(from: &mut Transport, to: &mut Transport) -> bool {
        let mut sealed = BytesMut::new();
        from.seal(b"record", &mut sealed).unwrap();
        let mut plain = BytesMut::new();
        to.open(&sealed, &mut plain).is_ok() && plain.as_ref() == b"record"
    }

    fn hybrid(shared: [u8; 32], salt: [u8; 32]) -> (Transport, Transport) {
        let (client, server) = finished();
        let shared = KemSharedSecret::from_bytes(shared);
        (
            hybrid_transport(
                client,
                &shared,
                &salt,
                Ratchet::Client(OneTimeKeyPairs::new(Vec::new())),
            )
            .unwrap()
            .0,
            hybrid_transport(
                server,
                &shared,
                &salt,
                Ratchet::Server(OneTimePublicKeys::new(Vec::new())),
            )
            .unwrap()
            .0,
        )
    }

    #[test]
    fn the_wire_label_is_the_derivation_label() {
        assert_eq!(SESSION_LABEL.as_bytes(), commucat_keys::pq::SESSION_LABEL);
    }

    #[test]
    fn records_are_keyed_from_both_secrets() {
        let (shared, salt) = ([7u8; 32], [8u8; 32]);
        let (mut client, mut server) = hybrid(shared, salt);
        assert!(opens(&mut client, &mut server) && opens(&mut server, &mut client));
        assert!(opens(&mut client, &mut server) && opens(&mut server, &mut client));

        // Not the classical keys: the classical transport of the same handshake cannot open
        // a hybrid record, in either direction.
        let (mut hybrid_client, mut hybrid_server) = hybrid(shared, salt);
        let classical = || {
            let (client, server) = finished();
            (
                client.into_transport().unwrap(),
                server.into_transport().unwrap(),
            )
        };
        let (mut classical_client, mut classical_server) = classical();
        assert!(!opens(&mut hybrid_client, &mut classical_server));
        assert!(!opens(&mut hybrid_server, &mut classical_client));
        // (A failed record ends a transport; a fresh classical pair works.)
        let (mut classical_client, mut classical_server) = classical();
        assert!(opens(&mut classical_client, &mut classical_server));

        // Another ML-KEM secret or salt: other keys.
        for (other_shared, other_salt) in [([9u8; 32], salt), (shared, [9u8; 32])] {
            let (mut client, _) = hybrid(shared, salt);
            let (_, mut server) = hybrid(other_shared, other_salt);
            assert!(!opens(&mut client, &mut server));
        }
    }

    #[test]
    fn the_record_keys_are_the_first_chain_steps_of_the_session() {
        // The server's first record is sealed with the first sending-chain key of the
        // encapsulator's session (commucat-crypto 1.0.41 `next_sending_key`), i.e. the
        // client's first receiving key.
        let (shared, salt) = ([7u8; 32], [8u8; 32]);
        let (_, mut server) = hybrid(shared, salt);
        let (mut noise_client, _) = finished();
        let classical = noise_client.split_secret().unwrap();
        let mut session =
            HybridSession::derive(&classical, &shared, &salt, HybridRole::Decapsulator).unwrap();
        let sending = session.next_sending_key().unwrap();
        let receiving = session.next_receiving_key().unwrap();
        let mut by_hand = noise_client
            .into_transport_with_keys(sending.as_bytes(), receiving.as_bytes())
            .unwrap();
        assert!(opens(&mut server, &mut by_hand));
    }

    #[test]
    fn device_keys_round_trip_and_the_exchange_agrees_and_verifies() {
        let keys = DeviceKeys::generate(2).unwrap();
        let again = DeviceKeys::from_secrets(&keys.secrets().unwrap()).unwrap();
        assert_eq!(again.bundle(), keys.bundle());
        assert!(DeviceKeys::generate(MAX_ONE_TIME_KEYS + 1).is_err());

        let offer = Offer::check(Some(&keys.bundle())).unwrap();
        let exchange = ServerExchange::start(&offer, &mut commucat_keys::OsRng).unwrap();
        let accepted = ClientExchange::accept(
            &again,
            Some(&exchange.ciphertext_base64()),
            Some(&exchange.context()),
        )
        .unwrap();
        assert_eq!(accepted.shared.as_bytes(), exchange.shared.as_bytes());
        assert_eq!(accepted.salt.as_slice(), exchange.salt.as_slice());

        let offered = vec!["noise-transport".to_owned(), "pq-hybrid".to_owned()];
        let parts = TranscriptParts {
            handshake_hash: &[5; 32],
            device_id: "phone",
            offered: &offered,
            accepted: &offered,
        };
        let signature = accepted.sign(&again, &parts).unwrap();
        exchange.verify(&offer, &parts, Some(&signature)).unwrap();
        let other_device = TranscriptParts {
            device_id: "tablet",
            ..parts
        };
        let refused = exchange
            .verify(&offer, &other_device, Some(&signature))
            .unwrap_err();
        assert_eq!(refused.reason, FailReason::PqSignature);
    }
}
