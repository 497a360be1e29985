//! The classical handshake without I/O: a client and a server machine connected in memory
//! ([`commucat_handshake::sim::Pair`]), an in-memory registry, deterministic randomness and a
//! simulated clock. Every path and failure of the handshake, without tokio and without sleeps.

use std::sync::Arc;
use std::time::Duration;

use commucat_ccp::control::{Hello, UserInfo};
use commucat_ccp::{Frame, FrameType, ProblemKind};
use commucat_handshake::client::{ClientFailure, ClientHandshake, ClientParams};
use commucat_handshake::server::{IdentityRules, NoiseKey, Notice, ServerConfig, ServerHandshake};
use commucat_handshake::sim::{Limits, MemStore, Outcome, Pair, To};
use commucat_handshake::{FailReason, Stage, StoreFailure};
use commucat_keys::{DeviceCertificate, DeviceKeyPair, HandshakePattern, x25519_public};
use rand::SeedableRng;
use rand::rngs::StdRng;
use zeroize::Zeroizing;

pub(crate) const NOW: i64 = 1_800_000_000;
pub(crate) const DAY: i64 = 86_400;
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct World {
    pub(crate) ca: DeviceKeyPair,
    pub(crate) keys: Arc<Vec<NoiseKey>>,
    pub(crate) limits: Limits,
    pub(crate) auto_approve: bool,
    pub(crate) max_devices: u32,
    pub(crate) store: MemStore,
    pub(crate) now: i64,
    pub(crate) seed: u64,
    pub(crate) pq_hybrid: bool,
    pub(crate) adaptive_obf: bool,
}

pub(crate) struct Client {
    pub(crate) device_id: String,
    pub(crate) keys: DeviceKeyPair,
    pub(crate) certificate: Option<DeviceCertificate>,
    pub(crate) user: Option<UserInfo>,
    pub(crate) pattern: HandshakePattern,
    pub(crate) capabilities: Vec<String>,
    pub(crate) versions: Vec<u64>,
    pub(crate) server_static: [u8; 32],
    pub(crate) domain: &'static str,
    pub(crate) pq: Option<commucat_handshake::pq::DeviceKeys>,
}

fn noise_key(version: u32, seed: u8, accept_until: Option<i64>) -> NoiseKey {
    let private = [seed; 32];
    NoiseKey {
        version,
        private: Zeroizing::new(private),
        public: x25519_public(&private),
        accept_until,
    }
}

fn identity() -> IdentityRules {
    IdentityRules {
        valid_device_id: |id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
        },
        valid_handle: |h| {
            !h.is_empty()
                && h.len() <= 64
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        },
        max_device_id_len: 128,
        max_handle_len: 64,
    }
}

impl World {
    pub(crate) fn new() -> Self {
        Self {
            ca: DeviceKeyPair::from_seed(&[7; 32]),
            keys: Arc::new(vec![noise_key(1, 11, None)]),
            limits: Limits {
                display_name: 32,
                avatar_url: 64,
            },
            auto_approve: true,
            max_devices: 0,
            store: MemStore::default(),
            now: NOW,
            seed: 1,
            pq_hybrid: true,
            adaptive_obf: true,
        }
    }

    pub(crate) fn client(&self, device_id: &str, seed: u8) -> Client {
        Client {
            device_id: device_id.to_owned(),
            keys: DeviceKeyPair::from_seed(&[seed; 32]),
            certificate: None,
            user: None,
            pattern: HandshakePattern::Xk,
            capabilities: Vec::new(),
            versions: vec![u64::from(commucat_ccp::PROTOCOL_VERSION)],
            server_static: self.keys[0].public,
            domain: "example.test",
            pq: None,
        }
    }

    pub(crate) fn run(&mut self, client: &Client) -> Outcome {
        self.run_tampered(client, |_, f| Some(f)).0
    }

