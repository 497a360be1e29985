//! The server handshake's states and transitions.

use commucat_ccp::control::{
    CertificateSummary, ClientAuth, HandshakeAck, Hello, ServerAuth, SessionPayload, UserInfo,
};
use commucat_ccp::{Frame, FrameType};
use commucat_keys::{DeviceCertificate, Handshake, HandshakePattern, encode_hex};
use rand_core::{CryptoRng, RngCore};

use super::hello::{self, CheckedHello, UsedKey};
use super::{
    Answer, Established, Input, NewSession, Notice, Outgoing, Query, Registration, ServerConfig,
    Step, User,
};
use crate::{CAP_ADAPTIVE_OBF, CAP_NOISE_TRANSPORT, FailReason, HandshakeError, Stage};

/// The server side of one handshake. See the [module documentation](super).
pub struct ServerHandshake<'a, R> {
    pub(super) config: ServerConfig<'a>,
    pub(super) rng: R,
    state: State,
    stage: Stage,
    device_id: Option<String>,
    notices: Vec<super::Notice>,
}

impl<R> std::fmt::Debug for ServerHandshake<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("state", &self.state.label())
            .field("stage", &self.stage)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// A HELLO that passed its checks and whose message 1 decrypted.
pub(super) struct Opened {
    pub(super) checked: CheckedHello,
    pub(super) noise: Handshake,
    pub(super) key: UsedKey,
    pub(super) now: i64,
}

/// The registry's decision. Nothing is written until the Noise handshake has proved the
/// client's static key: a new device's registration waits in `pending`.
pub(super) struct Resolved {
    pub(super) user: User,
    /// Registration to commit once the handshake is complete (unknown devices).
    pub(super) pending: Option<Registration>,
    /// Certificate to hand out in the ACK (new or renewed), if any.
    pub(super) issued: Option<DeviceCertificate>,
    /// The certificate that stays valid (presented or issued).
    pub(super) current: Option<DeviceCertificate>,
}

/// After message 2: everything the rest of the handshake needs.
pub(super) struct Authed {
    opened: Opened,
    resolved: Resolved,
    session_id: String,
    device_known: bool,
    expires_at: i64,
    pairing_required: bool,
    /// The server's half of the `pq-hybrid` exchange, when it was accepted.
    pq: Option<crate::pq::ServerExchange>,
}

pub(super) enum State {
    AwaitHello,
    AwaitKeys(Box<CheckedHello>, Vec<u8>),
    AwaitReplay(Box<Opened>),
    AwaitDevice(Box<Opened>),
    AwaitOwner(Box<Opened>),
    AwaitCertUser(Box<Opened>),
    AwaitHintedUser,
    AwaitHandle(Box<Opened>, String),
    SendingAuth(Box<Authed>),
    AwaitClientAuth(Box<Authed>),
    AwaitRegistered(Box<Authed>),
    AwaitProfile(Box<Authed>, User),
    AwaitSession(Box<Authed>),
    AwaitCount(Box<Authed>),
    SendingAck(Box<Authed>),
    Done,
}

impl State {
    const fn label(&self) -> &'static str {
        match self {
            Self::AwaitHello => "await-hello",
            Self::AwaitKeys(..) => "await-keys",
            Self::AwaitReplay(_) => "await-replay",
            Self::AwaitDevice(_) => "await-device",
            Self::AwaitOwner(_) => "await-owner",
            Self::AwaitCertUser(_) => "await-certificate-user",
            Self::AwaitHintedUser => "await-hinted-user",
            Self::AwaitHandle(..) => "await-handle",
            Self::SendingAuth(_) => "sending-auth",
            Self::AwaitClientAuth(_) => "await-client-auth",
            Self::AwaitRegistered(_) => "await-registered",
            Self::AwaitProfile(..) => "await-profile",
            Self::AwaitSession(_) => "await-session",
            Self::AwaitCount(_) => "await-count",
            Self::SendingAck(_) => "sending-ack",
            Self::Done => "done",
        }
    }
}

pub(super) fn user_info(user: &User) -> UserInfo {
    UserInfo::profile(
        user.user_id.clone(),
        user.handle.clone(),
        user.display_name.clone(),
        user.avatar_url.clone(),
    )
}

/// The transition's result: the next state and step, or a failure.
pub(super) type Next = Result<(State, Step), HandshakeError>;

impl<'a, R: RngCore + CryptoRng> ServerHandshake<'a, R> {
    /// A handshake under `config`, drawing its randomness (session and user ids, certificate
    /// serials, the Noise ephemeral) from `rng`.
    pub fn new(config: ServerConfig<'a>, rng: R) -> Self {
        Self {
            config,
            rng,
            state: State::AwaitHello,
            stage: Stage::Hello,
            device_id: None,
            notices: Vec::new(),
        }
    }

