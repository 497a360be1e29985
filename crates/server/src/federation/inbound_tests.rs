//! Each inbound check, in order, on events signed by a test peer.

use commucat_ccp::{Frame, FrameType};
use commucat_keys::DeviceKeyPair;

use super::*;
use crate::config::{FederationSettings, PeerConfig, PeerStatus};
use crate::federation::event::{Event, format_created_at, sign};

const NOW: i64 = 1_767_323_045_000_000_000;

fn peer_key() -> DeviceKeyPair {
    DeviceKeyPair::from_seed(&[7; 32])
}

fn federation() -> Federation {
    let peer = |domain: &str, status, key: Option<[u8; 32]>| PeerConfig {
        domain: domain.to_owned(),
        endpoint: format!("https://{domain}"),
        public_key: key,
        status,
        ca_file: None,
    };
    let settings = FederationSettings {
        enabled: true,
        peers: vec![
            peer("a.test", PeerStatus::Active, Some(peer_key().public_key())),
            peer("c.test", PeerStatus::Blocked, Some(peer_key().public_key())),
            peer("d.test", PeerStatus::Pending, None),
        ],
        ..FederationSettings::default()
    };
    Federation::new("b.test", DeviceKeyPair::from_seed(&[8; 32]), settings)
}

fn msg() -> Frame {
    Frame::new(FrameType::Msg, 7, 3, b"ciphertext".to_vec()).unwrap()
}

fn body_with(origin: &str, scope: &str, created: i64, payload: serde_json::Value) -> Vec<u8> {
    let event = Event {
        event_id: "evt-1".to_owned(),
        origin: origin.to_owned(),
        created_at: format_created_at(created),
        payload,
        scope: scope.to_owned(),
    };
    serde_json::to_vec(&sign(event, &peer_key()).unwrap()).unwrap()
}

fn relay(target: &str, frame: &Frame) -> serde_json::Value {
    serde_json::json!({
        "channel": 7, "sequence": 3, "payload": hex::encode(frame.to_bytes()),
        "sender": "alice", "target": target,
    })
}

fn body(origin: &str) -> Vec<u8> {
    body_with(origin, "b.test", NOW, relay("bob@b.test", &msg()))
}

fn refused(body: &[u8]) -> Refusal {
    check(&federation(), body, NOW, 1 << 20).unwrap_err()
}

#[test]
fn a_valid_event_yields_its_target_sender_and_frame() {
    let checked = check(&federation(), &body("a.test"), NOW, 1 << 20).unwrap();
    assert_eq!(checked.origin, "a.test");
    assert_eq!(checked.event_id, "evt-1");
    assert_eq!(checked.target, "bob");
    assert_eq!(checked.sender, "alice@a.test");
    assert_eq!(checked.frame, msg());
}

#[test]
fn origins_must_be_active_peers() {
    assert_eq!(refused(b"{").title, "InvalidRequest");
    let r = refused(&body("x.test"));
    assert_eq!((r.status, r.title), (403, "UnknownPeer"));
    assert_eq!(refused(&body("c.test")).title, "PeerBlocked");
    assert_eq!(refused(&body("d.test")).title, "PeerPending");
}

#[test]
fn a_tampered_event_is_an_invalid_signature() {
    let mut signed: serde_json::Value = serde_json::from_slice(&body("a.test")).unwrap();
    signed["event"]["payload"]["target"] = "carol@b.test".into();
    let r = refused(&serde_json::to_vec(&signed).unwrap());
    assert_eq!((r.status, r.title), (403, "InvalidSignature"));
    // Signed by another key than the pinned one.
    let event = Event {
        event_id: "evt-1".to_owned(),
        origin: "a.test".to_owned(),
        created_at: format_created_at(NOW),
        payload: relay("bob@b.test", &msg()),
        scope: "b.test".to_owned(),
    };
    let forged = sign(event, &DeviceKeyPair::from_seed(&[9; 32])).unwrap();
    assert_eq!(
        refused(&serde_json::to_vec(&forged).unwrap()).title,
        "InvalidSignature"
    );
}

#[test]
fn scope_time_target_and_frame_are_checked() {
    let r = refused(&body_with(
        "a.test",
        "c.test",
        NOW,
        relay("bob@b.test", &msg()),
    ));
    assert_eq!((r.status, r.title), (400, "InvalidScope"));
    let day = 24 * 3600 * 1_000_000_000_i64;
    assert_eq!(
        refused(&body_with(
            "a.test",
            "b.test",
            NOW - day - 1,
            relay("bob@b.test", &msg())
        ))
        .title,
        "StaleEvent"
    );
    assert_eq!(
        refused(&body_with(
            "a.test",
            "b.test",
            NOW + MAX_FUTURE_SKEW_NANOS + 1,
            relay("bob@b.test", &msg())
        ))
        .title,
        "StaleEvent"
    );
    assert_eq!(
        refused(&body_with(
            "a.test",
            "b.test",
            NOW,
            relay("bob@c.test", &msg())
        ))
        .title,
        "InvalidTarget"
    );
    assert_eq!(
        refused(&body_with("a.test", "b.test", NOW, relay("bob", &msg()))).title,
        "InvalidTarget"
    );
    assert_eq!(
        refused(&body_with(
            "a.test",
            "b.test",
            NOW,
            serde_json::json!({"target": "bob@b.test"})
        ))
        .title,
        "InvalidPayload"
    );
    let hello = Frame::new(FrameType::Hello, 0, 0, b"{}".to_vec()).unwrap();
    assert_eq!(
        refused(&body_with(
            "a.test",
            "b.test",
            NOW,
            relay("bob@b.test", &hello)
        ))
        .title,
        "InvalidPayload"
    );
    let mut two = msg().to_bytes().to_vec();
    two.extend_from_slice(&msg().to_bytes());
    let payload = serde_json::json!({"payload": hex::encode(two), "target": "bob@b.test"});
    assert_eq!(
        refused(&body_with("a.test", "b.test", NOW, payload)).title,
        "InvalidPayload"
    );
}
