//! Helpers for tests that drive SDK sessions over a chosen `/connect` mode: open the stream,
//! wait for a frame of a type, JOIN a channel (checking its ACK), read the security stats.

use std::time::Duration;

use commucat_ccp::control::Ack;
use commucat_ccp::{Frame, FrameType};
use commucat_client::Session;
use commucat_client::transport::{ConnectMode, ModeStream, open_mode};
use serde_json::{Value, json};

use super::TestServer;

/// Opens `/connect` on `server` in `mode`.
pub async fn open(server: &TestServer, mode: ConnectMode) -> ModeStream {
    open_mode(mode, server.addr, "localhost", &server.trust)
        .await
        .unwrap()
}

/// The next frame of `frame_type` (others are skipped); fails after 10 s or on a closed stream.
pub async fn recv_type(session: &mut Session<ModeStream>, frame_type: FrameType) -> Frame {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), session.recv())
            .await
            .expect("frame within 10 s")
            .unwrap()
            .expect("stream open");
        if frame.frame_type() == frame_type {
            return frame;
        }
    }
}

/// JOINs `channel` with no declared members and waits for the ACK of that JOIN.
pub async fn join(session: &mut Session<ModeStream>, channel: u32) {
    let seq = session
        .send_control(
            FrameType::Join,
            channel,
            &json!({"members": [], "relay": true}),
        )
        .await
        .unwrap();
    let ack: Ack = recv_type(session, FrameType::Ack)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(ack.ack, u64::from(seq));
}

/// `GET /api/security-stats` as JSON.
pub async fn security_stats(server: &TestServer) -> Value {
    server
        .http()
        .get(format!(
            "https://localhost:{}/api/security-stats",
            server.addr.port()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
