//! Codec errors and the protocol's diagnostic titles.

use std::fmt;

/// Which identifier field was out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identifier {
    /// The frame's `channel_id`.
    Channel,
    /// The frame's `sequence`.
    Sequence,
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Identifier::Channel => "channel_id",
            Identifier::Sequence => "sequence",
        })
    }
}

/// Which part of a frame ran past the bytes its length prefix declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// The length prefix declared zero bytes: there is not even a type byte.
    ZeroLength,
    /// `channel_id`, `sequence` or `payload_len` runs past the end of the frame.
    Header,
    /// `payload_len` claims more bytes than the frame has left.
    Payload {
        /// Declared payload length.
        declared: u64,
        /// Bytes the frame has after its header.
        available: usize,
    },
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Truncation::ZeroLength => f.write_str("frame length is zero"),
            Truncation::Header => f.write_str("frame header runs past the declared frame length"),
            Truncation::Payload {
                declared,
                available,
            } => write!(
                f,
                "payload length {declared} exceeds the {available} bytes left in the frame"
            ),
        }
    }
}

/// A frame that cannot be encoded or decoded. Every variant is terminal for the stream that
/// produced it: more bytes cannot repair it. "Need more bytes" is not an error; decoders return
/// `Ok(None)` for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The type byte is not one of the 19 assigned codes.
    #[error("unknown frame type 0x{0:02x}")]
    InvalidFrameType(u8),
    /// The frame length prefix exceeds the frame limit.
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Declared or computed frame length.
        len: u64,
        /// Limit in force.
        max: usize,
    },
    /// The payload length exceeds the frame limit.
    #[error("payload length {len} exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Declared payload length.
        len: u64,
        /// Limit in force.
        max: usize,
    },
    /// A control payload exceeds the 256 KiB JSON limit.
    #[error("control payload of {len} bytes exceeds the limit of {max} bytes")]
    ControlPayloadTooLarge {
        /// Payload length.
        len: u64,
        /// Limit in force.
        max: usize,
    },
    /// `channel_id` or `sequence` does not fit in 32 bits.
    #[error("{field} {value} exceeds {max}", max = u32::MAX)]
    IdentifierOutOfRange {
        /// The offending field.
        field: Identifier,
        /// Its value.
        value: u64,
    },
    /// A varint is longer than 10 bytes or wider than 64 bits.
    #[error("varint longer than 10 bytes or wider than 64 bits")]
    VarintOverflow,
    /// The frame ends before its header or payload does.
    #[error("truncated frame: {0}")]
    TruncatedFrame(Truncation),
    /// A control payload is not valid UTF-8 JSON, or does not have the shape its type requires.
    #[error("invalid control payload: {0}")]
    InvalidControlPayload(String),
}

impl CodecError {
    /// The diagnostic this error is reported as.
    #[must_use]
    pub const fn kind(&self) -> ProblemKind {
        match self {
            CodecError::InvalidFrameType(_) => ProblemKind::InvalidFrameType,
            CodecError::FrameTooLarge { .. } => ProblemKind::FrameTooLarge,
            CodecError::PayloadTooLarge { .. } => ProblemKind::PayloadTooLarge,
            CodecError::ControlPayloadTooLarge { .. } => ProblemKind::ControlPayloadTooLarge,
            CodecError::IdentifierOutOfRange { .. } => ProblemKind::IdentifierOutOfRange,
            CodecError::VarintOverflow => ProblemKind::VarintOverflow,
            CodecError::TruncatedFrame(_) => ProblemKind::TruncatedFrame,
            CodecError::InvalidControlPayload(_) => ProblemKind::InvalidControlPayload,
        }
    }
}

