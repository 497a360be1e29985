//! Noise static key rotation end to end: clients pinned to a superseded key keep completing
//! handshakes (the SDK with XK and IK, and the deployed 1.0.41 client) until the key is
//! retired or its grace period ends; server-info lists every accepted key; the ledger records
//! which key each handshake addressed.

use std::time::Duration;

use commucat_client::{ClientError, DeviceIdentity, HandshakeOptions, ServerParams};
use commucat_keys::HandshakePattern;
use commucat_server::keys::keyring;
use serde_json::Value;

use crate::common::rest::{Rest, Transport, deployed as deployed_rest};
use crate::common::{TestServer, deployed, ledger_records, unix_now};

async fn connect_pinned(
    server: &TestServer,
    identity: &DeviceIdentity,
    pinned: [u8; 32],
    pattern: HandshakePattern,
) -> Result<(), ClientError> {
    let params = ServerParams::new(server.params.domain.clone(), pinned);
    let options = HandshakeOptions {
        pattern,
        ..HandshakeOptions::default()
    };
    commucat_client::connect(
        server.addr,
        "localhost",
        &server.trust,
        identity,
        &params,
        &options,
    )
    .await
    .map(drop)
}

/// With XK and IK: pinned to `old`, the handshake is refused; pinned to `new`, it completes.
async fn refused_old_accepted_new(
    server: &TestServer,
    identity: &DeviceIdentity,
    old: [u8; 32],
    new: [u8; 32],
) {
    for pattern in [HandshakePattern::Xk, HandshakePattern::Ik] {
        let error = connect_pinned(server, identity, old, pattern)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("Handshake"),
            "refused with {error}"
        );
        connect_pinned(server, identity, new, pattern)
            .await
            .unwrap();
    }
}

