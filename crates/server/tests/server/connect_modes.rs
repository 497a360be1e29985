//! Every `/connect` mode end to end: the real server on 127.0.0.1:0 over TLS, the client SDK's
//! transport for the mode, the handshake and a 1:1 conversation. One test body, run per mode.

use std::time::Duration;

use bytes::Bytes;
use commucat_ccp::FrameType;
use commucat_ccp::control::{Ack, Join};
use commucat_client::transport::{ConnectMode, Message, ModeStream};
use commucat_client::{ClientError, DeviceIdentity, HandshakeOptions, Session};
use commucat_link::{ByteStream, Connection};
use commucat_server::Config;
use futures_util::SinkExt;
use serde_json::json;

use crate::common::TestServer as Running;
use crate::common::modes::{join, open, recv_type};

/// A test server with HTTP/3 on (so every mode, `ConnectMode::H3` included, reaches it).
async fn start(tweak: impl FnOnce(&mut Config)) -> Running {
    Running::start(|c| {
        c.server.http3 = true;
        tweak(c);
    })
    .await
}

async fn connect(
    server: &Running,
    mode: ConnectMode,
    identity: &DeviceIdentity,
    options: &HandshakeOptions,
) -> Result<Session<ModeStream>, ClientError> {
    Session::handshake(open(server, mode).await, identity, &server.params, options).await
}

/// Generates one `#[tokio::test]` per connect mode calling `$body(mode)`.
macro_rules! per_mode {
    ($body:ident: $($name:ident => $mode:ident),+ $(,)?) => {
        mod $body {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$body(commucat_client::transport::ConnectMode::$mode).await;
                }
            )+
        }
    };
    ($body:ident) => {
        per_mode!($body:
            h2_binary => H2Binary,
            h1_chunked => H1Chunked,
            sse => Sse,
            ndjson => Ndjson,
            websocket => WebSocket,
            websocket_h2 => WebSocketH2,
            h3 => H3,
        );
    };
}

/// Handshake (XK; bob with Noise transport records where the mode carries them) and a 1:1
/// conversation: both JOIN a channel, see each other, exchange MSGs in both directions.
async fn conversation(mode: ConnectMode) {
    let server = start(|_| {}).await;
    let alice_id = DeviceIdentity::generate("alice-phone").with_handle("alice");
    let bob_id = DeviceIdentity::generate("bob-laptop").with_handle("bob");
    let mut alice = connect(&server, mode, &alice_id, &HandshakeOptions::default())
        .await
        .unwrap();
    let bob_options = if mode.carries_noise_transport() {
        HandshakeOptions::default().with_noise_transport()
    } else {
        HandshakeOptions::default()
    };
    let mut bob = connect(&server, mode, &bob_id, &bob_options).await.unwrap();
    assert_eq!(bob.info().encrypted(), mode.carries_noise_transport());

    join(&mut alice, 7).await;
    join(&mut bob, 7).await;
    let members: Join = recv_type(&mut bob, FrameType::Join)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(members.members, ["alice-phone", "bob-laptop"]);

    let seq = alice
        .send_bytes(FrameType::Msg, 7, Bytes::from_static(b"hello bob"))
        .await
        .unwrap();
    let ack: Ack = recv_type(&mut alice, FrameType::Ack)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(ack.ack, u64::from(seq));
    let msg = recv_type(&mut bob, FrameType::Msg).await;
    assert_eq!(msg.payload().as_ref(), b"hello bob");
    assert_eq!(msg.channel_id(), 7);

    // Larger than one HTTP/2 window, one Noise message, one WebSocket frame default.
    let big = Bytes::from(vec![0xabu8; 200_000]);
    bob.send_bytes(FrameType::Msg, 7, big.clone())
        .await
        .unwrap();
    let got = recv_type(&mut alice, FrameType::Msg).await;
    assert_eq!(got.payload(), &big);
}

per_mode!(conversation);

/// Options for the second device: Noise transport records where the mode carries them.
fn encrypted_where_possible(mode: ConnectMode) -> HandshakeOptions {
    if mode.carries_noise_transport() {
        HandshakeOptions::default().with_noise_transport()
    } else {
        HandshakeOptions::default()
    }
}

