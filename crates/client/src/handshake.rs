//! The client side of the device handshake, over any byte stream.

use commucat_ccp::control::{
    ClientAuth, HandshakeAck, HandshakeProofJson, Hello, ServerAuth, SessionPayload, UserInfo,
};
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_keys::{
    DEFAULT_PROLOGUE, DeviceCertificate, DeviceKeyPair, Handshake, HandshakePattern,
    derive_handshake_context, encode_hex,
};
use commucat_link::{ByteStream, Connection};

use crate::ClientError;

/// Capability requesting Noise transport records after the handshake.
pub const CAP_NOISE_TRANSPORT: &str = "noise-transport";
/// Capability promising ACKs of received frames: the server then deletes replayed offline
/// envelopes only once they are ACKed (see [`crate::Session::acknowledge`]).
pub const CAP_DELIVERY_RECEIPTS: &str = "delivery-receipts";

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
        }
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
        self.capabilities.push(CAP_NOISE_TRANSPORT.to_owned());
        self
    }

    /// Requests `delivery-receipts`: the caller then ACKs the frames it has taken
    /// ([`crate::Session::acknowledge`]), and offline envelopes stay queued until it does.
    #[must_use]
    pub fn with_delivery_receipts(mut self) -> Self {
        self.capabilities.push(CAP_DELIVERY_RECEIPTS.to_owned());
        self
    }

    /// Uses the given pattern.
    #[must_use]
    pub fn with_pattern(mut self, pattern: HandshakePattern) -> Self {
        self.pattern = pattern;
        self
    }
}

/// What the handshake established.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Session id (REST bearer token).
    pub session_id: String,
    /// Owner's user id.
    pub user_id: String,
    /// Owner profile.
    pub user: Option<UserInfo>,
    /// Negotiated protocol version.
    pub protocol_version: u64,
    /// Capabilities the server accepted.
    pub accepted_capabilities: Vec<String>,
    /// Device-CA public key the server announced.
    pub device_ca_public: Option<[u8; 32]>,
    /// A certificate the server issued or renewed in this handshake (persist it).
    pub issued_certificate: Option<DeviceCertificate>,
    /// Whether further devices of this user need pairing.
    pub pairing_required: bool,
    /// Seconds between keepalives the server expects.
    pub keepalive_interval: Option<u64>,
}

impl SessionInfo {
    /// Whether the server expects ACKs of received frames (`delivery-receipts`).
    #[must_use]
    pub fn delivery_receipts(&self) -> bool {
        self.accepted_capabilities
            .iter()
            .any(|c| c == CAP_DELIVERY_RECEIPTS)
    }

    /// Whether frames now travel as Noise transport records.
    #[must_use]
    pub fn encrypted(&self) -> bool {
        self.accepted_capabilities
            .iter()
            .any(|c| c == CAP_NOISE_TRANSPORT)
    }
}

fn protocol(message: impl Into<String>) -> ClientError {
    ClientError::Protocol(message.into())
}

/// Receives the next frame, turning ERROR frames into [`ClientError::Rejected`].
async fn recv_expecting<S: ByteStream>(
    conn: &mut Connection<S>,
    expected: FrameType,
) -> Result<Frame, ClientError> {
    let frame = conn.recv().await?.ok_or(ClientError::Closed)?;
    match frame.frame_type() {
        FrameType::Error => {
            let problem: Problem = frame
                .parse_control()
                .map_err(|e| protocol(format!("unreadable ERROR: {e}")))?;
            Err(ClientError::Rejected(Box::new(problem)))
        }
        t if t == expected => Ok(frame),
        other => Err(protocol(format!("expected {expected}, got {other}"))),
    }
}

