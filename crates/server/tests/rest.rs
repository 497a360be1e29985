#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The REST API through the real server over TLS, on every transport a client can use: HTTP/1.1
//! without ALPN (the deployed client), HTTP/1.1 with ALPN and HTTP/2. Bearer authentication
//! with a handshake's session id, devices, pairing, rotation, friends, P2P assist, metrics and
//! health; every route with every status it answers, success bodies decoded into the deployed
//! client's own types and error bodies checked as problem details; and the deployed client's
//! pairing flow end to end.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::rest::{Answer, Transport, check_strictness, contract, deployed, eventually, with};
use common::{Client, StoreBackend, TestServer, unix_now};
use commucat_ccp::{FrameType, Problem};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session, transport};
use commucat_keys::{
    DeviceCertificate, DeviceKeyPair, decode_hex32, encode_hex, rotation_message, sign_rotation,
};
use commucat_store::DeviceKeyEvent;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The REST clients of a test server. [`Rest::call`] goes over HTTP/1.1 without ALPN, as the
/// deployed client calls; every answer is either a 200 with a JSON body or a problem.
struct Rest {
    clients: common::rest::Rest,
}

impl Rest {
    fn new(server: &TestServer) -> Self {
        Self {
            clients: common::rest::Rest::new(server),
        }
    }

    async fn call_on(
        &self,
        transport: Transport,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let answer = self
            .clients
            .call(transport, method, path, token, body)
            .await;
        if answer.status == StatusCode::OK {
            assert_eq!(answer.content_type, "application/json", "{answer}");
            answer.json();
        } else {
            answer.problem(answer.status, "");
        }
        answer
    }

    /// Over HTTP/1.1 without ALPN, as the deployed client calls.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        self.call_on(Transport::Http1NoAlpn, method, path, token, body)
            .await
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// A call that must succeed; returns its body.
    async fn ok(&self, method: Method, path: &str, token: Option<&str>, body: &Value) -> Value {
        let answer = self.call(method, path, token, Some(body)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        answer.body
    }
}

fn expect(answer: &Answer, status: StatusCode) {
    answer.expect(status);
}

fn token(client: &Client) -> String {
    client.session.info().session_id.clone()
}

fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
}

/// What `/api/pair/claim` answered, as the deployed client reads it and as sent.
struct Claimed {
    deployed: deployed::PairingClaimResponse,
    body: Value,
}

/// Pairs a new device into `issuer`'s account as the deployed client does (server-key claim)
/// and connects it with the claimed identity.
async fn pair_and_connect(server: &TestServer, rest: &Rest, issuer: &Client) -> (Claimed, Client) {
    let ticket: deployed::PairingTicket = rest
        .call(
            Method::POST,
            "/api/pair",
            Some(&token(issuer)),
            Some(&json!({"ttl": null})),
        )
        .await
        .decode();
    let answer = rest
        .call(
            Method::POST,
            "/api/pair/claim",
            None,
            Some(&json!({"pair_code": ticket.pair_code})),
        )
        .await;
    let claimed = Claimed {
        deployed: answer.decode(),
        body: answer.body,
    };
    let client = server.connect_as(claimed_identity(&claimed.body)).await;
    (claimed, client)
}

/// The session ends with a `Device Revoked` ERROR.
async fn expect_closed_as_revoked(client: &mut Client) {
    let frames = client.recv_until_closed().await;
    let last = frames.last().expect("a closing ERROR");
    assert_eq!(last.frame_type(), FrameType::Error);
    let problem: Problem = last.parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Device Revoked"));
}

fn claimed_identity(claimed: &Value) -> DeviceIdentity {
    let certificate: DeviceCertificate =
        serde_json::from_value(claimed["device_certificate"].clone()).unwrap();
    DeviceIdentity {
        device_id: claimed["device_id"].as_str().unwrap().to_owned(),
        keys: DeviceKeyPair::from_seed_hex(claimed["private_key"].as_str().unwrap()).unwrap(),
        certificate: Some(certificate),
        user: None,
    }
}

/// A `POST /api/devices/rotate` body: `device_id` from `current` to `new`, signed by `signer`.
fn rotation(
    device_id: &str,
    current: &[u8; 32],
    signer: &DeviceKeyPair,
    new: &[u8; 32],
    at: i64,
) -> Value {
    let message = rotation_message(device_id, current, new, at).unwrap();
    json!({
        "device_id": device_id,
        "public_key": encode_hex(new),
        "issued_at": at,
        "proof": encode_hex(&signer.sign(&message)),
    })
}

// ---------------------------------------------------------------- bearer authentication

#[tokio::test]
async fn session_id_is_a_bearer_over_every_transport() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);
    for transport in Transport::ALL {
        let list: deployed::DevicesEnvelope = rest
            .call_on(transport, Method::GET, "/api/devices", Some(&bearer), None)
            .await
            .decode();
        assert_eq!(list.devices.len(), 1);
        let device = &list.devices[0];
        assert_eq!(device.device_id, "alice-1");
        assert_eq!(device.status, "active");
        assert!(device.current);
        assert_eq!(device.public_key, alice.identity.keys.public_key_hex());
        assert!(is_rfc3339_utc(&device.created_at), "{device:?}");

        // Missing, unknown, empty and non-bearer credentials: 401 problems.
        for (authorization, detail) in [
            (None, "missing Authorization"),
            (Some("Bearer not-a-session".to_owned()), "unknown session"),
            (Some("Bearer ".to_owned()), "must be Bearer"),
            (Some(format!("Basic {bearer}")), "must be Bearer"),
        ] {
            rest.clients
                .send_with(
                    transport,
                    Method::GET,
                    "/api/devices",
                    authorization.as_deref(),
                    None,
                )
                .await
                .problem(StatusCode::UNAUTHORIZED, detail);
        }
        // The scheme is case-insensitive.
        rest.clients
            .send_with(
                transport,
                Method::GET,
                "/api/devices",
                Some(&format!("bearer {bearer}")),
                None,
            )
            .await
            .decode::<deployed::DevicesEnvelope>();
    }
}

#[tokio::test]
async fn a_connected_session_stays_valid_and_expires_after_it_leaves() {
    // session.ttl 3 s, so the session task refreshes every second (a quarter of the TTL, at
    // least 1 s) and a refreshed expiry is always a full second ahead of the next refresh; with
    // 1 or 2 s the stored whole-second expiry could lapse between two refreshes.
    let server = TestServer::start(|c| c.session.ttl = Duration::from_secs(3)).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);
    let store = server.store().await;
    let key = commucat_server::registry::session_key(&bearer);
    let first = store.session(&key).await.unwrap().unwrap().expires_at;

    // The refresh moves the stored expiry forward while the device stays connected…
    let later = eventually("the session refresh", Duration::from_secs(10), || async {
        let expires_at = store.session(&key).await.unwrap().unwrap().expires_at;
        (expires_at > first).then_some(expires_at)
    })
    .await;
    assert!(later > first);
    // …so once the first expiry has passed (the one time passage this needs: the TTL), the
    // token is still accepted.
    eventually("the first expiry", Duration::from_secs(10), || async {
        (unix_now() >= first).then_some(())
    })
    .await;
    rest.get("/api/devices", &bearer)
        .await
        .decode::<deployed::DevicesEnvelope>();

    // After the device leaves, nothing refreshes it: the token expires (the stored session is
    // kept, and refused as expired).
    alice.close();
    let refused = eventually("the token's expiry", Duration::from_secs(15), || async {
        let answer = rest.get("/api/devices", &bearer).await;
        (answer.status != StatusCode::OK).then_some(answer)
    })
    .await;
    refused.problem(StatusCode::UNAUTHORIZED, "session expired");
    let stored = store.session(&key).await.unwrap().unwrap();
    assert!(stored.expires_at <= unix_now(), "{}", stored.expires_at);
}

// ---------------------------------------------------------------- pairing and devices

