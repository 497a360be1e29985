//! The sans-IO handshake machines (`commucat-handshake`): the server machine fed arbitrary
//! HELLO/AUTH frames and sequences, and the client machine fed arbitrary server frames, with an
//! in-memory registry double and deterministic randomness.
//!
//! Input layout:
//!
//! ```text
//! mode:u8  ( len:u8  type:u8  payload[len] )...
//! ```
//!
//! `mode % 4` picks the scenario (bit 2: the genuine client uses IK instead of XK; bit 3: its
//! device is already registered; bit 4: automatic approval off; bits 5–7: one store query
//! fails):
//! - 0: every record is a frame to the server (`type % 4`: HELLO, AUTH, ACK, ERROR; a payload
//!   the codec refuses arrives as a decode failure);
//! - 1: a genuine client's HELLO, then the records as the server's next frames (message 3);
//! - 2: a genuine client's HELLO with the first record's payload replacing the JSON value of
//!   field `type % 12`, then the rest as the next frames;
//! - 3: a genuine client against records played as the server's frames (AUTH, ACK, ERROR).
//!
//! Checks: no panic; every machine ends within a bounded number of steps; a failure's problem
//! encodes as an ERROR frame with the failure's kind; with an untouched genuine client the
//! handshake completes on both sides with the same session.

#![no_main]

use std::sync::Arc;

use commucat_ccp::{Frame, FrameType};
use commucat_handshake::client::{self, ClientHandshake, ClientParams};
use commucat_handshake::server::{
    self, IdentityRules, Input, NoiseKey, ServerConfig, ServerHandshake, Step,
};
use commucat_handshake::sim::{Limits, MemStore};
use commucat_handshake::{HandshakeError, LinkFailure, StoreFailure};
use commucat_keys::{DeviceKeyPair, HandshakePattern, x25519_public};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use zeroize::Zeroizing;

const NOW: i64 = 1_800_000_000;
const MAX_STEPS: usize = 64;
const HELLO_FIELDS: [&str; 12] = [
    "pattern", "supported_versions", "protocol_version", "device_id", "handshake",
    "client_static", "device_public", "capabilities", "zkp", "user", "certificate",
    "device_ca_public",
];

fn records(data: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = data;
    while let [len, kind, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        out.push((*kind, payload.to_vec()));
        rest = next;
    }
    out
}

fn frame_type(kind: u8) -> FrameType {
    match kind % 4 {
        0 => FrameType::Hello,
        1 => FrameType::Auth,
        2 => FrameType::Ack,
        _ => FrameType::Error,
    }
}

fn server_input(kind: u8, payload: Vec<u8>, sequence: u32) -> Input {
    match Frame::new(frame_type(kind), 0, sequence, payload) {
        Ok(frame) => Input::Frame(frame),
        Err(e) => Input::Link(LinkFailure::Decode {
            kind: e.kind(),
            detail: e.to_string(),
        }),
    }
}

fn identity() -> IdentityRules {
    IdentityRules {
        valid_device_id: |id| !id.is_empty() && id.len() <= 128,
        valid_handle: |h| !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_alphanumeric()),
        max_device_id_len: 128,
        max_handle_len: 64,
    }
}

