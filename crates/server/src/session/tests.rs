//! Handshake tests over an in-memory link: the real server handshake against the SDK's client
//! handshake (or a hand-built client where a test needs to misbehave), with a real SQLite store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use commucat_ccp::control::{ClientAuth, HandshakeProofJson, Hello, ServerAuth, UserInfo};
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_client::{DeviceIdentity, HandshakeOptions, ServerParams, Session};
use commucat_keys::{
    DeviceCertificate, DeviceCertificateData, DeviceKeyPair, Handshake, HandshakePattern,
    derive_handshake_context, encode_hex, x25519_public,
};
use commucat_link::memory::{self, MemoryStream};
use commucat_link::{ByteStream, Connection};
use commucat_store::{DeviceKeyEvent, SqliteStore, Store};
use zeroize::Zeroizing;

use super::handshake::{Established, HandshakeFailure, HandshakeSettings, Handshaker, NoiseKey};
use crate::live::Live;

pub(super) const DOMAIN: &str = "chat.example";
const DAY: i64 = 86_400;

pub(super) struct Fixture {
    pub(super) handshaker: Handshaker,
    pub(super) store: Arc<dyn Store>,
    pub(super) server: ServerParams,
    pub(super) ca: DeviceKeyPair,
}

pub(super) fn now() -> i64 {
    crate::clock::unix_now()
}

pub(super) async fn fixture_with(tweak: impl FnOnce(&mut HandshakeSettings)) -> Fixture {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    fixture_on(store, tweak)
}

/// A fixture whose handshaker uses `store` as the device registry.
pub(super) fn fixture_on(
    store: Arc<dyn Store>,
    tweak: impl FnOnce(&mut HandshakeSettings),
) -> Fixture {
    let noise_private = [11u8; 32];
    let ca = DeviceKeyPair::generate();
    let mut settings = HandshakeSettings {
        domain: DOMAIN.to_owned(),
        prologue: b"commucat".to_vec(),
        noise_keys: Live::new(vec![NoiseKey {
            version: 1,
            private: Zeroizing::new(noise_private),
            public: x25519_public(&noise_private),
            accept_until: None,
        }]),
        device_ca: ca.clone(),
        auto_approve: true,
        max_auto_devices_per_user: 5,
        certificate_validity_secs: 30 * DAY,
        renewal_margin_secs: 7 * DAY,
        session_ttl_secs: 3600,
        keepalive_secs: 30,
        clock_skew_secs: 300,
        profile: crate::profile::ProfileBounds::from_settings(
            &crate::config::BoundSettings::default(),
        ),
        pq_hybrid: true,
        adaptive_obf: true,
        obf_max_padding: 64,
    };
    tweak(&mut settings);
    Fixture {
        handshaker: Handshaker::new(Arc::new(settings), Arc::clone(&store)),
        store,
        server: ServerParams::new(DOMAIN, x25519_public(&noise_private)),
        ca,
    }
}

pub(super) async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

pub(super) type ServerSide = tokio::task::JoinHandle<(
    Result<Established, HandshakeFailure>,
    Connection<MemoryStream>,
)>;

#[allow(
    clippy::disallowed_methods,
    reason = "a test task, awaited by the test"
)]
pub(super) fn spawn_server(fx: &Fixture, stream: MemoryStream, timeout: Duration) -> ServerSide {
    let handshaker = fx.handshaker.clone();
    tokio::spawn(async move {
        let mut conn = Connection::new(stream, commucat_ccp::MAX_FRAME_LEN);
        let result = handshaker
            .run_and_report(&mut conn, "memory", timeout)
            .await;
        (result, conn)
    })
}

