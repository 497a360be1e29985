//! HELLO validation, Noise message 1 and certificates: the checks that need no registry.

use commucat_ccp::control::Hello;
use commucat_keys::{
    DeviceCertificate, DeviceCertificateData, Handshake, HandshakePattern, decode_hex32,
    derive_handshake_context,
};
use rand_core::{CryptoRng, RngCore};

use super::{NoiseKey, ServerConfig};
use crate::{
    CAP_ADAPTIVE_OBF, CAP_FEC, CAP_NOISE_TRANSPORT, CAP_PQ_HYBRID, FailReason, HandshakeError,
    SUPPORTED_CAPABILITIES,
};

/// The server key message 1 was addressed to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UsedKey {
    pub(crate) version: u32,
    pub(crate) public: [u8; 32],
}

/// A validated HELLO, before the registry is consulted.
#[derive(Debug)]
pub(crate) struct CheckedHello {
    pub(crate) hello: Hello,
    pub(crate) version: u16,
    pub(crate) pattern: HandshakePattern,
    pub(crate) client_static: [u8; 32],
    pub(crate) device_public: [u8; 32],
    pub(crate) certificate: Option<DeviceCertificate>,
    pub(crate) accepted_capabilities: Vec<String>,
    /// The client's post-quantum credentials, when `pq-hybrid` was accepted.
    pub(crate) pq: Option<crate::pq::Offer>,
}

fn proof_error(detail: String) -> HandshakeError {
    HandshakeError::new(FailReason::InvalidProof, detail)
}

pub(crate) fn check_hello(
    config: &ServerConfig<'_>,
    hello: Hello,
) -> Result<CheckedHello, HandshakeError> {
    let offered = hello.offered_versions();
    let version = commucat_ccp::negotiate(&offered, commucat_ccp::SUPPORTED_PROTOCOL_VERSIONS)
        .ok_or_else(|| {
            HandshakeError::new(
                FailReason::Protocol,
                format!(
                    "no common protocol version: client offers {offered:?}, server supports {:?}",
                    commucat_ccp::SUPPORTED_PROTOCOL_VERSIONS
                ),
            )
        })?;
    let pattern = HandshakePattern::from_label(&hello.pattern).ok_or_else(|| {
        HandshakeError::new(
            FailReason::UnsupportedPattern,
            format!("pattern {:?} is not supported; use XK or IK", hello.pattern),
        )
    })?;
    if !(config.identity.valid_device_id)(&hello.device_id) {
        return Err(HandshakeError::invalid(format!(
            "device_id must be 1..={} characters of [A-Za-z0-9-_.:@]",
            config.identity.max_device_id_len
        )));
    }
    let client_static = decode_hex32(&hello.client_static)
        .map_err(|e| HandshakeError::invalid(format!("client_static: {e}")))?;
    let device_public = hello
        .device_public
        .as_deref()
        .ok_or_else(|| HandshakeError::invalid("device_public is required"))
        .and_then(|hex| {
            decode_hex32(hex).map_err(|e| HandshakeError::invalid(format!("device_public: {e}")))
        })?;
    if is_small_order(&device_public) {
        return Err(HandshakeError::invalid(
            "device_public is a small-order point: no proof can bind it to a private key",
        ));
    }
    let proof = hello
        .zkp
        .as_ref()
        .ok_or_else(|| proof_error("zkp is required".to_owned()))?;
    let proof = commucat_keys::HandshakeProof {
        commitment: decode_hex32(&proof.commitment)
            .map_err(|e| proof_error(format!("zkp.commitment: {e}")))?,
        response: decode_hex32(&proof.response)
            .map_err(|e| proof_error(format!("zkp.response: {e}")))?,
    };
    let context = derive_handshake_context(
        config.domain,
        &hello.device_id,
        &device_public,
        &client_static,
    )
    .map_err(|e| HandshakeError::invalid(e.to_string()))?;
    commucat_keys::verify(&context, &device_public, &proof).map_err(|_| {
        proof_error(format!(
            "handshake proof does not verify for this device, key and domain {:?}",
            config.domain
        ))
    })?;
    let certificate = match &hello.certificate {
        Some(value) => Some(
            serde_json::from_value::<DeviceCertificate>(value.clone()).map_err(|e| {
                HandshakeError::new(FailReason::Certificate, format!("certificate: {e}"))
            })?,
        ),
        None => None,
    };
    let mut accepted_capabilities: Vec<String> = SUPPORTED_CAPABILITIES
        .iter()
        .filter(|c| hello.requests(c))
        .map(|c| (*c).to_owned())
        .collect();
    // `pq-hybrid` keys the transport records, so it needs `noise-transport` beside it; a
    // server without it enabled leaves it out of the echo (the classical session).
    let pq =
        if config.pq_hybrid && hello.requests(CAP_PQ_HYBRID) && hello.requests(CAP_NOISE_TRANSPORT)
        {
            let offer = crate::pq::Offer::check(hello.pq_bundle.as_ref())?;
            accepted_capabilities.push(CAP_PQ_HYBRID.to_owned());
            Some(offer)
        } else {
            None
        };
    // `adaptive-obf` wraps frames inside the transport records: it needs `noise-transport`.
    if config.adaptive_obf
        && hello.requests(CAP_ADAPTIVE_OBF)
        && hello.requests(CAP_NOISE_TRANSPORT)
    {
        accepted_capabilities.push(CAP_ADAPTIVE_OBF.to_owned());
    }
    // `fec` replaces the record stream's framing; it is not combined with the capabilities
    // that work inside the records (the ratchet's key switch, obfuscation wrappers): a client
    // that asks for several gets those and no `fec` (a capability not echoed is never used).
    if pq.is_some() || accepted_capabilities.iter().any(|c| c == CAP_ADAPTIVE_OBF) {
        accepted_capabilities.retain(|c| c != CAP_FEC);
    }
    Ok(CheckedHello {
        hello,
        version,
        pattern,
        client_static,
        device_public,
        certificate,
        accepted_capabilities,
        pq,
    })
}

