//! The client side of the device handshake, over any byte stream.

use commucat_ccp::FrameType;
use commucat_ccp::control::UserInfo;
use commucat_handshake::client::{
    ClientFailure, ClientHandshake, ClientParams, Input, Outgoing, Step,
};
use commucat_keys::{DEFAULT_PROLOGUE, DeviceCertificate, DeviceKeyPair, HandshakePattern};
use commucat_link::obf::{ObfPolicy, Obfuscator, Role};
use commucat_link::{ByteStream, Connection};
use std::sync::Arc;

use crate::ClientError;

/// A device's post-quantum keys.
pub use commucat_handshake::pq::DeviceKeys as PqDeviceKeys;

/// One-time ML-KEM-768 keys a device announces in its `pq_bundle`.
pub const PQ_ONE_TIME_KEYS: usize = 4;

/// What the handshake established.
pub use commucat_handshake::client::SessionInfo;
/// Capabilities: `noise-transport` requests Noise transport records after the handshake;
/// `delivery-receipts` promises ACKs of received frames, so the server deletes replayed
/// offline envelopes only once they are ACKed (see [`crate::Session::acknowledge`]).
pub use commucat_handshake::{
    CAP_ADAPTIVE_OBF, CAP_DELIVERY_RECEIPTS, CAP_FEC, CAP_NOISE_TRANSPORT, CAP_PQ_HYBRID,
};

/// Who the device is.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    /// Device id.
    pub device_id: String,
    /// Device key (Ed25519; its seed doubles as the Noise X25519 static key).
    pub keys: DeviceKeyPair,
    /// Certificate from an earlier connection or a pairing claim.
    pub certificate: Option<DeviceCertificate>,
    /// Profile hints: `handle` to create an account, `display_name`, `avatar_url`.
    pub user: Option<UserInfo>,
    /// Post-quantum keys (ML-KEM-768, ML-DSA-65, one-time keys) for `pq-hybrid` sessions.
    pub pq: Option<Arc<PqDeviceKeys>>,
}

impl DeviceIdentity {
    /// A new device with a random key.
    #[must_use]
    pub fn generate(device_id: impl Into<String>) -> Self {
        Self {
            device_id: device_id.into(),
            keys: DeviceKeyPair::generate(),
            certificate: None,
            user: None,
            pq: None,
        }
    }

    /// Gives the device fresh post-quantum keys (with [`PQ_ONE_TIME_KEYS`] one-time keys),
    /// needed for [`HandshakeOptions::with_pq_hybrid`]; [`DeviceIdentity::save`] stores them.
    ///
    /// # Errors
    /// [`ClientError::Config`] if key generation fails.
    pub fn with_pq_keys(mut self) -> Result<Self, ClientError> {
        let keys = PqDeviceKeys::generate(PQ_ONE_TIME_KEYS).map_err(ClientError::Config)?;
        self.pq = Some(Arc::new(keys));
        Ok(self)
    }

    /// Sets the handle hint (creates an account with that handle on first connect).
    #[must_use]
    pub fn with_handle(mut self, handle: impl Into<String>) -> Self {
        let mut user = self.user.take().unwrap_or_default();
        user.handle = Some(handle.into());
        self.user = Some(user);
        self
    }
}

/// What the client knows about the server in advance.
#[derive(Debug, Clone)]
pub struct ServerParams {
    /// Server domain (bound into the handshake proof).
    pub domain: String,
    /// Server Noise static public key (pinned, from `/api/server-info`).
    pub server_static: [u8; 32],
    /// Noise prologue.
    pub prologue: Vec<u8>,
}

impl ServerParams {
    /// Parameters with the default prologue.
    #[must_use]
    pub fn new(domain: impl Into<String>, server_static: [u8; 32]) -> Self {
        Self {
            domain: domain.into(),
            server_static,
            prologue: DEFAULT_PROLOGUE.to_vec(),
        }
    }
}

/// Handshake knobs.
#[derive(Debug, Clone)]
pub struct HandshakeOptions {
    /// Noise pattern.
    pub pattern: HandshakePattern,
    /// Capabilities to request.
    pub capabilities: Vec<String>,
    /// Versions announced as `supported_versions`.
    pub supported_versions: Vec<u64>,
}

impl Default for HandshakeOptions {
    fn default() -> Self {
        Self {
            pattern: HandshakePattern::Xk,
            capabilities: Vec::new(),
            supported_versions: vec![u64::from(commucat_ccp::PROTOCOL_VERSION)],
        }
    }
}

impl HandshakeOptions {
    /// Requests `noise-transport`.
    #[must_use]
    pub fn with_noise_transport(mut self) -> Self {
        self.request(CAP_NOISE_TRANSPORT);
        self
    }

