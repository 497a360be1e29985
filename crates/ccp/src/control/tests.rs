use serde_json::json;

use super::*;
use crate::{Frame, FrameType};

fn parse<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

#[test]
fn hello_from_deployed_client() {
    // Keys exactly as the deployed terminal client sends them (alphabetical, no supported_versions).
    let hello: Hello = parse(json!({
        "capabilities": ["noise", "zstd"],
        "client_static": "aa".repeat(32),
        "device_ca_public": "bb".repeat(32),
        "device_id": "device-1700000000000",
        "device_public": "cc".repeat(32),
        "handshake": "dd".repeat(48),
        "pattern": "XK",
        "protocol_version": 1,
        "user": {"handle": "alice", "display_name": "Alice"},
        "zkp": {"commitment": "ee".repeat(32), "response": "ff".repeat(32)},
        "certificate": {"serial": u64::MAX, "user_id": "u"},
        "something_new": {"ignored": true},
    }));
    assert_eq!(hello.offered_versions(), [1]);
    assert!(hello.requests("zstd"));
    assert!(!hello.requests("noise-transport"));
    assert_eq!(
        hello.user.as_ref().unwrap().handle.as_deref(),
        Some("alice")
    );
    assert_eq!(
        hello.certificate.unwrap()["serial"].as_u64(),
        Some(u64::MAX)
    );
}

#[test]
fn hello_from_specification() {
    let hello: Hello = parse(json!({
        "pattern": "IK",
        "device_id": "opaque",
        "client_static": "00",
        "handshake": "00",
        "supported_versions": [1, 2],
        "user": {"id": "u1", "user_id": "u1", "handle": "h"},
        "capabilities": ["noise-transport"],
        "pq_bundle": {"kem_public": "a", "kem_ciphertext": null, "signature_public": "b", "one_time_keys": ["c"]},
    }));
    assert_eq!(hello.offered_versions(), [1, 2]);
    assert_eq!(hello.device_public, None);
    assert_eq!(hello.user.unwrap().resolved_id(), Some("u1"));
    assert_eq!(hello.pq_bundle.unwrap().one_time_keys, ["c"]);
}

#[test]
fn hello_without_versions_is_v1() {
    let hello: Hello = parse(json!({
        "pattern": "XK", "device_id": "d", "client_static": "", "handshake": ""
    }));
    assert_eq!(hello.offered_versions(), [1]);
    assert_eq!(
        crate::negotiate(
            &hello.offered_versions(),
            crate::SUPPORTED_PROTOCOL_VERSIONS
        ),
        Some(1)
    );
}

#[test]
fn hello_missing_required_key_is_invalid_control_payload() {
    let frame = Frame::control(FrameType::Hello, 0, 1, &json!({"pattern": "XK"})).unwrap();
    let err = frame.parse_control::<Hello>().unwrap_err();
    assert_eq!(err.kind(), crate::ProblemKind::InvalidControlPayload);
    assert!(err.to_string().contains("device_id"), "{err}");
}

#[test]
fn user_info_ids() {
    let both: UserInfo = parse(json!({"id": "a", "user_id": "b"}));
    assert!(both.has_conflicting_ids());
    let alias: UserInfo = parse(json!({"user_id": "b"}));
    assert_eq!(alias.resolved_id(), Some("b"));
    let profile = UserInfo::profile("u", "h", None, None);
    assert_eq!(
        serde_json::to_value(&profile).unwrap(),
        json!({"id": "u", "user_id": "u", "handle": "h"})
    );
}

#[test]
fn ack_shapes() {
    assert_eq!(
        serde_json::to_string(&Ack::sequence(3)).unwrap(),
        r#"{"ack":3}"#
    );
    let ack: Ack = parse(json!({"ack": u64::MAX, "call_id": "call-1234", "accept": true}));
    assert_eq!(ack.ack, u64::MAX);
    assert_eq!(ack.accept, Some(true));
}