/// Runs the client side of the handshake on `conn` (a fresh link: HELLO gets sequence 1).
///
/// # Errors
/// [`ClientError::Rejected`] with the server's ERROR, or a protocol/transport failure.
pub async fn handshake<S: ByteStream>(
    conn: &mut Connection<S>,
    identity: &DeviceIdentity,
    server: &ServerParams,
    options: &HandshakeOptions,
) -> Result<SessionInfo, ClientError> {
    let keys = &identity.keys;
    let client_static = keys.x25519_static();
    let mut noise = Handshake::initiator(
        options.pattern,
        &keys.x25519_private(),
        &server.server_static,
        &server.prologue,
    )
    .map_err(|e| ClientError::Config(e.to_string()))?;
    let msg1 = noise
        .write_message(&[])
        .map_err(|e| ClientError::Config(e.to_string()))?;
    let context = derive_handshake_context(
        &server.domain,
        &identity.device_id,
        &keys.public_key(),
        &client_static,
    )
    .map_err(|e| ClientError::Config(e.to_string()))?;
    let proof = commucat_keys::prove(keys.signing_key(), &context, &mut commucat_keys::OsRng)
        .map_err(|e| ClientError::Config(e.to_string()))?;
    let certificate = identity
        .certificate
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| ClientError::Config(e.to_string()))?;
    let hello = Hello {
        pattern: options.pattern.label().to_owned(),
        supported_versions: Some(options.supported_versions.clone()),
        protocol_version: options.supported_versions.iter().copied().max(),
        device_id: identity.device_id.clone(),
        handshake: encode_hex(&msg1),
        client_static: encode_hex(&client_static),
        device_public: Some(keys.public_key_hex()),
        capabilities: options.capabilities.clone(),
        zkp: Some(HandshakeProofJson {
            commitment: encode_hex(&proof.commitment),
            response: encode_hex(&proof.response),
        }),
        device_ca_public: None,
        user: identity.user.clone(),
        certificate,
        pq_bundle: None,
    };
    conn.send_control(FrameType::Hello, 0, &hello).await?;

    let auth_frame = recv_expecting(conn, FrameType::Auth).await?;
    let auth: ServerAuth = auth_frame
        .parse_control()
        .map_err(|e| protocol(format!("AUTH: {e}")))?;
    let msg2 = hex::decode(&auth.handshake).map_err(|_| protocol("AUTH handshake is not hex"))?;
    let payload = noise
        .read_message(&msg2)
        .map_err(|e| protocol(format!("Noise message 2: {e}")))?;
    let session: SessionPayload = serde_json::from_slice(&payload)
        .map_err(|e| protocol(format!("message 2 payload: {e}")))?;
    if session.session.len() < 8 || !session.session.is_ascii() {
        return Err(protocol("session id must be at least 8 ASCII characters"));
    }
    if !noise.is_finished() {
        let msg3 = noise
            .write_message(&[])
            .map_err(|e| protocol(format!("Noise message 3: {e}")))?;
        let client_auth = ClientAuth {
            handshake: encode_hex(&msg3),
            pq_signature: None,
        };
        conn.send_control(FrameType::Auth, auth_frame.channel_id(), &client_auth)
            .await?;
    }

    let ack_frame = recv_expecting(conn, FrameType::Ack).await?;
    let ack: HandshakeAck = ack_frame
        .parse_control()
        .map_err(|e| protocol(format!("handshake ACK: {e}")))?;
    if !ack.is_ok() {
        return Err(protocol(format!("handshake ACK says {:?}", ack.handshake)));
    }
    let accepted = ack
        .accepted_capabilities
        .or(session.accepted_capabilities)
        .unwrap_or_default();
    if let Some(unrequested) = accepted.iter().find(|c| !options.capabilities.contains(c)) {
        return Err(protocol(format!(
            "server accepted unrequested capability {unrequested:?}"
        )));
    }
    let issued_certificate = ack
        .device_certificate
        .map(serde_json::from_value::<DeviceCertificate>)
        .transpose()
        .map_err(|e| protocol(format!("device_certificate: {e}")))?;
    let device_ca_public = ack
        .device_ca_public
        .as_deref()
        .map(commucat_keys::decode_hex32)
        .transpose()
        .map_err(|e| protocol(format!("device_ca_public: {e}")))?;
    if let (Some(cert), Some(ca)) = (&issued_certificate, &device_ca_public) {
        #[allow(
            clippy::disallowed_methods,
            reason = "the SDK has no server clock: it checks an issued certificate against its own"
        )]
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        cert.verify(ca, now, commucat_keys::DEFAULT_MAX_CLOCK_SKEW_SECS)
            .map_err(|e| protocol(format!("issued certificate does not verify: {e}")))?;
        if cert.data.device_id != identity.device_id || cert.data.public_key != keys.public_key() {
            return Err(protocol("issued certificate is for another device"));
        }
    }
    if accepted.iter().any(|c| c == CAP_NOISE_TRANSPORT) {
        let transport = noise
            .into_transport()
            .map_err(|e| protocol(format!("transport: {e}")))?;
        conn.codec_mut()
            .enable_transport(transport)
            .map_err(|e| ClientError::Link(e.into()))?;
    }
    let user_id = ack
        .user_id
        .or(session.user_id)
        .or_else(|| {
            session
                .user
                .as_ref()
                .and_then(|u| u.resolved_id().map(str::to_owned))
        })
        .ok_or_else(|| protocol("server named no user id"))?;
    Ok(SessionInfo {
        session_id: session.session,
        user_id,
        user: ack.user.or(session.user),
        protocol_version: ack
            .protocol_version
            .or(session.protocol_version)
            .unwrap_or(1),
        accepted_capabilities: accepted,
        device_ca_public,
        issued_certificate,
        pairing_required: ack.pairing_required,
        keepalive_interval: ack.keepalive_interval,
    })
}
