//! The server side of the handshake.
//!
//! Validation happens in the order that costs least first: JSON shape, version, pattern, hex
//! fields, the Schnorr proof (binding `device_public`, `client_static`, `device_id` and the
//! domain), the Noise message under each active server key, then the device registry. Nothing
//! is written until the Noise handshake has proved the client's static key, and the final ACK
//! is sent only after the session record is stored, so the session id works as a REST bearer
//! token the moment the client sees it.
//!
//! Drive a [`ServerHandshake`]: call [`ServerHandshake::start`], then perform each [`Step`]
//! and feed its outcome back with [`ServerHandshake::handle`] until the step is
//! [`Step::Established`] or [`Step::Failed`]. After every step, drain
//! [`ServerHandshake::take_notices`] for what to count and record.

mod hello;
mod machine;
mod registry;

use std::sync::Arc;

use commucat_ccp::Frame;
use commucat_ccp::control::{HandshakeAck, ServerAuth};
use commucat_keys::{DeviceKeyPair, HandshakePattern, Transport, encode_hex};
use zeroize::Zeroizing;

pub use machine::ServerHandshake;

use crate::{HandshakeError, LinkFailure, StoreFailure};

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

/// A bounded profile field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileField {
    /// `display_name`.
    DisplayName,
    /// `avatar_url`.
    AvatarUrl,
}

/// The deployment's rules for profile fields (lengths where set, and what may be sent).
pub trait ProfileRules {
    /// Checks one value of `field`.
    ///
    /// # Errors
    /// A human-readable refusal if `value` exceeds the bound.
    fn check(&self, field: ProfileField, value: Option<&str>) -> Result<(), String>;

    /// The profile as it may be sent in handshake messages.
    fn for_wire(&self, user: User) -> User;
}

/// Everything the server side needs from configuration, borrowed for one handshake.
#[derive(Clone, Copy)]
pub struct ServerConfig<'a> {
    /// Server domain, bound into every Schnorr proof.
    pub domain: &'a str,
    /// Noise prologue.
    pub prologue: &'a [u8],
    /// Device CA that issues device certificates.
    pub device_ca: &'a DeviceKeyPair,
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
    /// Profile field rules.
    pub profile: &'a (dyn ProfileRules + Sync),
    /// Device id and handle rules.
    pub identity: IdentityRules,
    /// Accept `pq-hybrid` (with `noise-transport` and a valid `pq_bundle`).
    pub pq_hybrid: bool,
    /// Accept `adaptive-obf` (with `noise-transport`).
    pub adaptive_obf: bool,
}

/// The registry's rules for device ids and handles.
#[derive(Debug, Clone, Copy)]
pub struct IdentityRules {
    /// Whether a `device_id` is acceptable.
    pub valid_device_id: fn(&str) -> bool,
    /// Whether an account handle is acceptable.
    pub valid_handle: fn(&str) -> bool,
    /// Longest `device_id` (for the refusal's detail).
    pub max_device_id_len: usize,
    /// Longest handle (for the refusal's detail).
    pub max_handle_len: usize,
}

impl std::fmt::Debug for ServerConfig<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("domain", &self.domain)
            .field("auto_approve", &self.auto_approve)
            .field("max_auto_devices_per_user", &self.max_auto_devices_per_user)
            .field("pq_hybrid", &self.pq_hybrid)
            .field("adaptive_obf", &self.adaptive_obf)
            .finish_non_exhaustive()
    }
}

/// An account, as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Opaque id.
    pub user_id: String,
    /// Unique public name.
    pub handle: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// A registered device, as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Owner.
    pub user_id: String,
    /// Ed25519 device key.
    pub public_key: [u8; 32],
    /// Whether the device may connect (not revoked).
    pub active: bool,
}

/// A new device's registration, committed once the handshake has proved the client's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The account to create with the device; `None`: the existing account `user_id`.
    pub new_user: Option<User>,
    /// The owner.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// Its Ed25519 key.
    pub device_public: [u8; 32],
    /// Registration time, Unix seconds.
    pub now: i64,
    /// Bound on the owner's active devices (`None`: unlimited).
    pub max_active_devices: Option<u64>,
}

