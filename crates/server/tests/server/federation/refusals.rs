//! The inbound endpoint against events built the reference way (wire-compat §13, digest spelled
//! out here, signed with the deployed `commucat-crypto` `EventSigner`): accepted once and
//! delivered; a replay answered `duplicate`; forged, misdirected, stale, blocked and unknown
//! origins refused with problem+json, counted and ledgered; a peer over its rate told when to
//! retry.

use commucat_ccp::{Frame, FrameType};
use commucat_server::Config;
use commucat_server::config::PeerStatus;
use serde_json::{Value, json};

use super::{federating, peer, reference_keys};
use crate::common::{TestServer, ledger_records};

/// Nanoseconds since the epoch and the RFC 3339 form the reference writes.
fn now() -> (i64, String) {
    let now = time::OffsetDateTime::now_utc();
    let text = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    (i64::try_from(now.unix_timestamp_nanos()).unwrap(), text)
}

/// The reference digest: BLAKE3(event_id ‖ origin ‖ scope ‖ i64le nanos ‖ payload JSON).
fn reference_digest(event: &Value) -> [u8; 32] {
    let created = time::OffsetDateTime::parse(
        event["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let nanos = i64::try_from(created.unix_timestamp_nanos()).unwrap();
    let mut hasher = blake3::Hasher::new();
    hasher.update(event["event_id"].as_str().unwrap().as_bytes());
    hasher.update(event["origin"].as_str().unwrap().as_bytes());
    hasher.update(event["scope"].as_str().unwrap().as_bytes());
    hasher.update(&nanos.to_le_bytes());
    // serde_json without preserve_order: object keys sorted, compact.
    hasher.update(event["payload"].to_string().as_bytes());
    *hasher.finalize().as_bytes()
}

/// A signed event as the reference server builds it, from `origin` (signed with the reference
/// key) for `target` (`device@scope`), carrying `frame`.
pub(super) fn reference_event(
    id: &str,
    origin: &str,
    scope: &str,
    target: &str,
    frame: &Frame,
) -> Value {
    let (_, created_at) = now();
    let event = json!({
        "event_id": id,
        "origin": origin,
        "created_at": created_at,
        "payload": {
            "channel": frame.channel_id(),
            "sequence": frame.sequence(),
            "payload": hex::encode(frame.to_bytes()),
            "sender": "ref-device",
            "target": target,
            "peer_endpoint": "https://ref.test",
            "peer_public_key": hex::encode(reference_keys().public),
        },
        "scope": scope,
    });
    sign_as_reference(&event)
}

fn sign_as_reference(event: &Value) -> Value {
    let digest = reference_digest(event);
    let signature = commucat_crypto::EventSigner::new(&reference_keys()).sign(&digest);
    json!({"event": event, "signature": signature.to_vec(), "digest": digest.to_vec()})
}

/// Checks an outbound body the way the reference server does (digest recomputed, signature
/// verified with the deployed crate's `EventVerifier` and `key`).
pub(super) fn verify_as_reference(body: &[u8], key: &[u8; 32]) {
    let signed: Value = serde_json::from_slice(body).unwrap();
    let digest = reference_digest(&signed["event"]);
    let claimed: Vec<u8> = serde_json::from_value(signed["digest"].clone()).unwrap();
    assert_eq!(claimed, digest, "digest of {signed}");
    let signature: Vec<u8> = serde_json::from_value(signed["signature"].clone()).unwrap();
    commucat_crypto::EventVerifier { public: *key }
        .verify(&digest, &signature.try_into().unwrap())
        .unwrap();
    assert_eq!(signed["event"]["origin"], "a.test");
    assert_eq!(signed["event"]["scope"], "b.test");
    assert_eq!(signed["event"]["payload"]["target"], "bob@b.test");
}

fn msg(text: &str) -> Frame {
    Frame::new(FrameType::Msg, 4, 1, text.as_bytes().to_vec()).unwrap()
}

/// `b.test` with the reference peer active, `a.test` pinned with another key, `c.test`
/// blocked.
async fn receiver(tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start(|c| {
        federating("b.test")(c);
        let other = commucat_keys::DeviceKeyPair::from_seed(&[3; 32]).public_key();
        let mut blocked = peer(
            "c.test",
            "https://127.0.0.1:9",
            reference_keys().public,
            None,
        );
        blocked.status = PeerStatus::Blocked;
        c.federation.peers = vec![
            peer(
                "ref.test",
                "https://127.0.0.1:9",
                reference_keys().public,
                None,
            ),
            peer("a.test", "https://127.0.0.1:9", other, None),
            blocked,
        ];
        tweak(c);
    })
    .await
}

/// Posts `body` to `server`'s events endpoint: status, content type and JSON answer.
async fn post(server: &TestServer, body: &Value) -> (u16, String, Value, Option<String>) {
    let response = server
        .http()
        .post(format!(
            "https://localhost:{}/federation/events",
            server.addr.port()
        ))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
    let retry_after = header(reqwest::header::RETRY_AFTER);
    (
        status,
        content_type,
        response.json().await.unwrap(),
        retry_after,
    )
}

#[tokio::test]
async fn reference_events_are_delivered_once() {
    let server = receiver(|_| {}).await;
    let mut bob = server.connect("bob").await;
    let event = reference_event("ref-evt-1", "ref.test", "b.test", "bob@b.test", &msg("hi"));
    let (status, _, answer, _) = post(&server, &event).await;
    assert_eq!((status, answer), (202, json!({"status": "accepted"})));
    let got = bob.recv_on(FrameType::Msg, 4).await;
    assert_eq!(got.payload().as_ref(), b"hi");
    // The same event again: answered, delivered to nobody.
    let (status, _, answer, _) = post(&server, &event).await;
    assert_eq!((status, answer), (200, json!({"status": "duplicate"})));
    bob.expect_quiet(std::time::Duration::from_millis(300))
        .await;
    // A bare target, or one for a device of another domain, is not this server's.
    let wrong = reference_event("ref-evt-2", "ref.test", "b.test", "bob@x.test", &msg("x"));
    let (status, _, answer, _) = post(&server, &wrong).await;
    assert_eq!(
        (status, answer["title"].as_str()),
        (400, Some("InvalidTarget"))
    );
    assert_eq!(
        server
            .metric("commucat_federation_events_received_total ")
            .await,
        Some(1)
    );
    assert_eq!(
        server
            .metric("commucat_federation_events_duplicate_total ")
            .await,
        Some(1)
    );
}

#[tokio::test]
async fn forged_misdirected_and_unwelcome_events_are_refused_and_ledgered() {
    let server = receiver(|_| {}).await;
    let mut bob = server.connect("bob").await;
    let good = |id: &str| reference_event(id, "ref.test", "b.test", "bob@b.test", &msg("x"));

    let mut tampered = good("t-1");
    tampered["event"]["payload"]["sender"] = "mallory".into();
    let mut resigned_elsewhere = good("t-2");
    resigned_elsewhere["event"]["payload"]["payload"] = hex::encode(msg("y").to_bytes()).into();
    resigned_elsewhere["digest"] = json!(reference_digest(&resigned_elsewhere["event"]).to_vec());
    let (_, stale_at) = {
        let (nanos, _) = now();
        let old = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(nanos) - 2 * 24 * 3600 * 1_000_000_000,
        )
        .unwrap();
        (
            (),
            old.format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        )
    };
    let mut stale = good("t-3");
    stale["event"]["created_at"] = stale_at.into();
    let stale = sign_as_reference(&stale["event"]);
    let cases: Vec<(Value, u16, &str)> = vec![
        (tampered, 403, "InvalidSignature"),
        (resigned_elsewhere, 403, "InvalidSignature"),
        // The origin a.test is pinned with another key than the one that signed.
        (
            reference_event("t-4", "a.test", "b.test", "bob@b.test", &msg("x")),
            403,
            "InvalidSignature",
        ),
        (
            reference_event("t-5", "x.test", "b.test", "bob@b.test", &msg("x")),
            403,
            "UnknownPeer",
        ),
        (
            reference_event("t-6", "c.test", "b.test", "bob@b.test", &msg("x")),
            403,
            "PeerBlocked",
        ),
        (
            reference_event("t-7", "ref.test", "z.test", "bob@b.test", &msg("x")),
            400,
            "InvalidScope",
        ),
        (stale, 400, "StaleEvent"),
        (
            reference_event("t-8", "ref.test", "b.test", "nobody@b.test", &msg("x")),
            404,
            "UnknownDevice",
        ),
        (json!({"event": "not an event"}), 400, "InvalidRequest"),
    ];
    let refused = u64::try_from(cases.len()).unwrap();
    for (body, status, title) in cases {
        let (got, content_type, answer, _) = post(&server, &body).await;
        assert_eq!(
            (got, answer["title"].as_str()),
            (status, Some(title)),
            "{answer}"
        );
        assert_eq!(content_type, "application/problem+json");
    }
    bob.expect_quiet(std::time::Duration::from_millis(300))
        .await;
    server
        .metric_becomes("commucat_federation_events_refused_total ", refused)
        .await;
    let path = server.data_dir().join(commucat_server::config::LEDGER_FILE);
    let records = ledger_records(&path, cases_len(refused), |r| {
        r["scope"] == "federation" && r["outcome"] == "refused"
    })
    .await;
    assert!(
        records
            .iter()
            .any(|r| r["title"] == "PeerBlocked" && r["peer"] == "c.test")
    );
}

fn cases_len(n: u64) -> usize {
    usize::try_from(n).unwrap()
}

#[tokio::test]
async fn a_peer_over_its_rate_is_told_when_to_retry() {
    let server = receiver(|c| c.federation.events_per_minute = 2).await;
    let _bob = server.connect("bob").await;
    for id in ["r-1", "r-2"] {
        let event = reference_event(id, "ref.test", "b.test", "bob@b.test", &msg("x"));
        assert_eq!(post(&server, &event).await.0, 202);
    }
    let event = reference_event("r-3", "ref.test", "b.test", "bob@b.test", &msg("x"));
    let (status, content_type, answer, retry_after) = post(&server, &event).await;
    assert_eq!(
        (status, answer["title"].as_str()),
        (429, Some("RateLimited"))
    );
    assert_eq!(content_type, "application/problem+json");
    let retry: u64 = retry_after.unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[tokio::test]
async fn the_key_is_published_at_the_well_known_path() {
    let server = receiver(|_| {}).await;
    let info = server.server_info().await;
    let well_known: Value = server
        .http()
        .get(format!(
            "https://localhost:{}/.well-known/commucat-federation",
            server.addr.port()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(well_known, info["federation"]);
    assert_eq!(well_known["domain"], "b.test");
    let seed = std::fs::read_to_string(server.data_dir().join("keys/federation.key")).unwrap();
    let key =
        commucat_keys::DeviceKeyPair::from_seed(&commucat_keys::decode_hex32(seed.trim()).unwrap());
    assert_eq!(well_known["public_key"], key.public_key_hex());
}