/// What the deployed client does: server-info → handshake → devices with the session bearer →
/// pair → claim → the second device handshakes with the claimed certificate → both listed →
/// revoke ends the live session. Every answer decodes into the deployed client's types.
async fn pairing_flow_as_the_deployed_client_does_it(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let rest = Rest::new(&server);
    let info: deployed::ServerInfo = rest
        .call(Method::GET, "/api/server-info", None, None)
        .await
        .decode();
    let ca = decode_hex32(info.device_ca_public.as_deref().unwrap()).unwrap();
    let alice = server.connect("alice-1").await;
    let alice_user = alice.session.info().user_id.clone();
    let devices: deployed::DevicesEnvelope =
        rest.get("/api/devices", &token(&alice)).await.decode();
    assert_eq!(devices.devices.len(), 1);

    let answer = rest
        .post("/api/pair", Some(&token(&alice)), &json!({"ttl": 120}))
        .await;
    let ticket: deployed::PairingTicket = answer.decode();
    let issued: contract::Issued = answer.decode();
    let code = ticket.pair_code.as_str();
    assert_eq!(code.len(), 9);
    assert_eq!(&code[4..5], "-");
    assert!(
        code.chars()
            .filter(|c| *c != '-')
            .all(|c| "ABCDEFGHJKMNPQRSTUVWXYZ23456789".contains(c))
    );
    assert_eq!(ticket.ttl, 120);
    assert!(is_rfc3339_utc(&ticket.issued_at));
    assert!(is_rfc3339_utc(&ticket.expires_at));
    assert!(decode_hex32(&ticket.device_seed).is_ok());
    assert_eq!(ticket.issuer_device_id.as_deref(), Some("alice-1"));
    assert_eq!(issued.issuer_device_id, "alice-1");
    assert_eq!(
        Some(&issued.device_ca_public),
        info.device_ca_public.as_ref()
    );

    // Lower case with blanks is accepted (trimmed and upper-cased), with a device name.
    let answer = rest
        .post(
            "/api/pair/claim",
            None,
            &json!({"pair_code": format!("  {}\n", code.to_lowercase()), "device_name": "laptop"}),
        )
        .await;
    let claimed: deployed::PairingClaimResponse = answer.decode();
    let device_id = claimed.device_id.as_str();
    assert_eq!(device_id.len(), 64);
    assert!(device_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let keys = DeviceKeyPair::from_seed_hex(&claimed.private_key).unwrap();
    assert_eq!(claimed.public_key, keys.public_key_hex());
    // private key = BLAKE3(seed), as the deployed `from_seed`
    let seed = hex::decode(&claimed.seed).unwrap();
    assert_eq!(
        DeviceKeyPair::from_seed_material(&seed)
            .unwrap()
            .public_key_hex(),
        keys.public_key_hex()
    );
    assert_eq!(claimed.issuer_device_id, "alice-1");
    assert_eq!(claimed.user.id, alice_user);
    assert_eq!(claimed.user.handle, "alice_1");
    assert_eq!(answer.body["user_id"], alice_user.as_str());
    assert_eq!(claimed.device_name.as_deref(), Some("laptop"));
    assert_eq!(claimed.device_ca_public, info.device_ca_public);
    // The certificate as the deployed crate reads it, signed by the server's device CA.
    let certificate = claimed.device_certificate.as_ref().unwrap();
    certificate.verify(&ca).unwrap();
    assert_eq!(certificate.data.device_id, device_id);
    assert_eq!(certificate.data.user_id, alice_user);
    assert_eq!(certificate.data.public_key, keys.public_key());

    // The claimed device completes the handshake with its certificate and seed.
    let laptop = server.connect_as(claimed_identity(&answer.body)).await;
    assert_eq!(laptop.session.info().user_id, alice_user);
    // Both are listed for either device's bearer; `current` marks the caller.
    for (client, current) in [(&alice, "alice-1"), (&laptop, device_id)] {
        let list: deployed::DevicesEnvelope =
            rest.get("/api/devices", &token(client)).await.decode();
        let mut ids: Vec<&str> = list.devices.iter().map(|d| d.device_id.as_str()).collect();
        ids.sort_unstable();
        let mut want = vec!["alice-1", device_id];
        want.sort_unstable();
        assert_eq!(ids, want);
        for d in &list.devices {
            assert_eq!(d.current, d.device_id == current, "{d:?}");
            assert_eq!(d.status, "active");
        }
    }
    // The registration wrote a key event.
    let store = server.store().await;
    let events = store.key_events(device_id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, DeviceKeyEvent::REGISTER);

    // A redeemed code cannot be claimed again.
    let again = rest
        .post("/api/pair/claim", None, &json!({"pair_code": code}))
        .await;
    again.problem(StatusCode::BAD_REQUEST, "already redeemed");
    assert_eq!(store.pairing(code).await.unwrap().unwrap().attempts, 1);

    // Revoking the laptop from alice ends its live session at once; the deployed client takes
    // any JSON as the answer.
    let mut laptop = laptop;
    let revoked = rest
        .post(
            "/api/devices/revoke",
            Some(&token(&alice)),
            &json!({ "device_id": device_id }),
        )
        .await;
    revoked.decode::<Value>();
    expect_closed_as_revoked(&mut laptop).await;
}

async fn pairing_errors_and_ttl_clamp(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |c| {
        c.devices.pairing_ttl = Duration::from_secs(600);
    })
    .await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);

    // Without a bearer: 401 on both paths.
    for path in ["/api/pair", "/api/pairing"] {
        expect(
            &rest.post(path, None, &json!({"ttl": null})).await,
            StatusCode::UNAUTHORIZED,
        );
    }
    // TTL: null → configured; capped by the configuration; at least 60.
    for (ttl, want) in [
        (json!(null), 600),
        (json!(100_000), 600),
        (json!(10), 60),
        (json!(300), 300),
    ] {
        let issued = rest
            .ok(
                Method::POST,
                "/api/pairing",
                Some(&bearer),
                &json!({ "ttl": ttl }),
            )
            .await;
        assert_eq!(issued["ttl"], want, "{ttl}");
    }
    // Bad bodies: 400.
    expect(
        &rest
            .post("/api/pair", Some(&bearer), &json!({"ttl": "soon"}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    expect(
        &rest
            .post("/api/pair/claim", None, &json!({"code": "x"}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    // Unknown code: 404 (alias path too).
    for path in ["/api/pair/claim", "/api/pairing/claim"] {
        expect(
            &rest
                .post(path, None, &json!({"pair_code": "ZZZZ-ZZZZ"}))
                .await,
            StatusCode::NOT_FOUND,
        );
    }
    // Wrong guesses, blocked codes and their caps: tests/pairing.rs.
}

async fn revoke_rules_and_revoking_a_connected_device_ends_its_session(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bob = server.connect("bob-1").await;
    let bearer = token(&alice);
    let (claimed, mut laptop) = pair_and_connect(&server, &rest, &alice).await;
    let laptop_id = claimed.deployed.device_id.clone();
    let laptop_bearer = token(&laptop);

    let revoke = |device: &str| json!({ "device_id": device });
    rest.post("/api/devices/revoke", None, &revoke(&laptop_id))
        .await
        .problem(StatusCode::UNAUTHORIZED, "missing Authorization");
    rest.post("/api/devices/revoke", Some(&bearer), &revoke("alice-1"))
        .await
        .problem(StatusCode::CONFLICT, "cannot revoke itself");
    rest.post("/api/devices/revoke", Some(&bearer), &revoke("bob-1"))
        .await
        .problem(StatusCode::FORBIDDEN, "another account");
    rest.post("/api/devices/revoke", Some(&bearer), &revoke("nobody"))
        .await
        .problem(StatusCode::NOT_FOUND, "no device nobody");
    rest.post("/api/devices/revoke", Some(&bearer), &json!({"id": 1}))
        .await
        .problem(StatusCode::BAD_REQUEST, "not the expected JSON");

    // Revoking the connected laptop over HTTP/2: 200, and its session ends at once.
    let answer = rest
        .call_on(
            Transport::Http2,
            Method::POST,
            "/api/devices/revoke",
            Some(&bearer),
            Some(&revoke(&laptop_id)),
        )
        .await;
    let revoked: contract::Revoked = answer.decode();
    assert_eq!(revoked.device_id, laptop_id);
    assert_eq!(revoked.status, "revoked");
    expect_closed_as_revoked(&mut laptop).await;

    // Its bearer is dead, the list shows it revoked, the key log has the revocation.
    rest.get("/api/devices", &laptop_bearer)
        .await
        .problem(StatusCode::UNAUTHORIZED, "unknown session");
    let list: deployed::DevicesEnvelope = rest.get("/api/devices", &bearer).await.decode();
    let entry = list
        .devices
        .iter()
        .find(|d| d.device_id == laptop_id)
        .unwrap();
    assert_eq!(entry.status, "revoked");
    assert!(!entry.current);
    let store = server.store().await;
    let actions: Vec<String> = store
        .key_events(&laptop_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, [DeviceKeyEvent::REGISTER, DeviceKeyEvent::REVOKE]);
    // Revoking again is the same 200.
    rest.post("/api/devices/revoke", Some(&bearer), &revoke(&laptop_id))
        .await
        .decode::<contract::Revoked>();
    // The handshake refuses the revoked device.
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect")
        .await
        .unwrap();
    let refused = Session::handshake(
        stream,
        &claimed_identity(&claimed.body),
        &server.params,
        &HandshakeOptions::default(),
    )
    .await;
    assert!(refused.is_err());
    // Bob and Alice are untouched.
    rest.get("/api/devices", &token(&bob))
        .await
        .decode::<deployed::DevicesEnvelope>();
    rest.get("/api/devices", &bearer)
        .await
        .decode::<deployed::DevicesEnvelope>();
}

// ---------------------------------------------------------------- friends

async fn friends_are_stored_per_user(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bob = server.connect("bob-1").await;
    let bearer = token(&alice);
    let friends = |answer: &Answer| answer.decode::<deployed::FriendsEnvelope>().friends;
    let friend =
        |user_id: &str, handle: Option<&str>, alias: Option<&str>| deployed::FriendEntryPayload {
            user_id: user_id.to_owned(),
            handle: handle.map(str::to_owned),
            alias: alias.map(str::to_owned),
        };

    assert_eq!(friends(&rest.get("/api/friends", &bearer).await), []);

    // As the deployed client pushes: `handle` and `alias` always present, possibly null.
    let push = json!({"friends": [
        {"user_id": "u-bob", "handle": "bob", "alias": null},
        {"user_id": "u-carol", "handle": null, "alias": "Carol"},
    ]});
    let stored = rest
        .call(Method::PUT, "/api/friends", Some(&bearer), Some(&push))
        .await;
    let want = vec![
        friend("u-bob", Some("bob"), None),
        friend("u-carol", None, Some("Carol")),
    ];
    assert_eq!(friends(&stored), want);
    assert_eq!(
        stored.body,
        json!({"friends": [
            {"user_id": "u-bob", "handle": "bob"},
            {"user_id": "u-carol", "alias": "Carol"},
        ]})
    );
    for transport in Transport::ALL {
        let list = rest
            .call_on(transport, Method::GET, "/api/friends", Some(&bearer), None)
            .await;
        assert_eq!(friends(&list), want);
    }
    // Another user's list is separate.
    assert_eq!(friends(&rest.get("/api/friends", &token(&bob)).await), []);
    // Errors.
    rest.call(Method::PUT, "/api/friends", None, Some(&push))
        .await
        .problem(StatusCode::UNAUTHORIZED, "missing Authorization");
    rest.call(
        Method::PUT,
        "/api/friends",
        Some(&bearer),
        Some(&json!({"friends": [{"handle": "x"}]})),
    )
    .await
    .problem(StatusCode::BAD_REQUEST, "user_id");
    rest.call(
        Method::PUT,
        "/api/friends",
        Some(&bearer),
        Some(&json!({"friends": [{"user_id": ""}]})),
    )
    .await
    .problem(StatusCode::BAD_REQUEST, "user_id must be 1..=256 bytes");
    // Refusals changed nothing; replacing with an empty list clears it.
    assert_eq!(friends(&rest.get("/api/friends", &bearer).await), want);
    rest.call(
        Method::PUT,
        "/api/friends",
        Some(&bearer),
        Some(&json!({"friends": []})),
    )
    .await
    .decode::<deployed::FriendsEnvelope>();
    assert_eq!(friends(&rest.get("/api/friends", &bearer).await), []);
}

// ---------------------------------------------------------------- readiness and metrics

/// The value of the metric line starting with `line_prefix` (`GET /metrics` without ALPN).
async fn metric(rest: &Rest, line_prefix: &str) -> u64 {
    let answer = rest
        .clients
        .call(Transport::Http1NoAlpn, Method::GET, "/metrics", None, None)
        .await;
    answer.expect(StatusCode::OK);
    assert_eq!(
        answer.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = answer.text();
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .unwrap_or_else(|| panic!("{line_prefix} missing in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Polls `metric` until it satisfies `done` (for at most 10 s).
async fn metric_becomes(rest: &Rest, line_prefix: &str, done: impl Fn(u64) -> bool) {
    eventually(line_prefix, Duration::from_secs(10), || async {
        done(metric(rest, line_prefix).await).then_some(())
    })
    .await;
}

#[tokio::test]
async fn readyz_and_metrics_count_real_events() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let ready: contract::Health = rest.call(Method::GET, "/readyz", None, None).await.decode();
    assert_eq!(ready.status, "ready");

    let ok = "commucat_handshakes_total{result=\"ok\"} ";
    let failed = "commucat_handshakes_total{result=\"failed\"} ";
    let active = "commucat_sessions_active ";
    let delivered = "commucat_frames_delivered_total ";
    assert_eq!(metric(&rest, ok).await, 0);

    let mut alice = server.connect("alice-1").await;
    let mut bob = server.connect("bob-1").await;
    // A handshake against the wrong server key fails on the server.
    let mut wrong = server.params.clone();
    wrong.server_static = [9; 32];
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect")
        .await
        .unwrap();
    let refused = Session::handshake(
        stream,
        &DeviceIdentity::generate("mallory-1"),
        &wrong,
        &HandshakeOptions::default(),
    )
    .await;
    assert!(refused.is_err());

    alice.join(7, true).await;
    bob.join_with(7, &json!({"members": ["alice-1", "bob-1"], "relay": true}))
        .await;
    let before = metric(&rest, delivered).await;
    let relayed_before = metric(&rest, "commucat_relay_latency_seconds_count ").await;
    alice.say(7, "hi").await;
    bob.recv_on(FrameType::Msg, 7).await;
    assert!(metric(&rest, delivered).await > before);
    // The MSG was counted in from alice and out to bob, and its relay time recorded.
    assert!(metric(&rest, "commucat_frames_received_total{type=\"msg\"} ").await >= 1);
    assert!(metric(&rest, "commucat_frames_sent_total{type=\"msg\"} ").await >= 1);
    assert!(metric(&rest, "commucat_frames_sent_total{type=\"ack\"} ").await >= 1);
    assert_eq!(
        metric(&rest, "commucat_relay_latency_seconds_count ").await,
        relayed_before + 1
    );
    assert_eq!(
        metric(&rest, "commucat_handshake_duration_seconds_count ").await,
        2
    );
    assert_eq!(
        metric(
            &rest,
            "commucat_handshake_duration_seconds_bucket{le=\"+Inf\"} "
        )
        .await,
        2
    );
    assert_eq!(
        metric(&rest, "commucat_security_noise_handshakes_total ").await,
        2
    );
    // Features the server does not implement have no event to count: no series at all.
    let text = rest
        .clients
        .call(Transport::Http1NoAlpn, Method::GET, "/metrics", None, None)
        .await
        .text();
    for unmeasured in [
        "commucat_security_pq_handshakes",
        "commucat_security_fec_packets",
        "commucat_security_censorship_deflections",
        "commucat_security_multipath_sessions",
        "commucat_security_average_paths",
    ] {
        assert!(!text.contains(unmeasured), "{unmeasured} exported:\n{text}");
    }
    assert!(metric(&rest, "commucat_connections_accepted_total ").await >= 3);
    assert!(metric(&rest, "commucat_connections_open ").await >= 2);
    assert_eq!(metric(&rest, "commucat_online_devices ").await, 2);
    assert_eq!(metric(&rest, "commucat_mailbox_frames ").await, 0);

    assert_eq!(metric(&rest, ok).await, 2);
    metric_becomes(&rest, failed, |n| n >= 1).await;
    // Handshake frames count by type too: three HELLOs, two AUTH answers, mallory's ERROR.
    assert_eq!(
        metric(&rest, "commucat_frames_received_total{type=\"hello\"} ").await,
        3
    );
    assert_eq!(
        metric(&rest, "commucat_frames_sent_total{type=\"auth\"} ").await,
        2
    );
    assert!(metric(&rest, "commucat_frames_sent_total{type=\"error\"} ").await >= 1);
    // The ledger's three handshake records reach the file; none were dropped.
    metric_becomes(&rest, "commucat_ledger_records_written_total ", |n| n >= 3).await;
    assert_eq!(
        metric(&rest, "commucat_ledger_records_dropped_total ").await,
        0
    );
    assert_eq!(metric(&rest, "commucat_sessions_opened_total ").await, 2);
    assert_eq!(metric(&rest, active).await, 2);
    bob.close();
    metric_becomes(&rest, active, |n| n == 1).await;
}

// ---------------------------------------------------------------- P2P assist

/// The data directory of `server` (beside its database).
fn data_dir(server: &TestServer) -> std::path::PathBuf {
    server.database().parent().unwrap().to_owned()
}

#[tokio::test]
async fn p2p_assist_answers_what_the_deployed_client_decodes() {
    use aws_lc_rs::kem::{EncapsulationKey, ML_KEM_768};
    use aws_lc_rs::signature::{ML_DSA_65, UnparsedPublicKey};

    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let info: deployed::ServerInfo = rest
        .call(Method::GET, "/api/server-info", None, None)
        .await
        .decode();
    let info_body = rest
        .call(Method::GET, "/api/server-info", None, None)
        .await
        .body;
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);

    // The TUI's `/assist <peer>` request, without ALPN.
    let request = json!({
        "peer_hint": "bob",
        "paths": [
            {"address": "192.0.2.7", "id": "hint-b", "port": 3478, "server_name": "https://chat.test/",
             "priority": 2, "reality_fingerprint": null, "reality_pem": null},
            {"address": "198.51.100.1", "id": "hint-a", "port": 443, "server_name": "https://chat.test/",
             "priority": 1, "reality_fingerprint": null, "reality_pem": null}
        ],
        "prefer_reality": true,
        "fec": {"mtu": 1200, "repair_overhead": 0.18},
        "min_paths": 1
    });
    let answer = rest.post("/api/p2p/assist", Some(&bearer), &request).await;
    let assist: deployed::P2pAssistResponse = answer.decode();
    let body = answer.body;

    // noise: the configured prologue and a key pair derived from the returned seed.
    assert_eq!(assist.noise.pattern, "XK");
    assert_eq!(assist.noise.prologue_hex, hex::encode("commucat"));
    let seed = hex::decode(&assist.noise.device_seed_hex).unwrap();
    let derived = DeviceKeyPair::from_seed_material(&seed).unwrap();
    assert_eq!(
        assist.noise.static_public_hex,
        hex::encode(commucat_keys::x25519_public(&derived.x25519_private()))
    );

    // pq: the server's persisted keys, and a bundle signature that verifies.
    let stored = commucat_server::keys::pq::PqKeys::load_or_generate(&data_dir(&server)).unwrap();
    assert_eq!(assist.pq.kem_public_hex, hex::encode(stored.kem_public()));
    assert_eq!(
        assist.pq.signature_public_hex,
        hex::encode(stored.signature_public())
    );
    assert_eq!(
        Some(&assist.pq.identity_public_hex),
        info.device_ca_public.as_ref()
    );
    assert_eq!(assist.pq.signed_prekey_public_hex, info.noise_public);
    assert_eq!(
        info_body["post_quantum"]["kem_public_hex"],
        assist.pq.kem_public_hex.as_str()
    );
    let kem = EncapsulationKey::new(
        &ML_KEM_768,
        &hex::decode(&assist.pq.kem_public_hex).unwrap(),
    )
    .unwrap();
    let (ciphertext, shared) = kem.encapsulate().unwrap();
    assert_eq!(
        stored.decapsulate(ciphertext.as_ref()).unwrap().as_slice(),
        shared.as_ref(),
        "the published KEM key belongs to the server's secret key"
    );
    let message = stored.bundle_message(
        "chat.test",
        &hex::decode(&assist.pq.identity_public_hex).unwrap(),
        &hex::decode(&assist.pq.signed_prekey_public_hex).unwrap(),
    );
    UnparsedPublicKey::new(
        &ML_DSA_65,
        hex::decode(&assist.pq.signature_public_hex).unwrap(),
    )
    .verify(
        &message,
        &hex::decode(body["pq"]["bundle_signature_hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();

    // transports: by priority, then the relay; nothing measured.
    let ids: Vec<&str> = assist
        .transports
        .iter()
        .map(|t| t.path_id.as_str())
        .collect();
    assert_eq!(ids, ["hint-a", "hint-b", "relay"]);
    for t in &assist.transports {
        assert_eq!(t.latency, "unmeasured");
        assert_eq!(t.throughput, "unmeasured");
    }
    assert_eq!(body["transports"][2]["port"], server.addr.port());
    assert_eq!(assist.multipath.fec_mtu, 1200);
    assert!((assist.multipath.fec_overhead - 0.18).abs() < 1e-6);
    assert_eq!(assist.multipath.primary_path.as_deref(), Some("hint-a"));
    assert!(assist.multipath.sample_segments.is_empty());
    assert!(!assist.obfuscation.domain_fronting);
    assert!(!assist.obfuscation.protocol_mimicry);
    assert!(!assist.obfuscation.tor_bridge);
    assert!(assist.obfuscation.reality_fingerprint_hex.is_none());
    assert_eq!(
        assist.security,
        deployed::SecuritySnapshot {
            noise_handshakes: 1,
            pq_handshakes: 0,
            fec_packets: 0,
            // No session runs over more than its one /connect stream.
            multipath_sessions: 0,
            average_paths: 1.0,
            censorship_deflections: 0,
        }
    );

    // GET with no body over HTTP/2: defaults, the relay alone; counters move.
    let defaults: deployed::P2pAssistResponse = rest
        .call_on(
            Transport::Http2,
            Method::GET,
            "/api/p2p/assist",
            Some(&bearer),
            None,
        )
        .await
        .decode();
    assert_eq!(defaults.transports.len(), 1);
    assert_eq!(defaults.multipath.primary_path.as_deref(), Some("relay"));
    assert_eq!(defaults.multipath.fec_mtu, 1152);
    assert_ne!(defaults.noise.device_seed_hex, assist.noise.device_seed_hex);
    // Assist answers are advice, not sessions: the counters do not move.
    assert_eq!(defaults.security, assist.security);
    // The same counters as /api/security-stats.
    let stats: deployed::SecuritySnapshot = rest
        .call(Method::GET, "/api/security-stats", None, None)
        .await
        .decode();
    assert_eq!(stats, defaults.security);

    // Errors: no bearer 401; bad bodies 400.
    for transport in Transport::ALL {
        rest.call_on(
            transport,
            Method::POST,
            "/api/p2p/assist",
            None,
            Some(&json!({})),
        )
        .await
        .problem(StatusCode::UNAUTHORIZED, "missing Authorization");
    }
    let too_many: Vec<Value> = (0..17).map(|i| json!({"id": format!("p{i}")})).collect();
    for (bad, detail) in [
        (
            json!({"fec": {"repair_overhead": 2.0}}),
            "fec.repair_overhead",
        ),
        (json!({"fec": {"mtu": 10}}), "fec.mtu"),
        (json!({"paths": too_many}), "at most 16 paths"),
        (json!({"paths": [{"id": ""}]}), "paths[].id is empty"),
        (json!({"paths": "none"}), "not the expected JSON"),
        (json!({"min_paths": 100}), "min_paths"),
    ] {
        rest.post("/api/p2p/assist", Some(&bearer), &bad)
            .await
            .problem(StatusCode::BAD_REQUEST, detail);
    }
    rest.call(
        Method::PUT,
        "/api/p2p/assist",
        Some(&bearer),
        Some(&json!({})),
    )
    .await
    .problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "PUT is not allowed on /api/p2p/assist",
    );
}

// ---------------------------------------------------------------- public-key claim

#[tokio::test]
async fn public_key_claim_registers_the_devices_own_key() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let own = DeviceKeyPair::generate();
    let issue = || async {
        rest.ok(
            Method::POST,
            "/api/pairing",
            Some(&token(&alice)),
            &json!({"ttl": null}),
        )
        .await["pair_code"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Bad keys: 400, and the code stays usable.
    let code = issue().await;
    for bad in ["xyz", &"00".repeat(32), &hex::encode([1u8; 31])] {
        rest.post(
            "/api/pairing/claim",
            None,
            &json!({"pair_code": code, "public_key": bad}),
        )
        .await
        .problem(StatusCode::BAD_REQUEST, "public_key");
    }

    // Over HTTP/2, the seed's alias path.
    let answer = rest
        .call_on(
            Transport::Http2,
            Method::POST,
            "/api/pairing/claim",
            None,
            Some(&json!({"pair_code": code, "public_key": own.public_key_hex(), "device_name": "phone"})),
        )
        .await;
    let claimed: contract::PublicKeyClaim = answer.decode();
    assert!(claimed.private_key.is_none(), "{}", answer.body);
    assert!(claimed.seed.is_none(), "{}", answer.body);
    assert_eq!(claimed.public_key, own.public_key_hex());
    assert_eq!(claimed.device_certificate.data.public_key, own.public_key());
    let certificate: DeviceCertificate =
        serde_json::from_value(answer.body["device_certificate"].clone()).unwrap();

    // The device connects with its own key and the certificate.
    let phone = server
        .connect_as(DeviceIdentity {
            device_id: claimed.device_id.clone(),
            keys: own,
            certificate: Some(certificate),
            user: None,
        })
        .await;
    assert_eq!(phone.session.info().user_id, alice.session.info().user_id);
    let list: deployed::DevicesEnvelope = rest.get("/api/devices", &token(&phone)).await.decode();
    assert_eq!(list.devices.len(), 2);

    // Another device cannot take over the claimed id with a different key.
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect")
        .await
        .unwrap();
    let impostor = Session::handshake(
        stream,
        &DeviceIdentity {
            device_id: claimed.device_id.clone(),
            keys: DeviceKeyPair::generate(),
            certificate: None,
            user: None,
        },
        &server.params,
        &HandshakeOptions::default(),
    )
    .await;
    assert!(impostor.is_err());
}
// ---------------------------------------------------------------- what the deployed types require

/// The mirrored types are neither laxer nor stricter than the deployed client: on the server's
/// real answers, removing any key wire-compat §8 lists as required makes the decode fail, and
/// removing an optional one does not.
#[tokio::test]
async fn the_deployed_types_are_exactly_as_strict_as_the_deployed_client() {
    use deployed::keys::*;

    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);

    let info = rest
        .call(Method::GET, "/api/server-info", None, None)
        .await
        .body;
    check_strictness::<deployed::ServerInfo>(&info, SERVER_INFO_REQUIRED, SERVER_INFO_OPTIONAL);
    // A defaulted list or flag may be missing, but not null (serde's default covers absence).
    for (pointer, value) in [
        ("/supported_patterns", Value::Null),
        ("/pairing/auto_approve", Value::Null),
        ("/noise_public", json!(7)),
    ] {
        assert!(
            serde_json::from_value::<deployed::ServerInfo>(with(&info, pointer, value)).is_err(),
            "{pointer}"
        );
    }

    let ticket = rest
        .post("/api/pair", Some(&bearer), &json!({"ttl": null}))
        .await
        .body;
    check_strictness::<deployed::PairingTicket>(&ticket, TICKET_REQUIRED, TICKET_OPTIONAL);

    let claim = rest
        .post(
            "/api/pair/claim",
            None,
            &json!({"pair_code": ticket["pair_code"], "device_name": "laptop"}),
        )
        .await
        .body;
    check_strictness::<deployed::PairingClaimResponse>(&claim, CLAIM_REQUIRED, CLAIM_OPTIONAL);
    // A certificate, if present, must be one: anything else fails the whole answer.
    assert!(
        serde_json::from_value::<deployed::PairingClaimResponse>(with(
            &claim,
            "/device_certificate",
            json!({})
        ))
        .is_err()
    );
    serde_json::from_value::<deployed::PairingClaimResponse>(with(
        &claim,
        "/device_certificate",
        Value::Null,
    ))
    .unwrap();
    assert!(
        serde_json::from_value::<deployed::PairingClaimResponse>(with(
            &claim,
            "/issuer_device_id",
            Value::Null
        ))
        .is_err(),
        "issuer_device_id may not be null"
    );

    let devices = rest.get("/api/devices", &bearer).await.body;
    check_strictness::<deployed::DevicesEnvelope>(&devices, DEVICES_REQUIRED, DEVICES_OPTIONAL);

    let friends = rest
        .call(
            Method::PUT,
            "/api/friends",
            Some(&bearer),
            Some(&json!({"friends": [{"user_id": "u-bob", "handle": "bob", "alias": "B"}]})),
        )
        .await
        .body;
    check_strictness::<deployed::FriendsEnvelope>(&friends, FRIENDS_REQUIRED, FRIENDS_OPTIONAL);
    let listed = rest.get("/api/friends", &bearer).await.body;
    assert_eq!(listed, friends);

    let assist = rest
        .post("/api/p2p/assist", Some(&bearer), &json!({}))
        .await
        .body;
    check_strictness::<deployed::P2pAssistResponse>(&assist, ASSIST_REQUIRED, ASSIST_OPTIONAL);
    // `sample_segments` is optional, but each entry needs both counts.
    let mut segments = assist.clone();
    segments["multipath"]["sample_segments"] = json!({"relay": {"total": 4, "repair": 1}});
    serde_json::from_value::<deployed::P2pAssistResponse>(segments.clone()).unwrap();
    segments["multipath"]["sample_segments"] = json!({"relay": {"total": 4}});
    assert!(serde_json::from_value::<deployed::P2pAssistResponse>(segments).is_err());
    assert!(
        serde_json::from_value::<deployed::P2pAssistResponse>(with(
            &assist,
            "/obfuscation/tor_bridge",
            Value::Null
        ))
        .is_err()
    );

    let stats = rest
        .call(Method::GET, "/api/security-stats", None, None)
        .await
        .body;
    check_strictness::<deployed::SecuritySnapshot>(&stats, SECURITY_REQUIRED, &[]);
}

// ---------------------------------------------------------------- rate limits

/// Every `(method, path)` the router serves (besides `/connect`), for the per-route checks.
fn served_routes() -> BTreeSet<(&'static str, &'static str)> {
    SURFACE
        .iter()
        .filter(|(_, _, statuses)| *statuses != [404] && *statuses != [405])
        .map(|(method, path, _)| (*method, *path))
        .collect()
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap()
}

/// A 429 problem with a `retry-after` of 1..=`at_most` seconds.
fn too_many(answer: &Answer, detail: &str, at_most: u64) {
    answer.problem(StatusCode::TOO_MANY_REQUESTS, detail);
    let retry: u64 = answer
        .retry_after
        .as_deref()
        .unwrap_or_else(|| panic!("{answer}: no retry-after"))
        .parse()
        .unwrap();
    assert!(
        (1..=at_most).contains(&retry),
        "{answer}: retry-after {retry}"
    );
}

#[tokio::test]
async fn per_ip_limits_answer_429_on_every_route_and_transport() {
    // One REST request and one /connect a minute; no claim limit of its own.
    let server = TestServer::start(|c| {
        c.rate_limits.rest_per_minute = 1;
        c.rate_limits.claim_per_minute = 0;
        c.rate_limits.connect_per_minute = 1;
    })
    .await;
    let rest = Rest::new(&server);
    let _alice = server.connect("alice-1").await;
    rest.call(Method::GET, "/healthz", None, None)
        .await
        .decode::<contract::Health>();
    for transport in Transport::ALL {
        for (name, path) in served_routes() {
            let body = (name != "GET").then(|| json!({}));
            let answer = rest
                .clients
                .call(transport, method(name), path, None, body.as_ref())
                .await;
            too_many(&answer, "too many requests from this address", 60);
        }
        // /connect has its own budget, spent by alice's handshake.
        let answer = rest
            .clients
            .call(transport, Method::POST, "/connect", None, None)
            .await;
        too_many(&answer, "too many connection attempts", 60);
    }
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect").await;
    let refused = match stream {
        Err(_) => true,
        Ok(stream) => Session::handshake(
            stream,
            &DeviceIdentity::generate("carol-1"),
            &server.params,
            &HandshakeOptions::default(),
        )
        .await
        .is_err(),
    };
    assert!(refused, "a second /connect within the minute is refused");

    // Pairing claims have a budget of their own on top of the REST one.
    let server = TestServer::start(|c| {
        c.rate_limits.rest_per_minute = 0;
        c.rate_limits.claim_per_minute = 1;
    })
    .await;
    let rest = Rest::new(&server);
    let claim = json!({"pair_code": "NONE-NONE"});
    rest.post("/api/pair/claim", None, &claim)
        .await
        .problem(StatusCode::NOT_FOUND, "unknown pairing code");
    for transport in Transport::ALL {
        for path in ["/api/pair/claim", "/api/pairing/claim"] {
            let answer = rest
                .clients
                .call(transport, Method::POST, path, None, Some(&claim))
                .await;
            too_many(&answer, "too many pairing claims", 60);
        }
        // Other requests are not held back by it.
        rest.call_on(transport, Method::GET, "/healthz", None, None)
            .await
            .decode::<contract::Health>();
    }
}

// ---------------------------------------------------------------- the whole surface

/// Every `(method, path)` the server serves (besides `/connect`) and every status the surface
/// test drives it to, on each transport. A 429 of the per-IP limiters is checked on every route
/// by `per_ip_limits_answer_429_on_every_route_and_transport`; a 503 of an unreachable store by
/// `an_unreachable_store_is_a_503_on_every_route_that_needs_it`.
const SURFACE: &[(&str, &str, &[u16])] = &[
    ("GET", "/healthz", &[200]),
    ("POST", "/healthz", &[405]),
    ("GET", "/readyz", &[200]),
    ("POST", "/readyz", &[405]),
    ("GET", "/metrics", &[200, 401]),
    ("POST", "/metrics", &[405]),
    ("GET", "/api/security-stats", &[200, 401]),
    ("POST", "/api/security-stats", &[405]),
    ("GET", "/openapi.json", &[200]),
    ("POST", "/openapi.json", &[405]),
    ("GET", "/api/server-info", &[200]),
    ("POST", "/api/server-info", &[405]),
    ("GET", "/api/server/info", &[200]),
    ("POST", "/api/server/info", &[405]),
    ("GET", "/api/devices", &[200, 401]),
    ("DELETE", "/api/devices", &[405]),
    (
        "POST",
        "/api/devices/revoke",
        &[200, 400, 401, 403, 404, 409],
    ),
    ("GET", "/api/devices/revoke", &[405]),
    (
        "POST",
        "/api/devices/rotate",
        &[200, 400, 401, 403, 409, 429],
    ),
    ("GET", "/api/devices/rotate", &[405]),
    ("POST", "/api/pair", &[200, 400, 401]),
    ("GET", "/api/pair", &[405]),
    ("POST", "/api/pairing", &[200, 400, 401]),
    ("GET", "/api/pairing", &[405]),
    ("POST", "/api/pair/claim", &[200, 400, 404]),
    ("GET", "/api/pair/claim", &[405]),
    ("POST", "/api/pairing/claim", &[200, 400, 404]),
    ("GET", "/api/pairing/claim", &[405]),
    ("GET", "/api/friends", &[200, 401]),
    ("PUT", "/api/friends", &[200, 400, 401, 413]),
    ("POST", "/api/friends", &[405]),
    ("GET", "/api/p2p/assist", &[200, 400, 401]),
    ("POST", "/api/p2p/assist", &[200, 400, 401]),
    ("PUT", "/api/p2p/assist", &[405]),
    ("GET", "/api/nothing-here", &[404]),
];

/// `metrics.admin_token` of the surface test's server.
const ADMIN: &str = "s3cret-admin-token-0123";

/// Requests over one transport, recording each `(method, path, status)` whose answer was
/// checked.
struct Surface<'a> {
    rest: &'a Rest,
    transport: Transport,
    seen: &'a mut BTreeSet<(Transport, String, String, u16)>,
}

impl Surface<'_> {
    fn record(&mut self, method: &Method, path: &str, status: StatusCode) {
        self.seen.insert((
            self.transport,
            method.to_string(),
            path.to_owned(),
            status.as_u16(),
        ));
    }

    async fn send(
        &mut self,
        method: &Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> Answer {
        self.rest
            .clients
            .send(self.transport, method.clone(), path, bearer, body)
            .await
    }

    /// A 200; the caller checks its body.
    async fn ok(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        let answer = self.send(&method, path, bearer, bytes.as_deref()).await;
        answer.expect(StatusCode::OK);
        self.record(&method, path, StatusCode::OK);
        answer
    }

    /// A problem of `status` whose detail mentions `detail`.
    async fn err(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
        status: StatusCode,
        detail: &str,
    ) -> Answer {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        self.err_raw(method, path, bearer, bytes.as_deref(), status, detail)
            .await
    }

    /// Like [`Self::err`] with a raw body.
    async fn err_raw(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
        status: StatusCode,
        detail: &str,
    ) -> Answer {
        let answer = self.send(&method, path, bearer, body).await;
        answer.problem(status, detail);
        self.record(&method, path, status);
        answer
    }
}

/// What the surface test shares across transports.
struct World {
    server: TestServer,
    disabled: TestServer,
    rest: Rest,
    disabled_rest: Rest,
    alice: Client,
    bob: Client,
}

#[tokio::test]
async fn every_endpoint_and_error_status_over_http1_and_http2() {
    let server = TestServer::start(|c| {
        c.rate_limits.rest_per_minute = 0;
        c.rate_limits.claim_per_minute = 0;
        c.metrics.admin_token = Some(commucat_server::config::SecretString(ADMIN.to_owned()));
    })
    .await;
    let disabled = TestServer::start(|c| c.devices.rotation_enabled = false).await;
    let world = World {
        rest: Rest::new(&server),
        disabled_rest: Rest::new(&disabled),
        alice: server.connect("alice-1").await,
        bob: server.connect("bob-1").await,
        server,
        disabled,
    };
    let mut seen = BTreeSet::new();
    for (n, transport) in Transport::ALL.into_iter().enumerate() {
        let mut s = Surface {
            rest: &world.rest,
            transport,
            seen: &mut seen,
        };
        operations(&world, &mut s).await;
        devices_and_pairing(&world, &mut s).await;
        rotations(&world, &mut s, n).await;
        friends_and_assist(&world, &mut s).await;
        for &(name, path, statuses) in SURFACE {
            if statuses == [405] {
                s.err(
                    method(name),
                    path,
                    None,
                    None,
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("{name} is not allowed on {path}"),
                )
                .await;
            }
        }
        s.err(
            Method::GET,
            "/api/nothing-here",
            None,
            None,
            StatusCode::NOT_FOUND,
            "no resource at GET /api/nothing-here",
        )
        .await;
    }

    // Every route and status of the table was driven and checked on every transport, and
    // nothing else.
    let want: BTreeSet<(Transport, String, String, u16)> = Transport::ALL
        .into_iter()
        .flat_map(|t| {
            SURFACE.iter().flat_map(move |(method, path, statuses)| {
                statuses
                    .iter()
                    .map(move |s| (t, (*method).to_owned(), (*path).to_owned(), *s))
            })
        })
        .collect();
    let missing: Vec<_> = want.difference(&seen).collect();
    let extra: Vec<_> = seen.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not driven: {missing:?}; not in the table: {extra:?}"
    );

    // The table is the server's own: every path and method of the OpenAPI document is in it,
    // with the statuses the document lists (429 and 503 are driven by the limiter and outage
    // tests), and it drives no status the document does not list (besides the router's 405).
    let doc = world
        .rest
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .body;
    let mut documented: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (name, operation) in operations.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&name.as_str()) {
                continue;
            }
            let statuses = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|s| s.parse().unwrap())
                .collect();
            documented.insert((name.to_uppercase(), path.clone()), statuses);
        }
    }
    let tested: BTreeMap<(String, String), BTreeSet<u16>> = SURFACE
        .iter()
        .filter(|(_, _, statuses)| *statuses != [405] && *statuses != [404])
        .filter(|(_, path, _)| *path != "/openapi.json")
        .map(|(method, path, statuses)| {
            (
                ((*method).to_owned(), (*path).to_owned()),
                statuses.iter().copied().collect(),
            )
        })
        .collect();
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        tested.keys().collect::<Vec<_>>(),
        "the OpenAPI document and the surface table list different routes"
    );
    for (route, statuses) in &documented {
        let elsewhere: BTreeSet<u16> = [429, 503].into();
        let driven = &tested[route];
        assert!(
            statuses.difference(driven).all(|s| elsewhere.contains(s)),
            "{route:?}: documented {statuses:?}, driven {driven:?}"
        );
        assert!(
            driven.is_subset(statuses),
            "{route:?}: driven {driven:?}, documented {statuses:?}"
        );
    }
}

/// Health, readiness, metrics, security counters, the OpenAPI document and server-info.
async fn operations(world: &World, s: &mut Surface<'_>) {
    let health: contract::Health = s.ok(Method::GET, "/healthz", None, None).await.decode();
    assert_eq!(health.status, "ok");
    let ready: contract::Health = s.ok(Method::GET, "/readyz", None, None).await.decode();
    assert_eq!(ready.status, "ready");

    let a = token(&world.alice);
    let metrics = s.ok(Method::GET, "/metrics", Some(ADMIN), None).await;
    assert_eq!(
        metrics.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        metrics
            .text()
            .contains("commucat_handshakes_total{result=\"ok\"} "),
        "{}",
        metrics.text()
    );
    let stats: deployed::SecuritySnapshot = s
        .ok(Method::GET, "/api/security-stats", Some(ADMIN), None)
        .await
        .decode();
    assert!(stats.noise_handshakes >= 2, "{stats:?}");
    assert_eq!(stats.pq_handshakes, 0);
    for path in ["/metrics", "/api/security-stats"] {
        s.err(
            Method::GET,
            path,
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <metrics.admin_token>",
        )
        .await;
        // A wrong token, and a device session (not an admin token).
        for bearer in ["wrong-token-wrong-token", a.as_str()] {
            s.err(
                Method::GET,
                path,
                Some(bearer),
                None,
                StatusCode::UNAUTHORIZED,
                "wrong admin token",
            )
            .await;
        }
    }

    let doc = s.ok(Method::GET, "/openapi.json", None, None).await;
    let doc: Value = doc.decode();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/pairing/claim"]["post"].is_object());

    let mut bodies = Vec::new();
    for path in ["/api/server-info", "/api/server/info"] {
        let answer = s.ok(Method::GET, path, None, None).await;
        let info: deployed::ServerInfo = answer.decode();
        assert_eq!(info.domain, "chat.test");
        assert_eq!(
            info.noise_public,
            hex::encode(world.server.params.server_static)
        );
        assert_eq!(info.device_ca_public.as_ref().map(String::len), Some(64));
        assert_eq!(info.supported_patterns, ["XK", "IK"]);
        assert_eq!(info.supported_versions, [1]);
        let pairing = info.pairing.unwrap();
        assert!(pairing.auto_approve);
        assert_eq!(pairing.pairing_ttl, 300);
        bodies.push(answer.body);
    }
    assert_eq!(bodies[0], bodies[1]);
}

/// Device list and revocation, pairing codes and both claim forms on both paths, as the
/// deployed client and beyond.
async fn devices_and_pairing(world: &World, s: &mut Surface<'_>) {
    let (alice, a) = (&world.alice, token(&world.alice));
    let alice_user = alice.session.info().user_id.clone();
    let info: deployed::ServerInfo = world
        .rest
        .call_on(s.transport, Method::GET, "/api/server-info", None, None)
        .await
        .decode();
    let ca = decode_hex32(info.device_ca_public.as_deref().unwrap()).unwrap();

    // ---- GET /api/devices
    let list: deployed::DevicesEnvelope = s
        .ok(Method::GET, "/api/devices", Some(&a), None)
        .await
        .decode();
    let me = list
        .devices
        .iter()
        .find(|d| d.device_id == "alice-1")
        .unwrap();
    assert!(me.current);
    assert_eq!(me.public_key, alice.identity.keys.public_key_hex());
    assert!(list.devices.iter().all(|d| is_rfc3339_utc(&d.created_at)));
    assert_eq!(list.devices.iter().filter(|d| d.current).count(), 1);
    s.err(
        Method::GET,
        "/api/devices",
        None,
        None,
        StatusCode::UNAUTHORIZED,
        "missing Authorization",
    )
    .await;
    s.err(
        Method::GET,
        "/api/devices",
        Some("not-a-session"),
        None,
        StatusCode::UNAUTHORIZED,
        "unknown session",
    )
    .await;

    // ---- POST /api/pair and /api/pairing
    let mut codes = Vec::new();
    for (path, ttl, want) in [
        ("/api/pair", json!(null), 300),
        ("/api/pairing", json!(90), 90),
        ("/api/pair", json!(5), 60),
    ] {
        let answer = s
            .ok(Method::POST, path, Some(&a), Some(&json!({ "ttl": ttl })))
            .await;
        let ticket: deployed::PairingTicket = answer.decode();
        let issued: contract::Issued = answer.decode();
        assert_eq!(ticket.ttl, want);
        assert_eq!(issued.ttl, want);
        assert_eq!(ticket.pair_code, issued.pair_code);
        assert_eq!(ticket.issuer_device_id.as_deref(), Some("alice-1"));
        assert_eq!(decode_hex32(&issued.device_ca_public).unwrap(), ca);
        assert!(is_rfc3339_utc(&ticket.issued_at) && is_rfc3339_utc(&ticket.expires_at));
        codes.push(ticket.pair_code);
    }
    for path in ["/api/pair", "/api/pairing"] {
        s.err(
            Method::POST,
            path,
            Some(&a),
            Some(&json!({"ttl": "soon"})),
            StatusCode::BAD_REQUEST,
            "request body is not the expected JSON",
        )
        .await;
        s.err_raw(
            Method::POST,
            path,
            Some(&a),
            Some(b"{ttl"),
            StatusCode::BAD_REQUEST,
            "request body is not the expected JSON",
        )
        .await;
        s.err(
            Method::POST,
            path,
            None,
            Some(&json!({"ttl": null})),
            StatusCode::UNAUTHORIZED,
            "missing Authorization",
        )
        .await;
    }

    // ---- POST /api/pair/claim: the deployed client's server-key claim.
    let answer = s
        .ok(
            Method::POST,
            "/api/pair/claim",
            None,
            Some(&json!({"pair_code": codes[0], "device_name": "laptop"})),
        )
        .await;
    let claimed: deployed::PairingClaimResponse = answer.decode();
    assert_eq!(claimed.issuer_device_id, "alice-1");
    assert_eq!(claimed.user.id, alice_user);
    assert_eq!(claimed.device_name.as_deref(), Some("laptop"));
    let keys = DeviceKeyPair::from_seed_hex(&claimed.private_key).unwrap();
    assert_eq!(claimed.public_key, keys.public_key_hex());
    let certificate = claimed.device_certificate.as_ref().unwrap();
    certificate.verify(&ca).unwrap();
    assert_eq!(certificate.data.device_id, claimed.device_id);
    let mut laptop = world
        .server
        .connect_as(claimed_identity(&answer.body))
        .await;

    // ---- POST /api/pairing/claim: a public-key claim.
    let own = DeviceKeyPair::generate();
    let answer = s
        .ok(
            Method::POST,
            "/api/pairing/claim",
            None,
            Some(&json!({"pair_code": codes[1], "public_key": own.public_key_hex()})),
        )
        .await;
    let claimed_own: contract::PublicKeyClaim = answer.decode();
    assert!(claimed_own.private_key.is_none() && claimed_own.seed.is_none());
    assert_eq!(claimed_own.public_key, own.public_key_hex());
    assert_eq!(claimed_own.user_id, alice_user);
    assert_eq!(claimed_own.issuer_device_id, "alice-1");
    assert_eq!(decode_hex32(&claimed_own.device_ca_public).unwrap(), ca);
    claimed_own.device_certificate.verify(&ca).unwrap();
    assert_eq!(
        claimed_own.device_certificate.data.public_key,
        own.public_key()
    );

    for path in ["/api/pair/claim", "/api/pairing/claim"] {
        s.err(
            Method::POST,
            path,
            None,
            Some(&json!({"code": 1})),
            StatusCode::BAD_REQUEST,
            "request body is not the expected JSON",
        )
        .await;
        s.err(
            Method::POST,
            path,
            None,
            Some(&json!({"pair_code": codes[0]})),
            StatusCode::BAD_REQUEST,
            "pairing code already redeemed",
        )
        .await;
        s.err(
            Method::POST,
            path,
            None,
            Some(&json!({"pair_code": codes[2], "public_key": "xyz"})),
            StatusCode::BAD_REQUEST,
            "public_key: expected 64 hex characters",
        )
        .await;
        s.err(
            Method::POST,
            path,
            None,
            Some(&json!({"pair_code": codes[2], "device_name": "n".repeat(129)})),
            StatusCode::BAD_REQUEST,
            "device_name is longer than 128 bytes",
        )
        .await;
        s.err(
            Method::POST,
            path,
            None,
            Some(&json!({"pair_code": "ZZZZ-ZZZZ"})),
            StatusCode::NOT_FOUND,
            "unknown pairing code",
        )
        .await;
    }

    // ---- POST /api/devices/revoke
    let revoke = |device: &str| json!({ "device_id": device });
    let path = "/api/devices/revoke";
    s.err(
        Method::POST,
        path,
        Some(&a),
        Some(&json!({"id": 1})),
        StatusCode::BAD_REQUEST,
        "request body is not the expected JSON",
    )
    .await;
    s.err(
        Method::POST,
        path,
        None,
        Some(&revoke(&claimed.device_id)),
        StatusCode::UNAUTHORIZED,
        "missing Authorization",
    )
    .await;
    s.err(
        Method::POST,
        path,
        Some(&a),
        Some(&revoke("bob-1")),
        StatusCode::FORBIDDEN,
        "the device belongs to another account",
    )
    .await;
    s.err(
        Method::POST,
        path,
        Some(&a),
        Some(&revoke("nobody")),
        StatusCode::NOT_FOUND,
        "no device nobody",
    )
    .await;
    s.err(
        Method::POST,
        path,
        Some(&a),
        Some(&revoke("alice-1")),
        StatusCode::CONFLICT,
        "a device cannot revoke itself",
    )
    .await;
    let answer = s
        .ok(
            Method::POST,
            path,
            Some(&a),
            Some(&revoke(&claimed.device_id)),
        )
        .await;
    answer.decode::<Value>();
    let revoked: contract::Revoked = answer.decode();
    assert_eq!(revoked.device_id, claimed.device_id);
    assert_eq!(revoked.status, "revoked");
    expect_closed_as_revoked(&mut laptop).await;
    let list: deployed::DevicesEnvelope = world
        .rest
        .call_on(s.transport, Method::GET, "/api/devices", Some(&a), None)
        .await
        .decode();
    let entry = list
        .devices
        .iter()
        .find(|d| d.device_id == claimed.device_id)
        .unwrap();
    assert_eq!(entry.status, "revoked");
}

/// `POST /api/devices/rotate` on a fresh device: every refusal, the rotation, the refusal of a
/// key used before and of a second rotation within the minimum interval; and the refusal of a
/// server with rotation disabled.
async fn rotations(world: &World, s: &mut Surface<'_>, n: usize) {
    let path = "/api/devices/rotate";
    let device = world.server.connect(&format!("rot-{n}")).await;
    let id = device.identity.device_id.clone();
    let old = device.identity.keys.clone();
    let bearer = token(&device);
    let b = Some(bearer.as_str());
    let now = unix_now();
    let new = DeviceKeyPair::generate();
    let good = rotation(&id, &old.public_key(), &old, &new.public_key(), now);

    // 400
    s.err_raw(
        Method::POST,
        path,
        b,
        Some(b"{not json"),
        StatusCode::BAD_REQUEST,
        "request body is not the expected JSON",
    )
    .await;
    s.err(
        Method::POST,
        path,
        b,
        Some(&json!({"device_id": id})),
        StatusCode::BAD_REQUEST,
        "missing field",
    )
    .await;
    let mut extra = good.clone();
    extra["extra"] = json!(1);
    s.err(
        Method::POST,
        path,
        b,
        Some(&extra),
        StatusCode::BAD_REQUEST,
        "unknown field",
    )
    .await;
    s.err(
        Method::POST,
        path,
        b,
        Some(&with(&good, "/public_key", json!("abcd"))),
        StatusCode::BAD_REQUEST,
        "public_key",
    )
    .await;
    s.err(
        Method::POST,
        path,
        b,
        Some(&with(&good, "/proof", json!("00ff"))),
        StatusCode::BAD_REQUEST,
        "proof: expected 128 hex characters",
    )
    .await;
    s.err(
        Method::POST,
        path,
        b,
        Some(&rotation(
            &id,
            &old.public_key(),
            &old,
            &old.public_key(),
            now,
        )),
        StatusCode::BAD_REQUEST,
        "the new key equals the current key",
    )
    .await;
    // 401
    s.err(
        Method::POST,
        path,
        None,
        Some(&good),
        StatusCode::UNAUTHORIZED,
        "missing Authorization",
    )
    .await;
    // 403: another device's id, a proof by another key, a proof outside the window
    let bob = &world.bob.identity;
    s.err(
        Method::POST,
        path,
        b,
        Some(&rotation(
            &bob.device_id,
            &bob.keys.public_key(),
            &bob.keys,
            &new.public_key(),
            now,
        )),
        StatusCode::FORBIDDEN,
        "a device can only rotate its own key",
    )
    .await;
    s.err(
        Method::POST,
        path,
        b,
        Some(&rotation(
            &id,
            &old.public_key(),
            &DeviceKeyPair::generate(),
            &new.public_key(),
            now,
        )),
        StatusCode::FORBIDDEN,
        "proof is not a signature by the device's current key",
    )
    .await;
    let stale = sign_rotation(&old, &id, &new.public_key(), now - 1_000).unwrap();
    s.err(
        Method::POST,
        path,
        b,
        Some(&json!({"device_id": id, "public_key": new.public_key_hex(),
                     "issued_at": now - 1_000, "proof": encode_hex(&stale)})),
        StatusCode::FORBIDDEN,
        "from the server clock",
    )
    .await;

    // 200, with a certificate for the new key; the old bearer is gone with the old key.
    let answer = s.ok(Method::POST, path, b, Some(&good)).await;
    let rotated: contract::Rotated = answer.decode();
    assert_eq!(rotated.device_id, id);
    assert_eq!(rotated.status, "rotated");
    assert_eq!(rotated.public_key, new.public_key_hex());
    assert_eq!(rotated.previous_public_key, old.public_key_hex());
    assert!(is_rfc3339_utc(&rotated.rotated_at));
    let ca = decode_hex32(&rotated.device_ca_public).unwrap();
    rotated.device_certificate.verify(&ca).unwrap();
    assert_eq!(rotated.device_certificate.data.public_key, new.public_key());
    s.err(
        Method::POST,
        path,
        b,
        Some(&good),
        StatusCode::UNAUTHORIZED,
        "unknown session",
    )
    .await;

    // With the new key: back to the old one is 409, any other within the interval 429.
    let certificate: DeviceCertificate =
        serde_json::from_value(answer.body["device_certificate"].clone()).unwrap();
    let device = world
        .server
        .connect_as(DeviceIdentity {
            device_id: id.clone(),
            keys: new.clone(),
            certificate: Some(certificate),
            user: None,
        })
        .await;
    let bearer = token(&device);
    let now = unix_now();
    s.err(
        Method::POST,
        path,
        Some(&bearer),
        Some(&rotation(
            &id,
            &new.public_key(),
            &new,
            &old.public_key(),
            now,
        )),
        StatusCode::CONFLICT,
        "this device used that key before",
    )
    .await;
    let third = DeviceKeyPair::generate().public_key();
    let answer = s
        .err(
            Method::POST,
            path,
            Some(&bearer),
            Some(&rotation(&id, &new.public_key(), &new, &third, now)),
            StatusCode::TOO_MANY_REQUESTS,
            "the next rotation is allowed in",
        )
        .await;
    too_many(&answer, "", 3600);

    // A server with rotation disabled refuses it, also for a valid proof.
    let other = world.disabled.connect(&format!("rot-{n}")).await;
    let me = &other.identity;
    let body = rotation(
        &me.device_id,
        &me.keys.public_key(),
        &me.keys,
        &DeviceKeyPair::generate().public_key(),
        unix_now(),
    );
    let answer = world
        .disabled_rest
        .clients
        .call(
            s.transport,
            Method::POST,
            path,
            Some(&token(&other)),
            Some(&body),
        )
        .await;
    answer.problem(StatusCode::FORBIDDEN, "rotation is disabled");
    s.record(&Method::POST, path, StatusCode::FORBIDDEN);
}

/// Friends as the deployed client reads and pushes them, and P2P assist.
async fn friends_and_assist(world: &World, s: &mut Surface<'_>) {
    let a = token(&world.alice);
    let push = json!({"friends": [
        {"user_id": "u-bob", "handle": "bob", "alias": null},
        {"user_id": "u-carol", "handle": null, "alias": "Carol"},
    ]});
    let stored: deployed::FriendsEnvelope = s
        .ok(Method::PUT, "/api/friends", Some(&a), Some(&push))
        .await
        .decode();
    let listed: deployed::FriendsEnvelope = s
        .ok(Method::GET, "/api/friends", Some(&a), None)
        .await
        .decode();
    assert_eq!(stored.friends, listed.friends);
    let ids: Vec<&str> = listed.friends.iter().map(|f| f.user_id.as_str()).collect();
    assert_eq!(ids, ["u-bob", "u-carol"]);
    assert_eq!(listed.friends[0].handle.as_deref(), Some("bob"));
    assert_eq!(listed.friends[1].alias.as_deref(), Some("Carol"));
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"user_id": format!("u{i}")}))
        .collect();
    for (bad, detail) in [
        (
            json!({"friends": [{"handle": "x"}]}),
            "missing field `user_id`",
        ),
        (
            json!({"friends": [{"user_id": ""}]}),
            "user_id must be 1..=256 bytes",
        ),
        (json!({ "friends": too_many }), "at most 1000 friends"),
    ] {
        s.err(
            Method::PUT,
            "/api/friends",
            Some(&a),
            Some(&bad),
            StatusCode::BAD_REQUEST,
            detail,
        )
        .await;
    }
    // An alias longer than bounds.display_name_bytes: the protocol's own problem title.
    let long_alias = json!({"friends": [{"user_id": "u", "alias": "a".repeat(257)}]});
    let body = serde_json::to_vec(&long_alias).unwrap();
    let answer = s
        .send(&Method::PUT, "/api/friends", Some(&a), Some(&body))
        .await;
    answer.expect(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.content_type, "application/problem+json");
    let problem = answer.json();
    assert_eq!(problem["title"], "Profile Field Too Long", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("alias of u is 257 bytes")
    );
    let shown: deployed::ProblemDetails = serde_json::from_slice(&answer.bytes).unwrap();
    assert!(shown.detail.is_some());
    s.record(&Method::PUT, "/api/friends", StatusCode::PAYLOAD_TOO_LARGE);
    s.err(
        Method::GET,
        "/api/friends",
        None,
        None,
        StatusCode::UNAUTHORIZED,
        "missing Authorization",
    )
    .await;
    s.err(
        Method::PUT,
        "/api/friends",
        None,
        Some(&push),
        StatusCode::UNAUTHORIZED,
        "missing Authorization",
    )
    .await;
    // The refusals left the list as it was.
    let after: deployed::FriendsEnvelope = world
        .rest
        .call_on(s.transport, Method::GET, "/api/friends", Some(&a), None)
        .await
        .decode();
    assert_eq!(after.friends, listed.friends);

    // ---- /api/p2p/assist: the TUI's request, and a GET without a body.
    let path = "/api/p2p/assist";
    let request = json!({
        "peer_hint": "bob",
        "paths": [{"address": "127.0.0.1", "id": "hint-1", "port": 3478,
                   "server_name": "https://chat.test/", "priority": 1,
                   "reality_fingerprint": null, "reality_pem": null}],
        "prefer_reality": true,
        "fec": {"mtu": 1200, "repair_overhead": 0.18},
        "min_paths": 1
    });
    let assist: deployed::P2pAssistResponse = s
        .ok(Method::POST, path, Some(&a), Some(&request))
        .await
        .decode();
    let ids: Vec<&str> = assist
        .transports
        .iter()
        .map(|t| t.path_id.as_str())
        .collect();
    assert_eq!(ids, ["hint-1", "relay"]);
    assert_eq!(assist.noise.pattern, "XK");
    assert_eq!(assist.multipath.fec_mtu, 1200);
    assert_eq!(
        assist.pq.signed_prekey_public_hex,
        hex::encode(world.server.params.server_static)
    );
    let defaults: deployed::P2pAssistResponse =
        s.ok(Method::GET, path, Some(&a), None).await.decode();
    assert_eq!(defaults.transports.len(), 1);
    assert_eq!(defaults.multipath.primary_path.as_deref(), Some("relay"));
    for method in [Method::GET, Method::POST] {
        s.err_raw(
            method.clone(),
            path,
            Some(&a),
            Some(b"{not json"),
            StatusCode::BAD_REQUEST,
            "request body is not the expected JSON",
        )
        .await;
        s.err(
            method.clone(),
            path,
            Some(&a),
            Some(&json!({"fec": {"mtu": 10}})),
            StatusCode::BAD_REQUEST,
            "fec.mtu must be at least 256",
        )
        .await;
        s.err(
            method,
            path,
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "missing Authorization",
        )
        .await;
    }
}

