//! Hostile-client handshake tests: a key rotation or a revocation landing mid-handshake, a
//! replayed IK HELLO, a small-order device key. Each interleaving is forced by the test (a held
//! message 3, a store hook), never by timing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use commucat_ccp::control::{ClientAuth, ServerAuth};
use commucat_ccp::{FrameType, Problem, ProblemKind};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session};
use commucat_keys::{DeviceKeyPair, HandshakePattern, encode_hex};
use commucat_link::memory::{self, MemoryStream};
use commucat_link::{ByteStream, Connection};
use commucat_store::{DeviceKeyEvent, KeyRotation, RotateOutcome, SqliteStore, Store};

use super::Sessions;
use super::established::{Messaging, MessagingSettings};
use super::handshake::Handshaker;
use super::ik_replay::ReplayCache;
use super::racing_store::RacingStore;
use super::tests::{
    Fixture, RawClient, connect, fixture, fixture_on, now, raw_error, spawn_server, title,
};
use crate::registry::key_event;
use crate::registry::random_id;
use crate::router::presence::{LocalPresence, Presence};
use crate::router::presence_redis::RedisPresence;

const WAIT: Duration = Duration::from_secs(10);

/// Replaces the device key the way `POST /api/devices/rotate` does (same store call).
async fn rotate(store: &dyn Store, device_id: &str, old: [u8; 32], new: [u8; 32]) {
    let outcome = store
        .rotate_device_key(KeyRotation {
            device_id: device_id.to_owned(),
            old_public_key: old,
            event: key_event(device_id, new, DeviceKeyEvent::ROTATE, now()),
            min_interval_secs: 0,
        })
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Rotated);
}

#[tokio::test]
async fn a_rotation_while_message_three_is_held_refuses_the_old_key() {
    let fx = fixture().await;
    let identity = DeviceIdentity::generate("device-rot");
    let (client, _, _) = connect(&fx, &identity, &HandshakeOptions::default()).await;
    client.unwrap();

    // HELLO with the current key is resolved and answered with message 2...
    let mut raw = RawClient::hello(
        &fx,
        &identity,
        &identity.keys.x25519_private(),
        identity.keys.x25519_static(),
        |_| {},
    )
    .await;
    let frame = raw.conn.recv().await.unwrap().expect("AUTH");
    assert_eq!(frame.frame_type(), FrameType::Auth);
    let auth: ServerAuth = frame.parse_control().unwrap();
    raw.noise
        .read_message(&hex::decode(auth.handshake).unwrap())
        .unwrap();
    // ...then the key is rotated before the client sends message 3.
    let next = DeviceKeyPair::generate();
    rotate(
        fx.store.as_ref(),
        "device-rot",
        identity.keys.public_key(),
        next.public_key(),
    )
    .await;
    let msg3 = raw.noise.write_message(&[]).unwrap();
    raw.conn
        .send_control(
            FrameType::Auth,
            0,
            &ClientAuth {
                handshake: encode_hex(&msg3),
                pq_signature: None,
            },
        )
        .await
        .unwrap();
    let frame = raw
        .conn
        .recv()
        .await
        .unwrap()
        .expect("a reply to message 3");
    assert_eq!(
        frame.frame_type(),
        FrameType::Error,
        "the old key got a session"
    );
    let problem: Problem = frame.parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Device Key Mismatch"));
    let failure = raw.server.await.unwrap().0.unwrap_err();
    assert_eq!(failure.kind(), ProblemKind::DeviceKeyMismatch);
    let device = fx.store.device("device-rot").await.unwrap().unwrap();
    assert_eq!(device.public_key, next.public_key());
}