    pub(crate) fn run_tampered(
        &mut self,
        client: &Client,
        tamper: impl FnMut(To, Frame) -> Option<Frame>,
    ) -> (Outcome, Vec<Notice>) {
        let config = ServerConfig {
            domain: "example.test",
            prologue: b"commucat",
            device_ca: &self.ca,
            auto_approve: self.auto_approve,
            max_auto_devices_per_user: self.max_devices,
            certificate_validity_secs: 30 * DAY,
            renewal_margin_secs: 7 * DAY,
            session_ttl_secs: DAY,
            keepalive_secs: 30,
            clock_skew_secs: 300,
            profile: &self.limits,
            identity: identity(),
            pq_hybrid: self.pq_hybrid,
            adaptive_obf: self.adaptive_obf,
        };
        let params = ClientParams {
            device_id: &client.device_id,
            keys: &client.keys,
            certificate: client.certificate.as_ref(),
            user: client.user.as_ref(),
            domain: client.domain,
            server_static: &client.server_static,
            prologue: b"commucat",
            pattern: client.pattern,
            capabilities: &client.capabilities,
            supported_versions: &client.versions,
            pq: client.pq.as_ref(),
        };
        self.seed += 2;
        let mut pair = Pair {
            server: ServerHandshake::new(config, StdRng::seed_from_u64(self.seed)),
            client: ClientHandshake::new(params, StdRng::seed_from_u64(self.seed + 1)),
            keys: Arc::clone(&self.keys),
            now: self.now,
        };
        let outcome = pair.run(&mut self.store, TIMEOUT, tamper);
        let notices = pair.server.take_notices();
        self.now = pair.now;
        (outcome, notices)
    }
}

pub(crate) fn failure(outcome: &Outcome) -> &commucat_handshake::HandshakeError {
    outcome
        .server
        .as_ref()
        .expect_err("the server should refuse")
}

/// The server's reason and the client's view of it (the ERROR frame's kind, or none).
pub(crate) fn refused(outcome: &Outcome, reason: FailReason) -> Option<ProblemKind> {
    let f = failure(outcome);
    assert_eq!(f.reason, reason, "{f:?}");
    match &outcome.client {
        Some(Err(ClientFailure::Rejected(problem))) => {
            assert_eq!(problem.kind(), Some(reason.kind()));
            problem.kind()
        }
        _ => None,
    }
}

pub(crate) fn established(
    outcome: &Outcome,
) -> (
    &commucat_handshake::server::Established,
    &commucat_handshake::client::SessionInfo,
) {
    let server = outcome.server.as_ref().expect("server established");
    let Some(Ok((client, _))) = &outcome.client else {
        panic!("client did not establish: {:?}", outcome.client);
    };
    assert_eq!(server.session_id, client.session_id);
    assert_eq!(server.user.user_id, client.user_id);
    (server, client)
}

#[test]
fn xk_registers_a_new_device_issues_a_certificate_and_stores_the_session() {
    let mut world = World::new();
    let client = world.client("phone", 1);
    let outcome = world.run(&client);
    let (server, info) = established(&outcome);
    assert!(!server.device_known);
    assert!(server.issued_certificate);
    assert_eq!(server.pattern, HandshakePattern::Xk);
    assert_eq!(server.expires_at, NOW + DAY);
    let cert = info.issued_certificate.as_ref().expect("certificate");
    assert_eq!(cert.data.device_id, "phone");
    assert_eq!(cert.data.issued_at, NOW);
    assert_eq!(info.device_ca_public, Some(world.ca.public_key()));
    assert!(!info.pairing_required);
    let device = &world.store.devices["phone"];
    assert_eq!(device.public_key, client.keys.public_key());
    assert_eq!(world.store.sessions.len(), 1);
    assert_eq!(world.store.sessions[0].session_id, server.session_id);
    assert!(
        world.store.users[&server.user.user_id]
            .handle
            .starts_with("user-")
    );
    // HELLO, AUTH, AUTH (message 3), ACK.
    let kinds: Vec<_> = outcome
        .frames
        .iter()
        .map(|(to, f)| (*to, f.frame_type()))
        .collect();
    assert_eq!(
        kinds,
        [
            (To::Server, FrameType::Hello),
            (To::Client, FrameType::Auth),
            (To::Server, FrameType::Auth),
            (To::Client, FrameType::Ack),
        ]
    );
}