// ---------------------------------------------------------------- an unreachable store

/// A TCP relay to PostgreSQL that the test can cut: cutting drops every relayed connection and
/// closes each new one at once, until the relay is restored.
struct Relay {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        #[allow(
            clippy::disallowed_methods,
            reason = "a test task, awaited or ended by the test"
        )]
        let accept = tokio::spawn({
            let (open, links) = (open.clone(), links.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue;
                    }
                    let upstream = upstream.clone();
                    #[allow(
                        clippy::disallowed_methods,
                        reason = "a test task, awaited or ended by the test"
                    )]
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().unwrap().push(link.abort_handle());
                }
            }
        });
        Self {
            addr,
            open,
            links,
            accept,
        }
    }

    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Drops a PostgreSQL schema when dropped, even when the test panics.
struct DropSchema {
    url: String,
    name: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        // Outside async code (possibly while unwinding inside a runtime): a thread with a runtime
        // of its own does it, bounded in time.
        let url = self.url.clone();
        let statement = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let _ = tokio::time::timeout(Duration::from_secs(20), async {
                    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
                    sqlx::query(sqlx::AssertSqlSafe(statement))
                        .execute(&mut conn)
                        .await
                        .map(drop)
                })
                .await;
            });
        });
        let _ = cleanup.join();
    }
}

