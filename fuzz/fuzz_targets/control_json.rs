//! Control JSON: `validate_control_json` and every typed control payload on arbitrary bytes.
//!
//! No input may panic. `validate_control_json` must agree with the deployed decoder's control
//! check, and a call payload that parses as our `commucat_ccp::control::Call*` type must parse as the
//! deployed `commucat_proto::call::Call*` type too, both directly and the way a deployed client
//! reads a received frame (`ControlEnvelope` -> `TryFrom`): frames we relay must parse there.

#![no_main]

use bytes::Bytes;
use commucat_ccp::control::{
    Ack, CallAnswer, CallEnd, CallOffer, CallStats, ClientAuth, GroupCreate, GroupInvite,
    HandshakeAck, Hello, Join, Leave, PresenceSnapshot, PresenceUpdate, ServerAuth,
    SessionPayload, Typing,
};
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_proto as proto;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn parse<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    serde_json::from_slice(data).ok()
}

/// Serializing a parsed payload never panics, and its output is JSON.
fn reserialize<T: Serialize>(value: &T) {
    if let Ok(json) = serde_json::to_vec(value) {
        assert!(
            commucat_ccp::validate_control_json(&json).is_ok(),
            "serialized control payload is not JSON: {:?}",
            String::from_utf8_lossy(&json)
        );
    }
}

/// A call payload accepted by us is accepted by the deployed client's type, read from the same
/// bytes directly and, when the bytes pass the control-JSON check (the only frames we relay),
/// through the deployed frame path.
fn check_call<Ours, Theirs>(data: &[u8], control_ok: bool, name: &str)
where
    Ours: DeserializeOwned + Serialize,
    Theirs: DeserializeOwned + for<'a> TryFrom<&'a proto::ControlEnvelope>,
{
    let Some(ours) = parse::<Ours>(data) else {
        return;
    };
    reserialize(&ours);
    if let Err(error) = serde_json::from_slice::<Theirs>(data) {
        panic!(
            "{name}: we accept {:?}, commucat-proto rejects it: {error}",
            String::from_utf8_lossy(data)
        );
    }
    if control_ok {
        let envelope: proto::ControlEnvelope = match serde_json::from_slice(data) {
            Ok(envelope) => envelope,
            Err(error) => panic!("{name}: ControlEnvelope rejects validated JSON: {error}"),
        };
        assert!(
            Theirs::try_from(&envelope).is_ok(),
            "{name}: we accept {:?}, the deployed frame path rejects it",
            String::from_utf8_lossy(data)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let control_ok = commucat_ccp::validate_control_json(data).is_ok();
    // Same verdict as the deployed decoder's control check (inputs are far below 256 KiB).
    let theirs_ok = serde_json::from_slice::<proto::ControlEnvelope>(data).is_ok();
    assert_eq!(control_ok, theirs_ok, "{:?}", String::from_utf8_lossy(data));

    // A frame carrying the bytes exists exactly when they are control JSON, and the deployed
    // decoder reads it back.
    let frame = Frame::new(FrameType::CallOffer, 1, 2, Bytes::copy_from_slice(data));
    assert_eq!(frame.is_ok(), control_ok);
    if let Ok(frame) = frame {
        let encoded = frame.to_bytes();
        assert!(proto::Frame::decode(&encoded).is_ok());
        assert!(frame.parse_control::<serde_json::Value>().is_ok());
    }

    // Handshake.
    if let Some(hello) = parse::<Hello>(data) {
        let offered = hello.offered_versions();
        let _ = commucat_ccp::negotiate(&offered, commucat_ccp::SUPPORTED_PROTOCOL_VERSIONS);
        let _ = hello.requests("noise");
        if let Some(user) = &hello.user {
            let _ = user.resolved_id();
            let _ = user.has_conflicting_ids();
        }
        reserialize(&hello);
    }
    if let Some(v) = parse::<ServerAuth>(data) {
        reserialize(&v);
    }
    if let Some(v) = parse::<ClientAuth>(data) {
        reserialize(&v);
    }
    if let Some(v) = parse::<SessionPayload>(data) {
        reserialize(&v);
    }
    if let Some(v) = parse::<HandshakeAck>(data) {
        let _ = v.is_ok();
        reserialize(&v);
    }

    // Routing.
    if let Some(v) = parse::<Ack>(data) {
        reserialize(&v);
    }
    if let Some(v) = parse::<Join>(data) {
        reserialize(&v);
    }
    if let Some(v) = parse::<Leave>(data) {
        let _ = v.resolved_device();
        reserialize(&v);
    }
    if let Some(v) = parse::<Typing>(data) {
        let _ = v.resolved_device();
        let _ = v.resolved_ttl_ms();
        reserialize(&v);
    }
    if let Some(v) = parse::<PresenceUpdate>(data) {
        reserialize(&v);
    }
    if let Some(v) = parse::<PresenceSnapshot>(data) {
        reserialize(&v);
    }

    // Groups.
    if let Some(v) = parse::<GroupCreate>(data) {
        reserialize(&v);
    }
    if let Some(v) = parse::<GroupInvite>(data) {
        let _ = v.resolved_device();
        let _ = v.granted_role().can_invite();
        reserialize(&v);
    }

    // Errors.
    if let Some(problem) = parse::<Problem>(data) {
        let _ = problem.kind();
        let _ = problem.to_frame(0, 0);
        reserialize(&problem);
    }

    // Calls: validation never panics, and the deployed client parses what we accept.
    if let Some(v) = parse::<CallOffer>(data) {
        let _ = v.validate();
        let _ = v.media.validate();
    }
    if let Some(v) = parse::<CallAnswer>(data) {
        let _ = v.validate();
    }
    if let Some(v) = parse::<CallEnd>(data) {
        let _ = v.validate();
    }
    if let Some(v) = parse::<CallStats>(data) {
        let _ = v.validate();
    }
    check_call::<CallOffer, proto::call::CallOffer>(data, control_ok, "CallOffer");
    check_call::<CallAnswer, proto::call::CallAnswer>(data, control_ok, "CallAnswer");
    check_call::<CallEnd, proto::call::CallEnd>(data, control_ok, "CallEnd");
    check_call::<CallStats, proto::call::CallStats>(data, control_ok, "CallStats");
});
