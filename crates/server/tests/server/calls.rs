//! Calls through the real server: CALL_* validated and relayed as the sender's bytes, ACKs with
//! `call_id`, media relayed verbatim to the call's participants only, invalid signaling refused
//! and never forwarded, and the system CALL_END when a participant disconnects. The tap checks
//! that every CALL_* the server sends parses with `commucat_proto::call` 1.0.41.

use std::time::Duration;

use crate::common::{Client, TestServer, json_of, queued};
use commucat_ccp::FrameType;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);
const CALL: &str = "call-5f2c9a1e-0001";

fn offer(call_id: &str, to: &[&str]) -> Value {
    json!({
        "call_id": call_id,
        "from": "alice-c@chat.test",
        "to": to,
        "media": {
            "audio": {"codec": "opus", "bitrate": 16000, "sample_rate": 48000, "channels": 1,
                      "fec": true, "dtx": true},
            "video": {"codec": "vp8", "max_bitrate": 500000,
                      "max_resolution": {"width": 640, "height": 360}, "frame_rate": 24},
            "mode": "full_duplex"
        },
        "transport": {"prefer_relay": true,
                      "udp_candidates": [{"address": "198.51.100.10", "port": 3478}]},
        "expires_at": 1_700_000_000_u64,
        "metadata": {},
        // Unknown keys travel with the original bytes.
        "x_client_hint": {"nested": [1, 2, 3]}
    })
}

async fn setup(server: &TestServer) -> (Client, Client, Client) {
    let [alice, bob, carol] = server
        .conversation(40, ["alice-c", "bob-c", "carol-c"])
        .await;
    (alice, bob, carol)
}

#[tokio::test]
async fn a_full_call_is_relayed_verbatim() {
    let server = TestServer::start(|_| {}).await;
    let (mut alice, mut bob, mut carol) = setup(&server).await;

    // Offer to bob (as `device@domain`): only bob rings, with alice's exact bytes.
    let offer = offer(CALL, &["bob-c@chat.test"]);
    let seq = alice.control(FrameType::CallOffer, 40, &offer).await;
    let ack = alice.ack(seq).await;
    assert_eq!(ack.call_id.as_deref(), Some(CALL));
    let rung = bob.recv_on(FrameType::CallOffer, 40).await;
    assert_eq!(rung.payload().as_ref(), serde_json::to_vec(&offer).unwrap());

    let answer = json!({"call_id": CALL, "accept": true, "media": offer["media"], "metadata": {}});
    let seq = bob.control(FrameType::CallAnswer, 40, &answer).await;
    let ack = bob.ack(seq).await;
    assert_eq!(
        (ack.call_id.as_deref(), ack.accept),
        (Some(CALL), Some(true))
    );
    assert_eq!(
        json_of(&alice.recv_on(FrameType::CallAnswer, 40).await),
        answer
    );

    // Media, verbatim, both ways; ACKs carry the call id.
    let opus = [0xfc, 0xff, 0xfe, 0x01, 0x02];
    let seq = alice.send(FrameType::VoiceFrame, 40, &opus).await;
    assert_eq!(alice.ack(seq).await.call_id.as_deref(), Some(CALL));
    assert_eq!(
        bob.recv_on(FrameType::VoiceFrame, 40)
            .await
            .payload()
            .as_ref(),
        opus
    );
    let vp8 = vec![0x9d_u8; 3000];
    let seq = bob.send(FrameType::VideoFrame, 40, &vp8).await;
    bob.ack(seq).await;
    assert_eq!(
        alice
            .recv_on(FrameType::VideoFrame, 40)
            .await
            .payload()
            .as_ref(),
        vp8.as_slice()
    );

    let stats = json!({"call_id": CALL, "direction": "send",
                       "audio": {"bitrate": 16000, "packet_loss": 0.01, "jitter_ms": 8, "rtt_ms": 95},
                       "timestamp": 1_700_000_100_u64});
    let seq = alice.control(FrameType::CallStats, 40, &stats).await;
    let ack = alice.ack(seq).await;
    assert_eq!(ack.direction.as_deref(), Some("send"));
    assert_eq!(json_of(&bob.recv_on(FrameType::CallStats, 40).await), stats);

    // carol is on the channel but not in the call: she hears none of it.
    carol.expect_quiet(QUIET).await;
    let seq = carol.send(FrameType::VoiceFrame, 40, &opus).await;
    carol.error(seq, "Unknown Call").await;
    let seq = carol
        .control(
            FrameType::CallEnd,
            40,
            &json!({"call_id": CALL, "reason": "hangup"}),
        )
        .await;
    carol.error(seq, "Not A Call Participant").await;

    let end = json!({"call_id": CALL, "reason": "hangup", "metadata": {"note": "bye"}});
    let seq = bob.control(FrameType::CallEnd, 40, &end).await;
    let ack = bob.ack(seq).await;
    assert_eq!(
        (ack.call_id.as_deref(), ack.reason.as_deref()),
        (Some(CALL), Some("hangup"))
    );
    assert_eq!(json_of(&alice.recv_on(FrameType::CallEnd, 40).await), end);

    // The call is released: media is refused, the id can be offered again.
    let seq = alice.send(FrameType::VoiceFrame, 40, &opus).await;
    alice.error(seq, "Unknown Call").await;
    let seq = alice
        .control(FrameType::CallOffer, 40, &self::offer(CALL, &["carol-c"]))
        .await;
    alice.ack(seq).await;
    carol.recv_on(FrameType::CallOffer, 40).await;
    // A declining callee ends a one-to-one call.
    let seq = carol
        .control(
            FrameType::CallAnswer,
            40,
            &json!({"call_id": CALL, "accept": false, "reason": "busy"}),
        )
        .await;
    let ack = carol.ack(seq).await;
    assert_eq!(
        (ack.accept, ack.reason.as_deref()),
        (Some(false), Some("busy"))
    );
    alice.recv_on(FrameType::CallAnswer, 40).await;
    let seq = alice.send(FrameType::VoiceFrame, 40, &opus).await;
    alice.error(seq, "Unknown Call").await;
    bob.expect_quiet(QUIET).await;
}

