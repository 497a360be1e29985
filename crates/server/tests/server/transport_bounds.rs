//! Transport bounds against hostile or slow clients: the WebSocket pump keeps draining while
//! the session waits for it, and a client that does not read is ended as a slow consumer by
//! the byte bounds of its mailbox and transport buffer while a bystander is served.

use crate::common;

use bytes::{Bytes, BytesMut};
use commucat_ccp::{Frame, FrameType};
use commucat_client::transport::{ConnectMode, Message, ModeStream, open_mode};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session};
use futures_util::SinkExt;
use serde_json::json;

use crate::common::{TestServer, WAIT};

/// A client writes 40 WebSocket messages of 64 MSGs each without reading, then reads: every
/// MSG gets its ACK. The pump must keep writing ACKs out while the session waits for it.
#[tokio::test]
async fn websocket_burst_without_reading_gets_every_ack() {
    const MESSAGES: usize = 40;
    const PER_MESSAGE: usize = 64;
    let server = TestServer::start(|_| {}).await;
    let stream = open_mode(
        ConnectMode::WebSocket,
        server.addr,
        "localhost",
        &server.trust,
    )
    .await
    .unwrap();
    let mut session = Session::handshake(
        stream,
        &DeviceIdentity::generate("burst-1"),
        &server.params,
        &HandshakeOptions::default(),
    )
    .await
    .unwrap();
    let join = session
        .send_control(FrameType::Join, 3, &json!({"members": [], "relay": true}))
        .await
        .unwrap();
    let ack = recv_type(&mut session, FrameType::Ack).await;
    assert_eq!(json_ack(&ack), u64::from(join));

    let mut messages = Vec::with_capacity(MESSAGES);
    for m in 0..MESSAGES {
        let mut bytes = BytesMut::new();
        for i in 0..PER_MESSAGE {
            let sequence = session
                .connection_mut()
                .codec_mut()
                .next_sequence()
                .unwrap();
            let payload = Bytes::from(format!("burst {m:02}/{i:02} ........"));
            Frame::new(FrameType::Msg, 3, sequence, payload)
                .unwrap()
                .encode(&mut bytes);
        }
        messages.push(bytes.freeze());
    }
    {
        let ModeStream::Ws(ws) = session.connection_mut().stream_mut() else {
            panic!("websocket stream");
        };
        for bytes in messages {
            tokio::time::timeout(WAIT, ws.socket_mut().send(Message::Binary(bytes)))
                .await
                .expect("server takes the burst")
                .unwrap();
        }
    }
    let mut acks = 0;
    while acks < MESSAGES * PER_MESSAGE {
        let frame = tokio::time::timeout(WAIT, session.recv())
            .await
            .unwrap_or_else(|_| panic!("ACKs stopped after {acks}"))
            .unwrap()
            .expect("stream open");
        match frame.frame_type() {
            FrameType::Ack => acks += 1,
            FrameType::Error => panic!("ERROR after {acks} ACKs: {frame:?}"),
            // The membership notice of the JOIN.
            _ => {}
        }
    }
}

async fn recv_type<S: commucat_link::ByteStream>(
    session: &mut Session<S>,
    frame_type: FrameType,
) -> Frame {
    loop {
        let frame = tokio::time::timeout(WAIT, session.recv())
            .await
            .expect("frame in time")
            .unwrap()
            .expect("stream open");
        if frame.frame_type() == frame_type {
            return frame;
        }
    }
}

fn json_ack(frame: &Frame) -> u64 {
    frame
        .parse_control::<commucat_ccp::control::Ack>()
        .expect("ACK payload")
        .ack
}

/// A device that stops reading while 32 KiB MSGs keep arriving on its channel is ended as a
/// slow consumer once the frames waiting pass `bounds.mailbox_bytes` (long before the frame
/// capacity): ERROR `Slow Consumer`, the refusal counted, the rest re-queued; two bystanders
/// chat meanwhile.
#[tokio::test]
async fn slow_consumer_is_cut_by_bytes_and_bystanders_are_served() {
    const MSGS: usize = 200;
    let server = TestServer::start(|c| {
        c.bounds.mailbox_bytes = 64 * 1024;
        c.bounds.transport_buffer_bytes = 64 * 1024;
    })
    .await;
    let mut sink = server.connect("sink-1").await;
    let mut sender = server.connect("sender-1").await;
    sink.join(21, true).await;
    sender.join(21, true).await;
    sink.members_become(21, &["sender-1", "sink-1"]).await;
    // sink reads nothing from here on.
    let payload = vec![0x5a; 32 * 1024];
    for _ in 0..MSGS {
        let sequence = sender.send(FrameType::Msg, 21, &payload).await;
        sender.ack(sequence).await;
    }
    let mut alice = server.connect("alice-1").await;
    let mut bob = server.connect("bob-1").await;
    alice.join(22, true).await;
    bob.join(22, true).await;
    alice.members_become(22, &["alice-1", "bob-1"]).await;
    bob.say(22, "still served").await;
    let msg = alice.recv_on(FrameType::Msg, 22).await;
    assert_eq!(msg.payload().as_ref(), b"still served");

    let frames = sink.recv_until_closed().await;
    let error = frames
        .iter()
        .find(|f| f.frame_type() == FrameType::Error)
        .expect("an ERROR before the close");
    let problem: commucat_ccp::Problem = error.parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Slow Consumer"));
    assert!(
        problem.detail.as_deref().unwrap_or("").contains("bytes"),
        "{problem:?}"
    );
    let delivered = frames
        .iter()
        .filter(|f| f.frame_type() == FrameType::Msg)
        .count();
    assert!(delivered < MSGS, "every MSG fit: nothing was bounded");
    let text = server
        .http()
        .get(format!("https://localhost:{}/metrics", server.addr.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = "commucat_bound_refusals_total{bound=\"mailbox_bytes\"} 1";
    assert!(text.lines().any(|l| l == line), "{line} missing");
    // What did not reach the sink waits for its next session.
    let store = server.store().await;
    assert!(common::queued(&store, "sink-1").await > 0);
}
