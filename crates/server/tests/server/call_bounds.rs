//! Calls against hostile clients: a `from` (or TYPING sender) naming another device is refused
//! with "Sender Mismatch" and never relayed; one session holds at most `bounds.calls_per_session`
//! calls ("Call Limit Reached") while a bystander's call still works; a call nobody answers ends
//! for everyone after `bounds.call_ring_timeout` with the CALL_END the deployed client parses.
//! Each refusal and expiry is counted in `/metrics` and recorded in the ledger.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::{Client, TestServer, json_of, ledger_records};
use commucat_ccp::FrameType;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

fn offer(call_id: &str, from: &str, to: &[&str]) -> Value {
    json!({
        "call_id": call_id,
        "from": from,
        "to": to,
        "media": {"audio": {"codec": "opus", "bitrate": 16000, "sample_rate": 48000,
                            "channels": 1}},
        "metadata": {}
    })
}

/// A server with `tweak` applied, and the path of its ledger.
async fn server(tweak: impl FnOnce(&mut commucat_server::config::Config)) -> (TestServer, PathBuf) {
    let server = TestServer::start(tweak).await;
    let path = server.data_dir().join(commucat_server::config::LEDGER_FILE);
    (server, path)
}

/// alice, bob and carol, all members of channel 40.
async fn trio(server: &TestServer) -> (Client, Client, Client) {
    let [alice, bob, carol] = server
        .conversation(40, ["alice-c", "bob-c", "carol-c"])
        .await;
    (alice, bob, carol)
}

/// The value of the `/metrics` line starting with `prefix` (0 if absent).
/// A counter's value; a labelled counter is absent until it first counts, so absent is 0.
async fn metric(server: &TestServer, prefix: &str) -> u64 {
    server.metric(prefix).await.unwrap_or(0)
}

#[tokio::test]
async fn a_spoofed_sender_is_refused_and_the_bystanders_call_rings() {
    let (server, ledger) = server(|_| {}).await;
    let (mut alice, mut bob, mut carol) = trio(&server).await;

    // alice claims to be bob (bare and qualified) or herself on another domain.
    for from in ["bob-c", "bob-c@chat.test", "alice-c@elsewhere.test", ""] {
        let seq = alice
            .control(
                FrameType::CallOffer,
                40,
                &offer("call-spoof-0001", from, &["carol-c"]),
            )
            .await;
        let problem = alice.error(seq, "Sender Mismatch").await;
        assert!(
            problem.detail.as_deref().unwrap_or("").contains("alice-c"),
            "{problem:?}"
        );
    }
    // TYPING naming someone else is refused too, and so is a GROUP_CREATE naming another owner.
    let seq = alice
        .control(FrameType::Typing, 40, &json!({"sender": "bob-c"}))
        .await;
    alice.error(seq, "Sender Mismatch").await;
    let seq = alice
        .control(
            FrameType::GroupCreate,
            41,
            &json!({"group_id": "spoofed-group-1", "members": ["carol-c"], "owner": "bob-c"}),
        )
        .await;
    alice.error(seq, "Sender Mismatch").await;
    carol.expect_quiet(QUIET).await;

    // The spoofer's connection is kept; the id was never taken, so bob can use it.
    let seq = bob
        .control(
            FrameType::CallOffer,
            40,
            &offer("call-spoof-0001", "bob-c@chat.test", &["carol-c"]),
        )
        .await;
    assert_eq!(
        bob.ack(seq).await.call_id.as_deref(),
        Some("call-spoof-0001")
    );
    assert_eq!(
        json_of(&carol.recv_on(FrameType::CallOffer, 40).await)["from"],
        "bob-c@chat.test"
    );
    let seq = alice
        .control(
            FrameType::CallOffer,
            40,
            &offer("call-honest-001", "alice-c", &["carol-c"]),
        )
        .await;
    alice.ack(seq).await;
    carol.recv_on(FrameType::CallOffer, 40).await;
    // A client CALL_END posing as the server's disconnect notice about someone else.
    let seq = alice
        .control(
            FrameType::CallEnd,
            40,
            &json!({"call_id": "call-honest-001", "reason": "failure",
                    "metadata": {"system": true, "cause": "disconnect", "device": "carol-c"}}),
        )
        .await;
    alice.error(seq, "Sender Mismatch").await;
    carol.expect_quiet(QUIET).await;
    let seq = alice
        .control(
            FrameType::CallEnd,
            40,
            &json!({"call_id": "call-honest-001", "reason": "hangup", "metadata": {}}),
        )
        .await;
    alice.ack(seq).await;
    carol.recv_on(FrameType::CallEnd, 40).await;

    assert_eq!(
        metric(
            &server,
            "commucat_sender_mismatches_total{type=\"call_offer\"} "
        )
        .await,
        4
    );
    assert_eq!(
        metric(
            &server,
            "commucat_sender_mismatches_total{type=\"typing\"} "
        )
        .await,
        1
    );
    for frame_type in ["group_create", "call_end"] {
        let line = format!("commucat_sender_mismatches_total{{type=\"{frame_type}\"}} ");
        assert_eq!(metric(&server, &line).await, 1, "{frame_type}");
    }
    let lines = ledger_records(&ledger, 7, |l| l["scope"] == "sender").await;
    let first = lines.iter().find(|l| l["scope"] == "sender").unwrap();
    assert_eq!(first["device_id"], "alice-c");
    assert_eq!(first["claimed"], "bob-c");
    assert_eq!(first["frame_type"], "call_offer");
}