#[test]
fn handshake_ack_and_session_payload() {
    let ack: HandshakeAck = parse(json!({
        "handshake": "ok", "session": "0123456789abcdef", "pairing_required": false,
        "certificate": {"serial": u64::MAX, "issued_at": -1, "expires_at": 1_702_592_000},
        "noise_keys": [], "device_certificate": {"serial": 18_446_744_073_709_551_615_u64},
    }));
    assert!(ack.is_ok());
    assert_eq!(ack.certificate.unwrap().serial, u64::MAX);
    assert_eq!(
        ack.device_certificate.unwrap()["serial"].as_u64(),
        Some(u64::MAX)
    );
    let payload: SessionPayload = parse(json!({
        "session": "0123456789abcdef", "domain": "example.org", "protocol_version": 1,
        "user_id": "u", "user": {"id": "u", "user_id": "u", "handle": "h", "display_name": null, "avatar_url": null}
    }));
    assert_eq!(payload.user.unwrap().display_name, None);
    let auth: ServerAuth = parse(
        json!({"handshake": "ab", "session": "s", "server_static": "cd",
        "protocol_version": 1, "supported_versions": [1], "device_id": "d"}),
    );
    assert_eq!(auth.supported_versions, Some(vec![1]));
    let client: ClientAuth = parse(json!({"handshake": "ff"}));
    assert_eq!(client.handshake, "ff");
    let empty: ClientAuth = parse(json!({}));
    assert_eq!(empty.handshake, "");
}

#[test]
fn join_and_leave() {
    let join: Join = parse(json!({"members": ["d1"], "relay": false}));
    assert!(!join.relay);
    let bare: Join = parse(json!({}));
    assert!(bare.relay && bare.members.is_empty());
    let group: Join = parse(json!({"group_id": "grp-1"}));
    assert_eq!(group.group_id.as_deref(), Some("grp-1"));
    let leave: Leave = parse(json!({}));
    assert_eq!(leave.resolved_device(), None);
    let leave: Leave = parse(json!({"device_id": "d2"}));
    assert_eq!(leave.resolved_device(), Some("d2"));
}

#[test]
fn typing_aliases() {
    let t: Typing = parse(json!({"sender": "d1", "expires_in": 500}));
    assert_eq!(t.resolved_device(), Some("d1"));
    assert_eq!(t.resolved_ttl_ms(), 500);
    assert!(t.typing);
    let t: Typing = parse(json!({"device_id": "d2", "device": "d3", "typing": false}));
    assert_eq!(t.resolved_device(), Some("d3"));
    assert_eq!(t.resolved_ttl_ms(), 3000);
}

#[test]
fn presence_shapes() {
    let update: PresenceUpdate = parse(json!({"state": "away"}));
    assert_eq!(update.state, "away");
    let snapshot = PresenceSnapshot {
        entity: "d1".into(),
        state: "online".into(),
        expires_at: Some("2026-11-22T00:00:00Z".into()),
        user: None,
    };
    let json = serde_json::to_value(&snapshot).unwrap();
    assert_eq!(json["entity"], "d1");
    // PRESENCE without `entity` is never valid for deployed clients.
    assert!(serde_json::from_value::<PresenceSnapshot>(json!({"state": "online"})).is_err());
    let candidate: PeerCandidate = parse(
        json!({"entity": "a", "channel": 7, "peer": "a", "candidate": "198.51.100.10:52345"}),
    );
    assert_eq!(candidate.channel, 7);
}

#[test]
fn groups() {
    let create: GroupCreate = parse(json!({
        "group_id": "optional-client-generated",
        "members": ["owner-device", "peer-device"],
        "roles": {"peer-device": "admin"},
        "relay": true
    }));
    assert_eq!(create.roles["peer-device"], GroupRole::Admin);
    assert!(serde_json::from_value::<GroupCreate>(json!({"roles": {"d": "king"}})).is_err());
    let invite: GroupInvite =
        parse(json!({"group_id": "grp-123", "device": "new-device", "role": "owner"}));
    assert_eq!(invite.granted_role(), GroupRole::Admin);
    let invite: GroupInvite = parse(json!({"group_id": "g", "member": "m"}));
    assert_eq!(invite.resolved_device(), Some("m"));
    assert_eq!(invite.granted_role(), GroupRole::Member);
    assert!(GroupRole::Admin.can_invite() && !GroupRole::Member.can_invite());
}