#[test]
fn ik_reconnects_a_known_device_with_its_certificate_in_two_messages() {
    let mut world = World::new();
    let mut client = world.client("phone", 1);
    let first = world.run(&client);
    let (_, info) = established(&first);
    client.certificate = info.issued_certificate.clone();
    client.pattern = HandshakePattern::Ik;
    client.capabilities = vec!["noise-transport".to_owned(), "delivery-receipts".to_owned()];
    let second = world.run(&client);
    let (server, info) = established(&second);
    assert!(server.device_known);
    assert!(server.had_certificate);
    assert!(!server.issued_certificate, "a fresh certificate is kept");
    assert!(info.encrypted() && info.delivery_receipts());
    assert_eq!(second.frames.len(), 3, "IK: HELLO, AUTH, ACK");
    assert!(matches!(&second.client, Some(Ok((_, Some(_))))));
    assert!(second.server.as_ref().is_ok_and(|s| s.transport.is_some()));
}

#[test]
fn noise_transport_pairs_seal_and_open() {
    let mut world = World::new();
    let mut client = world.client("phone", 1);
    client.capabilities = vec!["noise-transport".to_owned()];
    let outcome = world.run(&client);
    let Some(Ok((_, Some(mut to_server)))) = outcome.client else {
        panic!("client transport missing");
    };
    let mut from_client = outcome
        .server
        .expect("established")
        .transport
        .expect("transport");
    let mut sealed = bytes::BytesMut::new();
    to_server.seal(b"hello over noise", &mut sealed).unwrap();
    let mut plain = bytes::BytesMut::new();
    from_client.open(&sealed, &mut plain).unwrap();
    assert_eq!(&plain[..], b"hello over noise");
}

#[test]
fn the_same_seeds_give_byte_identical_handshakes() {
    let frames = || {
        let mut world = World::new();
        let client = world.client("phone", 1);
        world.run(&client).frames
    };
    let (a, b) = (frames(), frames());
    assert_eq!(a, b);
    let mut other = World::new();
    other.seed = 100;
    let client = other.client("phone", 1);
    assert_ne!(
        other.run(&client).frames,
        a,
        "other randomness, other bytes"
    );
}

#[test]
fn a_replayed_ik_hello_is_refused() {
    let mut world = World::new();
    let mut client = world.client("phone", 1);
    client.pattern = HandshakePattern::Ik;
    let mut hello = None;
    let (first, _) = world.run_tampered(&client, |to, f| {
        if to == To::Server && f.frame_type() == FrameType::Hello {
            hello = Some(f.clone());
        }
        Some(f)
    });
    established(&first);
    let hello = hello.expect("HELLO seen");
    let (second, _) = world.run_tampered(&client, |to, f| {
        Some(if to == To::Server && f.frame_type() == FrameType::Hello {
            hello.clone()
        } else {
            f
        })
    });
    assert_eq!(
        refused(&second, FailReason::Replay),
        Some(ProblemKind::HandshakeReplayed)
    );
    assert_eq!(failure(&second).device_id.as_deref(), Some("phone"));
}

#[test]
fn pairing_is_required_when_approval_is_off_or_the_device_limit_is_reached() {
    let mut world = World::new();
    world.auto_approve = false;
    let client = world.client("phone", 1);
    let outcome = world.run(&client);
    assert_eq!(
        refused(&outcome, FailReason::PairingRequired),
        Some(ProblemKind::PairingRequired)
    );
    assert!(world.store.devices.is_empty());

    // A limit of one device: the certificate of the first attaches a second only within it.
    let mut world = World::new();
    world.max_devices = 1;
    let first = world.client("phone", 1);
    let outcome = world.run(&first);
    let (_, info) = established(&outcome);
    assert!(info.pairing_required, "the account is at its limit");
    let cert = info.issued_certificate.clone().unwrap();
    let mut second = world.client("tablet", 2);
    // A certificate for another device is refused outright.
    second.certificate = Some(cert);
    let outcome = world.run(&second);
    assert_eq!(
        refused(&outcome, FailReason::Certificate),
        Some(ProblemKind::CertificateInvalid)
    );
    // The registry refuses the registration at its limit (checked again in the transaction).
    let third = world.client("laptop", 3);
    world
        .store
        .failures
        .insert("register", StoreFailure::DeviceLimit { limit: 1 });
    let outcome = world.run(&third);
    let f = failure(&outcome);
    assert_eq!(f.reason, FailReason::PairingRequired);
    assert_eq!(f.stage, Stage::Established);
    assert!(f.detail.contains("already has 1 devices"));
}

