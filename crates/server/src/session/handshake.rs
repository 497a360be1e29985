//! The device handshake: HELLO → AUTH (Noise message 2) → AUTH (message 3) → ACK.
//!
//! Validation happens in the order that costs least first: JSON shape, version, pattern, hex
//! fields, the Schnorr proof (binding `device_public`, `client_static`, `device_id` and the
//! domain), the Noise message under each active server key, then the device registry. The
//! final ACK is sent only after the session record is stored, so the session id works as a
//! REST bearer token the moment the client sees it.

use std::sync::Arc;

use commucat_ccp::control::{
    CertificateSummary, ClientAuth, HandshakeAck, Hello, ServerAuth, SessionPayload, UserInfo,
};
use commucat_ccp::{FrameType, Problem, ProblemKind};
use commucat_keys::{
    DeviceCertificate, DeviceCertificateData, DeviceKeyPair, Handshake, HandshakePattern,
    decode_hex32, derive_handshake_context, encode_hex,
};
use commucat_store::{
    DeviceRecord, DeviceStatus, NewDeviceRegistration, SessionRecord, Store, StoreError,
    UserRecord, UserToCreate,
};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use commucat_link::{ByteStream, ConnError, Connection, StreamError};

use super::ik_replay::{self, ReplayCache};
use crate::config::BoundSettings;
use crate::ledger::Ledger;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::profile::{ProfileBounds, ProfileField, TooLong};
use crate::registry::{
    MAX_DEVICE_ID_LEN, MAX_HANDLE_LEN, active_device_registration, random_id, session_key,
    valid_device_id, valid_handle,
};
use crate::router::presence::Presence;

/// Capability that switches post-handshake frames to Noise transport records.
pub const CAP_NOISE_TRANSPORT: &str = "noise-transport";
/// Capability of clients that ACK the frames they receive (`{"ack": <server sequence>}`,
/// cumulative): replayed offline envelopes are deleted only once ACKed.
pub const CAP_DELIVERY_RECEIPTS: &str = "delivery-receipts";
/// Capabilities this server can honour.
pub const SUPPORTED_CAPABILITIES: &[&str] = &[CAP_NOISE_TRANSPORT, CAP_DELIVERY_RECEIPTS];

/// One server Noise static key. `Debug` shows the public half only.
pub struct NoiseKey {
    /// Key version (1 for the first key).
    pub version: u32,
    /// X25519 private key.
    pub private: Zeroizing<[u8; 32]>,
    /// X25519 public key.
    pub public: [u8; 32],
    /// Unix second from which the key is refused (a superseded key's grace period ends);
    /// `None`: accepted until an operator retires it.
    pub accept_until: Option<i64>,
}

impl std::fmt::Debug for NoiseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseKey")
            .field("version", &self.version)
            .field("public", &encode_hex(&self.public))
            .field("private", &"<redacted>")
            .field("accept_until", &self.accept_until)
            .finish()
    }
}

/// The server key message 1 was addressed to.
#[derive(Debug, Clone, Copy)]
struct UsedKey {
    version: u32,
    public: [u8; 32],
}

/// Everything the handshake needs from configuration.
#[derive(Debug)]
pub struct HandshakeSettings {
    /// Server domain, bound into every Schnorr proof.
    pub domain: String,
    /// Noise prologue.
    pub prologue: Vec<u8>,
    /// Active Noise static keys, newest first; message 1 is tried against each. A key reload
    /// replaces the set; a handshake uses the set in force when its message 1 arrived.
    pub noise_keys: Live<Vec<NoiseKey>>,
    /// Device CA that issues device certificates.
    pub device_ca: DeviceKeyPair,
    /// Register unknown devices without pairing.
    pub auto_approve: bool,
    /// Most active devices a user may gain by auto-approval (0 = unlimited).
    pub max_auto_devices_per_user: u32,
    /// Validity of issued certificates, seconds.
    pub certificate_validity_secs: i64,
    /// Re-issue a presented certificate with less than this left, seconds.
    pub renewal_margin_secs: i64,
    /// Session lifetime (REST bearer validity), seconds.
    pub session_ttl_secs: i64,
    /// Keepalive interval advertised in the ACK, seconds.
    pub keepalive_secs: u64,
    /// Accepted clock skew for certificate `issued_at`, seconds.
    pub clock_skew_secs: i64,
    /// Lengths of the profile fields a HELLO may set and message 2 may carry.
    pub profile: ProfileBounds,
}

/// What a successful handshake established.
#[derive(Debug)]
pub struct Established {
    /// Session id (REST bearer token).
    pub session_id: String,
    /// The device.
    pub device_id: String,
    /// Its owner.
    pub user: UserRecord,
    /// Negotiated protocol version.
    pub protocol_version: u16,
    /// Pattern used.
    pub pattern: HandshakePattern,
    /// Capabilities accepted for this session.
    pub accepted_capabilities: Vec<String>,
    /// Session expiry, Unix seconds.
    pub expires_at: i64,
    /// Version of the server Noise key the client addressed.
    pub noise_key_version: u32,
    /// Whether the device was registered before this handshake.
    pub device_known: bool,
    /// Whether the client presented a device certificate.
    pub had_certificate: bool,
    /// Whether the ACK carried a newly issued certificate (first registration or renewal).
    pub issued_certificate: bool,
}