fn seed_offer() -> serde_json::Value {
    json!({
        "call_id": "6f1c2a9e-uuid-v4",
        "from": "device@domain",
        "to": ["peer-device@domain"],
        "media": {
            "audio": {"codec": "opus", "bitrate": 16000, "sample_rate": 48000, "channels": 1, "fec": true, "dtx": true},
            "video": {"codec": "vp8", "max_bitrate": 500000, "max_resolution": {"width": 640, "height": 360}, "frame_rate": 24, "adaptive": true},
            "mode": "full_duplex"
        },
        "transport": {"prefer_relay": true, "udp_candidates": [{"address": "198.51.100.10", "port": 3478, "protocol": "udp"}], "fingerprints": ["ab"]},
        "expires_at": 1_700_000_000,
        "ephemeral_key": "cd",
        "metadata": {}
    })
}

#[test]
fn call_payloads_from_the_specification() {
    let offer: CallOffer = parse(seed_offer());
    offer.validate().unwrap();
    let answer: CallAnswer = parse(json!({
        "call_id": "6f1c2a9e-uuid-v4", "accept": true,
        "media": {"audio": {"bitrate": 12000, "codec": "opus", "sample_rate": 48000, "channels": 1, "fec": true, "dtx": true}, "video": null, "mode": "full_duplex"},
        "reason": null, "metadata": {}
    }));
    answer.validate().unwrap();
    let end: CallEnd = parse(json!({"call_id": "6f1c2a9e-uuid-v4", "reason": "hangup"}));
    end.validate().unwrap();
    let stats: CallStats = parse(json!({
        "call_id": "6f1c2a9e-uuid-v4", "direction": "send",
        "audio": {"bitrate": 16000, "packet_loss": 0.01, "jitter_ms": 8, "rtt_ms": 95},
        "video": {"bitrate": 350000, "packet_loss": 0.05, "jitter_ms": 25, "frames_per_second": 15},
        "timestamp": 1_700_000_100
    }));
    stats.validate().unwrap();
}

#[test]
fn call_validation_rejects_what_deployed_clients_cannot_use() {
    let mut offer: CallOffer = parse(seed_offer());
    offer.media.audio.sample_rate = 44_100;
    assert!(offer.validate().unwrap_err().contains("sample_rate"));
    let mut offer: CallOffer = parse(seed_offer());
    offer.media.audio.channels = 3;
    assert!(offer.validate().is_err());
    let mut offer: CallOffer = parse(seed_offer());
    offer.call_id = "short".into();
    assert!(offer.validate().unwrap_err().contains("call_id"));
    offer.call_id = "c".repeat(MAX_CALL_ID_LEN);
    assert!(offer.validate().is_ok());
    offer.call_id = "c".repeat(MAX_CALL_ID_LEN + 1);
    assert!(offer.validate().unwrap_err().contains("at most"));
    let mut offer: CallOffer = parse(seed_offer());
    offer.to.clear();
    assert!(offer.validate().is_err());
    // Codecs the deployed client cannot parse are schema errors.
    let mut raw = seed_offer();
    raw["media"]["video"]["codec"] = json!("h264_baseline");
    assert!(serde_json::from_value::<CallOffer>(raw).is_err());
    assert!(
        serde_json::from_value::<CallEnd>(json!({"call_id": "12345678", "reason": "bored"}))
            .is_err()
    );
    let stats: CallStats = parse(
        json!({"call_id": "12345678", "direction": "receive", "audio": {"bitrate": 1, "packet_loss": 1.5}}),
    );
    assert!(stats.validate().is_err());
}

#[test]
fn reference_candidates_alias() {
    let transport: CallTransport = parse(json!({"candidates": [{"address": "::1", "port": 1}]}));
    assert_eq!(transport.udp_candidates.len(), 1);
}