#[test]
fn revoked_devices_and_changed_keys_are_refused() {
    let mut world = World::new();
    let client = world.client("phone", 1);
    established(&world.run(&client));
    let impostor = world.client("phone", 2);
    let outcome = world.run(&impostor);
    assert_eq!(
        refused(&outcome, FailReason::KeyMismatch),
        Some(ProblemKind::DeviceKeyMismatch)
    );
    world.store.devices.get_mut("phone").unwrap().active = false;
    let outcome = world.run(&client);
    assert_eq!(
        refused(&outcome, FailReason::Revoked),
        Some(ProblemKind::DeviceRevoked)
    );
}

#[test]
fn a_certificate_near_expiry_is_renewed_and_an_expired_one_refused() {
    let mut world = World::new();
    let mut client = world.client("phone", 1);
    let outcome = world.run(&client);
    client.certificate = established(&outcome).1.issued_certificate.clone();
    world.now = NOW + 25 * DAY; // 5 days left, under the 7-day margin
    let outcome = world.run(&client);
    let (server, info) = established(&outcome);
    assert!(server.issued_certificate);
    let renewed = info.issued_certificate.clone().unwrap();
    assert_eq!(renewed.data.issued_at, NOW + 25 * DAY);
    world.now = NOW + 31 * DAY; // the old one has expired
    let outcome = world.run(&client);
    assert_eq!(
        refused(&outcome, FailReason::Certificate),
        Some(ProblemKind::CertificateInvalid)
    );
    client.certificate = Some(renewed);
    established(&world.run(&client));
}

#[test]
fn handles_and_user_ids_never_attach_without_a_certificate() {
    let mut world = World::new();
    let mut client = world.client("phone", 1);
    client.user = Some(UserInfo {
        handle: Some("alice".to_owned()),
        ..UserInfo::default()
    });
    let outcome = world.run(&client);
    let (server, _) = established(&outcome);
    assert_eq!(server.user.handle, "alice");
    let user_id = server.user.user_id.clone();

    let mut taken = world.client("tablet", 2);
    taken.user = client.user.clone();
    assert_eq!(
        refused(&world.run(&taken), FailReason::HandleTaken),
        Some(ProblemKind::AccountProofRequired)
    );

    let mut by_id = world.client("tablet", 2);
    by_id.user = Some(UserInfo {
        user_id: Some(user_id),
        ..UserInfo::default()
    });
    let outcome = world.run(&by_id);
    assert_eq!(
        refused(&outcome, FailReason::UserProof),
        Some(ProblemKind::AccountProofRequired)
    );
    assert!(
        failure(&outcome)
            .detail
            .contains("needs a device certificate")
    );

    let mut bad_handle = world.client("tablet", 2);
    bad_handle.user = Some(UserInfo {
        handle: Some("no spaces".to_owned()),
        ..UserInfo::default()
    });
    assert_eq!(
        refused(&world.run(&bad_handle), FailReason::Invalid),
        Some(ProblemKind::InvalidControlPayload)
    );

    let mut other = world.client("phone", 1);
    other.user = Some(UserInfo {
        handle: Some("bob".to_owned()),
        ..UserInfo::default()
    });
    assert_eq!(
        refused(&world.run(&other), FailReason::UserMismatch),
        Some(ProblemKind::AccountProofRequired)
    );
}