/// A group message: alice creates a group of three on channel 20; bob and carol get the
/// GROUP_CREATE and then alice's MSG on the group channel.
async fn group_message(mode: ConnectMode) {
    let server = start(|_| {}).await;
    let mut alice = connect(
        &server,
        mode,
        &DeviceIdentity::generate("alice-g"),
        &HandshakeOptions::default(),
    )
    .await
    .unwrap();
    let mut bob = connect(
        &server,
        mode,
        &DeviceIdentity::generate("bob-g"),
        &encrypted_where_possible(mode),
    )
    .await
    .unwrap();
    let mut carol = connect(
        &server,
        mode,
        &DeviceIdentity::generate("carol-g"),
        &HandshakeOptions::default(),
    )
    .await
    .unwrap();
    let seq = alice
        .send_control(
            FrameType::GroupCreate,
            20,
            &json!({"group_id": "grp-modes-1", "members": ["bob-g", "carol-g"]}),
        )
        .await
        .unwrap();
    let ack: Ack = recv_type(&mut alice, FrameType::Ack)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(ack.ack, u64::from(seq));
    assert_eq!(ack.group_id.as_deref(), Some("grp-modes-1"));
    for member in [&mut bob, &mut carol] {
        let created: commucat_ccp::control::GroupCreate = recv_type(member, FrameType::GroupCreate)
            .await
            .parse_control()
            .unwrap();
        assert_eq!(created.members, ["alice-g", "bob-g", "carol-g"]);
    }
    alice
        .send_bytes(FrameType::Msg, 20, Bytes::from_static(b"hello group"))
        .await
        .unwrap();
    recv_type(&mut alice, FrameType::Ack).await;
    for member in [&mut bob, &mut carol] {
        let msg = recv_type(member, FrameType::Msg).await;
        assert_eq!(
            (msg.channel_id(), msg.payload().as_ref()),
            (20, &b"hello group"[..])
        );
    }
}

per_mode!(group_message);

/// Offline replay: bob leaves after joining; alice's MSGs are acknowledged while he is away
/// and replayed, in order, when he connects again in the same mode.
async fn offline_replay(mode: ConnectMode) {
    let server = start(|_| {}).await;
    let mut alice = connect(
        &server,
        mode,
        &DeviceIdentity::generate("alice-o"),
        &HandshakeOptions::default(),
    )
    .await
    .unwrap();
    let bob_id = DeviceIdentity::generate("bob-o");
    let options = encrypted_where_possible(mode);
    let mut bob = connect(&server, mode, &bob_id, &options).await.unwrap();
    join(&mut alice, 7).await;
    join(&mut bob, 7).await;
    drop(bob);
    // Wait until the server has seen bob go: alice gets his `offline` presence.
    loop {
        let snapshot: commucat_ccp::control::PresenceSnapshot =
            recv_type(&mut alice, FrameType::Presence)
                .await
                .parse_control()
                .unwrap();
        if snapshot.entity == "bob-o" && snapshot.state == "offline" {
            break;
        }
    }
    for text in ["one", "two", "three"] {
        let seq = alice
            .send_bytes(FrameType::Msg, 7, Bytes::from(text))
            .await
            .unwrap();
        let ack: Ack = recv_type(&mut alice, FrameType::Ack)
            .await
            .parse_control()
            .unwrap();
        assert_eq!(ack.ack, u64::from(seq));
    }
    let mut bob = connect(&server, mode, &bob_id, &options).await.unwrap();
    for text in ["one", "two", "three"] {
        let msg = recv_type(&mut bob, FrameType::Msg).await;
        assert_eq!(msg.payload().as_ref(), text.as_bytes());
    }
}

per_mode!(offline_replay);

/// A call: CALL_OFFER from alice rings bob, his CALL_ANSWER reaches her, media frames travel
/// both ways verbatim, and CALL_END from bob ends it for alice.
async fn call_with_media(mode: ConnectMode) {
    let server = start(|_| {}).await;
    let mut alice = connect(
        &server,
        mode,
        &DeviceIdentity::generate("alice-k"),
        &HandshakeOptions::default(),
    )
    .await
    .unwrap();
    let mut bob = connect(
        &server,
        mode,
        &DeviceIdentity::generate("bob-k"),
        &encrypted_where_possible(mode),
    )
    .await
    .unwrap();
    join(&mut alice, 40).await;
    join(&mut bob, 40).await;
    let call = "call-modes-0001";
    let offer = json!({
        "call_id": call,
        "from": "alice-k@chat.test",
        "to": ["bob-k@chat.test"],
        "media": {"audio": {"codec": "opus", "bitrate": 16000, "sample_rate": 48000,
                            "channels": 1, "fec": true, "dtx": true},
                  "mode": "full_duplex"},
        "transport": {"prefer_relay": true, "udp_candidates": []},
        "expires_at": 1_700_000_000_u64,
        "metadata": {}
    });
    let seq = alice
        .send_control(FrameType::CallOffer, 40, &offer)
        .await
        .unwrap();
    let ack: Ack = recv_type(&mut alice, FrameType::Ack)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(
        (ack.ack, ack.call_id.as_deref()),
        (u64::from(seq), Some(call))
    );
    let rung = recv_type(&mut bob, FrameType::CallOffer).await;
    assert_eq!(rung.payload().as_ref(), serde_json::to_vec(&offer).unwrap());

    let answer = json!({"call_id": call, "accept": true, "media": offer["media"], "metadata": {}});
    bob.send_control(FrameType::CallAnswer, 40, &answer)
        .await
        .unwrap();
    recv_type(&mut bob, FrameType::Ack).await;
    let answered = recv_type(&mut alice, FrameType::CallAnswer).await;
    assert_eq!(
        answered.payload().as_ref(),
        serde_json::to_vec(&answer).unwrap()
    );

    let opus = Bytes::from_static(&[0xfc, 0xff, 0xfe, 0x01, 0x02]);
    alice
        .send_bytes(FrameType::VoiceFrame, 40, opus.clone())
        .await
        .unwrap();
    let voice = recv_type(&mut bob, FrameType::VoiceFrame).await;
    assert_eq!(voice.payload(), &opus);
    let vp8 = Bytes::from(vec![0x9d_u8; 3000]);
    bob.send_bytes(FrameType::VideoFrame, 40, vp8.clone())
        .await
        .unwrap();
    let video = recv_type(&mut alice, FrameType::VideoFrame).await;
    assert_eq!(video.payload(), &vp8);

    let end = json!({"call_id": call, "reason": "hangup", "metadata": {}});
    bob.send_control(FrameType::CallEnd, 40, &end)
        .await
        .unwrap();
    let ended = recv_type(&mut alice, FrameType::CallEnd).await;
    assert_eq!(ended.payload().as_ref(), serde_json::to_vec(&end).unwrap());
}

