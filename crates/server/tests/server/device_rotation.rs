//! `POST /api/devices/rotate` through the real server over TLS with the SDK: a device
//! replaces its key with a proof by its current key; the old key is refused afterwards, the
//! key log, ledger and device list show the change; every refusal has its status; and the
//! handshake still refuses a silent key change.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use crate::common::rest::{Rest, Transport};
use crate::common::{Client, StoreBackend, TestServer, ledger_records, unix_now};
use commucat_ccp::{FrameType, Problem};
use commucat_client::rotate::ROTATE_PATH;
use commucat_client::{
    ClientError, DeviceIdentity, HandshakeOptions, RestTarget, rotate_device_key, transport,
};
use commucat_keys::{DeviceKeyPair, decode_hex32, encode_hex, rotation_message, sign_rotation};
use commucat_store::DeviceKeyEvent;
use reqwest::Method;
use serde_json::{Value, json};

fn target(server: &TestServer) -> RestTarget<'_> {
    RestTarget {
        addr: server.addr,
        server_name: "localhost",
        trust: &server.trust,
    }
}

fn token(client: &Client) -> String {
    client.session.info().session_id.clone()
}

/// A raw `POST /api/devices/rotate` through the SDK transport; a non-200 answer must be a
/// problem with the status's reason phrase.
async fn post(server: &TestServer, bearer: Option<&str>, body: &[u8]) -> (u16, Value) {
    let (status, bytes) = transport::post_json(
        server.addr,
        "localhost",
        &server.trust,
        ROTATE_PATH,
        bearer,
        body.to_vec(),
    )
    .await
    .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    if status != 200 {
        assert_eq!(body["status"], status, "{body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    (status, body)
}

/// A well-formed request body rotating `identity` to `new` with a proof signed by `signer`.
fn request(identity: &DeviceIdentity, signer: &DeviceKeyPair, new: &[u8; 32], at: i64) -> Value {
    let message = rotation_message(&identity.device_id, &identity.keys.public_key(), new, at);
    let proof = signer.sign(&message.unwrap());
    json!({
        "device_id": identity.device_id,
        "public_key": encode_hex(new),
        "issued_at": at,
        "proof": encode_hex(&proof),
    })
}

async fn expect_status(server: &TestServer, bearer: Option<&str>, body: &Value, status: u16) {
    let (got, answer) = post(server, bearer, &serde_json::to_vec(body).unwrap()).await;
    assert_eq!(got, status, "{body} → {answer}");
}

async fn connect_err(server: &TestServer, identity: &DeviceIdentity) -> ClientError {
    commucat_client::connect(
        server.addr,
        "localhost",
        &server.trust,
        identity,
        &server.params,
        &HandshakeOptions::default(),
    )
    .await
    .unwrap_err()
}

/// A new device paired into the account of `bearer`'s device (a public-key claim over REST),
/// connected.
async fn pair_into(server: &TestServer, rest: &Rest, bearer: &str) -> Client {
    let issued: Value = rest
        .call(
            Transport::Http1NoAlpn,
            Method::POST,
            "/api/pair",
            Some(bearer),
            Some(&json!({"ttl": null})),
        )
        .await
        .decode();
    let keys = DeviceKeyPair::generate();
    let claimed: Value = rest
        .call(
            Transport::Http1NoAlpn,
            Method::POST,
            "/api/pair/claim",
            None,
            Some(&json!({"pair_code": issued["pair_code"], "public_key": keys.public_key_hex()})),
        )
        .await
        .decode();
    server
        .connect_as(DeviceIdentity {
            device_id: claimed["device_id"].as_str().unwrap().to_owned(),
            keys,
            certificate: Some(
                serde_json::from_value(claimed["device_certificate"].clone()).unwrap(),
            ),
            user: None,
            pq: None,
        })
        .await
}

async fn a_rotation_replaces_the_key_end_to_end(backend: StoreBackend) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("audit.jsonl");
    let ledger_path = ledger.clone();
    let server = TestServer::start_on(backend, move |c| c.ledger.path = Some(ledger_path)).await;
    assert_eq!(
        server.server_info().await["device_rotation"],
        json!({"enabled": true, "min_interval_seconds": 3600, "proof_ttl_seconds": 300})
    );

    let mut alice = server.connect("alice-rot").await;
    let old_identity = alice.identity.clone();
    let old_token = token(&alice);
    let file = dir.path().join("alice.json");
    let mut identity = alice.identity.clone();
    let new_keys = DeviceKeyPair::generate();
    let new_public = new_keys.public_key();
    let rotated = rotate_device_key(
        target(&server),
        &old_token,
        &mut identity,
        new_keys,
        unix_now(),
        Some(&file),
    )
    .await
    .unwrap();
    assert_eq!(rotated.previous_public_key, old_identity.keys.public_key());
    assert_eq!(rotated.certificate.data().public_key, new_public);
    let ca = server.server_info().await["device_ca_public"]
        .as_str()
        .map(|hex| decode_hex32(hex).unwrap())
        .unwrap();
    rotated.certificate.verify_signature(&ca).unwrap();
    assert_eq!(identity.keys.public_key(), new_public);

    // the identity file holds the new key, owner-only
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let saved = DeviceIdentity::load(&file).unwrap();
    assert_eq!(saved.keys.public_key(), new_public);
    assert_eq!(saved.device_id, "alice-rot");

    // the live session of the old key ends, and its bearer token is gone
    let frames = alice.recv_until_closed().await;
    let last = frames.last().expect("a closing ERROR");
    assert_eq!(last.frame_type(), FrameType::Error);
    let problem: Problem = last.parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Device Key Mismatch"));
    let again = request(&identity, &identity.keys, &[0; 32], unix_now());
    expect_status(&server, Some(&old_token), &again, 401).await;

    // the old key is refused by the handshake; the new one connects with its certificate
    let err = connect_err(&server, &old_identity).await;
    assert_eq!(err.title(), Some("Device Key Mismatch"));
    let alice = server.connect_as(saved).await;
    assert!(
        alice.session.info().issued_certificate.is_none(),
        "the rotation's certificate is presented and kept"
    );

    // key log, device list and ledger
    let store = server.store().await;
    let events = store.key_events("alice-rot").await.unwrap();
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, [DeviceKeyEvent::REGISTER, DeviceKeyEvent::ROTATE]);
    assert_eq!(events[0].public_key, old_identity.keys.public_key());
    assert_eq!(events[1].public_key, new_public);
    let list: Value = server
        .http()
        .get(format!(
            "https://localhost:{}/api/devices",
            server.addr.port()
        ))
        .bearer_auth(token(&alice))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["devices"][0]["public_key"], encode_hex(&new_public));
    assert_eq!(list["devices"][0]["current"], true);
    let lines = ledger_records(&ledger, 1, |l| {
        l["scope"] == "device" && l["event"] == "rotate"
    })
    .await;
    let record = lines
        .iter()
        .find(|l| l["scope"] == "device" && l["event"] == "rotate")
        .unwrap();
    assert_eq!(record["device"], "alice-rot");
    assert_eq!(record["public_key"], encode_hex(&new_public));
    assert_eq!(
        record["previous_public_key"],
        encode_hex(&old_identity.keys.public_key())
    );
    assert_eq!(record["was_online"], true);

    // a second change within devices.rotation_min_interval (1 h) is refused with 429
    let mut current = identity.clone();
    let err = rotate_device_key(
        target(&server),
        &token(&alice),
        &mut current,
        DeviceKeyPair::generate(),
        unix_now(),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status: 429, .. }),
        "{err}"
    );
    assert_eq!(current.keys.public_key(), new_public, "identity unchanged");
    let next = DeviceKeyPair::generate().public_key();
    let soon = request(&current, &current.keys, &next, unix_now());
    let response = server
        .http()
        .post(format!(
            "https://localhost:{}{ROTATE_PATH}",
            server.addr.port()
        ))
        .bearer_auth(token(&alice))
        .json(&soon)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(store.key_events("alice-rot").await.unwrap().len(), 2);
}

