//! A client made only of the deployed crates: their Noise builder, their proof, their frame
//! codec, their certificate type. Bytes travel over this project's HTTP/2 transport.

use std::time::Duration;

use bytes::Bytes;
use commucat_client::transport::{self, H2Stream};
use commucat_crypto as dc;
use commucat_link::ByteStream;
use commucat_proto as dp;
use serde_json::{Value, json};

use super::TestServer;

pub struct DeployedClient {
    stream: H2Stream,
    buf: Vec<u8>,
    seq: u64,
}

impl DeployedClient {
    pub async fn send(&mut self, ty: dp::FrameType, channel: u64, payload: dp::FramePayload) {
        self.seq += 1;
        let frame = dp::Frame {
            channel_id: channel,
            sequence: self.seq,
            frame_type: ty,
            payload,
        };
        self.stream
            .write(Bytes::from(frame.encode().unwrap()))
            .await
            .unwrap();
    }

    pub async fn recv(&mut self) -> dp::Frame {
        loop {
            match dp::Frame::decode(&self.buf) {
                Ok((frame, used)) => {
                    self.buf.drain(..used);
                    return frame;
                }
                Err(dp::CodecError::UnexpectedEof) => {
                    let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.read())
                        .await
                        .unwrap()
                        .unwrap()
                        .expect("server closed");
                    self.buf.extend_from_slice(&chunk);
                }
                Err(e) => panic!("deployed decoder rejected server bytes: {e}"),
            }
        }
    }
}

fn control(value: Value) -> dp::FramePayload {
    dp::FramePayload::Control(dp::ControlEnvelope { properties: value })
}

pub fn properties(frame: &dp::Frame) -> Value {
    match &frame.payload {
        dp::FramePayload::Control(c) => c.properties.clone(),
        dp::FramePayload::Opaque(_) => panic!("control payload expected"),
    }
}

/// Sends the deployed client's XK HELLO, its message 1 encrypted to `server_static` (the key
/// the client pinned); returns the client, its Noise state and the server's first reply.
pub async fn hello(
    server: &TestServer,
    device_id: &str,
    seed: [u8; 32],
    server_static: [u8; 32],
) -> (
    DeployedClient,
    dc::NoiseHandshake,
    dp::Frame,
    dc::DeviceKeyPair,
) {
    let signing_public = commucat_keys::DeviceKeyPair::from_seed(&seed).public_key();
    let keys = dc::DeviceKeyPair {
        public: signing_public,
        private: seed,
    };
    let client_static = commucat_keys::x25519_public(&seed);
    let config = dc::NoiseConfig {
        pattern: dc::HandshakePattern::Xk,
        prologue: b"commucat".to_vec(),
        local_private: keys.private,
        local_static_public: None,
        remote_static_public: Some(server_static),
    };
    let mut noise = dc::build_handshake(&config, true).unwrap();
    let msg1 = noise.write_message(&[]).unwrap();
    let context = dc::zkp::derive_handshake_context(
        &server.params.domain,
        device_id,
        &keys.public,
        &client_static,
    );
    let proof = dc::zkp::prove_handshake(&keys, &context).unwrap();
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect")
        .await
        .unwrap();
    let mut client = DeployedClient {
        stream,
        buf: Vec::new(),
        seq: 0,
    };
    // Exactly the keys the terminal client sends (wire-compat §3.3).
    client
        .send(
            dp::FrameType::Hello,
            0,
            control(json!({
                "protocol_version": 1,
                "pattern": "XK",
                "device_id": device_id,
                "client_static": hex::encode(client_static),
                "device_public": hex::encode(keys.public),
                "handshake": hex::encode(msg1),
                "capabilities": ["noise", "zstd"],
                "zkp": serde_json::to_value(&proof).unwrap(),
                "user": {"handle": device_id.replace('-', "_")},
            })),
        )
        .await;
    let reply = client.recv().await;
    (client, noise, reply, keys)
}

/// Runs the deployed client's XK handshake against the key server-info advertises; returns
/// the client and the ACK properties.
pub async fn handshake(
    server: &TestServer,
    device_id: &str,
    seed: [u8; 32],
) -> (DeployedClient, Value, dc::DeviceKeyPair) {
    handshake_pinned(server, device_id, seed, server.params.server_static).await
}

/// Like [`handshake`], with message 1 encrypted to `server_static`.
pub async fn handshake_pinned(
    server: &TestServer,
    device_id: &str,
    seed: [u8; 32],
    server_static: [u8; 32],
) -> (DeployedClient, Value, dc::DeviceKeyPair) {
    let (client, noise, auth, keys) = hello(server, device_id, seed, server_static).await;
    let (client, ack) = complete(client, noise, &auth).await;
    (client, ack, keys)
}

/// Finishes the handshake [`hello`] started: reads the server's `auth` reply, sends message 3
/// and returns the client with the ACK properties.
pub async fn complete(
    mut client: DeployedClient,
    mut noise: dc::NoiseHandshake,
    auth: &dp::Frame,
) -> (DeployedClient, Value) {
    assert_eq!(auth.frame_type, dp::FrameType::Auth, "{:?}", auth.payload);
    let msg2 = hex::decode(properties(auth)["handshake"].as_str().unwrap()).unwrap();
    let payload = noise.read_message(&msg2).unwrap();
    let session: Value = serde_json::from_slice(&payload).unwrap();
    assert!(session["session"].as_str().unwrap().len() >= 8);
    let msg3 = noise.write_message(&[]).unwrap();
    client
        .send(
            dp::FrameType::Auth,
            auth.channel_id,
            control(json!({"handshake": hex::encode(msg3)})),
        )
        .await;
    let ack = client.recv().await;
    assert_eq!(ack.frame_type, dp::FrameType::Ack);
    let ack = properties(&ack);
    assert_eq!(ack["handshake"], "ok");
    assert_eq!(ack["session"], session["session"]);
    (client, ack)
}