#[tokio::test]
async fn a_call_flood_is_bounded_and_the_bystanders_call_works() {
    let (server, ledger) = server(|c| c.bounds.calls_per_session = 2).await;
    let (mut alice, mut bob, mut carol) = trio(&server).await;

    // alice offers 40 calls to bob; two ring, the rest are refused.
    let mut rang = 0;
    for i in 0..40 {
        let call_id = format!("call-flood-{i:04}");
        let seq = alice
            .control(
                FrameType::CallOffer,
                40,
                &offer(&call_id, "alice-c", &["bob-c"]),
            )
            .await;
        if i < 2 {
            alice.ack(seq).await;
            rang += 1;
        } else {
            alice.error(seq, "Call Limit Reached").await;
        }
    }
    for _ in 0..rang {
        bob.recv_on(FrameType::CallOffer, 40).await;
    }
    bob.expect_quiet(QUIET).await;
    // A call id is held once per participant: a long one is refused before it is held.
    let long_id = format!("call-{}", "x".repeat(10_000));
    let seq = carol
        .control(
            FrameType::CallOffer,
            40,
            &offer(&long_id, "carol-c", &["bob-c"]),
        )
        .await;
    carol.error(seq, "Invalid Control Payload").await;

    // carol's call to bob rings and can be taken although bob has two calls ringing.
    let seq = carol
        .control(
            FrameType::CallOffer,
            40,
            &offer("call-bystander", "carol-c", &["bob-c"]),
        )
        .await;
    carol.ack(seq).await;
    bob.recv_on(FrameType::CallOffer, 40).await;
    let seq = bob
        .control(
            FrameType::CallAnswer,
            40,
            &json!({"call_id": "call-bystander", "accept": true}),
        )
        .await;
    bob.ack(seq).await;
    carol.recv_on(FrameType::CallAnswer, 40).await;
    let seq = carol.send(FrameType::VoiceFrame, 40, b"opus").await;
    carol.ack(seq).await;
    bob.recv_on(FrameType::VoiceFrame, 40).await;

    // Ending one of alice's calls frees a slot.
    let seq = alice
        .control(
            FrameType::CallEnd,
            40,
            &json!({"call_id": "call-flood-0000", "reason": "cancel"}),
        )
        .await;
    alice.ack(seq).await;
    let seq = alice
        .control(
            FrameType::CallOffer,
            40,
            &offer("call-flood-again", "alice-c", &["bob-c"]),
        )
        .await;
    alice.ack(seq).await;

    assert_eq!(
        metric(
            &server,
            "commucat_bound_refusals_total{bound=\"calls_per_session\"} "
        )
        .await,
        38
    );
    let lines = ledger_records(&ledger, 38, |l| {
        l["scope"] == "bound" && l["bound"] == "calls_per_session"
    })
    .await;
    assert!(lines.iter().any(|l| l["device_id"] == "alice-c"));
}

#[tokio::test]
async fn a_ringing_call_ends_for_both_sides_after_the_ring_timeout() {
    let (server, ledger) = server(|c| {
        c.bounds.call_ring_timeout = Duration::from_secs(1);
        c.bounds.calls_per_session = 1;
    })
    .await;
    let (mut alice, mut bob, mut carol) = trio(&server).await;

    let seq = alice
        .control(
            FrameType::CallOffer,
            40,
            &offer("call-ringing-01", "alice-c", &["bob-c"]),
        )
        .await;
    alice.ack(seq).await;
    bob.recv_on(FrameType::CallOffer, 40).await;

    // Nobody answers: both sides get CALL_END `timeout` (a reason 1.0.41 parses).
    let expected = json!({"call_id": "call-ringing-01", "reason": "timeout",
                          "metadata": {"system": true, "cause": "ring_timeout"}});
    assert_eq!(
        json_of(&bob.recv_on(FrameType::CallEnd, 40).await),
        expected
    );
    assert_eq!(
        json_of(&alice.recv_on(FrameType::CallEnd, 40).await),
        expected
    );
    // Released: media is refused, and the slot is free again.
    let seq = alice.send(FrameType::VoiceFrame, 40, b"opus").await;
    alice.error(seq, "Unknown Call").await;
    let seq = alice
        .control(
            FrameType::CallOffer,
            40,
            &offer("call-ringing-02", "alice-c", &["bob-c"]),
        )
        .await;
    alice.ack(seq).await;
    bob.recv_on(FrameType::CallOffer, 40).await;
    let seq = bob
        .control(
            FrameType::CallAnswer,
            40,
            &json!({"call_id": "call-ringing-02", "accept": true}),
        )
        .await;
    bob.ack(seq).await;
    alice.recv_on(FrameType::CallAnswer, 40).await;

    assert_eq!(metric(&server, "commucat_calls_unanswered_total ").await, 1);
    let lines = ledger_records(&ledger, 1, |l| {
        l["scope"] == "call" && l["event"] == "end" && l["reason"] == "timeout"
    })
    .await;
    assert!(
        lines
            .iter()
            .any(|l| l["call_id"] == "call-ringing-01" && l["reason"] == "timeout")
    );
    carol.expect_quiet(QUIET).await;
}