/// The session record to store before the ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The session id sent to the client (store its hash, not the token).
    pub session_id: String,
    /// The device.
    pub device_id: String,
    /// Its owner.
    pub user_id: String,
    /// The device key the session was authenticated with.
    pub device_public: [u8; 32],
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// What the machine needs to know or have written; answer with the matching [`Answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The server Noise keys in force, and the time: [`Answer::NoiseKeys`].
    NoiseKeys,
    /// Whether this IK message 1 is new (remember it): [`Answer::Fresh`].
    Replay {
        /// The message; its first 32 bytes are the client's ephemeral key.
        message_one: Vec<u8>,
    },
    /// The device's registration: [`Answer::Device`].
    Device {
        /// Device id.
        device_id: String,
    },
    /// An account by id: [`Answer::User`].
    User {
        /// User id.
        user_id: String,
    },
    /// An account by handle: [`Answer::User`].
    UserByHandle {
        /// Handle.
        handle: String,
    },
    /// How many active devices the account has: [`Answer::Count`].
    ActiveDevices {
        /// User id.
        user_id: String,
    },
    /// Commit a new device (and account) atomically: [`Answer::Registered`].
    Register(Box<Registration>),
    /// Store profile hints of a known device's owner: [`Answer::Done`].
    UpdateProfile {
        /// User id.
        user_id: String,
        /// New display name, if any.
        display_name: Option<String>,
        /// New avatar URL, if any.
        avatar_url: Option<String>,
    },
    /// Store the session: [`Answer::Done`].
    CreateSession(Box<NewSession>),
}

/// The driver's answer to a [`Query`].
#[derive(Debug)]
pub enum Answer {
    /// The server Noise keys in force, newest first, and the time (Unix seconds).
    NoiseKeys {
        /// Keys.
        keys: Arc<Vec<NoiseKey>>,
        /// Now.
        now: i64,
    },
    /// Whether the IK message 1 was new.
    Fresh(bool),
    /// The device, if registered.
    Device(Result<Option<Device>, StoreFailure>),
    /// The account, if any.
    User(Result<Option<User>, StoreFailure>),
    /// A count.
    Count(Result<u64, StoreFailure>),
    /// The owner after registration.
    Registered(Result<User, StoreFailure>),
    /// A write done.
    Done(Result<(), StoreFailure>),
}

/// A frame to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// AUTH with Noise message 2 (channel 0).
    Auth(Box<ServerAuth>),
    /// The final ACK (channel 0).
    Ack(Box<HandshakeAck>),
}

impl Outgoing {
    /// The frame type.
    #[must_use]
    pub const fn frame_type(&self) -> commucat_ccp::FrameType {
        match self {
            Self::Auth(_) => commucat_ccp::FrameType::Auth,
            Self::Ack(_) => commucat_ccp::FrameType::Ack,
        }
    }

    /// The frame with `sequence`, as a connection would send it.
    ///
    /// # Errors
    /// The codec's refusal (size limits).
    pub fn to_frame(&self, sequence: u32) -> Result<Frame, commucat_ccp::CodecError> {
        match self {
            Self::Auth(auth) => Frame::control(self.frame_type(), 0, sequence, auth),
            Self::Ack(ack) => Frame::control(self.frame_type(), 0, sequence, ack),
        }
    }
}

/// What happened since the last step.
#[derive(Debug)]
pub enum Input {
    /// A frame arrived.
    Frame(Frame),
    /// The client closed the stream.
    Closed,
    /// The link failed.
    Link(LinkFailure),
    /// The last [`Step::Send`] was written.
    Sent,
    /// The answer to the last [`Step::Query`].
    Answer(Answer),
}

/// What to do next.
#[derive(Debug)]
pub enum Step {
    /// Receive the next frame: [`Input::Frame`], [`Input::Closed`] or [`Input::Link`].
    Recv,
    /// Send this frame: [`Input::Sent`] or [`Input::Link`].
    Send(Outgoing),
    /// Look up or write this: [`Input::Answer`].
    Query(Query),
    /// The handshake is complete.
    Established(Box<Established>),
    /// The handshake failed: send [`HandshakeError::problem`] if it can still be delivered,
    /// then close.
    Failed(HandshakeError),
}

/// Side effects to count and record (metrics, ledger, logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A profile field over its bound was refused (and, for a known device, not stored).
    ProfileRefused {
        /// The field.
        field: ProfileField,
        /// The device.
        device_id: String,
        /// The refusal.
        detail: String,
    },
    /// A new device was registered.
    Registered {
        /// The device.
        device_id: String,
        /// Its owner.
        user_id: String,
    },
}

/// What a successful handshake established.
#[derive(Debug)]
pub struct Established {
    /// Session id (REST bearer token).
    pub session_id: String,
    /// The device.
    pub device_id: String,
    /// Its owner (profile bounded for the wire).
    pub user: User,
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
    /// Noise transport state, when `noise-transport` was accepted: frames after the ACK
    /// travel as transport records (keyed from the hybrid material when `pq-hybrid` was
    /// accepted).
    pub transport: Option<Transport>,
    /// Whether the session is a `pq-hybrid` one (ML-KEM exchange done, transcript signature
    /// verified, records keyed from the hybrid material).
    pub pq_hybrid: bool,
    /// The `adaptive-obf` root, when that capability was accepted: frames after the ACK are
    /// wrapped (`commucat_link::obf::Obfuscator` with this root).
    pub obf_root: Option<crate::ObfRoot>,
}