/// Handshake stage, for logs and the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for or processing HELLO.
    Hello,
    /// Waiting for the client's AUTH (message 3).
    AwaitClient,
    /// Storing the session and acknowledging.
    Established,
}

impl Stage {
    /// Label used in logs.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Stage::Hello => "hello",
            Stage::AwaitClient => "await_client",
            Stage::Established => "established",
        }
    }
}

/// A failed handshake: the ERROR to send (if the stream can still carry one) and why.
#[derive(Debug)]
pub struct HandshakeFailure {
    /// Diagnostic.
    pub kind: ProblemKind,
    /// Human-readable detail (sent to the client; never contains secrets).
    pub detail: String,
    /// Stage reached.
    pub stage: Stage,
    /// Short machine reason for logs (`"invalid"`, `"crypto"`, `"storage"`, `"client-closed"` …).
    pub reason: &'static str,
    /// Device id, when known.
    pub device_id: Option<String>,
    /// Whether an ERROR frame can still be delivered.
    pub can_reply: bool,
}

impl HandshakeFailure {
    fn new(kind: ProblemKind, reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            stage: Stage::Hello,
            reason,
            device_id: None,
            can_reply: true,
        }
    }

    fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::InvalidControlPayload, "invalid", detail)
    }

    fn from_conn(error: &ConnError) -> Self {
        match error {
            ConnError::Stream(stream) => match stream {
                StreamError::Codec(codec) => Self::new(codec.kind(), "decode", codec.to_string()),
                StreamError::Noise(noise) => {
                    Self::new(ProblemKind::HandshakeFailed, "crypto", noise.to_string())
                }
            },
            ConnError::Io(io) => Self {
                can_reply: false,
                ..Self::new(ProblemKind::InternalError, "read", io.to_string())
            },
            ConnError::SequenceExhausted(_) => Self::new(
                ProblemKind::SequenceExhausted,
                "sequence",
                "sequence numbers exhausted",
            ),
            ConnError::Codec(codec) => {
                Self::new(ProblemKind::InternalError, "codec", codec.to_string())
            }
        }
    }

    fn from_store(error: &StoreError) -> Self {
        match error {
            StoreError::DeviceLimit { limit, .. } => Self::new(
                ProblemKind::PairingRequired,
                "pairing-required",
                format!(
                    "this account already has {limit} devices; pair this device from one of them"
                ),
            ),
            StoreError::DeviceRevoked { .. } => Self::new(
                ProblemKind::DeviceRevoked,
                "revoked",
                "this device has been revoked; pair it again",
            ),
            StoreError::DeviceKeyChanged { .. } => Self::new(
                ProblemKind::DeviceKeyMismatch,
                "key-mismatch",
                "this device's key was replaced during the handshake; connect with the new key",
            ),
            StoreError::Conflict(what) => {
                Self::new(ProblemKind::AccountProofRequired, "conflict", what.clone())
            }
            StoreError::Unavailable(_) => Self::new(
                ProblemKind::ServiceUnavailable,
                "storage",
                "device registry unavailable; retry shortly",
            ),
            other => Self::new(
                ProblemKind::InternalError,
                "storage",
                format!("storage failure: {other}"),
            ),
        }
    }

    fn at(mut self, stage: Stage) -> Self {
        self.stage = stage;
        self
    }

    /// The ERROR payload for this failure.
    #[must_use]
    pub fn problem(&self) -> Problem {
        let tag = if self.reason == "decode" {
            "decode"
        } else {
            "handshake"
        };
        Problem::new(self.kind)
            .with_detail(self.detail.clone())
            .with_error_tag(tag)
    }
}

/// Runs handshakes against a device registry.
#[derive(Debug, Clone)]
pub struct Handshaker {
    settings: Arc<HandshakeSettings>,
    store: Arc<dyn Store>,
    ledger: Ledger,
    /// Counts the handshake's frames in `frames_in`/`frames_out`.
    metrics: Arc<Metrics>,
    /// Ephemerals of accepted IK message 1s, to refuse a replayed HELLO.
    replays: Arc<ReplayCache>,
    /// The deployment's shared registry, to refuse a HELLO another node accepted.
    shared_replays: Option<Arc<dyn Presence>>,
}

/// A validated HELLO, before the registry is consulted.
struct CheckedHello {
    hello: Hello,
    version: u16,
    pattern: HandshakePattern,
    client_static: [u8; 32],
    device_public: [u8; 32],
    certificate: Option<DeviceCertificate>,
    accepted_capabilities: Vec<String>,
}

/// Outcome of looking the device up. Nothing is written until the Noise handshake has proved
/// the client's static key: a new device's registration waits in `pending`.
struct Resolved {
    user: UserRecord,
    /// Registration to commit once the handshake is complete (unknown devices).
    pending: Option<NewDeviceRegistration>,
    /// Certificate to hand out in the ACK (new or renewed), if any.
    issued: Option<DeviceCertificate>,
    /// The certificate that stays valid (presented or issued).
    current: Option<DeviceCertificate>,
}

fn user_info(user: &UserRecord) -> UserInfo {
    UserInfo::profile(
        user.user_id.clone(),
        user.handle.clone(),
        user.display_name.clone(),
        user.avatar_url.clone(),
    )
}

