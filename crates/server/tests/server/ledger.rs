//! The ledger written by a real server run: handshake success and failure (seed 000 §6
//! fields), device registration (handshake and pairing) and revocation, pairing issue and
//! claim, group creation and invitation, call start and end, read back from the JSONL file.

use crate::common::{TestServer, ledger_records};
use commucat_ccp::FrameType;
use commucat_client::{DeviceIdentity, HandshakeOptions, ServerParams};
use serde_json::{Value, json};

async fn rest(server: &TestServer, path: &str, token: Option<&str>, body: &Value) -> Value {
    let mut request = server
        .http()
        .post(format!("https://localhost:{}{path}", server.addr.port()))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

fn find<'a>(lines: &'a [Value], scope: &str, event: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["scope"] == scope && (l["event"] == event || l["result"] == event))
        .collect()
}

#[tokio::test]
async fn a_server_run_leaves_one_record_per_audited_action() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let ledger_path = path.clone();
    let server = TestServer::start(move |c| {
        c.ledger.path = Some(ledger_path);
        c.ledger.fsync = true;
    })
    .await;

    let mut alice = server.connect("alice-l").await;
    let mut bob = server.connect("bob-l").await;
    let carol = server.connect("carol-l").await;

    // A handshake to the wrong server key fails.
    let wrong = ServerParams::new(server.params.domain.clone(), [9u8; 32]);
    let stranger = DeviceIdentity::generate("stranger-l");
    assert!(
        commucat_client::connect(
            server.addr,
            "localhost",
            &server.trust,
            &stranger,
            &wrong,
            &HandshakeOptions::default(),
        )
        .await
        .is_err()
    );

    // Pairing: issue, claim, then alice revokes the claimed device.
    let token = alice.session.info().session_id.clone();
    let issued = rest(&server, "/api/pair", Some(&token), &json!({"ttl": null})).await;
    let claimed = rest(
        &server,
        "/api/pair/claim",
        None,
        &json!({"pair_code": issued["pair_code"]}),
    )
    .await;
    let paired = claimed["device_id"].as_str().unwrap().to_owned();
    rest(
        &server,
        "/api/devices/revoke",
        Some(&token),
        &json!({"device_id": paired}),
    )
    .await;

    // A group with bob, then carol invited.
    let seq = alice
        .control(
            FrameType::GroupCreate,
            20,
            &json!({"group_id": "ledger-0001", "members": ["bob-l"]}),
        )
        .await;
    alice.ack(seq).await;
    let seq = alice
        .control(
            FrameType::GroupInvite,
            20,
            &json!({"group_id": "ledger-0001", "device": "carol-l"}),
        )
        .await;
    alice.ack(seq).await;

    // A call from alice to bob, ended by alice.
    for c in [&mut alice, &mut bob] {
        c.join(40, true).await;
    }
    alice.members_become(40, &["alice-l", "bob-l"]).await;
    let offer = json!({
        "call_id": "call-ledger-1", "from": "alice-l", "to": ["bob-l"],
        "media": {"audio": {"codec": "opus", "bitrate": 16000, "sample_rate": 48000,
                            "channels": 1, "fec": true, "dtx": true}, "mode": "full_duplex"},
        "metadata": {}
    });
    let seq = alice.control(FrameType::CallOffer, 40, &offer).await;
    alice.ack(seq).await;
    bob.recv_on(FrameType::CallOffer, 40).await;
    let seq = alice
        .control(
            FrameType::CallEnd,
            40,
            &json!({"call_id": "call-ledger-1", "reason": "hangup", "metadata": {}}),
        )
        .await;
    alice.ack(seq).await;
    carol.close();

    let lines = ledger_records(&path, 1, |l| l["scope"] == "call" && l["event"] == "end").await;
    // Sequence numbers count up from 1 without gaps; every record has a timestamp.
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["seq"], i as u64 + 1, "{line}");
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
    }

    let successes = find(&lines, "handshake", "success");
    assert_eq!(successes.len(), 3, "{successes:?}");
    let first = successes.iter().find(|l| l["device"] == "alice-l").unwrap();
    for key in [
        "remote_addr",
        "user",
        "device_known",
        "noise_key_active",
        "noise_key_version",
        "has_user_profile",
        "has_certificate",
        "session",
        "protocol_version",
        "stage",
    ] {
        assert!(
            !first[key].is_null(),
            "success record without {key}: {first}"
        );
    }
    assert_eq!(first["device_known"], false);
    assert_eq!(first["certificate_issued"], true);
    assert_eq!(first["noise_key_version"], 1);
    assert_eq!(first["stage"], "established");
    // The session is recorded as its store key, never as the bearer token.
    assert_ne!(first["session"], token.as_str());
    assert!(!std::fs::read_to_string(&path).unwrap().contains(&token));

    let failures = find(&lines, "handshake", "failure");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["reason"], "crypto");
    assert_eq!(failures[0]["stage"], "hello");
    assert_eq!(failures[0]["device"], "stranger-l");
    assert!(
        failures[0]["detail"]
            .as_str()
            .unwrap()
            .contains("server key")
    );

    let registered: Vec<(&str, &str)> = find(&lines, "device", "register")
        .iter()
        .map(|l| (l["device"].as_str().unwrap(), l["via"].as_str().unwrap()))
        .collect();
    for expected in [
        ("alice-l", "handshake"),
        ("bob-l", "handshake"),
        ("carol-l", "handshake"),
        (paired.as_str(), "pairing"),
    ] {
        assert!(registered.contains(&expected), "{registered:?}");
    }
    let issue = find(&lines, "pairing", "issue");
    assert_eq!(issue.len(), 1);
    assert_eq!(issue[0]["device"], "alice-l");
    // The code itself is a credential and stays out of the ledger.
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains(issued["pair_code"].as_str().unwrap())
    );
    let claim = find(&lines, "pairing", "claim");
    assert_eq!(claim[0]["device"], paired.as_str());
    assert_eq!(claim[0]["issuer"], "alice-l");
    let revoke = find(&lines, "device", "revoke");
    assert_eq!(revoke[0]["device"], paired.as_str());
    assert_eq!(revoke[0]["by"], "alice-l");

    let create = find(&lines, "group", "create");
    assert_eq!(create[0]["group_id"], "ledger-0001");
    assert_eq!(create[0]["members"], json!(["alice-l", "bob-l"]));
    let invite = find(&lines, "group", "invite");
    assert_eq!(invite[0]["member"], "carol-l");
    assert_eq!(invite[0]["device"], "alice-l");

    let start = find(&lines, "call", "start");
    assert_eq!(start[0]["call_id"], "call-ledger-1");
    assert_eq!(start[0]["callees"], json!(["bob-l"]));
    let end = find(&lines, "call", "end");
    assert_eq!(end[0]["reason"], "hangup");
    assert_eq!(end[0]["device"], "alice-l");
}

#[tokio::test]
async fn ledger_off_writes_nothing() {
    let server =
        TestServer::start(|c| c.ledger.sink = commucat_server::config::LedgerSink::Off).await;
    let _alice = server.connect("alice-o").await;
    assert!(!server.data_dir().join("ledger.jsonl").exists());
}