fn check_failure(failure: &HandshakeError) {
    let problem = failure.problem();
    assert_eq!(problem.kind(), Some(failure.kind()), "{failure:?}");
    let frame = Frame::control(FrameType::Error, 0, 1, &problem);
    assert!(frame.is_ok(), "{failure:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let records = records(rest);
    let ca = DeviceKeyPair::from_seed(&[7; 32]);
    let server_private = [11u8; 32];
    let keys = Arc::new(vec![NoiseKey {
        version: 1,
        private: Zeroizing::new(server_private),
        public: x25519_public(&server_private),
        accept_until: None,
    }]);
    let limits = Limits { display_name: 64, avatar_url: 64 };
    let config = ServerConfig {
        domain: "fuzz.example",
        prologue: b"commucat",
        device_ca: &ca,
        auto_approve: mode & 0x10 == 0,
        max_auto_devices_per_user: 2,
        certificate_validity_secs: 86_400,
        renewal_margin_secs: 3_600,
        session_ttl_secs: 3_600,
        keepalive_secs: 30,
        clock_skew_secs: 300,
        profile: &limits,
        identity: identity(),
        pq_hybrid: true,
        adaptive_obf: true,
    };
    let device = DeviceKeyPair::from_seed(&[9; 32]);
    let pattern = if mode & 0x04 == 0 { HandshakePattern::Xk } else { HandshakePattern::Ik };
    let capabilities = vec!["noise-transport".to_owned()];
    let versions = vec![u64::from(commucat_ccp::PROTOCOL_VERSION)];
    let params = ClientParams {
        device_id: "fuzz-device",
        keys: &device,
        certificate: None,
        user: None,
        domain: "fuzz.example",
        server_static: &keys[0].public,
        prologue: b"commucat",
        pattern,
        capabilities: &capabilities,
        supported_versions: &versions,
        pq: None,
    };
    let mut store = MemStore::default();
    if mode & 0x08 != 0 {
        store.users.insert("u1".to_owned(), server::User {
            user_id: "u1".to_owned(),
            handle: "alice".to_owned(),
            display_name: None,
            avatar_url: None,
            created_at: NOW,
        });
        store.devices.insert("fuzz-device".to_owned(), server::Device {
            user_id: "u1".to_owned(),
            public_key: device.public_key(),
            active: true,
        });
    }
    let failing = ["device", "user", "register", "session", "profile", "count", "", ""];
    let label = failing[usize::from(mode >> 5)];
    if !label.is_empty() {
        store.failures.insert(label, StoreFailure::Unavailable);
    }

    let mut server = ServerHandshake::new(config, StdRng::seed_from_u64(1));
    let mut client = ClientHandshake::new(params, StdRng::seed_from_u64(2));
    match mode % 4 {
        3 => {
            // The client against arbitrary server frames.
            let mut step = client.start();
            let mut queue = records.into_iter();
            for sequence in 1..MAX_STEPS {
                step = match step {
                    client::Step::Send(out) => {
                        assert!(out.to_frame(1).is_ok());
                        client.handle(client::Input::Sent)
                    }
                    client::Step::Recv => {
                        let Some((kind, payload)) = queue.next() else { return };
                        let Ok(frame) = Frame::new(frame_type(kind.wrapping_add(1)), 0, sequence as u32, payload) else {
                            return;
                        };
                        client.handle(client::Input::Frame { frame, now: NOW })
                    }
                    client::Step::Established(..) | client::Step::Failed(_) => return,
                };
            }
            panic!("client machine did not finish");
        }
        scenario => {
            // Frames for the server: a genuine HELLO first, or only the records.
            let mut frames: Vec<Input> = Vec::new();
            let mut records = records.into_iter();
            let mut genuine = false;
            if scenario != 0 {
                let client::Step::Send(hello) = client.start() else {
                    panic!("client did not start with HELLO");
                };
                let Ok(frame) = hello.to_frame(1) else { panic!("HELLO does not encode") };
                if scenario == 2 {
                    let Some((field, value)) = records.next() else { return };
                    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(frame.payload()) else {
                        panic!("HELLO is not JSON");
                    };
                    let replacement = serde_json::from_slice(&value)
                        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&value).into_owned()));
                    json[HELLO_FIELDS[usize::from(field) % HELLO_FIELDS.len()]] = replacement;
                    let Ok(bytes) = serde_json::to_vec(&json) else { return };
                    frames.push(server_input(0, bytes, 1));
                } else {
                    genuine = records.len() == 0;
                    frames.push(Input::Frame(frame));
                }
            }
            frames.extend(records.enumerate().map(|(i, (kind, payload))| server_input(kind, payload, i as u32 + 2)));
            let mut frames = frames.into_iter();
            let mut step = server.start();
            let mut pending_client = genuine;
            for _ in 0..MAX_STEPS {
                step = match step {
                    Step::Recv => {
                        // With an untouched genuine client, its message 3 comes from the client.
                        match frames.next() {
                            Some(input) => server.handle(input),
                            None => server.handle(Input::Closed),
                        }
                    }
                    Step::Send(out) => {
                        let Ok(frame) = out.to_frame(2) else { panic!("server frame does not encode") };
                        if pending_client {
                            match client.handle(client::Input::Sent) {
                                client::Step::Recv => {}
                                other => panic!("client after HELLO: {other:?}"),
                            }
                            pending_client = false;
                            if let client::Step::Send(auth) = client.handle(client::Input::Frame { frame, now: NOW }) {
                                let Ok(frame) = auth.to_frame(2) else { panic!("AUTH does not encode") };
                                frames = vec![Input::Frame(frame)].into_iter();
                            }
                        }
                        server.handle(Input::Sent)
                    }
                    Step::Query(query) => {
                        let answer = store.answer(query, &keys, NOW);
                        server.handle(Input::Answer(answer))
                    }
                    Step::Established(done) => {
                        assert!(store.sessions.iter().any(|s| s.session_id == done.session_id));
                        return;
                    }
                    Step::Failed(failure) => {
                        check_failure(&failure);
                        if genuine && label.is_empty() && mode & 0x18 != 0x10 {
                            // An untouched client is only refused when approval is off for a new
                            // device (or a store query fails).
                            panic!("genuine handshake failed: {failure:?}");
                        }
                        return;
                    }
                };
            }
            panic!("server machine did not finish");
        }
    }
});