/// Runs the SDK client against the server; returns both outcomes.
pub(super) async fn connect(
    fx: &Fixture,
    identity: &DeviceIdentity,
    options: &HandshakeOptions,
) -> (
    Result<Session<MemoryStream>, commucat_client::ClientError>,
    Result<Established, HandshakeFailure>,
    Connection<MemoryStream>,
) {
    let (client_end, server_end) = memory::pair();
    let server = spawn_server(fx, server_end, Duration::from_secs(10));
    let client = Session::handshake(client_end, identity, &fx.server, options).await;
    let (established, conn) = server.await.unwrap();
    (client, established, conn)
}

pub(super) fn title(
    result: &Result<Session<MemoryStream>, commucat_client::ClientError>,
) -> String {
    match result {
        Ok(_) => "connected".to_owned(),
        Err(e) => e
            .title()
            .map_or_else(|| format!("no title: {e}"), str::to_owned),
    }
}

fn certificate(
    fx: &Fixture,
    user_id: &str,
    device: &DeviceIdentity,
    issued_at: i64,
    expires_at: i64,
) -> DeviceCertificate {
    DeviceCertificate::issue(
        fx.ca.signing_key(),
        DeviceCertificateData {
            serial: 42,
            user_id: user_id.to_owned(),
            device_id: device.device_id.clone(),
            public_key: device.keys.public_key(),
            issuer: fx.ca.public_key(),
            issued_at,
            expires_at,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn xk_registers_a_new_device_and_issues_a_certificate() {
    let fx = fixture().await;
    let identity = DeviceIdentity::generate("device-1").with_handle("alice");
    let (client, server, _) = connect(&fx, &identity, &HandshakeOptions::default()).await;
    let session = client.unwrap();
    let established = server.unwrap();
    let info = session.info();
    assert_eq!(info.session_id, established.session_id);
    assert_eq!(info.session_id.len(), 64);
    assert!(!info.encrypted());
    assert_eq!(info.user_id, established.user.user_id);
    assert_eq!(info.user.as_ref().unwrap().handle.as_deref(), Some("alice"));
    assert_eq!(info.device_ca_public, Some(fx.ca.public_key()));
    let cert = info
        .issued_certificate
        .as_ref()
        .expect("certificate issued");
    cert.verify(&fx.ca.public_key(), now(), 300).unwrap();
    assert_eq!(cert.data.user_id, info.user_id);
    assert_eq!(cert.data.expires_at - cert.data.issued_at, 30 * DAY);
    // Registry: device, key event and session were stored before the ACK arrived.
    let device = fx.store.device("device-1").await.unwrap().unwrap();
    assert_eq!(device.public_key, identity.keys.public_key());
    let events = fx.store.key_events("device-1").await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "register");
    // Stored under the token's hash, never the token itself.
    assert!(fx.store.session(&info.session_id).await.unwrap().is_none());
    let key = crate::registry::session_key(&info.session_id);
    let stored = fx.store.session(&key).await.unwrap().unwrap();
    assert_eq!(stored.device_id, "device-1");
}

#[tokio::test]
async fn ik_completes_after_message_two() {
    let fx = fixture().await;
    let identity = DeviceIdentity::generate("device-ik");
    let options = HandshakeOptions::default().with_pattern(HandshakePattern::Ik);
    let (client, server, _) = connect(&fx, &identity, &options).await;
    assert_eq!(server.unwrap().pattern, HandshakePattern::Ik);
    assert!(client.unwrap().info().issued_certificate.is_some());
}

#[tokio::test]
async fn noise_transport_encrypts_both_directions_only_when_asked() {
    let fx = fixture().await;
    for (options, encrypted) in [
        (HandshakeOptions::default(), false),
        (HandshakeOptions::default().with_noise_transport(), true),
        (
            HandshakeOptions::default()
                .with_noise_transport()
                .with_pattern(HandshakePattern::Ik),
            true,
        ),
    ] {
        let identity =
            DeviceIdentity::generate(format!("device-{encrypted}-{:?}", options.pattern));
        let (client, server, mut conn) = connect(&fx, &identity, &options).await;
        let mut session = client.unwrap();
        let established = server.unwrap();
        assert_eq!(session.info().encrypted(), encrypted);
        assert_eq!(conn.codec_mut().is_encrypted(), encrypted);
        assert_eq!(
            established
                .accepted_capabilities
                .contains(&"noise-transport".to_owned()),
            encrypted
        );
        // Server → client and client → server, including a frame larger than one Noise message.
        let big = Bytes::from(vec![0x42u8; 100_000]);
        let frame = Frame::new(FrameType::Msg, 7, 3, big.clone()).unwrap();
        conn.send(&frame).await.unwrap();
        assert_eq!(session.recv().await.unwrap().unwrap(), frame);
        let seq = session.send_bytes(FrameType::Msg, 7, big).await.unwrap();
        let got = conn.recv().await.unwrap().unwrap();
        assert_eq!(got.sequence(), seq);
        assert_eq!(got.payload().len(), 100_000);
    }
}

#[tokio::test]
async fn reconnect_keeps_a_fresh_certificate_and_renews_one_near_expiry() {
    let fx = fixture().await;
    let mut identity = DeviceIdentity::generate("device-renew");
    let (client, _, _) = connect(&fx, &identity, &HandshakeOptions::default()).await;
    let first = client.unwrap();
    identity.certificate = first.info().issued_certificate.clone();
    let user_id = first.info().user_id.clone();

    let (client, server, _) = connect(&fx, &identity, &HandshakeOptions::default()).await;
    let again = client.unwrap();
    assert_eq!(server.unwrap().user.user_id, user_id);
    assert!(
        again.info().issued_certificate.is_none(),
        "30 days left: no renewal"
    );

    identity.certificate = Some(certificate(
        &fx,
        &user_id,
        &identity,
        now() - 29 * DAY,
        now() + DAY,
    ));
    let (client, _, _) = connect(&fx, &identity, &HandshakeOptions::default()).await;
    let renewed = client
        .unwrap()
        .info()
        .issued_certificate
        .clone()
        .expect("renewed");
    assert!(renewed.data.expires_at >= now() + 29 * DAY);
    assert_eq!(renewed.data.user_id, user_id);
}

#[tokio::test]
async fn version_mismatch() {
    let fx = fixture().await;
    let identity = DeviceIdentity::generate("device-v");
    let options = HandshakeOptions {
        supported_versions: vec![2, 3],
        ..HandshakeOptions::default()
    };
    let (client, server, _) = connect(&fx, &identity, &options).await;
    assert_eq!(title(&client), "Protocol Version Mismatch");
    assert_eq!(
        server.unwrap_err().kind(),
        commucat_ccp::ProblemKind::ProtocolVersionMismatch
    );
}

#[tokio::test]
async fn wrong_domain_fails_the_proof() {
    let fx = fixture().await;
    let identity = DeviceIdentity::generate("device-d");
    let (client_end, server_end) = memory::pair();
    let server = spawn_server(&fx, server_end, Duration::from_secs(10));
    let params = ServerParams::new("evil.example", fx.server.server_static);
    let client =
        Session::handshake(client_end, &identity, &params, &HandshakeOptions::default()).await;
    assert_eq!(title(&client), "Invalid Handshake Proof");
    assert!(server.await.unwrap().0.is_err());
}

#[tokio::test]
async fn wrong_server_key_fails_noise() {
    let fx = fixture().await;
    let identity = DeviceIdentity::generate("device-k");
    let (client_end, server_end) = memory::pair();
    let _server = spawn_server(&fx, server_end, Duration::from_secs(10));
    let params = ServerParams::new(DOMAIN, x25519_public(&[99; 32]));
    let client =
        Session::handshake(client_end, &identity, &params, &HandshakeOptions::default()).await;
    assert_eq!(title(&client), "Handshake Failed");
}

/// A client that builds HELLO by hand so tests can break one thing at a time.
pub(super) struct RawClient {
    pub(super) conn: Connection<MemoryStream>,
    pub(super) noise: Handshake,
    pub(super) server: ServerSide,
}

impl RawClient {
    /// Sends a HELLO built from `identity`, with Noise keyed by `noise_private`, after `mutate`.
    pub(super) async fn hello(
        fx: &Fixture,
        identity: &DeviceIdentity,
        noise_private: &[u8; 32],
        claimed_static: [u8; 32],
        mutate: impl FnOnce(&mut Hello),
    ) -> Self {
        let (client_end, server_end) = memory::pair();
        let server = spawn_server(fx, server_end, Duration::from_secs(10));
        let mut conn = Connection::new(client_end, commucat_ccp::MAX_FRAME_LEN);
        let mut noise = Handshake::initiator(
            HandshakePattern::Xk,
            noise_private,
            &fx.server.server_static,
            b"commucat",
        )
        .unwrap();
        let msg1 = noise.write_message(&[]).unwrap();
        let ctx = derive_handshake_context(
            DOMAIN,
            &identity.device_id,
            &identity.keys.public_key(),
            &claimed_static,
        )
        .unwrap();
        let proof =
            commucat_keys::prove(identity.keys.signing_key(), &ctx, &mut commucat_keys::OsRng)
                .unwrap();
        let mut hello = Hello {
            pattern: "XK".into(),
            supported_versions: None,
            protocol_version: Some(1),
            device_id: identity.device_id.clone(),
            handshake: encode_hex(&msg1),
            client_static: encode_hex(&claimed_static),
            device_public: Some(identity.keys.public_key_hex()),
            capabilities: vec![],
            zkp: Some(HandshakeProofJson {
                commitment: encode_hex(&proof.commitment),
                response: encode_hex(&proof.response),
            }),
            device_ca_public: None,
            user: identity.user.clone(),
            certificate: identity
                .certificate
                .as_ref()
                .map(|c| serde_json::to_value(c).unwrap()),
            pq_bundle: None,
        };
        mutate(&mut hello);
        conn.send_control(FrameType::Hello, 0, &hello)
            .await
            .unwrap();
        Self {
            conn,
            noise,
            server,
        }
    }

    pub(super) async fn expect_error(mut self) -> (Problem, HandshakeFailure) {
        loop {
            let frame = self
                .conn
                .recv()
                .await
                .unwrap()
                .expect("a frame before close");
            if frame.frame_type() == FrameType::Error {
                let problem: Problem = frame.parse_control().unwrap();
                let failure = self.server.await.unwrap().0.unwrap_err();
                return (problem, failure);
            }
            assert_eq!(
                frame.frame_type(),
                FrameType::Auth,
                "only AUTH may precede the ERROR"
            );
            let auth: ServerAuth = frame.parse_control().unwrap();
            self.noise
                .read_message(&hex::decode(auth.handshake).unwrap())
                .unwrap();
            let msg3 = self.noise.write_message(&[]).unwrap();
            self.conn
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
        }
    }
}

pub(super) async fn raw_error(
    fx: &Fixture,
    identity: &DeviceIdentity,
    mutate: impl FnOnce(&mut Hello),
) -> (Problem, HandshakeFailure) {
    RawClient::hello(
        fx,
        identity,
        &identity.keys.x25519_private(),
        identity.keys.x25519_static(),
        mutate,
    )
    .await
    .expect_error()
    .await
}

#[tokio::test]
async fn bad_pattern_bad_proof_and_missing_fields() {
    let fx = fixture().await;
    let identity = DeviceIdentity::generate("device-raw");
    let (problem, _) = raw_error(&fx, &identity, |h| h.pattern = "NN".into()).await;
    assert_eq!(
        problem.title.as_deref(),
        Some("Unsupported Handshake Pattern")
    );
    assert_eq!(problem.status, Some(400));
    assert_eq!(problem.error.as_deref(), Some("handshake"));

    let (problem, _) = raw_error(&fx, &identity, |h| {
        let mut r = h.zkp.clone().unwrap();
        r.response = format!("{:0>64}", "1");
        h.zkp = Some(r);
    })
    .await;
    assert_eq!(problem.title.as_deref(), Some("Invalid Handshake Proof"));

    let (problem, _) = raw_error(&fx, &identity, |h| h.zkp = None).await;
    assert_eq!(problem.title.as_deref(), Some("Invalid Handshake Proof"));
    let (problem, _) = raw_error(&fx, &identity, |h| h.device_public = None).await;
    assert_eq!(problem.title.as_deref(), Some("Invalid Control Payload"));
    let (problem, _) = raw_error(&fx, &identity, |h| h.client_static = "zz".into()).await;
    assert_eq!(problem.title.as_deref(), Some("Invalid Control Payload"));
    let (problem, _) = raw_error(&fx, &identity, |h| {
        h.device_id = "bad id with spaces".into();
    })
    .await;
    assert_eq!(problem.title.as_deref(), Some("Invalid Control Payload"));
    // Nothing was registered by any of these.
    assert!(fx.store.device("device-raw").await.unwrap().is_none());
}

#[tokio::test]
async fn static_key_revealed_in_message_three_must_be_client_static() {
    let fx = fixture().await;
    let identity = DeviceIdentity::generate("device-static");
    // The proof covers a claimed client_static, but Noise runs with another key.
    let other = [77u8; 32];
    let (problem, failure) = RawClient::hello(
        &fx,
        &identity,
        &other,
        identity.keys.x25519_static(),
        |_| {},
    )
    .await
    .expect_error()
    .await;
    assert_eq!(problem.title.as_deref(), Some("Static Key Mismatch"));
    assert_eq!(failure.stage.label(), "await_client");
    // Nothing was registered: the device is written only after message 3 checks out.
    assert!(fx.store.device("device-static").await.unwrap().is_none());
}

#[tokio::test]
async fn revoked_device_and_changed_key_are_refused() {
    let fx = fixture().await;
    let identity = DeviceIdentity::generate("device-rv");
    let (client, _, _) = connect(&fx, &identity, &HandshakeOptions::default()).await;
    client.unwrap();

    // Same device id, different key: never a silent replacement.
    let impostor = DeviceIdentity::generate("device-rv");
    let (client, server, _) = connect(&fx, &impostor, &HandshakeOptions::default()).await;
    assert_eq!(title(&client), "Device Key Mismatch");
    assert!(server.is_err());
    let device = fx.store.device("device-rv").await.unwrap().unwrap();
    assert_eq!(device.public_key, identity.keys.public_key());

    fx.store
        .revoke_device(
            "device-rv",
            DeviceKeyEvent {
                event_id: "ev-revoke".into(),
                device_id: "device-rv".into(),
                public_key: identity.keys.public_key(),
                recorded_at: now(),
                action: "revoke".into(),
            },
        )
        .await
        .unwrap();
    let (client, _, _) = connect(&fx, &identity, &HandshakeOptions::default()).await;
    assert_eq!(title(&client), "Device Revoked");
}

#[tokio::test]
async fn handles_and_ids_never_attach_a_device_without_a_certificate() {
    let fx = fixture().await;
    let alice = DeviceIdentity::generate("alice-phone").with_handle("alice");
    let (client, _, _) = connect(&fx, &alice, &HandshakeOptions::default()).await;
    let alice_user = client.unwrap().info().user_id.clone();

    let thief = DeviceIdentity::generate("thief-1").with_handle("alice");
    let (client, _, _) = connect(&fx, &thief, &HandshakeOptions::default()).await;
    assert_eq!(title(&client), "Account Proof Required");

    let mut thief = DeviceIdentity::generate("thief-2");
    thief.user = Some(UserInfo {
        id: Some(alice_user.clone()),
        ..UserInfo::default()
    });
    let (client, _, _) = connect(&fx, &thief, &HandshakeOptions::default()).await;
    assert_eq!(title(&client), "Account Proof Required");
    assert_eq!(
        fx.store.devices_of_user(&alice_user).await.unwrap().len(),
        1
    );

    // With a certificate of alice's account (as pairing hands out), the device attaches.
    let mut laptop = DeviceIdentity::generate("alice-laptop");
    laptop.certificate = Some(certificate(
        &fx,
        &alice_user,
        &laptop,
        now(),
        now() + 30 * DAY,
    ));
    let (client, _, _) = connect(&fx, &laptop, &HandshakeOptions::default()).await;
    assert_eq!(client.unwrap().info().user_id, alice_user);
    assert_eq!(
        fx.store.devices_of_user(&alice_user).await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn device_limit_and_disabled_auto_approval_require_pairing() {
    let fx = fixture_with(|s| s.max_auto_devices_per_user = 1).await;
    let first = DeviceIdentity::generate("limit-1");
    let (client, _, _) = connect(&fx, &first, &HandshakeOptions::default()).await;
    let session = client.unwrap();
    assert!(session.info().pairing_required);
    let user = session.info().user_id.clone();
    let mut second = DeviceIdentity::generate("limit-2");
    second.certificate = Some(certificate(&fx, &user, &second, now(), now() + DAY * 30));
    let (client, _, _) = connect(&fx, &second, &HandshakeOptions::default()).await;
    assert_eq!(title(&client), "PairingRequired");
    let problem = client.unwrap_err().problem().cloned().unwrap();
    assert_eq!(problem.pairing_required, Some(true));

    let closed = fixture_with(|s| s.auto_approve = false).await;
    let (client, _, _) = connect(
        &closed,
        &DeviceIdentity::generate("x-1"),
        &HandshakeOptions::default(),
    )
    .await;
    assert_eq!(title(&client), "PairingRequired");
}

#[tokio::test]
async fn expired_or_foreign_certificates_are_refused() {
    let fx = fixture().await;
    let mut identity = DeviceIdentity::generate("device-exp");
    let (client, _, _) = connect(&fx, &identity, &HandshakeOptions::default()).await;
    let user = client.unwrap().info().user_id.clone();
    identity.certificate = Some(certificate(
        &fx,
        &user,
        &identity,
        now() - 40 * DAY,
        now() - 10 * DAY,
    ));
    let (client, _, _) = connect(&fx, &identity, &HandshakeOptions::default()).await;
    assert_eq!(title(&client), "Certificate Invalid");

    let other_ca = DeviceKeyPair::generate();
    identity.certificate = Some(
        DeviceCertificate::issue(
            other_ca.signing_key(),
            DeviceCertificateData {
                serial: 1,
                user_id: user,
                device_id: identity.device_id.clone(),
                public_key: identity.keys.public_key(),
                issuer: other_ca.public_key(),
                issued_at: now(),
                expires_at: now() + DAY,
            },
        )
        .unwrap(),
    );
    let (client, _, _) = connect(&fx, &identity, &HandshakeOptions::default()).await;
    assert_eq!(title(&client), "Certificate Invalid");
}

#[tokio::test]
async fn garbage_truncation_and_timeout() {
    let fx = fixture().await;
    // Garbage: an unknown frame type.
    let (mut client_end, server_end) = memory::pair();
    let server = spawn_server(&fx, server_end, Duration::from_secs(10));
    client_end
        .write(Bytes::from_static(&[0x04, 0x77, 0, 0, 0]))
        .await
        .unwrap();
    let mut conn = Connection::new(client_end, commucat_ccp::MAX_FRAME_LEN);
    let frame = conn.recv().await.unwrap().unwrap();
    let problem: Problem = frame.parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Invalid Frame Type"));
    assert_eq!(problem.error.as_deref(), Some("decode"));
    assert_eq!(server.await.unwrap().0.unwrap_err().reason, "decode");

    // Truncated: half a HELLO, then the client stops sending.
    let (mut client_end, server_end) = memory::pair();
    let server = spawn_server(&fx, server_end, Duration::from_secs(10));
    client_end
        .write(Bytes::from_static(&[0x20, 0x01, 0x00, 0x01]))
        .await
        .unwrap();
    client_end.close_write();
    let mut conn = Connection::new(client_end, commucat_ccp::MAX_FRAME_LEN);
    let problem: Problem = conn.recv().await.unwrap().unwrap().parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Truncated Frame"));
    server.await.unwrap().0.unwrap_err();

    // Silent client: the handshake times out.
    let (client_end, server_end) = memory::pair();
    let server = spawn_server(&fx, server_end, Duration::from_millis(100));
    let mut conn = Connection::new(client_end, commucat_ccp::MAX_FRAME_LEN);
    let problem: Problem = conn.recv().await.unwrap().unwrap().parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Handshake Timeout"));
    assert_eq!(
        server.await.unwrap().0.unwrap_err().kind(),
        commucat_ccp::ProblemKind::HandshakeTimeout
    );

    // A frame other than HELLO first.
    let (client_end, server_end) = memory::pair();
    let server = spawn_server(&fx, server_end, Duration::from_secs(10));
    let mut conn = Connection::new(client_end, commucat_ccp::MAX_FRAME_LEN);
    conn.send(&Frame::new(FrameType::Msg, 1, 1, &b"hi"[..]).unwrap())
        .await
        .unwrap();
    let problem: Problem = conn.recv().await.unwrap().unwrap().parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Unexpected Frame"));
    server.await.unwrap().0.unwrap_err();
}

#[tokio::test]
async fn a_superseded_key_is_accepted_until_its_grace_period_ends() {
    let old_private = [12u8; 32];
    let old = |accept_until| NoiseKey {
        version: 1,
        private: Zeroizing::new(old_private),
        public: x25519_public(&old_private),
        accept_until,
    };
    let pinned_old = ServerParams::new(DOMAIN, x25519_public(&old_private));
    for (accept_until, accepted) in [
        (None, true),
        (Some(now() + 3600), true),
        (Some(now() - 1), false),
    ] {
        let mut fx = fixture_with(|s| {
            let current = &s.noise_keys.load()[0];
            let current = NoiseKey {
                version: 2,
                private: current.private.clone(),
                public: current.public,
                accept_until: None,
            };
            s.noise_keys.store(vec![current, old(accept_until)]);
        })
        .await;
        for pattern in [HandshakePattern::Xk, HandshakePattern::Ik] {
            let options = HandshakeOptions::default().with_pattern(pattern);
            let identity = DeviceIdentity::generate(format!("device-{pattern:?}-{accepted}"));
            // The current key always works.
            let (client, server, _) = connect(&fx, &identity, &options).await;
            client.unwrap();
            assert_eq!(server.unwrap().noise_key_version, 2);
            let current = std::mem::replace(&mut fx.server, pinned_old.clone());
            let (client, server, _) = connect(&fx, &identity, &options).await;
            fx.server = current;
            if accepted {
                client.unwrap();
                assert_eq!(server.unwrap().noise_key_version, 1);
            } else {
                assert_eq!(title(&client), "Handshake Failed", "{accept_until:?}");
                assert_eq!(server.unwrap_err().reason, "crypto");
            }
        }
    }
}

#[test]
fn the_debug_form_of_a_noise_key_hides_its_private_half() {
    let private = [0xab; 32];
    let key = NoiseKey {
        version: 3,
        private: Zeroizing::new(private),
        public: x25519_public(&private),
        accept_until: None,
    };
    let text = format!("{:?}", Live::new(vec![key]));
    assert!(!text.contains(&hex::encode(private)), "{text}");
    assert!(!text.contains("171, 171"), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
    assert!(
        text.contains(&hex::encode(x25519_public(&private))),
        "{text}"
    );
}
