//! Noise static key rotation end to end: clients pinned to a superseded key keep completing
//! handshakes (the SDK with XK and IK, and the deployed 1.0.41 client) until the key is
//! retired or its grace period ends; server-info lists every accepted key; the ledger records
//! which key each handshake addressed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use commucat_client::{ClientError, DeviceIdentity, HandshakeOptions, ServerParams};
use commucat_keys::HandshakePattern;
use commucat_server::keyring;
use serde_json::Value;

use common::{TestServer, deployed, ledger_records, unix_now};

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
    for pattern in [HandshakePattern::Xk, HandshakePattern::Ik] {
        let error = connect_pinned(&server, &alice, old, pattern)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("Handshake"),
            "refused with {error}"
        );
        connect_pinned(&server, &alice, new, pattern).await.unwrap();
    }
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