#[test]
fn profile_hints_are_bounded() {
    let mut world = World::new();
    let mut client = world.client("phone", 1);
    client.user = Some(UserInfo {
        display_name: Some("x".repeat(33)),
        ..UserInfo::default()
    });
    let (outcome, notices) = world.run_tampered(&client, |_, f| Some(f));
    assert_eq!(
        refused(&outcome, FailReason::Profile),
        Some(ProblemKind::ProfileFieldTooLong)
    );
    assert!(
        matches!(notices.as_slice(), [Notice::ProfileRefused { device_id, .. }] if device_id == "phone")
    );

    // A known device's over-long hint is dropped, not fatal; a fitting one is stored.
    client.user = None;
    established(&world.run(&client));
    client.user = Some(UserInfo {
        display_name: Some("x".repeat(33)),
        avatar_url: Some("https://a.example/me.png".to_owned()),
        ..UserInfo::default()
    });
    let (outcome, notices) = world.run_tampered(&client, |_, f| Some(f));
    let (server, _) = established(&outcome);
    assert_eq!(server.user.display_name, None);
    assert_eq!(
        server.user.avatar_url.as_deref(),
        Some("https://a.example/me.png")
    );
    assert_eq!(notices.len(), 1);
    assert_eq!(
        world.store.users[&server.user.user_id].avatar_url,
        server.user.avatar_url
    );
}

#[test]
fn a_static_key_other_than_client_static_is_refused_in_message_three() {
    let mut world = World::new();
    let honest = world.client("phone", 1);
    // Capture an honest HELLO, then splice it in front of another key's Noise messages.
    let mut honest_hello = None;
    world.run_tampered(&honest, |to, f| {
        if to == To::Server && f.frame_type() == FrameType::Hello {
            honest_hello = Some(f.clone());
        }
        Some(f)
    });
    let honest_hello: Hello = honest_hello.unwrap().parse_control().unwrap();
    let mallory = world.client("phone", 9);
    let (outcome, _) = world.run_tampered(&mallory, |to, f| {
        if to == To::Server && f.frame_type() == FrameType::Hello {
            let mine: Hello = f.parse_control().unwrap();
            let spliced = Hello {
                handshake: mine.handshake,
                ..honest_hello.clone()
            };
            return Frame::control(FrameType::Hello, 0, f.sequence(), &spliced).ok();
        }
        Some(f)
    });
    let f = failure(&outcome);
    assert_eq!(f.reason, FailReason::StaticMismatch);
    assert_eq!(f.stage, Stage::AwaitClient);
}

#[test]
fn bad_frames_are_refused_with_their_reason() {
    let mut world = World::new();
    let client = world.client("phone", 1);
    let replace = |payload: &'static [u8], frame_type: FrameType| {
        move |to: To, f: Frame| {
            Some(if to == To::Server && f.frame_type() == FrameType::Hello {
                Frame::new(frame_type, 0, f.sequence(), payload).unwrap()
            } else {
                f
            })
        }
    };
    let (o, _) = world.run_tampered(&client, replace(b"{}", FrameType::Hello));
    assert_eq!(
        refused(&o, FailReason::Invalid),
        Some(ProblemKind::InvalidControlPayload)
    );
    let (o, _) = world.run_tampered(&client, replace(b"{}", FrameType::Join));
    assert_eq!(
        refused(&o, FailReason::UnexpectedFrame),
        Some(ProblemKind::UnexpectedFrame)
    );
    // The client's message 3 replaced by garbage hex.
    let (o, _) = world.run_tampered(&client, |to, f| {
        Some(if to == To::Server && f.frame_type() == FrameType::Auth {
            Frame::new(
                FrameType::Auth,
                0,
                f.sequence(),
                &b"{\"handshake\":\"00ff\"}"[..],
            )
            .unwrap()
        } else {
            f
        })
    });
    assert_eq!(
        refused(&o, FailReason::Crypto),
        Some(ProblemKind::HandshakeFailed)
    );
    assert_eq!(failure(&o).stage, Stage::AwaitClient);
    // A HELLO whose proof is for another domain.
    let mut wrong = world.client("phone", 1);
    wrong.domain = "elsewhere.test";
    assert_eq!(
        refused(&world.run(&wrong), FailReason::InvalidProof),
        Some(ProblemKind::InvalidProof)
    );
    // No common version.
    let mut old = world.client("phone", 1);
    old.versions = vec![999];
    assert_eq!(
        refused(&world.run(&old), FailReason::Protocol),
        Some(ProblemKind::ProtocolVersionMismatch)
    );
    // Message 1 for another server key.
    let mut lost = world.client("phone", 1);
    lost.server_static = x25519_public(&[12; 32]);
    assert_eq!(
        refused(&world.run(&lost), FailReason::Crypto),
        Some(ProblemKind::HandshakeFailed)
    );
    // A server ACK the client cannot read.
    let (o, _) = world.run_tampered(&client, |to, f| {
        Some(if to == To::Client && f.frame_type() == FrameType::Ack {
            Frame::new(
                FrameType::Ack,
                0,
                f.sequence(),
                &b"{\"handshake\":\"no\"}"[..],
            )
            .unwrap()
        } else {
            f
        })
    });
    assert!(o.server.is_ok());
    assert!(
        matches!(o.client, Some(Err(ClientFailure::Protocol(ref m))) if m.contains("ACK says"))
    );
}