async fn every_refusal_has_its_status(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |c| {
        c.devices.rotation_min_interval = std::time::Duration::ZERO;
    })
    .await;
    let alice = server.connect("alice-rot").await;
    let bob = server.connect("bob-rot").await;
    let me = &alice.identity;
    let bearer = token(&alice);
    let auth = Some(bearer.as_str());
    let now = unix_now();
    let fresh = DeviceKeyPair::generate().public_key();
    let good = request(me, &me.keys, &fresh, now);

    // 401: no bearer, an unknown one
    expect_status(&server, None, &good, 401).await;
    expect_status(&server, Some("not-a-session"), &good, 401).await;

    // 400: not JSON, missing or unknown fields, bad encodings, unusable or unchanged key
    let (status, _) = post(&server, auth, b"{not json").await;
    assert_eq!(status, 400);
    expect_status(&server, auth, &json!({"device_id": me.device_id}), 400).await;
    let mut extra = good.clone();
    extra["extra"] = json!(1);
    expect_status(&server, auth, &extra, 400).await;
    let mut bad_key = good.clone();
    bad_key["public_key"] = json!("abcd");
    expect_status(&server, auth, &bad_key, 400).await;
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    let mut weak = good.clone();
    weak["public_key"] = json!(encode_hex(&identity_point));
    expect_status(&server, auth, &weak, 400).await;
    let mut short_proof = good.clone();
    short_proof["proof"] = json!("00ff");
    expect_status(&server, auth, &short_proof, 400).await;
    let same = request(me, &me.keys, &me.keys.public_key(), now);
    expect_status(&server, auth, &same, 400).await;

    // 403: another device's rotation with this bearer, even with that device's valid proof
    let bobs = bob.identity.clone();
    let bob_proof = request(&bobs, &bobs.keys, &fresh, now);
    expect_status(&server, auth, &bob_proof, 403).await;
    // 403: a proof by another key, over other fields, or outside the 300 s window
    let by_new = request(me, &DeviceKeyPair::generate(), &fresh, now);
    expect_status(&server, auth, &by_new, 403).await;
    let mut shifted = good.clone();
    shifted["issued_at"] = json!(now - 1);
    expect_status(&server, auth, &shifted, 403).await;
    for at in [now - 1_000, now + 1_000] {
        let proof = sign_rotation(&me.keys, &me.device_id, &fresh, at).unwrap();
        let stale = json!({"device_id": me.device_id, "public_key": encode_hex(&fresh),
                           "issued_at": at, "proof": encode_hex(&proof)});
        expect_status(&server, auth, &stale, 403).await;
    }
    // nothing of that changed the key
    let store = server.store().await;
    let stored = store.device("alice-rot").await.unwrap().unwrap();
    assert_eq!(stored.public_key, me.keys.public_key());
    assert_eq!(store.key_events("alice-rot").await.unwrap().len(), 1);

    // a valid rotation; then rotating back to the replaced key is a 409
    let mut identity = me.clone();
    rotate_device_key(
        target(&server),
        &bearer,
        &mut identity,
        DeviceKeyPair::from_seed(&fresh_seed()),
        unix_now(),
        None,
    )
    .await
    .unwrap();
    let alice = server.connect_as(identity.clone()).await;
    let back = request(&identity, &identity.keys, &me.keys.public_key(), unix_now());
    expect_status(&server, Some(&token(&alice)), &back, 409).await;

    // a revoked device: another device of bob's account revokes it over REST, which ends its
    // live session and deletes its stored sessions, so the rotation endpoint refuses its bearer
    let bob_token = token(&bob);
    let mut bob = bob;
    let rest = Rest::new(&server);
    let laptop = pair_into(&server, &rest, &bob_token).await;
    let revoked: Value = rest
        .call(
            Transport::Http1NoAlpn,
            Method::POST,
            "/api/devices/revoke",
            Some(&token(&laptop)),
            Some(&json!({"device_id": "bob-rot"})),
        )
        .await
        .decode();
    assert_eq!(
        revoked,
        json!({"device_id": "bob-rot", "status": "revoked"})
    );
    let frames = bob.recv_until_closed().await;
    let problem: Problem = frames
        .last()
        .expect("a closing ERROR")
        .parse_control()
        .unwrap();
    assert_eq!(problem.title.as_deref(), Some("Device Revoked"));
    let bob_fresh = request(&bobs, &bobs.keys, &fresh, unix_now());
    let (status, answer) = post(
        &server,
        Some(&bob_token),
        &serde_json::to_vec(&bob_fresh).unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["detail"], "unknown session");
    let stored = store.device("bob-rot").await.unwrap().unwrap();
    assert_eq!(
        stored.public_key,
        bobs.keys.public_key(),
        "bob's key unchanged"
    );
    let actions: Vec<String> = store
        .key_events("bob-rot")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, [DeviceKeyEvent::REGISTER, DeviceKeyEvent::REVOKE]);
    // nor can a session of its own come back: the handshake refuses the revoked device
    let err = connect_err(&server, &bobs).await;
    assert_eq!(err.title(), Some("Device Revoked"), "{err}");

    // the handshake still refuses a silent key change
    let mut silent = identity.clone();
    silent.keys = DeviceKeyPair::generate();
    silent.certificate = None;
    let err = connect_err(&server, &silent).await;
    assert_eq!(err.title(), Some("Device Key Mismatch"));
}

