//! The client side of the handshake.
//!
//! Drive a [`ClientHandshake`]: [`ClientHandshake::start`] yields the HELLO to send; then
//! perform each [`Step`] and feed its outcome back with [`ClientHandshake::handle`] until the
//! step is [`Step::Established`] or [`Step::Failed`]. Link failures and a closed stream are
//! the driver's own errors: the machine only sees the frames that arrived.

use commucat_ccp::control::{
    ClientAuth, HandshakeAck, HandshakeProofJson, Hello, ServerAuth, SessionPayload, UserInfo,
};
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_keys::{
    DeviceCertificate, DeviceKeyPair, Handshake, HandshakePattern, Transport,
    derive_handshake_context, encode_hex,
};
use rand_core::{CryptoRng, RngCore};

use crate::pq::ClientExchange;
use crate::{
    CAP_ADAPTIVE_OBF, CAP_DELIVERY_RECEIPTS, CAP_FEC, CAP_NOISE_TRANSPORT, CAP_PQ_HYBRID,
    ObfMaterial, ObfRoot,
};

/// What the client brings to one handshake, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ClientParams<'a> {
    /// Device id.
    pub device_id: &'a str,
    /// Device key (Ed25519; its seed doubles as the Noise X25519 static key).
    pub keys: &'a DeviceKeyPair,
    /// Certificate from an earlier connection or a pairing claim.
    pub certificate: Option<&'a DeviceCertificate>,
    /// Profile hints.
    pub user: Option<&'a UserInfo>,
    /// Server domain (bound into the handshake proof).
    pub domain: &'a str,
    /// Server Noise static public key.
    pub server_static: &'a [u8; 32],
    /// Noise prologue.
    pub prologue: &'a [u8],
    /// Noise pattern.
    pub pattern: HandshakePattern,
    /// Capabilities to request.
    pub capabilities: &'a [String],
    /// Versions announced as `supported_versions`.
    pub supported_versions: &'a [u64],
    /// The device's post-quantum keys, required when `capabilities` has `pq-hybrid`.
    pub pq: Option<&'a crate::pq::DeviceKeys>,
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
    /// The `adaptive-obf` root when the server accepted that capability: wrap every later
    /// frame (`commucat_link::obf::Obfuscator`, role client).
    pub obf_root: Option<ObfRoot>,
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

    /// Whether frames now travel as FEC symbols (`fec`).
    #[must_use]
    pub fn fec(&self) -> bool {
        self.accepted_capabilities.iter().any(|c| c == CAP_FEC)
    }

    /// Whether the session is a `pq-hybrid` one: its records are keyed from the hybrid
    /// (Noise + ML-KEM-768) material.
    #[must_use]
    pub fn pq_hybrid(&self) -> bool {
        self.accepted_capabilities
            .iter()
            .any(|c| c == CAP_PQ_HYBRID)
    }

    /// Whether frames are wrapped in `adaptive-obf` packets.
    #[must_use]
    pub fn adaptive_obf(&self) -> bool {
        self.accepted_capabilities
            .iter()
            .any(|c| c == CAP_ADAPTIVE_OBF)
    }
}

/// Why the client side failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFailure {
    /// The server sent an ERROR frame.
    Rejected(Box<Problem>),
    /// The server broke the protocol.
    Protocol(String),
    /// Local key or configuration problem.
    Config(String),
}

/// A frame to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// The HELLO (channel 0).
    Hello(Box<Hello>),
    /// AUTH with Noise message 3 (XK), on the channel of the server's AUTH.
    Auth {
        /// Payload.
        auth: ClientAuth,
        /// Channel.
        channel: u32,
    },
}

impl Outgoing {
    /// The frame type.
    #[must_use]
    pub const fn frame_type(&self) -> FrameType {
        match self {
            Self::Hello(_) => FrameType::Hello,
            Self::Auth { .. } => FrameType::Auth,
        }
    }

