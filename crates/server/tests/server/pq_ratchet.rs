//! The `HybridRatchet` of live `pq-hybrid` sessions against the real server: steps under
//! traffic in every record-carrying connect mode, a step on the interval alone, and the
//! session ended with its own ERROR when the client's one-time keys are all spent.

use std::time::Duration;

use bytes::Bytes;
use commucat_ccp::{FrameType, Problem, ProblemKind};
use commucat_client::transport::{ConnectMode, ModeStream, open_mode};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session};
use serde_json::json;

use crate::common::TestServer;
use crate::common::modes::{join, recv_type};

async fn connect_pq(server: &TestServer, mode: ConnectMode, device: &str) -> Session<ModeStream> {
    let identity = DeviceIdentity::generate(device).with_pq_keys().unwrap();
    let stream = open_mode(mode, server.addr, "localhost", &server.trust)
        .await
        .unwrap();
    let options = HandshakeOptions::default().with_pq_hybrid();
    let session = Session::handshake(stream, &identity, &server.params, &options)
        .await
        .unwrap();
    assert!(session.info().pq_hybrid());
    assert_eq!(session.pq_ratchet_epoch(), Some(0));
    session
}

/// Two clients exchange messages both ways while the server re-keys every 4 frames: both
/// sessions take steps and every message arrives intact, across steps in both directions.
async fn steps_under_traffic(mode: ConnectMode) {
    let server = TestServer::start(|c| {
        c.crypto.pq_ratchet_messages = 4;
        c.server.http3 = mode == ConnectMode::H3;
    })
    .await;
    let mut alice = connect_pq(&server, mode, "alice-ratchet").await;
    let mut bob = connect_pq(&server, mode, "bob-ratchet").await;
    join(&mut alice, 9).await;
    join(&mut bob, 9).await;
    for round in 0..3u8 {
        let down = Bytes::from(vec![round; 70_000]);
        alice
            .send_bytes(FrameType::Msg, 9, down.clone())
            .await
            .unwrap();
        assert_eq!(recv_type(&mut bob, FrameType::Msg).await.payload(), &down);
        let up = Bytes::from(vec![round, round]);
        bob.send_bytes(FrameType::Msg, 9, up.clone()).await.unwrap();
        assert_eq!(recv_type(&mut alice, FrameType::Msg).await.payload(), &up);
    }
    for session in [&alice, &bob] {
        let epoch = session.pq_ratchet_epoch().unwrap();
        assert!(epoch >= 1, "{mode:?}: a step was taken (epoch {epoch})");
    }
}

mod steps_under_traffic {
    use commucat_client::transport::ConnectMode;

    #[tokio::test]
    async fn h2_binary() {
        super::steps_under_traffic(ConnectMode::H2Binary).await;
    }

    #[tokio::test]
    async fn h1_chunked() {
        super::steps_under_traffic(ConnectMode::H1Chunked).await;
    }

    #[tokio::test]
    async fn websocket() {
        super::steps_under_traffic(ConnectMode::WebSocket).await;
    }

    #[tokio::test]
    async fn websocket_h2() {
        super::steps_under_traffic(ConnectMode::WebSocketH2).await;
    }

    #[tokio::test]
    async fn h3() {
        super::steps_under_traffic(ConnectMode::H3).await;
    }
}

#[tokio::test]
async fn every_record_carrying_mode_is_covered() {
    let carrying: Vec<_> = ConnectMode::ALL
        .iter()
        .filter(|m| m.carries_noise_transport())
        .collect();
    assert_eq!(
        carrying.len(),
        5,
        "a new record-carrying mode needs a steps_under_traffic test"
    );
}

/// An idle session steps when the interval runs out.
#[tokio::test]
async fn the_interval_alone_takes_a_step() {
    let server = TestServer::start(|c| {
        c.crypto.pq_ratchet_messages = 1_000_000;
        c.crypto.pq_ratchet_interval = Duration::from_secs(1);
    })
    .await;
    let mut alice = connect_pq(&server, ConnectMode::H2Binary, "alice-interval").await;
    for _ in 0..60 {
        // The step is consumed inside recv; nothing else arrives on an idle session.
        let _ = tokio::time::timeout(Duration::from_millis(500), alice.recv()).await;
        if alice.pq_ratchet_epoch() >= Some(1) {
            break;
        }
    }
    assert!(alice.pq_ratchet_epoch() >= Some(1));
    // The session still works under the new keys both ways.
    join(&mut alice, 4).await;
}

/// The SDK announces 4 one-time keys: with a step every frame, the fifth step is due with
/// none left and the server ends the session with its own ERROR.
#[tokio::test]
async fn running_out_of_one_time_keys_ends_the_session_with_its_error() {
    let server = TestServer::start(|c| c.crypto.pq_ratchet_messages = 1).await;
    let mut alice = connect_pq(&server, ConnectMode::H2Binary, "alice-exhausted").await;
    let mut error = None;
    for channel in 1..20 {
        if alice
            .send_control(
                FrameType::Join,
                channel,
                &json!({"members": [], "relay": true}),
            )
            .await
            .is_err()
        {
            break;
        }
        let frame = recv_type_or_error(&mut alice).await;
        if frame.frame_type() == FrameType::Error {
            error = Some(frame);
            break;
        }
    }
    let problem: Problem = error
        .expect("ERROR before 20 JOINs")
        .parse_control()
        .unwrap();
    assert_eq!(
        problem.title.as_deref(),
        Some(ProblemKind::PqOneTimeKeysExhausted.title())
    );
    assert_eq!(alice.pq_ratchet_epoch(), Some(4));
}

async fn recv_type_or_error(session: &mut Session<ModeStream>) -> commucat_ccp::Frame {
    loop {
        let frame = recv_type_any(session).await;
        if matches!(frame.frame_type(), FrameType::Ack | FrameType::Error) {
            return frame;
        }
    }
}

async fn recv_type_any(session: &mut Session<ModeStream>) -> commucat_ccp::Frame {
    tokio::time::timeout(Duration::from_secs(10), session.recv())
        .await
        .expect("frame within 10 s")
        .unwrap()
        .expect("stream open")
}