macro_rules! problem_kinds {
    ($( $(#[$doc:meta])* $variant:ident => $title:literal, $status:literal, $slug:literal; )+) => {
        /// A diagnostic: the `title` of an RFC 9457 ERROR payload, its status code and its `type`
        /// URI. The first ten are the specification's "Codec Diagnostics" table; the rest are
        /// titles the server adds for handshake and session failures.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ProblemKind {
            $( $(#[$doc])* $variant, )+
        }

        impl ProblemKind {
            /// Every diagnostic.
            pub const ALL: &'static [ProblemKind] = &[$(ProblemKind::$variant),+];

            /// The exact `title` string.
            #[must_use]
            pub const fn title(self) -> &'static str {
                match self { $( ProblemKind::$variant => $title, )+ }
            }

            /// The HTTP-style status code carried in `status`.
            #[must_use]
            pub const fn status(self) -> u16 {
                match self { $( ProblemKind::$variant => $status, )+ }
            }

            /// The `type` URI identifying the problem.
            #[must_use]
            pub const fn type_uri(self) -> &'static str {
                match self { $( ProblemKind::$variant => concat!("urn:commucat:problem:", $slug), )+ }
            }

            /// The diagnostic whose title is `title` (exact match).
            #[must_use]
            pub fn from_title(title: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|k| k.title() == title)
            }
        }
    };
}