per_mode!(call_with_media:
    h2_binary => H2Binary,
    websocket => WebSocket,
    h3 => H3,
);

/// Garbage bytes before the handshake: an ERROR frame, then the end of the stream; a session in
/// the same mode on the same server carries on.
async fn garbage_gets_error_frame_then_close(mode: ConnectMode) {
    let server = start(|_| {}).await;
    let mut alice = connect(
        &server,
        mode,
        &DeviceIdentity::generate("alice-1"),
        &HandshakeOptions::default(),
    )
    .await
    .unwrap();
    let mut raw = open(&server, mode).await;
    // An unknown frame type (0x7f) in a well-formed length prefix.
    raw.write(Bytes::from_static(&[0x04, 0x7f, 0x00, 0x01, 0x00]))
        .await
        .unwrap();
    let mut conn = Connection::new(raw, 1 << 24);
    let frame = tokio::time::timeout(Duration::from_secs(10), conn.recv())
        .await
        .unwrap()
        .unwrap()
        .expect("an ERROR frame");
    assert_eq!(frame.frame_type(), FrameType::Error);
    let end = tokio::time::timeout(Duration::from_secs(10), conn.recv())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");

    join(&mut alice, 3).await;
}

per_mode!(garbage_gets_error_frame_then_close);

#[tokio::test]
async fn text_modes_refuse_noise_transport_with_an_error_frame() {
    let server = start(|_| {}).await;
    for mode in [ConnectMode::Sse, ConnectMode::Ndjson] {
        let err = connect(
            &server,
            mode,
            &DeviceIdentity::generate("carol-1"),
            &HandshakeOptions::default().with_noise_transport(),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("noise-transport"),
            "{mode:?}: {err}"
        );
    }
}

#[tokio::test]
async fn response_headers_per_mode() {
    let server = start(|_| {}).await;
    let client = server.http();
    let url = |q: &str| format!("https://localhost:{}/connect{q}", server.addr.port());
    for (query, accept, content_type, label) in [
        ("", None, "application/octet-stream", "binary"),
        ("?mode=stream", None, "application/octet-stream", "binary"),
        ("?transport=EventStream", None, "text/event-stream", "sse"),
        ("", Some("text/event-stream"), "text/event-stream", "sse"),
        ("?mode=poll", None, "application/x-ndjson", "long-poll"),
    ] {
        let mut request = client.post(url(query)).body(Vec::<u8>::new());
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{query}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{query}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["x-commucat-connect-mode"], label);
        // reqwest speaks HTTP/2 here: no hop-by-hop `connection` header.
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert!(headers.get("connection").is_none());
        let body = response.bytes().await.unwrap();
        if label == "sse" {
            assert!(body.starts_with(b":ready\n\n"), "{body:?}");
        }
    }
    // Non-POST HTTP modes: 405 problem.
    let response = client.get(url("?mode=sse")).send().await.unwrap();
    assert_eq!(response.status(), 405);
}