    /// The frame with `sequence`, as a connection would send it.
    ///
    /// # Errors
    /// The codec's refusal (size limits).
    pub fn to_frame(&self, sequence: u32) -> Result<Frame, commucat_ccp::CodecError> {
        match self {
            Self::Hello(hello) => Frame::control(FrameType::Hello, 0, sequence, hello),
            Self::Auth { auth, channel } => {
                Frame::control(FrameType::Auth, *channel, sequence, auth)
            }
        }
    }
}

/// What happened since the last step.
#[derive(Debug)]
pub enum Input {
    /// The last [`Step::Send`] was written.
    Sent,
    /// A frame arrived at `now` (Unix seconds).
    Frame {
        /// The frame.
        frame: Frame,
        /// Now.
        now: i64,
    },
}

/// What to do next.
#[derive(Debug)]
pub enum Step {
    /// Send this frame: [`Input::Sent`].
    Send(Outgoing),
    /// Receive the next frame: [`Input::Frame`].
    Recv,
    /// The handshake is complete; when `transport` is set, frames after the ACK travel as
    /// Noise transport records.
    Established(Box<SessionInfo>, Option<Transport>),
    /// The handshake failed.
    Failed(ClientFailure),
}

enum State {
    Start,
    SendingHello(Handshake),
    AwaitAuth(Handshake),
    SendingAuth(Handshake, Box<SessionPayload>, Option<ClientExchange>),
    AwaitAck(Handshake, Box<SessionPayload>, Option<ClientExchange>),
    Done,
}

/// The client side of one handshake.
pub struct ClientHandshake<'a, R> {
    params: ClientParams<'a>,
    rng: R,
    state: State,
    /// The one-time key pairs this HELLO announced (with `pq-hybrid`), for the session's
    /// ratchet.
    one_time: Option<commucat_keys::pq::OneTimeKeyPairs>,
}

impl<R> std::fmt::Debug for ClientHandshake<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("device_id", &self.params.device_id)
            .finish_non_exhaustive()
    }
}

fn protocol(message: impl Into<String>) -> ClientFailure {
    ClientFailure::Protocol(message.into())
}

#[allow(clippy::needless_pass_by_value)] // used as a `map_err` callback
fn config(e: impl ToString) -> ClientFailure {
    ClientFailure::Config(e.to_string())
}

/// `frame`, if it has type `expected`; a server ERROR becomes [`ClientFailure::Rejected`].
fn expect(frame: &Frame, expected: FrameType) -> Result<(), ClientFailure> {
    match frame.frame_type() {
        FrameType::Error => {
            let problem: Problem = frame
                .parse_control()
                .map_err(|e| protocol(format!("unreadable ERROR: {e}")))?;
            Err(ClientFailure::Rejected(Box::new(problem)))
        }
        t if t == expected => Ok(()),
        other => Err(protocol(format!("expected {expected}, got {other}"))),
    }
}

type Next = Result<(State, Step), ClientFailure>;

impl<'a, R: RngCore + CryptoRng> ClientHandshake<'a, R> {
    /// A handshake of `params`, drawing its randomness (Noise ephemeral, proof nonce) from
    /// `rng`.
    pub fn new(params: ClientParams<'a>, rng: R) -> Self {
        Self {
            params,
            rng,
            state: State::Start,
            one_time: None,
        }
    }

    /// The first step: send this HELLO (a fresh link: it gets sequence 1).
    pub fn start(&mut self) -> Step {
        let outcome = self.hello();
        self.finish(outcome)
    }

    /// Feeds the outcome of the last step; returns the next.
    pub fn handle(&mut self, input: Input) -> Step {
        let state = std::mem::replace(&mut self.state, State::Done);
        let outcome = match (state, input) {
            (State::SendingHello(noise), Input::Sent) => Ok((State::AwaitAuth(noise), Step::Recv)),
            (State::AwaitAuth(noise), Input::Frame { frame, .. }) => self.on_auth(noise, &frame),
            (State::SendingAuth(noise, session, pq), Input::Sent) => {
                Ok((State::AwaitAck(noise, session, pq), Step::Recv))
            }
            (State::AwaitAck(noise, session, pq), Input::Frame { frame, now }) => {
                let pq = pq.map(|exchange| (exchange, self.one_time.take()));
                self.on_ack(noise, *session, pq, &frame, now)
            }
            _ => Err(protocol("handshake driver fed an input out of turn")),
        };
        self.finish(outcome)
    }

