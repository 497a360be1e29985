//! Why a handshake failed: one typed reason, mapped onto the ERROR frame's problem kind and the
//! short label logs and the ledger carry, with the stage and the device attached once.

use commucat_ccp::{Problem, ProblemKind};

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

/// Why a handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The client closed the stream before the next handshake frame.
    ClientClosed,
    /// The client's bytes are not a frame (the codec's problem kind).
    Decode(ProblemKind),
    /// Reading or writing the stream failed.
    Read,
    /// The connection ran out of sequence numbers.
    Sequence,
    /// A frame or payload could not be encoded.
    Codec,
    /// A frame of another type than the stage expects.
    UnexpectedFrame,
    /// A malformed control payload or field.
    Invalid,
    /// A Noise pattern other than XK or IK.
    UnsupportedPattern,
    /// The HELLO's Schnorr proof is missing, malformed or does not verify.
    InvalidProof,
    /// No common protocol version.
    Protocol,
    /// A Noise message does not decrypt or cannot be written.
    Crypto,
    /// A local cryptographic operation failed (Noise setup, certificate signing).
    CryptoInternal,
    /// The Noise static key is not HELLO's `client_static`.
    StaticMismatch,
    /// An IK message 1 accepted before.
    Replay,
    /// The presented certificate is not acceptable.
    Certificate,
    /// The device is revoked.
    Revoked,
    /// The device id is registered with another key.
    KeyMismatch,
    /// The device needs pairing (approval off or device limit reached).
    PairingRequired,
    /// The registry refused a conflicting write.
    Conflict,
    /// Attaching to an existing account needs that account's certificate.
    UserProof,
    /// The hinted handle belongs to an existing account.
    HandleTaken,
    /// The user hints name another account.
    UserMismatch,
    /// A new account's profile field is over its bound.
    Profile,
    /// The device registry is unreachable.
    StorageUnavailable,
    /// The device registry failed otherwise.
    Storage,
    /// The handshake did not finish in time.
    Timeout,
    /// `pq-hybrid` was asked for with a missing or malformed `pq_bundle`.
    PqBundle,
    /// The `pq-hybrid` transcript signature is missing or does not verify.
    PqSignature,
}

impl FailReason {
    /// The problem kind of the ERROR frame.
    #[must_use]
    pub const fn kind(self) -> ProblemKind {
        match self {
            Self::ClientClosed => ProblemKind::TruncatedFrame,
            Self::Decode(kind) => kind,
            Self::Read | Self::Codec | Self::CryptoInternal | Self::Storage => {
                ProblemKind::InternalError
            }
            Self::Sequence => ProblemKind::SequenceExhausted,
            Self::UnexpectedFrame => ProblemKind::UnexpectedFrame,
            Self::Invalid => ProblemKind::InvalidControlPayload,
            Self::UnsupportedPattern => ProblemKind::UnsupportedPattern,
            Self::InvalidProof => ProblemKind::InvalidProof,
            Self::Protocol => ProblemKind::ProtocolVersionMismatch,
            Self::Crypto => ProblemKind::HandshakeFailed,
            Self::StaticMismatch => ProblemKind::StaticKeyMismatch,
            Self::Replay => ProblemKind::HandshakeReplayed,
            Self::Certificate => ProblemKind::CertificateInvalid,
            Self::Revoked => ProblemKind::DeviceRevoked,
            Self::KeyMismatch => ProblemKind::DeviceKeyMismatch,
            Self::PairingRequired => ProblemKind::PairingRequired,
            Self::Conflict | Self::UserProof | Self::HandleTaken | Self::UserMismatch => {
                ProblemKind::AccountProofRequired
            }
            Self::Profile => ProblemKind::ProfileFieldTooLong,
            Self::StorageUnavailable => ProblemKind::ServiceUnavailable,
            Self::Timeout => ProblemKind::HandshakeTimeout,
            Self::PqBundle => ProblemKind::PqBundleInvalid,
            Self::PqSignature => ProblemKind::PqSignatureInvalid,
        }
    }

    /// Short machine label for logs and the ledger (`"invalid"`, `"crypto"`, `"storage"` …).
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::ClientClosed => "client-closed",
            Self::Decode(_) => "decode",
            Self::Read => "read",
            Self::Sequence => "sequence",
            Self::Codec => "codec",
            Self::UnexpectedFrame
            | Self::Invalid
            | Self::UnsupportedPattern
            | Self::InvalidProof => "invalid",
            Self::Protocol => "protocol",
            Self::Crypto | Self::CryptoInternal => "crypto",
            Self::StaticMismatch => "static-mismatch",
            Self::Replay => "replay",
            Self::Certificate => "certificate",
            Self::Revoked => "revoked",
            Self::KeyMismatch => "key-mismatch",
            Self::PairingRequired => "pairing-required",
            Self::Conflict => "conflict",
            Self::UserProof => "user-proof",
            Self::HandleTaken => "handle-taken",
            Self::UserMismatch => "user-mismatch",
            Self::Profile => "profile",
            Self::StorageUnavailable | Self::Storage => "storage",
            Self::Timeout => "timeout",
            Self::PqBundle => "pq-bundle",
            Self::PqSignature => "pq-signature",
        }
    }

    /// Whether the stream can still carry an ERROR frame.
    #[must_use]
    pub const fn can_reply(self) -> bool {
        !matches!(self, Self::ClientClosed | Self::Read)
    }
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl PartialEq<&str> for FailReason {
    fn eq(&self, other: &&str) -> bool {
        self.label() == *other
    }
}