#[test]
fn a_superseded_key_works_until_its_grace_period_ends() {
    let mut world = World::new();
    world.keys = Arc::new(vec![
        noise_key(2, 12, None),
        noise_key(1, 11, Some(NOW + 60)),
    ]);
    let client = world.client("phone", 1); // addresses key 1 (seed 11)
    let mut client = client;
    client.server_static = x25519_public(&[11; 32]);
    let outcome = world.run(&client);
    assert_eq!(established(&outcome).0.noise_key_version, 1);
    world.now = NOW + 60;
    assert_eq!(
        refused(&world.run(&client), FailReason::Crypto),
        Some(ProblemKind::HandshakeFailed)
    );
}

#[test]
fn a_silent_client_times_out_by_the_simulated_clock() {
    let mut world = World::new();
    let client = world.client("phone", 1);
    // Message 3 never arrives.
    let (outcome, _) = world.run_tampered(&client, |to, f| {
        (to == To::Client || f.frame_type() == FrameType::Hello).then_some(f)
    });
    let f = failure(&outcome);
    assert_eq!(f.reason, FailReason::Timeout);
    assert_eq!(f.kind(), ProblemKind::HandshakeTimeout);
    assert_eq!(world.now, NOW + 10, "the clock moved to the deadline");
    assert!(world.store.sessions.is_empty());
}

#[test]
fn registry_failures_map_to_their_problems() {
    for (label, store_failure, reason, stage) in [
        (
            "device",
            StoreFailure::Unavailable,
            FailReason::StorageUnavailable,
            Stage::Hello,
        ),
        (
            "register",
            StoreFailure::Other("disk".to_owned()),
            FailReason::Storage,
            Stage::Established,
        ),
        (
            "session",
            StoreFailure::DeviceRevoked,
            FailReason::Revoked,
            Stage::Established,
        ),
        (
            "session",
            StoreFailure::DeviceKeyChanged,
            FailReason::KeyMismatch,
            Stage::Established,
        ),
        (
            "register",
            StoreFailure::Conflict("taken".to_owned()),
            FailReason::Conflict,
            Stage::Established,
        ),
    ] {
        let mut world = World::new();
        world.store.failures.insert(label, store_failure);
        let client = world.client("phone", 1);
        let outcome = world.run(&client);
        let f = failure(&outcome);
        assert_eq!((f.reason, f.stage), (reason, stage), "{label}");
        assert_eq!(refused(&outcome, reason), Some(reason.kind()));
    }
}

#[test]
fn a_closed_stream_cannot_be_answered() {
    let mut world = World::new();
    let client = world.client("phone", 1);
    let (outcome, _) = world.run_tampered(&client, |to, f| (to == To::Client).then_some(f));
    // The client's HELLO is lost and the client is waiting: the server times out…
    assert_eq!(failure(&outcome).reason, FailReason::Timeout);
    // …while a stream that closes is a `client-closed` failure no ERROR can reach.
    let error = commucat_handshake::HandshakeError::new(FailReason::ClientClosed, "closed");
    assert!(!error.can_reply());
    assert_eq!(FailReason::ClientClosed, "client-closed");
    assert_eq!(
        FailReason::Decode(ProblemKind::TruncatedFrame).label(),
        "decode"
    );
    assert_eq!(error.problem().kind(), Some(ProblemKind::TruncatedFrame));
}