/// WebSocket Text that is not base64 → close 1007; oversize message → close 1009; another
/// WebSocket session carries on.
#[tokio::test]
async fn websocket_bad_input_closes_with_a_code() {
    let server = start(|c| c.limits.max_frame_len = 4096).await;
    let mut alice = connect(
        &server,
        ConnectMode::WebSocket,
        &DeviceIdentity::generate("alice-1"),
        &HandshakeOptions::default(),
    )
    .await
    .unwrap();
    for (message, code) in [
        (Message::Text("*** not base64 ***".into()), 1007u16),
        (Message::Binary(Bytes::from(vec![0u8; 10_000])), 1009),
    ] {
        let ModeStream::Ws(mut ws) = open(&server, ConnectMode::WebSocket).await else {
            panic!("websocket stream");
        };
        ws.socket_mut().send(message).await.unwrap();
        let close = loop {
            match tokio::time::timeout(
                Duration::from_secs(10),
                futures_util::StreamExt::next(ws.socket_mut()),
            )
            .await
            .unwrap()
            {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => {}
                other => panic!("expected a close, got {other:?}"),
            }
        };
        assert_eq!(u16::from(close.expect("close frame").code), code);
    }
    join(&mut alice, 5).await;
}

/// Valid base64 Text messages carry frame bytes as Binary ones do.
#[tokio::test]
async fn websocket_text_messages_carry_base64_frames() {
    let server = start(|_| {}).await;
    let ModeStream::Ws(mut ws) = open(&server, ConnectMode::WebSocket).await else {
        panic!("websocket stream");
    };
    use base64::Engine;
    let garbage = base64::engine::general_purpose::STANDARD.encode([0x04, 0x7f, 0x00, 0x01, 0x00]);
    ws.socket_mut()
        .send(Message::Text(garbage.into()))
        .await
        .unwrap();
    let mut conn = Connection::new(ModeStream::Ws(ws), 1 << 24);
    let frame = tokio::time::timeout(Duration::from_secs(10), conn.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(frame.frame_type(), FrameType::Error);
}

/// NDJSON sends keepalive lines while idle after the handshake (cadence 5 s at keepalive 2 s).
#[tokio::test]
async fn ndjson_keepalive_lines_while_idle() {
    let server = start(|c| c.session.keepalive = Duration::from_secs(2)).await;
    let stream = open(&server, ConnectMode::Ndjson).await;
    let ModeStream::Text(text) = stream else {
        panic!("text stream");
    };
    let mut session = Session::handshake(
        ModeStream::Text(text),
        &DeviceIdentity::generate("idle-1"),
        &server.params,
        &HandshakeOptions::default(),
    )
    .await
    .unwrap();
    let ModeStream::Text(text) = session.connection_mut().stream_mut() else {
        panic!("text stream");
    };
    let chunk = tokio::time::timeout(Duration::from_secs(8), text.get_mut().read())
        .await
        .expect("a keepalive within 8 s")
        .unwrap()
        .unwrap();
    assert_eq!(chunk.as_ref(), b"{\"keepalive\":true}\n");
}

/// A client that keeps reading answers the server's pings and stays connected; one that stops
/// reading is closed with 1001 after three missed pings (keepalive 1 s).
#[tokio::test]
async fn websocket_idle_sessions_are_closed_cleanly() {
    let server = start(|c| c.session.keepalive = Duration::from_secs(1)).await;
    let mut sessions = Vec::new();
    for name in ["alice-1", "idle-1"] {
        let session = connect(
            &server,
            ConnectMode::WebSocket,
            &DeviceIdentity::generate(name),
            &HandshakeOptions::default(),
        )
        .await
        .unwrap();
        sessions.push(session);
    }
    let (mut alice, mut idle) = (sessions.remove(0), sessions.remove(0));
    let reading = async {
        // alice reads (and so answers pings) for 4.5 s: nothing arrives, the socket stays open.
        let quiet = tokio::time::timeout(Duration::from_millis(4500), alice.recv()).await;
        assert!(quiet.is_err(), "{quiet:?}");
    };
    let not_reading = async {
        // idle reads nothing for 5 s: the server pings at 1, 2, 3 s and closes at the 4 s tick
        // (nothing inbound for 3 s), then waits 2 s for the closing handshake, which idle now
        // completes (answering the pings on the way).
        // Not reading for this long is what is tested (reading would answer the pings).
        tokio::time::sleep(Duration::from_secs(5)).await;
        let ModeStream::Ws(ws) = idle.connection_mut().stream_mut() else {
            panic!("websocket stream");
        };
        loop {
            match tokio::time::timeout(
                Duration::from_secs(5),
                futures_util::StreamExt::next(ws.socket_mut()),
            )
            .await
            .unwrap()
            {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => {}
                other => panic!("expected a close, got {other:?}"),
            }
        }
    };
    let ((), close) = tokio::join!(reading, not_reading);
    assert_eq!(u16::from(close.expect("close frame").code), 1001);
    join(&mut alice, 9).await;
}