    /// The first step: receive HELLO.
    pub fn start(&mut self) -> Step {
        Step::Recv
    }

    /// The stage reached.
    #[must_use]
    pub const fn stage(&self) -> Stage {
        self.stage
    }

    /// The device id, once HELLO named it.
    #[must_use]
    pub fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }

    /// Side effects since the last call (to count and record).
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    pub(super) fn notice(&mut self, notice: Notice) {
        self.notices.push(notice);
    }

    /// The failure of a handshake that ran out of time (`timeout`). Like every failure it
    /// ends the machine.
    pub fn expire(&mut self, timeout: std::time::Duration) -> HandshakeError {
        self.state = State::Done;
        HandshakeError::timeout(timeout)
    }

    /// Feeds the outcome of the last step; returns the next.
    pub fn handle(&mut self, input: Input) -> Step {
        let state = std::mem::replace(&mut self.state, State::Done);
        let outcome = match input {
            Input::Closed => Err(self.closed(&state)),
            Input::Link(failure) => Err(HandshakeError::from_link(failure)),
            input => self.advance(state, input),
        };
        match outcome {
            Ok((state, step)) => {
                self.state = state;
                step
            }
            Err(failure) => {
                self.state = State::Done;
                Step::Failed(failure.at(self.stage).of_device(self.device_id.as_deref()))
            }
        }
    }

    fn closed(&self, state: &State) -> HandshakeError {
        let detail = match state {
            State::AwaitClientAuth(_) => "stream closed before AUTH",
            _ => "stream closed before HELLO",
        };
        HandshakeError::new(FailReason::ClientClosed, detail)
    }

    fn advance(&mut self, state: State, input: Input) -> Next {
        match (state, input) {
            (State::AwaitHello, Input::Frame(frame)) => self.on_hello(&frame),
            (State::AwaitKeys(checked, msg1), Input::Answer(Answer::NoiseKeys { keys, now })) => {
                let seed = crate::noise_seed(&mut self.rng);
                let (noise, key) = hello::read_message_one(
                    &self.config,
                    &keys,
                    checked.pattern,
                    &msg1,
                    now,
                    &seed,
                )?;
                let opened = Box::new(Opened {
                    checked: *checked,
                    noise,
                    key,
                    now,
                });
                if opened.checked.pattern == HandshakePattern::Ik {
                    if opened.noise.remote_static() != Some(opened.checked.client_static) {
                        return Err(hello::static_mismatch());
                    }
                    return Ok((
                        State::AwaitReplay(opened),
                        Step::Query(Query::Replay { message_one: msg1 }),
                    ));
                }
                self.resolve(opened)
            }
            (State::AwaitReplay(opened), Input::Answer(Answer::Fresh(fresh))) => {
                if !fresh {
                    return Err(HandshakeError::new(
                        FailReason::Replay,
                        "this IK message 1 was accepted before; start a new handshake",
                    ));
                }
                self.resolve(opened)
            }
            (State::AwaitDevice(opened), Input::Answer(Answer::Device(device))) => {
                match device.map_err(HandshakeError::from_store)? {
                    Some(device) => self.on_known_device(opened, &device),
                    None => self.register_unknown(opened),
                }
            }
            (State::AwaitOwner(opened), Input::Answer(Answer::User(user))) => {
                self.on_owner(opened, user)
            }
            (State::AwaitCertUser(opened), Input::Answer(Answer::User(user))) => {
                self.on_certificate_user(opened, user)
            }
            (State::AwaitHintedUser, Input::Answer(Answer::User(user))) => {
                let exists = user.map_err(HandshakeError::from_store)?.is_some();
                Err(HandshakeError::new(
                    FailReason::UserProof,
                    if exists {
                        "attaching a device to an existing account needs a device certificate of that account; pair this device"
                    } else {
                        "unknown user id; omit it to create a new account"
                    },
                ))
            }
            (State::AwaitHandle(opened, handle), Input::Answer(Answer::User(user))) => {
                if user.map_err(HandshakeError::from_store)?.is_some() {
                    return Err(HandshakeError::new(
                        FailReason::HandleTaken,
                        format!(
                            "handle {handle:?} belongs to an existing account; pair this device from one of its devices"
                        ),
                    ));
                }
                self.new_account(opened, Some(handle))
            }
            (State::SendingAuth(authed), Input::Sent) => {
                // XK's message 3, or (IK) the transcript signature of a `pq-hybrid` session.
                if authed.opened.checked.pattern == HandshakePattern::Xk || authed.pq.is_some() {
                    self.stage = Stage::AwaitClient;
                    return Ok((State::AwaitClientAuth(authed), Step::Recv));
                }
                self.commit(authed)
            }
            (State::AwaitClientAuth(authed), Input::Frame(frame)) => {
                self.on_client_auth(authed, &frame)
            }
            (State::AwaitRegistered(mut authed), Input::Answer(Answer::Registered(user))) => {
                authed.resolved.user = user.map_err(HandshakeError::from_store)?;
                self.notice(Notice::Registered {
                    device_id: authed.opened.checked.hello.device_id.clone(),
                    user_id: authed.resolved.user.user_id.clone(),
                });
                Ok(self.create_session(authed))
            }
            (State::AwaitProfile(mut authed, updated), Input::Answer(Answer::Done(done))) => {
                done.map_err(HandshakeError::from_store)?;
                authed.resolved.user = updated;
                Ok(self.create_session(authed))
            }
            (State::AwaitSession(authed), Input::Answer(Answer::Done(done))) => {
                done.map_err(HandshakeError::from_store)?;
                self.pairing_required(authed)
            }
            (State::AwaitCount(mut authed), Input::Answer(Answer::Count(count))) => {
                let max = u64::from(self.config.max_auto_devices_per_user);
                authed.pairing_required = count.is_ok_and(|n| n >= max);
                self.send_ack(authed)
            }
            (State::SendingAck(authed), Input::Sent) => self.established(*authed),
            (state, input) => Err(HandshakeError::new(
                FailReason::Codec,
                format!(
                    "handshake driver fed {} in state {}",
                    input_label(&input),
                    state.label()
                ),
            )),
        }
    }

    fn on_hello(&mut self, frame: &Frame) -> Next {
        if frame.frame_type() != FrameType::Hello {
            return Err(HandshakeError::new(
                FailReason::UnexpectedFrame,
                format!("expected HELLO, got {}", frame.frame_type()),
            ));
        }
        let hello: Hello = frame
            .parse_control()
            .map_err(|e| HandshakeError::invalid(format!("HELLO: {e}")))?;
        self.device_id = Some(hello.device_id.clone());
        let checked = hello::check_hello(&self.config, hello)?;
        let msg1 = hex::decode(&checked.hello.handshake)
            .map_err(|_| HandshakeError::invalid("handshake is not hex"))?;
        Ok((
            State::AwaitKeys(Box::new(checked), msg1),
            Step::Query(Query::NoiseKeys),
        ))
    }

    /// Message 2 in AUTH; its encrypted payload carries the session.
    pub(super) fn send_auth(&mut self, mut opened: Box<Opened>, resolved: Resolved) -> Next {
        // Bounded: a stored over-long value must not push message 2 past the Noise limit.
        let user = self.config.profile.for_wire(resolved.user.clone());
        let checked = &opened.checked;
        let session_id = crate::random_id(&mut self.rng);
        let pq = match &checked.pq {
            Some(offer) => Some(crate::pq::ServerExchange::start(offer, &mut self.rng)?),
            None => None,
        };
        let payload = SessionPayload {
            session: session_id.clone(),
            domain: Some(self.config.domain.to_owned()),
            protocol_version: Some(u64::from(checked.version)),
            user_id: Some(user.user_id.clone()),
            user: Some(user_info(&user)),
            accepted_capabilities: Some(checked.accepted_capabilities.clone()),
        };
        let payload_json = serde_json::to_vec(&payload)
            .map_err(|e| HandshakeError::new(FailReason::Codec, e.to_string()))?;
        let msg2 = opened
            .noise
            .write_message(&payload_json)
            .map_err(|e| HandshakeError::new(FailReason::Crypto, e.to_string()))?;
        let checked = &opened.checked;
        let auth = ServerAuth {
            handshake: encode_hex(&msg2),
            session: Some(session_id.clone()),
            device_id: Some(checked.hello.device_id.clone()),
            server_static: Some(encode_hex(&opened.key.public)),
            protocol_version: Some(u64::from(checked.version)),
            supported_versions: Some(
                commucat_ccp::SUPPORTED_PROTOCOL_VERSIONS
                    .iter()
                    .map(|v| u64::from(*v))
                    .collect(),
            ),
            device_ca_public: Some(encode_hex(&self.config.device_ca.public_key())),
            user: Some(user_info(&user)),
            pairing_required: Some(false),
            accepted_capabilities: Some(checked.accepted_capabilities.clone()),
            pq_ciphertext: pq
                .as_ref()
                .map(crate::pq::ServerExchange::ciphertext_base64),
            pq_context: pq.as_ref().map(crate::pq::ServerExchange::context),
        };
        let device_known = resolved.pending.is_none();
        let expires_at = opened.now.saturating_add(self.config.session_ttl_secs);
        let authed = Box::new(Authed {
            opened: *opened,
            resolved,
            session_id,
            device_known,
            expires_at,
            pairing_required: true,
            pq,
        });
        Ok((
            State::SendingAuth(authed),
            Step::Send(Outgoing::Auth(Box::new(auth))),
        ))
    }

    /// Message 3 (XK).
    fn on_client_auth(&mut self, mut authed: Box<Authed>, frame: &Frame) -> Next {
        if frame.frame_type() != FrameType::Auth {
            return Err(HandshakeError::new(
                FailReason::UnexpectedFrame,
                format!("expected AUTH, got {}", frame.frame_type()),
            ));
        }
        let client: ClientAuth = frame
            .parse_control()
            .map_err(|e| HandshakeError::invalid(format!("AUTH: {e}")))?;
        let opened = &mut authed.opened;
        if opened.checked.pattern == HandshakePattern::Xk {
            let msg3 = hex::decode(&client.handshake)
                .map_err(|_| HandshakeError::invalid("AUTH handshake is not hex"))?;
            opened
                .noise
                .read_message(&msg3)
                .map_err(|e| HandshakeError::new(FailReason::Crypto, e.to_string()))?;
            if opened.noise.remote_static() != Some(opened.checked.client_static) {
                return Err(hello::static_mismatch());
            }
        } else if !client.handshake.is_empty() {
            return Err(HandshakeError::invalid(
                "IK ends at message 2: the client's AUTH carries only pq_signature",
            ));
        }
        if let (Some(exchange), Some(offer)) = (&authed.pq, &opened.checked.pq) {
            let handshake_hash = opened.noise.handshake_hash();
            let parts = crate::pq::TranscriptParts {
                handshake_hash: &handshake_hash,
                device_id: &opened.checked.hello.device_id,
                offered: &opened.checked.hello.capabilities,
                accepted: &opened.checked.accepted_capabilities,
            };
            exchange.verify(offer, &parts, client.pq_signature.as_deref())?;
        }
        self.commit(authed)
    }

    /// Writes what the handshake decided: a new device's registration (with its key event, in
    /// one transaction), or a known device's profile hints.
    fn commit(&mut self, mut authed: Box<Authed>) -> Next {
        self.stage = Stage::Established;
        if let Some(registration) = authed.resolved.pending.take() {
            return Ok((
                State::AwaitRegistered(authed),
                Step::Query(Query::Register(Box::new(registration))),
            ));
        }
        let Some(hint) = authed.opened.checked.hello.user.as_ref() else {
            return Ok(self.create_session(authed));
        };
        // An over-long hint is not stored, but does not fail the handshake: deployed clients
        // send back the profile they were given, and must not be locked out by it.
        let display_name = self.bounded_hint(super::ProfileField::DisplayName, &hint.display_name);
        let avatar_url = self.bounded_hint(super::ProfileField::AvatarUrl, &hint.avatar_url);
        if display_name.is_none() && avatar_url.is_none() {
            return Ok(self.create_session(authed));
        }
        let user = &authed.resolved.user;
        let query = Query::UpdateProfile {
            user_id: user.user_id.clone(),
            display_name: display_name.clone(),
            avatar_url: avatar_url.clone(),
        };
        let updated = User {
            display_name: display_name.or_else(|| user.display_name.clone()),
            avatar_url: avatar_url.or_else(|| user.avatar_url.clone()),
            ..user.clone()
        };
        Ok((State::AwaitProfile(authed, updated), Step::Query(query)))
    }

    /// `value` if it is within the bound of `field`; otherwise `None`, with a notice.
    fn bounded_hint(
        &mut self,
        field: super::ProfileField,
        value: &Option<String>,
    ) -> Option<String> {
        match self.config.profile.check(field, value.as_deref()) {
            Ok(()) => value.clone(),
            Err(detail) => {
                self.notice(Notice::ProfileRefused {
                    field,
                    device_id: self.device_id.clone().unwrap_or_default(),
                    detail,
                });
                None
            }
        }
    }

    fn create_session(&mut self, mut authed: Box<Authed>) -> (State, Step) {
        authed.resolved.user = self.config.profile.for_wire(authed.resolved.user.clone());
        let session = NewSession {
            session_id: authed.session_id.clone(),
            device_id: authed.opened.checked.hello.device_id.clone(),
            user_id: authed.resolved.user.user_id.clone(),
            device_public: authed.opened.checked.device_public,
            created_at: authed.opened.now,
            expires_at: authed.expires_at,
        };
        (
            State::AwaitSession(authed),
            Step::Query(Query::CreateSession(Box::new(session))),
        )
    }

    /// Whether another device of this user would need pairing.
    fn pairing_required(&mut self, mut authed: Box<Authed>) -> Next {
        if !self.config.auto_approve {
            authed.pairing_required = true;
            return self.send_ack(authed);
        }
        if self.config.max_auto_devices_per_user == 0 {
            authed.pairing_required = false;
            return self.send_ack(authed);
        }
        let user_id = authed.resolved.user.user_id.clone();
        Ok((
            State::AwaitCount(authed),
            Step::Query(Query::ActiveDevices { user_id }),
        ))
    }

    fn send_ack(&mut self, authed: Box<Authed>) -> Next {
        let user = &authed.resolved.user;
        let checked = &authed.opened.checked;
        let ack = HandshakeAck {
            handshake: "ok".to_owned(),
            session: Some(authed.session_id.clone()),
            user_id: Some(user.user_id.clone()),
            user: Some(user_info(user)),
            pairing_required: authed.pairing_required,
            device_ca_public: Some(encode_hex(&self.config.device_ca.public_key())),
            noise_public: Some(encode_hex(&authed.opened.key.public)),
            accepted_capabilities: Some(checked.accepted_capabilities.clone()),
            protocol_version: Some(u64::from(checked.version)),
            keepalive_interval: Some(self.config.keepalive_secs),
            certificate: authed
                .resolved
                .current
                .as_ref()
                .map(|c| CertificateSummary {
                    serial: c.data.serial,
                    issued_at: c.data.issued_at,
                    expires_at: c.data.expires_at,
                }),
            device_certificate: match &authed.resolved.issued {
                Some(cert) => Some(
                    serde_json::to_value(cert)
                        .map_err(|e| HandshakeError::new(FailReason::Codec, e.to_string()))?,
                ),
                None => None,
            },
        };
        Ok((
            State::SendingAck(authed),
            Step::Send(Outgoing::Ack(Box::new(ack))),
        ))
    }

    fn established(&mut self, authed: Authed) -> Next {
        let Authed {
            opened,
            resolved,
            session_id,
            device_known,
            expires_at,
            pq,
            ..
        } = authed;
        let Opened {
            checked,
            noise,
            key,
            ..
        } = opened;
        let pq_hybrid = pq.is_some();
        let mut noise = noise;
        let obf = if checked
            .accepted_capabilities
            .iter()
            .any(|c| c == CAP_ADAPTIVE_OBF)
        {
            Some(
                crate::ObfMaterial::take(&mut noise)
                    .map_err(|e| HandshakeError::new(FailReason::CryptoInternal, e))?,
            )
        } else {
            None
        };
        let mut hybrid_root = None;
        let transport = if let (Some(exchange), Some(offer)) = (pq, checked.pq) {
            let (transport, root) = exchange.into_transport(noise, offer)?;
            hybrid_root = Some(root);
            Some(transport)
        } else if checked
            .accepted_capabilities
            .iter()
            .any(|c| c == CAP_NOISE_TRANSPORT)
        {
            Some(
                noise
                    .into_transport()
                    .map_err(|e| HandshakeError::new(FailReason::Crypto, e.to_string()))?,
            )
        } else {
            None
        };
        let obf_root = obf
            .map(|material| material.finish(hybrid_root.as_deref()))
            .transpose()
            .map_err(|e| HandshakeError::new(FailReason::CryptoInternal, e))?;
        let established = Established {
            session_id,
            device_id: checked.hello.device_id,
            user: resolved.user,
            protocol_version: checked.version,
            pattern: checked.pattern,
            device_known,
            had_certificate: checked.certificate.is_some(),
            issued_certificate: resolved.issued.is_some(),
            accepted_capabilities: checked.accepted_capabilities,
            expires_at,
            noise_key_version: key.version,
            transport,
            pq_hybrid,
            obf_root,
        };
        Ok((State::Done, Step::Established(Box::new(established))))
    }
}

fn input_label(input: &Input) -> &'static str {
    match input {
        Input::Frame(_) => "a frame",
        Input::Closed => "a close",
        Input::Link(_) => "a link failure",
        Input::Sent => "a send completion",
        Input::Answer(_) => "an answer",
    }
}