/// Connects `device_id` once (registering it), then again through the session service with
/// `change` landing right after the second session row is written, before the session joins
/// the hub; the second session must end with an ERROR titled `title` before serving anything.
async fn change_after_session_insert<F, Fut>(device_id: &str, change: F, title: &str)
where
    F: FnOnce(Arc<Messaging>, [u8; 32]) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let racing = Arc::new(RacingStore::new(Arc::new(
        SqliteStore::open_in_memory().await.unwrap(),
    )));
    let store: Arc<dyn Store> = racing.clone();
    let fx = fixture_on(Arc::clone(&store), |_| {});
    let messaging = Arc::new(Messaging::new(
        Arc::clone(&store),
        Arc::new(LocalPresence::new()),
        MessagingSettings::default(),
    ));
    let sessions = Sessions::new(
        fx.handshaker.clone(),
        Arc::clone(&messaging),
        WAIT,
        commucat_ccp::MAX_FRAME_LEN,
        crate::transport::TransportManager::new(
            crate::transport::ManagerSettings {
                max_networks: 16,
                deflection_window: WAIT,
                http3: false,
            },
            Arc::clone(&messaging.hub.metrics),
        ),
    );
    let identity = DeviceIdentity::generate(device_id);
    let (client, _, _) = connect(&fx, &identity, &HandshakeOptions::default()).await;
    client.unwrap();

    let (m, public) = (Arc::clone(&messaging), identity.keys.public_key());
    racing.after_session_insert(move || change(m, public));
    let (client_end, server_end) = memory::pair();
    #[allow(
        clippy::disallowed_methods,
        reason = "a test task, awaited or ended by the test"
    )]
    let serving = tokio::spawn({
        let sessions = sessions.clone();
        async move {
            sessions
                .serve(server_end, "memory".to_owned(), "binary")
                .await;
        }
    });
    let mut session = Session::handshake(
        client_end,
        &identity,
        &fx.server,
        &HandshakeOptions::default(),
    )
    .await
    .expect("the ACK was sent: the session row existed when it was written");
    let frame = tokio::time::timeout(WAIT, session.recv())
        .await
        .expect("the session must not stay up")
        .unwrap()
        .expect("an ERROR before the stream ends");
    assert_eq!(frame.frame_type(), FrameType::Error);
    let problem: Problem = frame.parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some(title));
    tokio::time::timeout(WAIT, serving).await.unwrap().unwrap();
    assert!(!messaging.hub.is_online(device_id));
}

#[tokio::test]
async fn a_revocation_between_session_insert_and_registration_ends_the_session() {
    // What `POST /api/devices/revoke` does: the store call, then the hub disconnect.
    let revoke = |m: Arc<Messaging>, public: [u8; 32]| async move {
        let event = key_event("device-rev", public, DeviceKeyEvent::REVOKE, now());
        m.store.revoke_device("device-rev", event).await.unwrap();
        let was_online = m.hub.disconnect(
            "device-rev",
            Problem::new(ProblemKind::DeviceRevoked).with_detail("revoked"),
        );
        assert!(!was_online, "the session is not registered yet");
    };
    change_after_session_insert("device-rev", revoke, "Device Revoked").await;
}

#[tokio::test]
async fn a_rotation_between_session_insert_and_registration_ends_the_session() {
    // What `POST /api/devices/rotate` does: the store call, then the hub disconnect.
    let rotate_key = |m: Arc<Messaging>, public: [u8; 32]| async move {
        let next = DeviceKeyPair::generate().public_key();
        rotate(m.store.as_ref(), "device-turn", public, next).await;
        let was_online = m.hub.disconnect(
            "device-turn",
            Problem::new(ProblemKind::DeviceKeyMismatch).with_detail("rotated"),
        );
        assert!(!was_online, "the session is not registered yet");
    };
    change_after_session_insert("device-turn", rotate_key, "Device Key Mismatch").await;
}

/// Records every byte the client writes before it first reads: its HELLO.
struct Recorder {
    inner: MemoryStream,
    hello: Arc<Mutex<Vec<u8>>>,
    reading: bool,
}

impl ByteStream for Recorder {
    async fn read(&mut self) -> std::io::Result<Option<Bytes>> {
        self.reading = true;
        self.inner.read().await
    }

    async fn write(&mut self, bytes: Bytes) -> std::io::Result<()> {
        if !self.reading {
            self.hello.lock().unwrap().extend_from_slice(&bytes);
        }
        self.inner.write(bytes).await
    }
}