/// A failed handshake: why, a human-readable detail (sent to the client; never secrets), the
/// stage reached and the device, once known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeError {
    /// Why.
    pub reason: FailReason,
    /// Human-readable detail.
    pub detail: String,
    /// Stage reached.
    pub stage: Stage,
    /// Device id, when known.
    pub device_id: Option<String>,
}

impl HandshakeError {
    /// A failure at [`Stage::Hello`] of no known device.
    #[must_use]
    pub fn new(reason: FailReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            stage: Stage::Hello,
            device_id: None,
        }
    }

    /// A malformed payload or field.
    #[must_use]
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(FailReason::Invalid, detail)
    }

    /// The handshake did not finish within `timeout`.
    #[must_use]
    pub fn timeout(timeout: std::time::Duration) -> Self {
        Self::new(
            FailReason::Timeout,
            format!("handshake not finished within {} ms", timeout.as_millis()),
        )
    }

    /// A failure of the link under the handshake.
    #[must_use]
    pub fn from_link(failure: LinkFailure) -> Self {
        match failure {
            LinkFailure::Decode { kind, detail } => Self::new(FailReason::Decode(kind), detail),
            LinkFailure::Noise(detail) => Self::new(FailReason::Crypto, detail),
            LinkFailure::Io(detail) => Self::new(FailReason::Read, detail),
            LinkFailure::SequenceExhausted => {
                Self::new(FailReason::Sequence, "sequence numbers exhausted")
            }
            LinkFailure::Codec(detail) => Self::new(FailReason::Codec, detail),
        }
    }

    /// A failure of the device registry.
    #[must_use]
    pub fn from_store(failure: StoreFailure) -> Self {
        match failure {
            StoreFailure::DeviceLimit { limit } => Self::new(
                FailReason::PairingRequired,
                format!(
                    "this account already has {limit} devices; pair this device from one of them"
                ),
            ),
            StoreFailure::DeviceRevoked => Self::new(
                FailReason::Revoked,
                "this device has been revoked; pair it again",
            ),
            StoreFailure::DeviceKeyChanged => Self::new(
                FailReason::KeyMismatch,
                "this device's key was replaced during the handshake; connect with the new key",
            ),
            StoreFailure::Conflict(what) => Self::new(FailReason::Conflict, what),
            StoreFailure::Unavailable => Self::new(
                FailReason::StorageUnavailable,
                "device registry unavailable; retry shortly",
            ),
            StoreFailure::Other(what) => {
                Self::new(FailReason::Storage, format!("storage failure: {what}"))
            }
        }
    }

    /// This failure, reached at `stage`.
    #[must_use]
    pub fn at(mut self, stage: Stage) -> Self {
        self.stage = stage;
        self
    }

    /// This failure, of device `device_id`.
    #[must_use]
    pub fn of_device(mut self, device_id: Option<&str>) -> Self {
        self.device_id = device_id.map(str::to_owned);
        self
    }

    /// The ERROR frame's problem kind.
    #[must_use]
    pub const fn kind(&self) -> ProblemKind {
        self.reason.kind()
    }

    /// Whether an ERROR frame can still be delivered.
    #[must_use]
    pub const fn can_reply(&self) -> bool {
        self.reason.can_reply()
    }

    /// The ERROR payload for this failure.
    #[must_use]
    pub fn problem(&self) -> Problem {
        let tag = if matches!(self.reason, FailReason::Decode(_)) {
            "decode"
        } else {
            "handshake"
        };
        Problem::new(self.kind())
            .with_detail(self.detail.clone())
            .with_error_tag(tag)
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "handshake failed at {} ({}): {}",
            self.stage.label(),
            self.reason,
            self.detail
        )
    }
}

impl std::error::Error for HandshakeError {}

/// A failure of the link under a handshake, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkFailure {
    /// The peer's bytes are not a frame: the codec's problem kind and message.
    Decode {
        /// Problem kind.
        kind: ProblemKind,
        /// Codec message.
        detail: String,
    },
    /// A Noise transport record does not decrypt.
    Noise(String),
    /// Reading or writing failed.
    Io(String),
    /// No sequence number left.
    SequenceExhausted,
    /// A frame could not be encoded.
    Codec(String),
}

/// A failure of the device registry, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFailure {
    /// The account is at its device limit.
    DeviceLimit {
        /// The limit.
        limit: u64,
    },
    /// The device was revoked meanwhile.
    DeviceRevoked,
    /// The device's key was replaced meanwhile.
    DeviceKeyChanged,
    /// A conflicting write.
    Conflict(String),
    /// The registry is unreachable.
    Unavailable,
    /// Any other failure.
    Other(String),
}