fn keys_of(info: &Value) -> Vec<(u64, String)> {
    info["noise_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["version"].as_u64().unwrap(),
                k["public"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Ledger records of the server matching `wanted`, once there are `count` of them.
async fn ledger_lines(
    server: &TestServer,
    count: usize,
    wanted: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let path = server.data_dir().join("ledger.jsonl");
    let lines = ledger_records(&path, count, &wanted).await;
    lines.into_iter().filter(|l| wanted(l)).collect()
}

#[tokio::test]
async fn a_client_pinned_to_the_old_key_works_until_the_key_is_retired() {
    let mut server = TestServer::start(|_| {}).await;
    let old = server.params.server_static;
    let alice = DeviceIdentity::generate("alice-phone").with_handle("alice");
    connect_pinned(&server, &alice, old, HandshakePattern::Xk)
        .await
        .unwrap();

    let ring = keyring::rotate(server.data_dir(), unix_now()).unwrap();
    assert_eq!(ring.current_version, 2);
    server.relaunch().await;
    let new = server.params.server_static;
    assert_ne!(new, old);
    assert_eq!(new, ring.current.public());

    // server-info: the newest key is advertised, both are listed.
    let info = server.server_info().await;
    assert_eq!(info["noise_public"], hex::encode(new));
    assert_eq!(
        keys_of(&info),
        [(2, hex::encode(new)), (1, hex::encode(old))]
    );

    // Pinned to the old key: XK and IK complete; the new key works too.
    for pattern in [HandshakePattern::Xk, HandshakePattern::Ik] {
        connect_pinned(&server, &alice, old, pattern).await.unwrap();
        connect_pinned(&server, &alice, new, pattern).await.unwrap();
    }
    // The deployed client, pinned to the key it saw at `init`.
    let (_client, ack, _) =
        deployed::handshake_pinned(&server, "device-1700000000001", [31u8; 32], old).await;
    assert_eq!(ack["handshake"], "ok");

    // The ledger says which key each handshake addressed.
    let successes = ledger_lines(&server, 6, |l| {
        l["scope"] == "handshake" && l["result"] == "success"
    })
    .await;
    let versions: Vec<u64> = successes
        .iter()
        .map(|l| l["noise_key_version"].as_u64().unwrap())
        .collect();
    assert!(
        versions.contains(&1) && versions.contains(&2),
        "{versions:?}"
    );

    // Retired: refused by the SDK and the deployed client alike; server-info drops it.
    keyring::retire(server.data_dir(), 1, unix_now()).unwrap();
    server.relaunch().await;
    assert_eq!(server.params.server_static, new);
    assert_eq!(
        keys_of(&server.server_info().await),
        [(2, hex::encode(new))]
    );
    refused_old_accepted_new(&server, &alice, old, new).await;
    let (_client, _, reply, _) =
        deployed::hello(&server, "device-1700000000001", [31u8; 32], old).await;
    assert_eq!(reply.frame_type, commucat_proto::FrameType::Error);
    let failures = ledger_lines(&server, 3, |l| {
        l["scope"] == "handshake" && l["result"] == "failure"
    })
    .await;
    assert!(
        failures.iter().all(|l| l["reason"] == "crypto"),
        "{failures:?}"
    );
    assert!(failures.iter().all(|l| {
        l["remote_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1"))
    }));
}

#[tokio::test]
async fn with_a_grace_period_of_zero_the_old_key_is_refused_at_once() {
    let mut server = TestServer::start(|c| c.crypto.noise_key_grace = Some(Duration::ZERO)).await;
    let old = server.params.server_static;
    keyring::rotate(server.data_dir(), unix_now()).unwrap();
    server.relaunch().await;
    let new = server.params.server_static;
    let info = server.server_info().await;
    assert_eq!(keys_of(&info), [(2, hex::encode(new))]);
    let bob = DeviceIdentity::generate("bob-laptop").with_handle("bob");
    assert!(
        connect_pinned(&server, &bob, old, HandshakePattern::Xk)
            .await
            .is_err()
    );
    connect_pinned(&server, &bob, new, HandshakePattern::Xk)
        .await
        .unwrap();
}

/// `GET /api/p2p/assist` with `bearer` (HTTP/1.1 without ALPN, as the deployed client): the key
/// bundle's signed prekey, after checking that the answer decodes as the deployed client's and
/// that the bundle's ML-DSA-65 signature verifies.
async fn verified_bundle_prekey(server: &TestServer, bearer: &str) -> String {
    use aws_lc_rs::signature::{ML_DSA_65, UnparsedPublicKey};
    let answer = Rest::new(server)
        .call(
            Transport::Http1NoAlpn,
            reqwest::Method::GET,
            "/api/p2p/assist",
            Some(bearer),
            None,
        )
        .await;
    let assist: deployed_rest::P2pAssistResponse = answer.decode();
    let hex_of = |hex: &str| hex::decode(hex).unwrap();
    let stored = commucat_server::keys::pq::PqKeys::load_or_generate(server.data_dir()).unwrap();
    let message = stored.bundle_message(
        &server.params.domain,
        &hex_of(&assist.pq.identity_public_hex),
        &hex_of(&assist.pq.signed_prekey_public_hex),
    );
    let signature = answer.body["pq"]["bundle_signature_hex"].as_str().unwrap();
    UnparsedPublicKey::new(&ML_DSA_65, hex_of(&assist.pq.signature_public_hex))
        .verify(&message, &hex_of(signature))
        .expect("the bundle is signed for the prekey it carries");
    assist.pq.signed_prekey_public_hex
}

#[tokio::test]
async fn a_rotation_takes_effect_on_reload_without_a_restart() {
    let mut server = TestServer::start(|_| {}).await;
    let addr = server.addr;
    let old = server.params.server_static;
    let alice = DeviceIdentity::generate("alice-phone").with_handle("alice");
    let bearer = server
        .connect("bob-laptop")
        .await
        .session
        .info()
        .session_id
        .clone();

    // Rotated on disk: nothing changes until the reload.
    let ring = keyring::rotate(server.data_dir(), unix_now()).unwrap();
    let new = ring.current.public();
    assert_eq!(
        keys_of(&server.server_info().await),
        [(1, hex::encode(old))]
    );
    connect_pinned(&server, &alice, new, HandshakePattern::Xk)
        .await
        .unwrap_err();

    let reloaded = server.reload_keys().await.unwrap();
    assert_eq!(
        (reloaded.previous_version, reloaded.current_version),
        (1, 2)
    );
    assert_eq!(reloaded.accepted_versions, [2, 1]);
    assert_eq!(server.addr, addr, "the same running server");
    let info = server.server_info().await;
    assert_eq!(info["noise_public"], hex::encode(new));
    assert_eq!(
        keys_of(&info),
        [(2, hex::encode(new)), (1, hex::encode(old))]
    );
    // The assist bundle is re-signed for the new key.
    assert_eq!(
        verified_bundle_prekey(&server, &bearer).await,
        hex::encode(new)
    );
    for pattern in [HandshakePattern::Xk, HandshakePattern::Ik] {
        connect_pinned(&server, &alice, new, pattern).await.unwrap();
        connect_pinned(&server, &alice, old, pattern).await.unwrap();
    }

    // A handshake whose message 1 arrived before the old key was retired completes with it.
    let (client, noise, auth, _) =
        deployed::hello(&server, "device-1700000000002", [32u8; 32], old).await;
    keyring::retire(server.data_dir(), 1, unix_now()).unwrap();
    // Retired on disk: still accepted until the reload.
    connect_pinned(&server, &alice, old, HandshakePattern::Xk)
        .await
        .unwrap();
    let reloaded = server.reload_keys().await.unwrap();
    assert_eq!(
        (reloaded.previous_version, reloaded.current_version),
        (2, 2)
    );
    assert_eq!(reloaded.accepted_versions, [2]);
    let (_client, ack) = deployed::complete(client, noise, &auth).await;
    assert_eq!(ack["noise_public"], hex::encode(old));

    refused_old_accepted_new(&server, &alice, old, new).await;
    assert_eq!(
        keys_of(&server.server_info().await),
        [(2, hex::encode(new))]
    );
    server.params = commucat_client::ServerParams::new(server.params.domain.clone(), new);

    let reloads = ledger_lines(&server, 2, |l| {
        l["scope"] == "keys" && l["event"] == "reload"
    })
    .await;
    let seen: Vec<(Value, Value, Value)> = reloads
        .iter()
        .map(|l| {
            (
                l["result"].clone(),
                l["current_version"].clone(),
                l["accepted_versions"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("success".into(), 2.into(), serde_json::json!([2, 1])),
            ("success".into(), 2.into(), serde_json::json!([2])),
        ]
    );
    // A restart keeps what the reload put in force.
    server.relaunch().await;
    assert_eq!(server.params.server_static, new);
    assert_eq!(
        keys_of(&server.server_info().await),
        [(2, hex::encode(new))]
    );
}

#[tokio::test]
async fn a_reload_that_cannot_read_the_keys_keeps_the_keys_in_force() {
    let server = TestServer::start(|_| {}).await;
    let old = server.params.server_static;
    let alice = DeviceIdentity::generate("alice-phone").with_handle("alice");
    let ring = keyring::rotate(server.data_dir(), unix_now()).unwrap();
    let new = ring.current.public();
    let keys_dir = server.data_dir().join("keys");
    let keyring_file = keys_dir.join(keyring::KEYRING_FILE);
    let good = std::fs::read(&keyring_file).unwrap();

    // A corrupt keyring, then a missing current key: each reload fails and changes nothing.
    std::fs::write(&keyring_file, "{\"previous\": 3}").unwrap();
    let error = server.reload_keys().await.unwrap_err();
    assert!(error.to_string().contains(keyring::KEYRING_FILE), "{error}");
    std::fs::write(&keyring_file, &good).unwrap();
    let current_file = keys_dir.join(commucat_server::keys::NOISE_STATIC_FILE);
    let aside = keys_dir.join("noise_static.key.aside");
    std::fs::rename(&current_file, &aside).unwrap();
    let error = server.reload_keys().await.unwrap_err();
    assert!(error.to_string().contains("missing"), "{error}");
    assert!(!current_file.exists(), "a reload never generates a key");
    assert_eq!(
        keys_of(&server.server_info().await),
        [(1, hex::encode(old))]
    );
    connect_pinned(&server, &alice, old, HandshakePattern::Xk)
        .await
        .unwrap();
    connect_pinned(&server, &alice, new, HandshakePattern::Xk)
        .await
        .unwrap_err();

    // Repaired: the next reload succeeds.
    std::fs::rename(&aside, &current_file).unwrap();
    let reloaded = server.reload_keys().await.unwrap();
    assert_eq!(reloaded.current_version, 2);
    connect_pinned(&server, &alice, new, HandshakePattern::Xk)
        .await
        .unwrap();
    let records = ledger_lines(&server, 3, |l| {
        l["scope"] == "keys" && l["event"] == "reload"
    })
    .await;
    let results: Vec<&str> = records
        .iter()
        .map(|l| l["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["failure", "failure", "success"]);
    assert_eq!(records[0]["current_version"], 1);
    assert!(
        records[0]["error"]
            .as_str()
            .unwrap()
            .contains(keyring::KEYRING_FILE),
        "{records:?}"
    );
}