/// Whether `key` is an Ed25519 point of small order (for which a Schnorr proof verifies
/// without knowing any private key). A string that is no point at all is left to the proof
/// check, which refuses it.
fn is_small_order(key: &[u8; 32]) -> bool {
    commucat_keys::VerifyingKey::from_bytes(key).is_ok_and(|k| k.is_weak())
}

/// Reads Noise message 1 under each key still accepted at `now` (newest first).
pub(crate) fn read_message_one(
    config: &ServerConfig<'_>,
    keys: &[NoiseKey],
    pattern: HandshakePattern,
    msg1: &[u8],
    now: i64,
    seed: &[u8; 32],
) -> Result<(Handshake, UsedKey), HandshakeError> {
    for key in keys {
        if key.accept_until.is_some_and(|until| now >= until) {
            continue;
        }
        let mut noise =
            Handshake::responder_seeded(pattern, &key.private, config.prologue, seed)
                .map_err(|e| HandshakeError::new(FailReason::CryptoInternal, e.to_string()))?;
        if noise.read_message(msg1).is_ok() {
            let used = UsedKey {
                version: key.version,
                public: key.public,
            };
            return Ok((noise, used));
        }
    }
    Err(HandshakeError::new(
        FailReason::Crypto,
        "Noise message 1 does not decrypt under any server key (wrong server_static or prologue?)",
    ))
}

pub(crate) fn static_mismatch() -> HandshakeError {
    HandshakeError::new(
        FailReason::StaticMismatch,
        "the Noise static key in the handshake is not HELLO's client_static",
    )
}

/// Checks a presented certificate against this device: CA, validity, binding.
pub(crate) fn check_certificate(
    config: &ServerConfig<'_>,
    cert: &DeviceCertificate,
    checked: &CheckedHello,
    now: i64,
) -> Result<(), HandshakeError> {
    let fail = |detail: String| HandshakeError::new(FailReason::Certificate, detail);
    cert.verify(&config.device_ca.public_key(), now, config.clock_skew_secs)
        .map_err(|e| fail(format!("certificate: {e}")))?;
    if cert.data.device_id != checked.hello.device_id {
        return Err(fail("certificate was issued to another device".to_owned()));
    }
    if cert.data.public_key != checked.device_public {
        return Err(fail("certificate binds another device key".to_owned()));
    }
    Ok(())
}

/// The certificate to keep using and the one to hand out (if new or renewed).
pub(crate) fn certificates<R: RngCore + CryptoRng>(
    config: &ServerConfig<'_>,
    rng: &mut R,
    user_id: &str,
    checked: &CheckedHello,
    now: i64,
) -> Result<(Option<DeviceCertificate>, Option<DeviceCertificate>), HandshakeError> {
    if let Some(cert) = &checked.certificate {
        let remaining = cert.data.expires_at.saturating_sub(now);
        if remaining >= config.renewal_margin_secs {
            return Ok((Some(cert.clone()), None));
        }
    }
    let data = DeviceCertificateData {
        serial: rng.next_u64(),
        user_id: user_id.to_owned(),
        device_id: checked.hello.device_id.clone(),
        public_key: checked.device_public,
        issuer: config.device_ca.public_key(),
        issued_at: now,
        expires_at: now.saturating_add(config.certificate_validity_secs),
    };
    let fresh = DeviceCertificate::issue(config.device_ca.signing_key(), data)
        .map_err(|e| HandshakeError::new(FailReason::CryptoInternal, e.to_string()))?;
    Ok((Some(fresh.clone()), Some(fresh)))
}