    fn finish(&mut self, outcome: Next) -> Step {
        match outcome {
            Ok((state, step)) => {
                self.state = state;
                step
            }
            Err(failure) => {
                self.state = State::Done;
                Step::Failed(failure)
            }
        }
    }

    fn hello(&mut self) -> Next {
        let p = self.params;
        let keys = p.keys;
        let client_static = keys.x25519_static();
        let seed = crate::noise_seed(&mut self.rng);
        let mut noise = Handshake::initiator_seeded(
            p.pattern,
            &keys.x25519_private(),
            p.server_static,
            p.prologue,
            &seed,
        )
        .map_err(config)?;
        let msg1 = noise.write_message(&[]).map_err(config)?;
        let context =
            derive_handshake_context(p.domain, p.device_id, &keys.public_key(), &client_static)
                .map_err(config)?;
        let proof =
            commucat_keys::prove(keys.signing_key(), &context, &mut self.rng).map_err(config)?;
        let certificate = p
            .certificate
            .map(serde_json::to_value)
            .transpose()
            .map_err(config)?;
        let pq_bundle = if p.capabilities.iter().any(|c| c == CAP_PQ_HYBRID) {
            let keys =
                p.pq.ok_or_else(|| config("pq-hybrid requested without the device's PQ keys"))?;
            let (bundle, one_time) = keys.fresh_bundle().map_err(config)?;
            self.one_time = Some(one_time);
            Some(bundle)
        } else {
            None
        };
        let hello = Hello {
            pattern: p.pattern.label().to_owned(),
            supported_versions: Some(p.supported_versions.to_vec()),
            protocol_version: p.supported_versions.iter().copied().max(),
            device_id: p.device_id.to_owned(),
            handshake: encode_hex(&msg1),
            client_static: encode_hex(&client_static),
            device_public: Some(keys.public_key_hex()),
            capabilities: p.capabilities.to_vec(),
            zkp: Some(HandshakeProofJson {
                commitment: encode_hex(&proof.commitment),
                response: encode_hex(&proof.response),
            }),
            device_ca_public: None,
            user: p.user.cloned(),
            certificate,
            pq_bundle,
        };
        Ok((
            State::SendingHello(noise),
            Step::Send(Outgoing::Hello(Box::new(hello))),
        ))
    }

    fn on_auth(&self, mut noise: Handshake, frame: &Frame) -> Next {
        let p = self.params;
        expect(frame, FrameType::Auth)?;
        let auth: ServerAuth = frame
            .parse_control()
            .map_err(|e| protocol(format!("AUTH: {e}")))?;
        let msg2 =
            hex::decode(&auth.handshake).map_err(|_| protocol("AUTH handshake is not hex"))?;
        let payload = noise
            .read_message(&msg2)
            .map_err(|e| protocol(format!("Noise message 2: {e}")))?;
        let session: SessionPayload = serde_json::from_slice(&payload)
            .map_err(|e| protocol(format!("message 2 payload: {e}")))?;
        if session.session.len() < 8 || !session.session.is_ascii() {
            return Err(protocol("session id must be at least 8 ASCII characters"));
        }
        let session = Box::new(session);
        // The encrypted payload's list is authoritative (the AUTH JSON is not authenticated).
        let accepted = session.accepted_capabilities.clone().unwrap_or_default();
        let pq_accepted = accepted.iter().any(|c| c == CAP_PQ_HYBRID);
        let keys = match (pq_accepted, p.pq) {
            (false, _) => None,
            (true, Some(keys)) if p.capabilities.iter().any(|c| c == CAP_PQ_HYBRID) => Some(keys),
            (true, _) => {
                return Err(protocol(
                    "server accepted unrequested capability \"pq-hybrid\"",
                ));
            }
        };
        if noise.is_finished() && keys.is_none() {
            return Ok((State::AwaitAck(noise, session, None), Step::Recv));
        }
        let handshake = if noise.is_finished() {
            String::new()
        } else {
            let msg3 = noise
                .write_message(&[])
                .map_err(|e| protocol(format!("Noise message 3: {e}")))?;
            encode_hex(&msg3)
        };
        let (exchange, pq_signature) = match keys {
            Some(keys) => {
                let exchange = ClientExchange::accept(
                    keys,
                    auth.pq_ciphertext.as_deref(),
                    auth.pq_context.as_ref(),
                )
                .map_err(protocol)?;
                let handshake_hash = noise.handshake_hash();
                let parts = crate::pq::TranscriptParts {
                    handshake_hash: &handshake_hash,
                    device_id: p.device_id,
                    offered: p.capabilities,
                    accepted: &accepted,
                };
                let signature = exchange.sign(keys, &parts).map_err(config)?;
                (Some(exchange), Some(signature))
            }
            None => (None, None),
        };
        let auth = ClientAuth {
            handshake,
            pq_signature,
        };
        let channel = frame.channel_id();
        Ok((
            State::SendingAuth(noise, session, exchange),
            Step::Send(Outgoing::Auth { auth, channel }),
        ))
    }