/// `url` split around its `host:port`.
fn split_url(url: &str) -> (&str, &str, &str) {
    let start = url.find("://").unwrap() + 3;
    let start = url[start..].find('@').map_or(start, |at| start + at + 1);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |end| start + end);
    (&url[..start], &url[start..end], &url[end..])
}

/// While the PostgreSQL store cannot be reached, every route that needs it answers 503 (the
/// bearer check itself needs it), on every transport; `/readyz` names the store; the routes
/// that need no store keep answering; and every 503 is one the OpenAPI document lists. Once
/// the store is back, so is the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
async fn an_unreachable_store_is_a_503_on_every_route_that_needs_it() {
    let url = common::pg::test_url().expect("COMMUCAT_TEST_POSTGRES is unset: this test needs it");
    let (scheme, upstream, rest_of_url) = split_url(&url);
    let relay = Relay::start(upstream.to_owned()).await;
    let schema = format!(
        "commucat_test_rest503_{}_{}",
        std::process::id(),
        commucat_server::clock::unix_micros_now()
    );
    let _cleanup = DropSchema {
        url: url.clone(),
        name: schema.clone(),
    };
    let server = TestServer::start(|c| {
        c.store.url = Some(format!("{scheme}{}{rest_of_url}", relay.addr));
        c.store.schema = Some(schema.clone());
        c.store.acquire_timeout = Duration::from_secs(1);
    })
    .await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let a = token(&alice);
    let code = rest
        .ok(Method::POST, "/api/pair", Some(&a), &json!({"ttl": null}))
        .await["pair_code"]
        .clone();
    let doc = rest
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .body;

    relay.cut();
    let down: contract::NotReady = eventually("/readyz 503", Duration::from_secs(10), || async {
        let answer = rest
            .clients
            .call(Transport::Http1NoAlpn, Method::GET, "/readyz", None, None)
            .await;
        (answer.status == StatusCode::SERVICE_UNAVAILABLE).then(|| {
            assert_eq!(answer.content_type, "application/problem+json");
            serde_json::from_slice(&answer.bytes).unwrap()
        })
    })
    .await;
    assert_eq!(down.down, ["store"]);
    assert_eq!(
        (down.kind.as_str(), down.title.as_str(), down.status),
        ("about:blank", "Service Unavailable", 503)
    );
    assert!(
        down.detail.starts_with("store unreachable"),
        "{}",
        down.detail
    );

    let body = |v: Value| Some(v);
    let needs_store: Vec<(Method, &str, Option<&str>, Option<Value>)> = vec![
        (Method::GET, "/api/devices", Some(&a), None),
        (
            Method::POST,
            "/api/devices/revoke",
            Some(&a),
            body(json!({"device_id": "x"})),
        ),
        (
            Method::POST,
            "/api/devices/rotate",
            Some(&a),
            body(json!({})),
        ),
        (
            Method::POST,
            "/api/pair",
            Some(&a),
            body(json!({"ttl": null})),
        ),
        (
            Method::POST,
            "/api/pairing",
            Some(&a),
            body(json!({"ttl": null})),
        ),
        (
            Method::POST,
            "/api/pair/claim",
            None,
            body(json!({"pair_code": code})),
        ),
        (
            Method::POST,
            "/api/pairing/claim",
            None,
            body(json!({"pair_code": code})),
        ),
        (Method::GET, "/api/friends", Some(&a), None),
        (
            Method::PUT,
            "/api/friends",
            Some(&a),
            body(json!({"friends": []})),
        ),
        (Method::GET, "/api/p2p/assist", Some(&a), None),
        (Method::POST, "/api/p2p/assist", Some(&a), body(json!({}))),
    ];
    let rest = &rest;
    let calls = Transport::ALL.into_iter().flat_map(|transport| {
        needs_store
            .iter()
            .map(move |(method, path, bearer, body)| async move {
                let answer = rest
                    .clients
                    .call(transport, method.clone(), path, *bearer, body.as_ref())
                    .await;
                answer.problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage is unavailable; retry shortly",
                );
                (method.to_string().to_lowercase(), (*path).to_owned())
            })
    });
    for (method, path) in futures_util::future::join_all(calls).await {
        assert!(
            doc["paths"][&path][&method]["responses"]["503"].is_object(),
            "{method} {path} answers 503 but the OpenAPI document does not say so"
        );
    }
    for transport in Transport::ALL {
        for path in ["/readyz"] {
            let answer = rest
                .clients
                .call(transport, Method::GET, path, None, None)
                .await;
            answer.expect(StatusCode::SERVICE_UNAVAILABLE);
        }
        for path in [
            "/healthz",
            "/api/server-info",
            "/api/server/info",
            "/openapi.json",
            "/api/security-stats",
        ] {
            rest.call_on(transport, Method::GET, path, None, None)
                .await
                .expect(StatusCode::OK);
        }
        rest.clients
            .call(transport, Method::GET, "/metrics", None, None)
            .await
            .expect(StatusCode::OK);
    }

    // Back: the same server serves again.
    relay.restore();
    eventually("/readyz 200", Duration::from_secs(30), || async {
        let answer = rest
            .clients
            .call(Transport::Http1NoAlpn, Method::GET, "/readyz", None, None)
            .await;
        (answer.status == StatusCode::OK).then_some(())
    })
    .await;
    let list: deployed::DevicesEnvelope = rest.get("/api/devices", &a).await.decode();
    assert_eq!(list.devices.len(), 1);
}

// The resources that live in the store run on both backends.
common::on_each_store!(
    pairing_flow_as_the_deployed_client_does_it,
    pairing_errors_and_ttl_clamp,
    revoke_rules_and_revoking_a_connected_device_ends_its_session,
    friends_are_stored_per_user,
);