/// Runs an IK handshake of `identity` against `fx` and returns the HELLO bytes it sent.
async fn capture_ik_hello(fx: &Fixture, identity: &DeviceIdentity) -> Bytes {
    let options = HandshakeOptions::default().with_pattern(HandshakePattern::Ik);
    let hello = Arc::new(Mutex::new(Vec::new()));
    let (client_end, server_end) = memory::pair();
    let server = spawn_server(fx, server_end, WAIT);
    let recorder = Recorder {
        inner: client_end,
        hello: Arc::clone(&hello),
        reading: false,
    };
    Session::handshake(recorder, identity, &fx.server, &options)
        .await
        .unwrap();
    server.await.unwrap().0.unwrap();
    let captured = Bytes::from(hello.lock().unwrap().clone());
    assert!(!captured.is_empty());
    captured
}

/// Sends captured HELLO bytes to `fx` on a new stream and expects `Handshake Replayed`.
async fn expect_replay_refused(fx: &Fixture, captured: Bytes) {
    let (mut attacker, server_end) = memory::pair();
    let server = spawn_server(fx, server_end, WAIT);
    attacker.write(captured).await.unwrap();
    let mut conn = Connection::new(attacker, commucat_ccp::MAX_FRAME_LEN);
    let frame = conn.recv().await.unwrap().expect("a reply to the replay");
    assert_eq!(
        frame.frame_type(),
        FrameType::Error,
        "a replayed HELLO got {}",
        frame.frame_type()
    );
    let problem: Problem = frame.parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Handshake Replayed"));
    let failure = server.await.unwrap().0.unwrap_err();
    assert_eq!(failure.kind(), ProblemKind::HandshakeReplayed);
}

#[tokio::test]
async fn a_replayed_ik_hello_is_refused() {
    let fx = fixture().await;
    let identity = DeviceIdentity::generate("device-replay");
    // A captured HELLO (e.g. at a TLS-terminating proxy) sent again, byte for byte.
    let captured = capture_ik_hello(&fx, &identity).await;
    expect_replay_refused(&fx, captured).await;

    // The device itself still connects with a fresh HELLO.
    let options = HandshakeOptions::default().with_pattern(HandshakePattern::Ik);
    let (client, _, _) = connect(&fx, &identity, &options).await;
    assert_eq!(title(&client), "connected");
}

#[tokio::test]
async fn a_hello_accepted_by_one_node_is_refused_by_another() {
    let Ok(url) = std::env::var("COMMUCAT_TEST_REDIS") else {
        eprintln!("skipped: COMMUCAT_TEST_REDIS is unset");
        return;
    };
    let prefix = format!("test-{}:", &random_id()[..16]);
    let registry: Arc<dyn Presence> =
        Arc::new(RedisPresence::connect(&url, &prefix).await.unwrap());
    // Two nodes: one store, one Redis, each its own replay cache.
    let mut fx = fixture().await;
    let node = |handshaker: &Handshaker| {
        handshaker
            .clone()
            .with_replay_cache(Arc::new(ReplayCache::new(1024, Duration::from_secs(60))))
            .with_shared_replays(Arc::clone(&registry))
    };
    let (node_a, node_b) = (node(&fx.handshaker), node(&fx.handshaker));
    let identity = DeviceIdentity::generate("device-nodes");
    fx.handshaker = node_a;
    let captured = capture_ik_hello(&fx, &identity).await;
    fx.handshaker = node_b;
    expect_replay_refused(&fx, captured).await;
}

#[tokio::test]
async fn a_small_order_device_key_is_refused() {
    let fx = fixture().await;
    let identity = DeviceIdentity::generate("device-weak");
    // The identity point: s·B − c·A = s·B for every challenge c, so the proof (R = B, s = 1)
    // verifies without any private key.
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    let mut basepoint = [0x66u8; 32];
    basepoint[0] = 0x58;
    let mut one = [0u8; 32];
    one[0] = 1;
    let (problem, failure) = raw_error(&fx, &identity, |h| {
        h.device_public = Some(encode_hex(&identity_point));
        h.zkp = Some(commucat_ccp::control::HandshakeProofJson {
            commitment: encode_hex(&basepoint),
            response: encode_hex(&one),
        });
    })
    .await;
    assert_eq!(problem.title.as_deref(), Some("Invalid Control Payload"));
    assert!(failure.detail.contains("small-order"), "{}", failure.detail);
    assert!(fx.store.device("device-weak").await.unwrap().is_none());
}