fn fresh_seed() -> [u8; 32] {
    *DeviceKeyPair::generate().seed()
}

#[tokio::test]
async fn a_disabled_rotation_is_refused_and_advertised() {
    let server = TestServer::start(|c| c.devices.rotation_enabled = false).await;
    assert_eq!(
        server.server_info().await["device_rotation"]["enabled"],
        false
    );
    let alice = server.connect("alice-rot").await;
    let me = &alice.identity;
    let body = request(
        me,
        &me.keys,
        &DeviceKeyPair::generate().public_key(),
        unix_now(),
    );
    expect_status(&server, Some(&token(&alice)), &body, 403).await;
}

/// Rotations that race from the same current key: the store's compare-and-set lets exactly one
/// through. Every other one is refused, by where it was when the winner committed: 409 (the key
/// changed between its checks and its store write), 403 (its proof no longer verifies under the
/// device's key, now the winner's) or 401 (the winner had already ended the old key's
/// sessions). Nothing else is stored.
async fn racing_rotations_store_exactly_one(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let alice = server.connect("alice-rot").await;
    let me = alice.identity.clone();
    let bearer = token(&alice);
    let now = unix_now();
    let candidates: Vec<DeviceKeyPair> = (0..8).map(|_| DeviceKeyPair::generate()).collect();
    let attempts = candidates.iter().map(|new| {
        let body = serde_json::to_vec(&request(&me, &me.keys, &new.public_key(), now)).unwrap();
        let (server, bearer) = (&server, &bearer);
        async move { post(server, Some(bearer), &body).await }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let winners: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, (status, _))| *status == 200)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for (status, answer) in &answers {
        let detail = answer["detail"].as_str().unwrap_or_default();
        let expected = match status {
            200 => "",
            401 => "unknown session",
            403 => "not a signature by the device's current key",
            409 => "changed meanwhile",
            _ => panic!("{status}: {answer}"),
        };
        assert!(detail.contains(expected), "{status}: {answer}");
    }
    let winner = &candidates[winners[0]];
    assert_eq!(answers[winners[0]].1["public_key"], winner.public_key_hex());
    let store = server.store().await;
    let stored = store.device("alice-rot").await.unwrap().unwrap();
    assert_eq!(stored.public_key, winner.public_key());
    let events = store.key_events("alice-rot").await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, [DeviceKeyEvent::REGISTER, DeviceKeyEvent::ROTATE]);
    assert_eq!(events[1].public_key, winner.public_key());
}

// The rotation scenarios run on SQLite and, when COMMUCAT_TEST_POSTGRES is set, PostgreSQL.
common::on_each_store!(
    a_rotation_replaces_the_key_end_to_end,
    every_refusal_has_its_status,
    racing_rotations_store_exactly_one,
);