    /// Requests `pq-hybrid` (and `noise-transport`, which it keys): an ML-KEM-768 exchange
    /// and an ML-DSA-65 transcript signature on top of Noise, and records keyed from the
    /// hybrid material. The identity needs post-quantum keys
    /// ([`DeviceIdentity::with_pq_keys`]). A server without `pq-hybrid` gives the classical
    /// session: check [`SessionInfo::pq_hybrid`] if PQ is required.
    #[must_use]
    pub fn with_pq_hybrid(mut self) -> Self {
        self.request(CAP_NOISE_TRANSPORT);
        self.request(CAP_PQ_HYBRID);
        self
    }

    /// Requests `adaptive-obf` (and `noise-transport`, inside whose records it wraps every
    /// frame in an `ObfuscatedPacket`: random padding, a decoy protocol snapshot and a MAC).
    /// A server without it gives the plain-record session: check
    /// [`SessionInfo::adaptive_obf`]. See `docs/obfuscation.md` for what it does not hide.
    #[must_use]
    pub fn with_adaptive_obf(mut self) -> Self {
        self.request(CAP_NOISE_TRANSPORT);
        self.request(CAP_ADAPTIVE_OBF);
        self
    }

    fn request(&mut self, capability: &str) {
        if !self.capabilities.iter().any(|c| c == capability) {
            self.capabilities.push(capability.to_owned());
        }
    }

    /// Requests `delivery-receipts`: the caller then ACKs the frames it has taken
    /// ([`crate::Session::acknowledge`]), and offline envelopes stay queued until it does.
    #[must_use]
    pub fn with_delivery_receipts(mut self) -> Self {
        self.capabilities.push(CAP_DELIVERY_RECEIPTS.to_owned());
        self
    }

    /// Requests `fec`: after the handshake every frame, both ways, travels as RaptorQ source
    /// and repair symbols (1,152-byte symbols, 35 % repair). Check [`SessionInfo::fec`] for
    /// whether the server accepted it.
    #[must_use]
    pub fn with_fec(mut self) -> Self {
        self.request(CAP_FEC);
        self
    }

    /// Uses the given pattern.
    #[must_use]
    pub fn with_pattern(mut self, pattern: HandshakePattern) -> Self {
        self.pattern = pattern;
        self
    }
}

/// Runs the client side of the handshake on `conn` (a fresh link: HELLO gets sequence 1): a
/// driver of [`commucat_handshake::client::ClientHandshake`].
///
/// # Errors
/// [`ClientError::Rejected`] with the server's ERROR, or a protocol/transport failure.
pub async fn handshake<S: ByteStream>(
    conn: &mut Connection<S>,
    identity: &DeviceIdentity,
    server: &ServerParams,
    options: &HandshakeOptions,
) -> Result<SessionInfo, ClientError> {
    let params = ClientParams {
        device_id: &identity.device_id,
        keys: &identity.keys,
        certificate: identity.certificate.as_ref(),
        user: identity.user.as_ref(),
        domain: &server.domain,
        server_static: &server.server_static,
        prologue: &server.prologue,
        pattern: options.pattern,
        capabilities: &options.capabilities,
        supported_versions: &options.supported_versions,
        pq: identity.pq.as_deref(),
    };
    let mut machine = ClientHandshake::new(params, commucat_keys::OsRng);
    let mut step = machine.start();
    loop {
        step = match step {
            Step::Send(outgoing) => {
                match &outgoing {
                    Outgoing::Hello(hello) => {
                        conn.send_control(FrameType::Hello, 0, hello.as_ref())
                            .await?;
                    }
                    Outgoing::Auth { auth, channel } => {
                        conn.send_control(FrameType::Auth, *channel, auth).await?;
                    }
                }
                machine.handle(Input::Sent)
            }
            Step::Recv => {
                let frame = conn.recv().await?.ok_or(ClientError::Closed)?;
                machine.handle(Input::Frame {
                    frame,
                    now: unix_now(),
                })
            }
            Step::Established(info, transport) => {
                if let Some(transport) = transport {
                    conn.codec_mut()
                        .enable_transport(transport)
                        .map_err(|e| ClientError::Link(e.into()))?;
                }
                if let Some(root) = &info.obf_root {
                    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
                    commucat_keys::RngCore::fill_bytes(&mut commucat_keys::OsRng, seed.as_mut());
                    let max_frame_len = conn.codec_mut().max_frame_len();
                    conn.codec_mut().enable_obfuscation(Obfuscator::new(
                        root.as_bytes(),
                        Role::Client,
                        ObfPolicy::default(),
                        *seed,
                        max_frame_len,
                    ));
                }
                if info.fec() {
                    conn.codec_mut()
                        .enable_fec(commucat_link::FecParams::default())
                        .map_err(|e| ClientError::Link(e.into()))?;
                }
                return Ok(*info);
            }
            Step::Failed(failure) => {
                return Err(match failure {
                    ClientFailure::Rejected(problem) => ClientError::Rejected(problem),
                    ClientFailure::Protocol(message) => ClientError::Protocol(message),
                    ClientFailure::Config(message) => ClientError::Config(message),
                });
            }
        };
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "the SDK has no server clock: the handshake is timed by the device's own clock"
)]
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