    fn on_ack(
        &self,
        noise: Handshake,
        session: SessionPayload,
        pq: Option<(ClientExchange, Option<commucat_keys::pq::OneTimeKeyPairs>)>,
        frame: &Frame,
        now: i64,
    ) -> Next {
        let p = self.params;
        expect(frame, FrameType::Ack)?;
        let ack: HandshakeAck = frame
            .parse_control()
            .map_err(|e| protocol(format!("handshake ACK: {e}")))?;
        if !ack.is_ok() {
            return Err(protocol(format!("handshake ACK says {:?}", ack.handshake)));
        }
        let accepted = ack
            .accepted_capabilities
            .or(session.accepted_capabilities)
            .unwrap_or_default();
        if let Some(unrequested) = accepted.iter().find(|c| !p.capabilities.contains(c)) {
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
            cert.verify(ca, now, commucat_keys::DEFAULT_MAX_CLOCK_SKEW_SECS)
                .map_err(|e| protocol(format!("issued certificate does not verify: {e}")))?;
            if cert.data.device_id != p.device_id || cert.data.public_key != p.keys.public_key() {
                return Err(protocol("issued certificate is for another device"));
            }
        }
        if accepted.iter().any(|c| c == CAP_PQ_HYBRID) != pq.is_some() {
            return Err(protocol(
                "the ACK's accepted_capabilities disagree with message 2 on pq-hybrid",
            ));
        }
        let obf_accepted = accepted.iter().any(|c| c == CAP_ADAPTIVE_OBF);
        if obf_accepted && !accepted.iter().any(|c| c == CAP_NOISE_TRANSPORT) {
            return Err(protocol(
                "server accepted adaptive-obf without noise-transport",
            ));
        }
        let mut noise = noise;
        let obf = if obf_accepted {
            Some(
                ObfMaterial::take(&mut noise)
                    .map_err(|e| protocol(format!("adaptive-obf: {e}")))?,
            )
        } else {
            None
        };
        let mut hybrid_root = None;
        let transport = if let Some((exchange, one_time)) = pq {
            let one_time = one_time.ok_or_else(|| protocol("pq-hybrid without one-time keys"))?;
            let (transport, root) = exchange
                .into_transport(noise, one_time)
                .map_err(|e| protocol(format!("transport: {e}")))?;
            hybrid_root = Some(root);
            Some(transport)
        } else if accepted.iter().any(|c| c == CAP_NOISE_TRANSPORT) {
            Some(
                noise
                    .into_transport()
                    .map_err(|e| protocol(format!("transport: {e}")))?,
            )
        } else {
            None
        };
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
        let info = SessionInfo {
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
            obf_root: obf
                .map(|m| m.finish(hybrid_root.as_deref()))
                .transpose()
                .map_err(|e| protocol(format!("adaptive-obf: {e}")))?,
        };
        Ok((State::Done, Step::Established(Box::new(info), transport)))
    }
}