#[tokio::test]
async fn invalid_signaling_is_refused_and_never_forwarded() {
    let server = TestServer::start(|_| {}).await;
    let (mut alice, mut bob, _carol) = setup(&server).await;

    let mut bad_rate = offer(CALL, &["bob-c"]);
    bad_rate["media"]["audio"]["sample_rate"] = json!(44100);
    let mut bad_codec = offer(CALL, &["bob-c"]);
    bad_codec["media"]["video"]["codec"] = json!("h264_baseline");
    let mut no_to = offer(CALL, &["bob-c"]);
    no_to.as_object_mut().unwrap().remove("to");
    for invalid in [
        bad_rate,
        bad_codec,
        no_to,
        offer("short", &["bob-c"]),
        offer(CALL, &[]),
        json!("not an object"),
    ] {
        let seq = alice.control(FrameType::CallOffer, 40, &invalid).await;
        alice.error(seq, "Invalid Control Payload").await;
    }
    for (frame_type, invalid) in [
        (FrameType::CallAnswer, json!({"call_id": CALL})),
        (
            FrameType::CallEnd,
            json!({"call_id": CALL, "reason": "bored"}),
        ),
        (
            FrameType::CallStats,
            json!({"call_id": CALL, "direction": "sideways"}),
        ),
        (
            FrameType::CallStats,
            json!({"call_id": CALL, "direction": "send", "audio": {"bitrate": 1, "packet_loss": 2.0}}),
        ),
    ] {
        let seq = alice.control(frame_type, 40, &invalid).await;
        alice.error(seq, "Invalid Control Payload").await;
    }
    bob.expect_quiet(QUIET).await;

    // Valid shapes that name no call.
    let seq = bob
        .control(
            FrameType::CallAnswer,
            40,
            &json!({"call_id": CALL, "accept": true}),
        )
        .await;
    bob.error(seq, "Unknown Call").await;
    let seq = bob.send(FrameType::VoiceFrame, 40, b"opus").await;
    bob.error(seq, "Unknown Call").await;
    // An offer on a channel the caller is not in, and a duplicate call id.
    let seq = alice
        .control(FrameType::CallOffer, 41, &offer(CALL, &["bob-c"]))
        .await;
    alice.error(seq, "Not A Channel Member").await;
    let seq = alice
        .control(FrameType::CallOffer, 40, &offer(CALL, &["bob-c"]))
        .await;
    alice.ack(seq).await;
    bob.recv_on(FrameType::CallOffer, 40).await;
    let seq = alice
        .control(FrameType::CallOffer, 40, &offer(CALL, &["bob-c"]))
        .await;
    alice.error(seq, "Call Exists").await;
    bob.expect_quiet(QUIET).await;
}

#[tokio::test]
async fn a_disconnect_ends_the_call_for_the_others() {
    let server = TestServer::start(|_| {}).await;
    let (mut alice, mut bob, mut carol) = setup(&server).await;
    let seq = alice
        .control(FrameType::CallOffer, 40, &offer(CALL, &["bob-c"]))
        .await;
    alice.ack(seq).await;
    bob.recv_on(FrameType::CallOffer, 40).await;
    let seq = bob
        .control(
            FrameType::CallAnswer,
            40,
            &json!({"call_id": CALL, "accept": true}),
        )
        .await;
    bob.ack(seq).await;
    alice.recv_on(FrameType::CallAnswer, 40).await;

    // alice's connection drops mid-call.
    alice.close();
    let end = json_of(&bob.recv_on(FrameType::CallEnd, 40).await);
    assert_eq!(
        end,
        json!({"call_id": CALL, "reason": "failure",
               "metadata": {"system": true, "cause": "disconnect", "device": "alice-c"}})
    );
    // The state is released; media is never queued for the absent caller.
    let seq = bob.send(FrameType::VoiceFrame, 40, b"opus").await;
    bob.error(seq, "Unknown Call").await;
    let store = server.store().await;
    assert_eq!(queued(&store, "alice-c").await, 0);
    carol.recv_on(FrameType::Presence, 0).await;
    carol.expect_quiet(QUIET).await;
}