problem_kinds! {
    /// Unknown frame type.
    InvalidFrameType => "Invalid Frame Type", 400, "invalid-frame-type";
    /// No mutually supported protocol version.
    ProtocolVersionMismatch => "Protocol Version Mismatch", 426, "protocol-version-mismatch";
    /// Control JSON cannot be parsed or has the wrong shape.
    InvalidControlPayload => "Invalid Control Payload", 400, "invalid-control-payload";
    /// Declared frame length exceeds limits.
    FrameTooLarge => "Frame Too Large", 413, "frame-too-large";
    /// Declared payload length exceeds limits.
    PayloadTooLarge => "Payload Too Large", 413, "payload-too-large";
    /// Control payload exceeds the JSON limit.
    ControlPayloadTooLarge => "Control Payload Too Large", 413, "control-payload-too-large";
    /// Channel or sequence outside the allowed range.
    IdentifierOutOfRange => "Identifier Out Of Range", 400, "identifier-out-of-range";
    /// The device must be paired before it can connect.
    PairingRequired => "PairingRequired", 403, "pairing-required";
    /// Varint exceeds 64-bit width.
    VarintOverflow => "Varint Overflow", 400, "varint-overflow";
    /// Buffer underrun before payload end.
    TruncatedFrame => "Truncated Frame", 400, "truncated-frame";
    // ---- Titles the server adds for the handshake and the session (not in the codec table).
    /// A frame arrived that the current stage does not accept (e.g. MSG before the handshake).
    UnexpectedFrame => "Unexpected Frame", 400, "unexpected-frame";
    /// HELLO names a Noise pattern the server does not offer.
    UnsupportedPattern => "Unsupported Handshake Pattern", 400, "unsupported-pattern";
    /// The Noise handshake failed (message unreadable under every server key, or malformed).
    HandshakeFailed => "Handshake Failed", 403, "handshake-failed";
    /// The Schnorr proof does not verify for this device, key and domain.
    InvalidProof => "Invalid Handshake Proof", 401, "invalid-proof";
    /// The static key revealed in the Noise handshake is not HELLO's `client_static`.
    StaticKeyMismatch => "Static Key Mismatch", 401, "static-key-mismatch";
    /// A known device presented a different device key.
    DeviceKeyMismatch => "Device Key Mismatch", 409, "device-key-mismatch";
    /// The device has been revoked.
    DeviceRevoked => "Device Revoked", 403, "device-revoked";
    /// The presented device certificate is expired, not yet valid, foreign or not bound to the device.
    CertificateInvalid => "Certificate Invalid", 401, "certificate-invalid";
    /// HELLO names an existing account (id or handle) without a certificate proving membership.
    AccountProofRequired => "Account Proof Required", 403, "account-proof-required";
    /// The handshake did not finish in time.
    HandshakeTimeout => "Handshake Timeout", 408, "handshake-timeout";
    /// The sender is not a member of the channel it addressed.
    NotChannelMember => "Not A Channel Member", 403, "not-channel-member";
    /// The group named by the frame does not exist.
    UnknownGroup => "Unknown Group", 404, "unknown-group";
    /// A group with the requested id already exists.
    GroupExists => "Group Exists", 409, "group-exists";
    /// The sender is not on the group's roster (JOIN with `group_id`, GROUP_INVITE).
    NotGroupMember => "Not A Group Member", 403, "not-group-member";
    /// The sender's group role does not allow the operation (only owners and admins invite).
    GroupPermissionDenied => "Group Permission Denied", 403, "group-permission-denied";
    /// The call named by the frame (or, for media, any call on the channel) does not exist.
    UnknownCall => "Unknown Call", 404, "unknown-call";
    /// A call with the offered `call_id` already exists.
    CallExists => "Call Exists", 409, "call-exists";
    /// The sender is not a participant of the call it addressed.
    NotCallParticipant => "Not A Call Participant", 403, "not-call-participant";
    /// A recipient's offline queue is full: the frame was not stored for it.
    OfflineQueueFull => "Offline Queue Full", 507, "offline-queue-full";
    /// The session's mailbox overflowed because the client does not read fast enough.
    SlowConsumer => "Slow Consumer", 429, "slow-consumer";
    /// Sequence numbers are exhausted (`u32::MAX`): reconnect to reset them.
    SequenceExhausted => "Sequence Exhausted", 409, "sequence-exhausted";
    /// The channel already has as many members as `bounds.channel_members` allows.
    ChannelFull => "Channel Full", 409, "channel-full";
    /// The device is already a member of `bounds.channels_per_device` channels.
    ChannelLimitReached => "Channel Limit Reached", 429, "channel-limit-reached";
    /// The device already owns `bounds.groups_per_device` groups.
    GroupLimitReached => "Group Limit Reached", 429, "group-limit-reached";
    /// A JOIN declared more member ids than `bounds.declared_members_per_join`.
    MemberListTooLong => "Member List Too Long", 413, "member-list-too-long";
    /// A member, recipient or participant id is not a registered device of this server.
    UnknownDevice => "Unknown Device", 404, "unknown-device";
    /// The session already takes part in `bounds.calls_per_session` calls.
    CallLimitReached => "Call Limit Reached", 429, "call-limit-reached";
    /// A sender field in a control payload names another device than the sending one.
    SenderMismatch => "Sender Mismatch", 403, "sender-mismatch";
    /// A recipient's or the sender's offline byte quota (or the server's total) is used up.
    OfflineQuotaExceeded => "Offline Quota Exceeded", 507, "offline-quota-exceeded";
    /// A profile field is longer than its bound.
    ProfileFieldTooLong => "Profile Field Too Long", 413, "profile-field-too-long";
    /// IK message 1 opens with an ephemeral key the server has already accepted: a replayed HELLO.
    HandshakeReplayed => "Handshake Replayed", 403, "handshake-replayed";
    /// HELLO asks for `pq-hybrid` with a missing or malformed `pq_bundle` (sizes, encoding, keys).
    PqBundleInvalid => "Invalid PQ Bundle", 400, "invalid-pq-bundle";
    /// The client's ML-DSA-65 transcript signature of a `pq-hybrid` handshake is missing or does not verify.
    PqSignatureInvalid => "Invalid PQ Signature", 401, "invalid-pq-signature";
    /// A `pq-hybrid` session's ratchet step is due and every one-time key its HELLO announced is spent: reconnect with fresh ones.
    PqOneTimeKeysExhausted => "PQ One-Time Keys Exhausted", 409, "pq-one-time-keys-exhausted";
    /// Pairing claims refused after too many wrong guesses (per code, account or address).
    PairingAttemptsExceeded => "Too Many Pairing Attempts", 429, "pairing-attempts-exceeded";
    /// A storage backend the request needs is unavailable.
    ServiceUnavailable => "Service Unavailable", 503, "service-unavailable";
    /// An unexpected server-side failure.
    InternalError => "Internal Error", 500, "internal-error";
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}