impl Handshaker {
    /// A handshaker using `store` as the device registry.
    #[must_use]
    pub fn new(settings: Arc<HandshakeSettings>, store: Arc<dyn Store>) -> Self {
        Self {
            settings,
            store,
            ledger: Ledger::off(),
            metrics: Arc::default(),
            replays: Arc::new(ReplayCache::new(
                crate::config::as_usize(BoundSettings::default().ik_replay_entries),
                BoundSettings::default().ik_replay_retention,
            )),
            shared_replays: None,
        }
    }

    /// This handshaker, refusing IK message 1s whose ephemeral `replays` has seen.
    #[must_use]
    pub fn with_replay_cache(self, replays: Arc<ReplayCache>) -> Self {
        Self { replays, ..self }
    }

    /// This handshaker, also recording accepted IK ephemerals in `registry` (shared by the
    /// nodes of a deployment, [`Presence::mark_once`]).
    #[must_use]
    pub fn with_shared_replays(self, registry: Arc<dyn Presence>) -> Self {
        Self {
            shared_replays: Some(registry),
            ..self
        }
    }

    /// This handshaker, counting the frames it receives and sends in `metrics` (by type,
    /// beside those of established sessions).
    #[must_use]
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        Self { metrics, ..self }
    }

    /// This handshaker, recording outcomes and registrations in `ledger`.
    #[must_use]
    pub fn with_ledger(self, ledger: Ledger) -> Self {
        Self { ledger, ..self }
    }

    /// The settings in force.
    #[must_use]
    pub fn settings(&self) -> &HandshakeSettings {
        &self.settings
    }

    /// Runs the server side of the handshake on `conn`. On failure the caller sends
    /// [`HandshakeFailure::problem`] (when `can_reply`) and closes the stream; use
    /// [`Handshaker::run_and_report`] to have that done.
    ///
    /// # Errors
    /// A [`HandshakeFailure`] describing the first check that failed.
    pub async fn run<S: ByteStream>(
        &self,
        conn: &mut Connection<S>,
    ) -> Result<Established, HandshakeFailure> {
        // ---- HELLO
        let frame = match conn.recv().await {
            Ok(Some(frame)) => {
                self.metrics.frames_in.count(frame.frame_type());
                frame
            }
            Ok(None) => {
                return Err(HandshakeFailure {
                    can_reply: false,
                    ..HandshakeFailure::new(
                        ProblemKind::TruncatedFrame,
                        "client-closed",
                        "stream closed before HELLO",
                    )
                });
            }
            Err(e) => return Err(HandshakeFailure::from_conn(&e)),
        };
        if frame.frame_type() != FrameType::Hello {
            return Err(HandshakeFailure::new(
                ProblemKind::UnexpectedFrame,
                "invalid",
                format!("expected HELLO, got {}", frame.frame_type()),
            ));
        }
        let hello: Hello = frame
            .parse_control()
            .map_err(|e| HandshakeFailure::invalid(format!("HELLO: {e}")))?;
        let device_id = hello.device_id.clone();
        let with_device = |f: HandshakeFailure| HandshakeFailure {
            device_id: Some(device_id.clone()),
            ..f
        };
        let checked = self.check_hello(hello).map_err(&with_device)?;

        // ---- Noise message 1, under each active key (newest first).
        let msg1 = hex::decode(&checked.hello.handshake)
            .map_err(|_| with_device(HandshakeFailure::invalid("handshake is not hex")))?;
        let (mut noise, noise_key) = self
            .read_message_one(checked.pattern, &msg1)
            .map_err(&with_device)?;
        if checked.pattern == HandshakePattern::Ik {
            if noise.remote_static() != Some(checked.client_static) {
                return Err(with_device(static_mismatch()));
            }
            self.admit_ik(&msg1).await.map_err(&with_device)?;
        }

        // ---- Registry.
        let now = crate::clock::unix_now();
        let mut resolved = self
            .resolve_device(&checked, now)
            .await
            .map_err(&with_device)?;
        // Bounded: a stored over-long value must not push message 2 past the Noise limit.
        let user = self.settings.profile.for_wire(resolved.user.clone());

        // ---- AUTH with message 2; its encrypted payload carries the session.
        let session_id = random_id();
        let payload = SessionPayload {
            session: session_id.clone(),
            domain: Some(self.settings.domain.clone()),
            protocol_version: Some(u64::from(checked.version)),
            user_id: Some(user.user_id.clone()),
            user: Some(user_info(&user)),
            accepted_capabilities: Some(checked.accepted_capabilities.clone()),
        };
        let payload_json = serde_json::to_vec(&payload).map_err(|e| {
            with_device(HandshakeFailure::new(
                ProblemKind::InternalError,
                "codec",
                e.to_string(),
            ))
        })?;
        let msg2 = noise.write_message(&payload_json).map_err(|e| {
            with_device(HandshakeFailure::new(
                ProblemKind::HandshakeFailed,
                "crypto",
                e.to_string(),
            ))
        })?;
        let auth = ServerAuth {
            handshake: encode_hex(&msg2),
            session: Some(session_id.clone()),
            device_id: Some(checked.hello.device_id.clone()),
            server_static: Some(encode_hex(&noise_key.public)),
            protocol_version: Some(u64::from(checked.version)),
            supported_versions: Some(
                commucat_ccp::SUPPORTED_PROTOCOL_VERSIONS
                    .iter()
                    .map(|v| u64::from(*v))
                    .collect(),
            ),
            device_ca_public: Some(encode_hex(&self.settings.device_ca.public_key())),
            user: Some(user_info(&user)),
            pairing_required: Some(false),
            accepted_capabilities: Some(checked.accepted_capabilities.clone()),
            pq_ciphertext: None,
            pq_context: None,
        };
        conn.send_control(FrameType::Auth, 0, &auth)
            .await
            .map_err(|e| with_device(HandshakeFailure::from_conn(&e)))?;
        self.metrics.frames_out.count(FrameType::Auth);

        // ---- Message 3 (XK). IK is complete after message 2.
        if checked.pattern == HandshakePattern::Xk {
            let frame = match conn.recv().await {
                Ok(Some(frame)) => {
                    self.metrics.frames_in.count(frame.frame_type());
                    frame
                }
                Ok(None) => {
                    return Err(with_device(HandshakeFailure {
                        can_reply: false,
                        ..HandshakeFailure::new(
                            ProblemKind::TruncatedFrame,
                            "client-closed",
                            "stream closed before AUTH",
                        )
                    })
                    .at(Stage::AwaitClient));
                }
                Err(e) => {
                    return Err(with_device(HandshakeFailure::from_conn(&e)).at(Stage::AwaitClient));
                }
            };
            if frame.frame_type() != FrameType::Auth {
                return Err(with_device(HandshakeFailure::new(
                    ProblemKind::UnexpectedFrame,
                    "invalid",
                    format!("expected AUTH, got {}", frame.frame_type()),
                ))
                .at(Stage::AwaitClient));
            }
            let client: ClientAuth = frame.parse_control().map_err(|e| {
                with_device(HandshakeFailure::invalid(format!("AUTH: {e}"))).at(Stage::AwaitClient)
            })?;
            let msg3 = hex::decode(&client.handshake).map_err(|_| {
                with_device(HandshakeFailure::invalid("AUTH handshake is not hex"))
                    .at(Stage::AwaitClient)
            })?;
            noise.read_message(&msg3).map_err(|e| {
                with_device(HandshakeFailure::new(
                    ProblemKind::HandshakeFailed,
                    "crypto",
                    e.to_string(),
                ))
                .at(Stage::AwaitClient)
            })?;
            if noise.remote_static() != Some(checked.client_static) {
                return Err(with_device(static_mismatch()).at(Stage::AwaitClient));
            }
        }

        // ---- Commit the registry decision, store the session, then acknowledge.
        let device_known = resolved.pending.is_none();
        self.commit(&mut resolved, &checked)
            .await
            .map_err(|f| with_device(f).at(Stage::Established))?;
        let user = self.settings.profile.for_wire(resolved.user.clone());
        let expires_at = now.saturating_add(self.settings.session_ttl_secs);
        self.store
            .create_session(
                SessionRecord {
                    session_id: session_key(&session_id),
                    device_id: checked.hello.device_id.clone(),
                    user_id: user.user_id.clone(),
                    created_at: now,
                    expires_at,
                },
                &checked.device_public,
            )
            .await
            .map_err(|e| with_device(HandshakeFailure::from_store(&e)).at(Stage::Established))?;

        let ack = HandshakeAck {
            handshake: "ok".to_owned(),
            session: Some(session_id.clone()),
            user_id: Some(user.user_id.clone()),
            user: Some(user_info(&user)),
            pairing_required: self.pairing_required_for(&user).await,
            device_ca_public: Some(encode_hex(&self.settings.device_ca.public_key())),
            noise_public: Some(encode_hex(&noise_key.public)),
            accepted_capabilities: Some(checked.accepted_capabilities.clone()),
            protocol_version: Some(u64::from(checked.version)),
            keepalive_interval: Some(self.settings.keepalive_secs),
            certificate: resolved.current.as_ref().map(|c| CertificateSummary {
                serial: c.data.serial,
                issued_at: c.data.issued_at,
                expires_at: c.data.expires_at,
            }),
            device_certificate: match &resolved.issued {
                Some(cert) => Some(serde_json::to_value(cert).map_err(|e| {
                    with_device(HandshakeFailure::new(
                        ProblemKind::InternalError,
                        "codec",
                        e.to_string(),
                    ))
                    .at(Stage::Established)
                })?),
                None => None,
            },
        };
        conn.send_control(FrameType::Ack, 0, &ack)
            .await
            .map_err(|e| with_device(HandshakeFailure::from_conn(&e)).at(Stage::Established))?;
        self.metrics.frames_out.count(FrameType::Ack);

        if checked
            .accepted_capabilities
            .iter()
            .any(|c| c == CAP_NOISE_TRANSPORT)
        {
            let transport = noise.into_transport().map_err(|e| {
                with_device(HandshakeFailure::new(
                    ProblemKind::HandshakeFailed,
                    "crypto",
                    e.to_string(),
                ))
                .at(Stage::Established)
            })?;
            conn.codec_mut().enable_transport(transport).map_err(|e| {
                with_device(HandshakeFailure::from_conn(&ConnError::Stream(e)))
                    .at(Stage::Established)
            })?;
        }

        Ok(Established {
            session_id,
            device_id: checked.hello.device_id,
            user,
            protocol_version: checked.version,
            pattern: checked.pattern,
            device_known,
            had_certificate: checked.certificate.is_some(),
            issued_certificate: resolved.issued.is_some(),
            accepted_capabilities: checked.accepted_capabilities,
            expires_at,
            noise_key_version: noise_key.version,
        })
    }

    /// Runs the handshake within `timeout`; on failure sends the ERROR frame (when the stream
    /// can carry it) and logs the failure with scope, result, reason and stage.
    ///
    /// # Errors
    /// The failure, after it has been reported.
    pub async fn run_and_report<S: ByteStream>(
        &self,
        conn: &mut Connection<S>,
        remote: &str,
        timeout: std::time::Duration,
    ) -> Result<Established, HandshakeFailure> {
        let outcome = match tokio::time::timeout(timeout, self.run(conn)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(HandshakeFailure::new(
                ProblemKind::HandshakeTimeout,
                "timeout",
                format!("handshake not finished within {} ms", timeout.as_millis()),
            )),
        };
        match outcome {
            Ok(established) => {
                tracing::info!(
                    scope = "handshake",
                    result = "success",
                    remote,
                    device = %established.device_id,
                    user = %established.user.user_id,
                    pattern = established.pattern.label(),
                    capabilities = ?established.accepted_capabilities,
                    "handshake complete"
                );
                self.ledger.record("handshake", || {
                    serde_json::json!({
                        "result": "success",
                        "stage": Stage::Established.label(),
                        "remote_addr": remote,
                        "device": established.device_id,
                        "user": established.user.user_id,
                        "device_known": established.device_known,
                        "noise_key_active": true,
                        "noise_key_version": established.noise_key_version,
                        "has_user_profile": established.user.display_name.is_some()
                            || established.user.avatar_url.is_some(),
                        "has_certificate": established.had_certificate,
                        "certificate_issued": established.issued_certificate,
                        "session": session_key(&established.session_id),
                        "protocol_version": established.protocol_version,
                        "pattern": established.pattern.label(),
                        "capabilities": established.accepted_capabilities,
                    })
                });
                Ok(established)
            }
            Err(failure) => {
                if report_failure(conn, &failure, remote).await {
                    self.metrics.frames_out.count(FrameType::Error);
                }
                self.ledger.record("handshake", || {
                    serde_json::json!({
                        "result": "failure",
                        "reason": failure.reason,
                        "stage": failure.stage.label(),
                        "title": failure.kind.title(),
                        "remote_addr": remote,
                        "device": failure.device_id,
                        "detail": failure.detail,
                    })
                });
                Err(failure)
            }
        }
    }

    fn check_hello(&self, hello: Hello) -> Result<CheckedHello, HandshakeFailure> {
        let offered = hello.offered_versions();
        let version = commucat_ccp::negotiate(&offered, commucat_ccp::SUPPORTED_PROTOCOL_VERSIONS).ok_or_else(|| {
            HandshakeFailure::new(
                ProblemKind::ProtocolVersionMismatch,
                "protocol",
                format!(
                    "no common protocol version: client offers {offered:?}, server supports {:?}",
                    commucat_ccp::SUPPORTED_PROTOCOL_VERSIONS
                ),
            )
        })?;
        let pattern = HandshakePattern::from_label(&hello.pattern).ok_or_else(|| {
            HandshakeFailure::new(
                ProblemKind::UnsupportedPattern,
                "invalid",
                format!("pattern {:?} is not supported; use XK or IK", hello.pattern),
            )
        })?;
        if !valid_device_id(&hello.device_id) {
            return Err(HandshakeFailure::invalid(format!(
                "device_id must be 1..={MAX_DEVICE_ID_LEN} characters of [A-Za-z0-9-_.:@]"
            )));
        }
        let client_static = decode_hex32(&hello.client_static)
            .map_err(|e| HandshakeFailure::invalid(format!("client_static: {e}")))?;
        let device_public = hello
            .device_public
            .as_deref()
            .ok_or_else(|| HandshakeFailure::invalid("device_public is required"))
            .and_then(|hex| {
                decode_hex32(hex)
                    .map_err(|e| HandshakeFailure::invalid(format!("device_public: {e}")))
            })?;
        if is_small_order(&device_public) {
            return Err(HandshakeFailure::invalid(
                "device_public is a small-order point: no proof can bind it to a private key",
            ));
        }
        let proof = hello.zkp.as_ref().ok_or_else(|| {
            HandshakeFailure::new(ProblemKind::InvalidProof, "invalid", "zkp is required")
        })?;
        let proof = commucat_keys::HandshakeProof {
            commitment: decode_hex32(&proof.commitment).map_err(|e| {
                HandshakeFailure::new(
                    ProblemKind::InvalidProof,
                    "invalid",
                    format!("zkp.commitment: {e}"),
                )
            })?,
            response: decode_hex32(&proof.response).map_err(|e| {
                HandshakeFailure::new(
                    ProblemKind::InvalidProof,
                    "invalid",
                    format!("zkp.response: {e}"),
                )
            })?,
        };
        let context = derive_handshake_context(
            &self.settings.domain,
            &hello.device_id,
            &device_public,
            &client_static,
        )
        .map_err(|e| HandshakeFailure::invalid(e.to_string()))?;
        commucat_keys::verify(&context, &device_public, &proof).map_err(|_| {
            HandshakeFailure::new(
                ProblemKind::InvalidProof,
                "invalid",
                format!(
                    "handshake proof does not verify for this device, key and domain {:?}",
                    self.settings.domain
                ),
            )
        })?;
        let certificate = match &hello.certificate {
            Some(value) => Some(
                serde_json::from_value::<DeviceCertificate>(value.clone()).map_err(|e| {
                    HandshakeFailure::new(
                        ProblemKind::CertificateInvalid,
                        "certificate",
                        format!("certificate: {e}"),
                    )
                })?,
            ),
            None => None,
        };
        let accepted_capabilities = SUPPORTED_CAPABILITIES
            .iter()
            .filter(|c| hello.requests(c))
            .map(|c| (*c).to_owned())
            .collect();
        Ok(CheckedHello {
            hello,
            version,
            pattern,
            client_static,
            device_public,
            certificate,
            accepted_capabilities,
        })
    }

    fn read_message_one(
        &self,
        pattern: HandshakePattern,
        msg1: &[u8],
    ) -> Result<(Handshake, UsedKey), HandshakeFailure> {
        let now = crate::clock::unix_now();
        let keys = self.settings.noise_keys.load();
        for key in keys.iter() {
            if key.accept_until.is_some_and(|until| now >= until) {
                continue;
            }
            let mut noise = Handshake::responder(pattern, &key.private, &self.settings.prologue)
                .map_err(|e| {
                    HandshakeFailure::new(ProblemKind::InternalError, "crypto", e.to_string())
                })?;
            if noise.read_message(msg1).is_ok() {
                let used = UsedKey {
                    version: key.version,
                    public: key.public,
                };
                return Ok((noise, used));
            }
        }
        Err(HandshakeFailure::new(
            ProblemKind::HandshakeFailed,
            "crypto",
            "Noise message 1 does not decrypt under any server key (wrong server_static or prologue?)",
        ))
    }

    /// Refuses an IK message 1 whose ephemeral was accepted before ([`ik_replay::admit`]).
    async fn admit_ik(&self, msg1: &[u8]) -> Result<(), HandshakeFailure> {
        let shared = self.shared_replays.as_deref();
        if ik_replay::admit(&self.replays, shared, &self.metrics, msg1).await {
            return Ok(());
        }
        Err(HandshakeFailure::new(
            ProblemKind::HandshakeReplayed,
            "replay",
            "this IK message 1 was accepted before; start a new handshake",
        ))
    }

    /// Checks a presented certificate against this device: CA, validity, binding.
    fn check_certificate(
        &self,
        cert: &DeviceCertificate,
        checked: &CheckedHello,
        now: i64,
    ) -> Result<(), HandshakeFailure> {
        let fail = |detail: String| {
            HandshakeFailure::new(ProblemKind::CertificateInvalid, "certificate", detail)
        };
        cert.verify(
            &self.settings.device_ca.public_key(),
            now,
            self.settings.clock_skew_secs,
        )
        .map_err(|e| fail(format!("certificate: {e}")))?;
        if cert.data.device_id != checked.hello.device_id {
            return Err(fail("certificate was issued to another device".to_owned()));
        }
        if cert.data.public_key != checked.device_public {
            return Err(fail("certificate binds another device key".to_owned()));
        }
        Ok(())
    }

    fn issue_certificate(
        &self,
        user_id: &str,
        checked: &CheckedHello,
        now: i64,
    ) -> Result<DeviceCertificate, HandshakeFailure> {
        let data = DeviceCertificateData {
            serial: OsRng.next_u64(),
            user_id: user_id.to_owned(),
            device_id: checked.hello.device_id.clone(),
            public_key: checked.device_public,
            issuer: self.settings.device_ca.public_key(),
            issued_at: now,
            expires_at: now.saturating_add(self.settings.certificate_validity_secs),
        };
        DeviceCertificate::issue(self.settings.device_ca.signing_key(), data)
            .map_err(|e| HandshakeFailure::new(ProblemKind::InternalError, "crypto", e.to_string()))
    }

    /// The certificate to keep using and the one to hand out (if new or renewed).
    fn certificates(
        &self,
        presented: Option<&DeviceCertificate>,
        user_id: &str,
        checked: &CheckedHello,
        now: i64,
    ) -> Result<(Option<DeviceCertificate>, Option<DeviceCertificate>), HandshakeFailure> {
        if let Some(cert) = presented {
            let remaining = cert.data.expires_at.saturating_sub(now);
            if remaining >= self.settings.renewal_margin_secs {
                return Ok((Some(cert.clone()), None));
            }
        }
        let fresh = self.issue_certificate(user_id, checked, now)?;
        Ok((Some(fresh.clone()), Some(fresh)))
    }

    async fn resolve_device(
        &self,
        checked: &CheckedHello,
        now: i64,
    ) -> Result<Resolved, HandshakeFailure> {
        let hello = &checked.hello;
        if let Some(cert) = &checked.certificate {
            self.check_certificate(cert, checked, now)?;
        }
        let hint = hello.user.as_ref();
        if hint.is_some_and(UserInfo::has_conflicting_ids) {
            return Err(HandshakeFailure::invalid(
                "user.id and user.user_id disagree",
            ));
        }
        let hinted_id = hint.and_then(UserInfo::resolved_id);
        let hinted_handle = hint.and_then(|u| u.handle.as_deref());

        match self
            .store
            .device(&hello.device_id)
            .await
            .map_err(|e| HandshakeFailure::from_store(&e))?
        {
            Some(device) => {
                self.resolve_known(device, checked, hinted_id, hinted_handle, now)
                    .await
            }
            None => {
                self.register_unknown(checked, hinted_id, hinted_handle, now)
                    .await
            }
        }
    }

    async fn resolve_known(
        &self,
        device: DeviceRecord,
        checked: &CheckedHello,
        hinted_id: Option<&str>,
        hinted_handle: Option<&str>,
        now: i64,
    ) -> Result<Resolved, HandshakeFailure> {
        if device.status != DeviceStatus::Active {
            return Err(HandshakeFailure::new(
                ProblemKind::DeviceRevoked,
                "revoked",
                "this device has been revoked; pair it again",
            ));
        }
        if device.public_key != checked.device_public {
            return Err(HandshakeFailure::new(
                ProblemKind::DeviceKeyMismatch,
                "key-mismatch",
                "this device id is registered with a different device key; keys never change silently",
            ));
        }
        let user = self
            .store
            .user(&device.user_id)
            .await
            .map_err(|e| HandshakeFailure::from_store(&e))?
            .ok_or_else(|| {
                HandshakeFailure::new(
                    ProblemKind::InternalError,
                    "storage",
                    "device owner missing",
                )
            })?;
        check_hints(
            &user,
            hinted_id,
            hinted_handle,
            "this device belongs to another account",
        )?;
        if let Some(cert) = &checked.certificate
            && cert.data.user_id != user.user_id
        {
            return Err(HandshakeFailure::new(
                ProblemKind::CertificateInvalid,
                "certificate",
                "certificate was issued for another account",
            ));
        }
        let (current, issued) =
            self.certificates(checked.certificate.as_ref(), &user.user_id, checked, now)?;
        Ok(Resolved {
            user,
            pending: None,
            issued,
            current,
        })
    }

    async fn register_unknown(
        &self,
        checked: &CheckedHello,
        hinted_id: Option<&str>,
        hinted_handle: Option<&str>,
        now: i64,
    ) -> Result<Resolved, HandshakeFailure> {
        let hello = &checked.hello;
        // A certificate from our CA is the only proof of belonging to an account.
        let (target, user, limit) = if let Some(cert) = &checked.certificate {
            let user = self
                .store
                .user(&cert.data.user_id)
                .await
                .map_err(|e| HandshakeFailure::from_store(&e))?
                .ok_or_else(|| {
                    HandshakeFailure::new(
                        ProblemKind::CertificateInvalid,
                        "certificate",
                        "certificate names an unknown account",
                    )
                })?;
            check_hints(
                &user,
                hinted_id,
                hinted_handle,
                "user hints disagree with the certificate",
            )?;
            (
                UserToCreate::Existing(user.user_id.clone()),
                user,
                self.device_limit(),
            )
        } else {
            if let Some(id) = hinted_id {
                let exists = self
                    .store
                    .user(id)
                    .await
                    .map_err(|e| HandshakeFailure::from_store(&e))?
                    .is_some();
                return Err(HandshakeFailure::new(
                    ProblemKind::AccountProofRequired,
                    "user-proof",
                    if exists {
                        "attaching a device to an existing account needs a device certificate of that account; pair this device"
                    } else {
                        "unknown user id; omit it to create a new account"
                    },
                ));
            }
            if let Some(handle) = hinted_handle {
                if !valid_handle(handle) {
                    return Err(HandshakeFailure::invalid(format!(
                        "handle must be 1..={MAX_HANDLE_LEN} characters of [A-Za-z0-9-_.]"
                    )));
                }
                if self
                    .store
                    .user_by_handle(handle)
                    .await
                    .map_err(|e| HandshakeFailure::from_store(&e))?
                    .is_some()
                {
                    return Err(HandshakeFailure::new(
                        ProblemKind::AccountProofRequired,
                        "handle-taken",
                        format!(
                            "handle {handle:?} belongs to an existing account; pair this device from one of its devices"
                        ),
                    ));
                }
            }
            let hint = hello.user.as_ref();
            self.settings
                .profile
                .check_both(
                    hint.and_then(|u| u.display_name.as_deref()),
                    hint.and_then(|u| u.avatar_url.as_deref()),
                )
                .map_err(|e| self.profile_refused(&hello.device_id, &e))?;
            let user_id = random_id();
            let handle =
                hinted_handle.map_or_else(|| format!("user-{}", &user_id[..12]), str::to_owned);
            let user = UserRecord {
                user_id,
                handle,
                display_name: hint.and_then(|u| u.display_name.clone()),
                avatar_url: hint.and_then(|u| u.avatar_url.clone()),
                created_at: now,
            };
            (UserToCreate::New(user.clone()), user, self.device_limit())
        };
        // Registering without a pairing claim is automatic approval: it needs the policy on, and
        // the account under its device limit (checked again inside the registration transaction).
        if !self.settings.auto_approve {
            return Err(HandshakeFailure::new(
                ProblemKind::PairingRequired,
                "pairing-required",
                "automatic device approval is off; pair this device",
            ));
        }
        let user_id = user.user_id.clone();
        let (current, issued) =
            self.certificates(checked.certificate.as_ref(), &user_id, checked, now)?;
        let registration = active_device_registration(
            target,
            &user_id,
            &hello.device_id,
            checked.device_public,
            now,
            limit,
        );
        Ok(Resolved {
            user,
            pending: Some(registration),
            issued,
            current,
        })
    }

    /// Writes what the handshake decided: a new device's registration (with its key event, in
    /// one transaction), or a known device's profile hints.
    async fn commit(
        &self,
        resolved: &mut Resolved,
        checked: &CheckedHello,
    ) -> Result<(), HandshakeFailure> {
        match resolved.pending.take() {
            Some(registration) => {
                let device_id = registration.device.device_id.clone();
                resolved.user = self
                    .store
                    .register_device(registration)
                    .await
                    .map_err(|e| HandshakeFailure::from_store(&e))?;
                tracing::info!(scope = "device", action = "register", device = %device_id, user = %resolved.user.user_id, "device registered");
                self.ledger.record("device", || {
                    serde_json::json!({
                        "event": "register",
                        "device": device_id,
                        "user": resolved.user.user_id,
                        "via": "handshake",
                    })
                });
            }
            None => {
                resolved.user = self
                    .apply_profile_hints(resolved.user.clone(), checked)
                    .await?;
            }
        }
        Ok(())
    }

    async fn apply_profile_hints(
        &self,
        user: UserRecord,
        checked: &CheckedHello,
    ) -> Result<UserRecord, HandshakeFailure> {
        let Some(hint) = checked.hello.user.as_ref() else {
            return Ok(user);
        };
        // An over-long hint is not stored, but does not fail the handshake: deployed clients
        // send back the profile they were given, and must not be locked out by it.
        let device = &checked.hello.device_id;
        let display_name = self.bounded_hint(device, ProfileField::DisplayName, &hint.display_name);
        let avatar_url = self.bounded_hint(device, ProfileField::AvatarUrl, &hint.avatar_url);
        if display_name.is_none() && avatar_url.is_none() {
            return Ok(user);
        }
        self.store
            .update_profile(&user.user_id, display_name.clone(), avatar_url.clone())
            .await
            .map_err(|e| HandshakeFailure::from_store(&e))?;
        Ok(UserRecord {
            display_name: display_name.or(user.display_name),
            avatar_url: avatar_url.or(user.avatar_url),
            ..user
        })
    }

    /// `value` if it is within the bound of `field`; otherwise `None`, with the refusal counted
    /// and ledgered.
    fn bounded_hint(
        &self,
        device: &str,
        field: ProfileField,
        value: &Option<String>,
    ) -> Option<String> {
        match self.settings.profile.check(field, value.as_deref()) {
            Ok(()) => value.clone(),
            Err(e) => {
                self.count_profile_refusal(device, &e);
                None
            }
        }
    }

    /// Counts and ledgers a profile field over its bound.
    fn count_profile_refusal(&self, device: &str, e: &TooLong) {
        let bound = e.field.bound();
        self.metrics.bound_refusals.count(bound);
        self.ledger.record("bound", || {
            serde_json::json!({"bound": bound.name(), "device_id": device,
                               "detail": e.to_string()})
        });
    }

    /// The handshake failure for a new account's over-long profile field (counted, ledgered).
    fn profile_refused(&self, device: &str, e: &TooLong) -> HandshakeFailure {
        self.count_profile_refusal(device, e);
        HandshakeFailure::new(ProblemKind::ProfileFieldTooLong, "profile", e.to_string())
    }

    /// The most active devices an account may reach by automatic approval.
    fn device_limit(&self) -> Option<u64> {
        match self.settings.max_auto_devices_per_user {
            0 => None,
            n => Some(u64::from(n)),
        }
    }

    /// Whether another device of this user would need pairing.
    async fn pairing_required_for(&self, user: &UserRecord) -> bool {
        if !self.settings.auto_approve {
            return true;
        }
        match self.settings.max_auto_devices_per_user {
            0 => false,
            max => self
                .store
                .count_active_devices(&user.user_id)
                .await
                .is_ok_and(|n| n >= u64::from(max)),
        }
    }
}

