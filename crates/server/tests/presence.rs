//! Presence through the real server: snapshots `{entity, state, expires_at, user}` fanned out to
//! devices sharing a channel, `offline` on expiry (1 s TTL here) and on disconnect, and the
//! live snapshots a joiner receives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use ccp::FrameType;
use ccp::control::PresenceSnapshot;
use common::{Client, TestServer};
use serde_json::json;

const QUIET: Duration = Duration::from_millis(300);

async fn snapshot(client: &mut Client) -> PresenceSnapshot {
    client
        .recv_on(FrameType::Presence, 0)
        .await
        .parse_control()
        .unwrap()
}

/// Parses the RFC 3339 UTC form the server writes (`2026-01-02T03:04:05Z`) into Unix seconds.
fn unix(rfc3339: &str) -> i64 {
    assert_eq!(rfc3339.len(), 20, "{rfc3339}");
    assert!(
        rfc3339.ends_with('Z') && &rfc3339[10..11] == "T",
        "{rfc3339}"
    );
    let n = |range: std::ops::Range<usize>| rfc3339[range].parse::<u8>().unwrap();
    let year: i32 = rfc3339[0..4].parse().unwrap();
    let month = time::Month::try_from(n(5..7)).unwrap();
    let date = time::Date::from_calendar_date(year, month, n(8..10)).unwrap();
    let clock = time::Time::from_hms(n(11..13), n(14..16), n(17..19)).unwrap();
    time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp()
}

#[tokio::test]
async fn snapshots_reach_channel_peers_and_expire_without_refresh() {
    let server = TestServer::start(|c| c.session.presence_ttl = Duration::from_secs(1)).await;
    let mut alice = server.connect("alice-pr").await;
    let mut bob = server.connect("bob-pr").await;
    let mut carol = server.connect("carol-pr").await;
    alice.join(7, true).await;
    bob.join(7, true).await;
    alice.members_become(7, &["alice-pr", "bob-pr"]).await;
    carol.join(8, true).await;

    let started = Instant::now();
    let seq = alice
        .control(FrameType::Presence, 0, &json!({"state": "online"}))
        .await;
    alice.ack(seq).await;
    let online = snapshot(&mut bob).await;
    assert_eq!(online.entity, "alice-pr");
    assert_eq!(online.state, "online");
    let expires = unix(online.expires_at.as_deref().unwrap());
    assert!((expires - common::unix_now()).abs() <= 2, "{expires}");
    let user = online.user.unwrap();
    assert_eq!(user.handle.as_deref(), Some("alice_pr"));
    assert!(user.resolved_id().is_some());

    // No refresh: after the TTL bob learns alice is offline.
    let offline = snapshot(&mut bob).await;
    assert_eq!(
        (offline.entity.as_str(), offline.state.as_str()),
        ("alice-pr", "offline")
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // carol shares no channel with alice and hears nothing; alice's own state is not echoed.
    carol.expect_quiet(QUIET).await;
    alice.expect_quiet(QUIET).await;

    // A refresh keeps it alive: two updates 600 ms apart, then one expiry.
    for state in ["busy", "away"] {
        let seq = alice
            .control(FrameType::Presence, 0, &json!({"state": state}))
            .await;
        alice.ack(seq).await;
        assert_eq!(snapshot(&mut bob).await.state, state);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(snapshot(&mut bob).await.state, "offline");
    bob.expect_quiet(QUIET).await;

    let seq = alice
        .control(FrameType::Presence, 0, &json!({"status": "wrong key"}))
        .await;
    alice.error(seq, "Invalid Control Payload").await;
}

#[tokio::test]
async fn joiners_see_live_snapshots_and_disconnects_announce_offline() {
    let server = TestServer::start(|_| {}).await;
    let mut alice = server.connect("alice-pj").await;
    let mut bob = server.connect("bob-pj").await;
    alice.join(7, true).await;
    bob.join(7, true).await;
    let seq = alice
        .control(FrameType::Presence, 0, &json!({"state": "coding"}))
        .await;
    alice.ack(seq).await;
    assert_eq!(snapshot(&mut bob).await.state, "coding");

    // dave joins later and is told alice's current state right after his JOIN.
    let mut dave = server.connect("dave-pj").await;
    dave.join(7, true).await;
    let seen = snapshot(&mut dave).await;
    assert_eq!(
        (seen.entity.as_str(), seen.state.as_str()),
        ("alice-pj", "coding")
    );
    dave.expect_quiet(QUIET).await;

    // alice leaves: both peers get `offline`.
    alice.close();
    for peer in [&mut bob, &mut dave] {
        let gone = snapshot(peer).await;
        assert_eq!(
            (gone.entity.as_str(), gone.state.as_str()),
            ("alice-pj", "offline")
        );
    }
    // A new joiner sees no stale snapshot of alice.
    let mut erin = server.connect("erin-pj").await;
    erin.join(7, true).await;
    erin.expect_quiet(QUIET).await;
}
