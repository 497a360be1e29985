//! Transport bounds against hostile or slow clients: the WebSocket pump keeps draining while
//! the session waits for it, and a client that does not read is ended as a slow consumer by
//! the byte bounds of its mailbox and transport buffer while a bystander is served.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use bytes::{Bytes, BytesMut};
use ccp::{Frame, FrameType};
use commucat_client::transport::{ConnectMode, Message, ModeStream, open_mode};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session};
use futures_util::SinkExt;
use serde_json::json;

use common::{TestServer, WAIT};

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
        .parse_control::<ccp::control::Ack>()
        .expect("ACK payload")
        .ack
}