/// Refuses user hints (`user.id`, `user.handle`) that name another account than `user`.
fn check_hints(
    user: &UserRecord,
    hinted_id: Option<&str>,
    hinted_handle: Option<&str>,
    detail: &'static str,
) -> Result<(), HandshakeFailure> {
    if hinted_id.is_some_and(|id| id != user.user_id)
        || hinted_handle.is_some_and(|h| h != user.handle)
    {
        return Err(HandshakeFailure::new(
            ProblemKind::AccountProofRequired,
            "user-mismatch",
            detail,
        ));
    }
    Ok(())
}

/// Whether `key` is an Ed25519 point of small order (for which a Schnorr proof verifies
/// without knowing any private key). A string that is no point at all is left to the proof
/// check, which refuses it.
fn is_small_order(key: &[u8; 32]) -> bool {
    commucat_keys::VerifyingKey::from_bytes(key).is_ok_and(|k| k.is_weak())
}

fn static_mismatch() -> HandshakeFailure {
    HandshakeFailure::new(
        ProblemKind::StaticKeyMismatch,
        "static-mismatch",
        "the Noise static key in the handshake is not HELLO's client_static",
    )
}

/// Sends the failure's ERROR frame when possible and logs it; whether the ERROR was sent.
pub async fn report_failure<S: ByteStream>(
    conn: &mut Connection<S>,
    failure: &HandshakeFailure,
    remote: &str,
) -> bool {
    tracing::warn!(
        scope = "handshake",
        result = "failure",
        reason = failure.reason,
        stage = failure.stage.label(),
        title = failure.kind.title(),
        remote,
        device = failure.device_id.as_deref().unwrap_or(""),
        detail = %failure.detail,
        "handshake failed"
    );
    if !failure.can_reply {
        return false;
    }
    match conn.send_problem(&failure.problem()).await {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "could not deliver handshake ERROR");
            false
        }
    }
}
