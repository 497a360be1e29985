//! Groups through the real server: GROUP_CREATE (owner, roles, stored roster), GROUP_INVITE
//! (owners and admins only, `owner` demoted to `admin`), ACL failures, and the roster after a
//! restart.

use crate::common;

use std::time::Duration;

use crate::common::{StoreBackend, TestServer};
use commucat_ccp::FrameType;
use commucat_ccp::control::{GroupCreate, GroupInvite, GroupRole};
use serde_json::json;

const QUIET: Duration = Duration::from_millis(300);

async fn create_invite_and_access_control(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let mut alice = server.connect("alice-g").await;
    let mut bob = server.connect("bob-g").await;
    let mut carol = server.connect("carol-g").await;
    let mut dave = server.connect("dave-g").await;

    // alice creates the group on channel 20; a requested owner becomes admin.
    let seq = alice
        .control(
            FrameType::GroupCreate,
            20,
            &json!({
                "group_id": "team-0001",
                "members": ["bob-g", "carol-g"],
                "roles": {"bob-g": "owner"},
                "name": "Team",
            }),
        )
        .await;
    let ack = alice.ack(seq).await;
    assert_eq!(ack.group_id.as_deref(), Some("team-0001"));
    for member in [&mut bob, &mut carol] {
        let notice: GroupCreate = member
            .recv_on(FrameType::GroupCreate, 20)
            .await
            .parse_control()
            .unwrap();
        assert_eq!(notice.group_id.as_deref(), Some("team-0001"));
        assert_eq!(notice.owner.as_deref(), Some("alice-g"));
        assert_eq!(notice.members, ["alice-g", "bob-g", "carol-g"]);
        assert_eq!(notice.roles["alice-g"], GroupRole::Owner);
        assert_eq!(notice.roles["bob-g"], GroupRole::Admin);
        assert_eq!(notice.roles["carol-g"], GroupRole::Member);
        assert_eq!(notice.name.as_deref(), Some("Team"));
    }
    // The roster is stored.
    let store = server.store().await;
    let roster = store.group_members("team-0001").await.unwrap();
    assert_eq!(roster.len(), 3);
    assert_eq!(
        store
            .group("team-0001")
            .await
            .unwrap()
            .unwrap()
            .owner_device,
        "alice-g"
    );

    // The group's channel relays to the roster at once.
    alice.say(20, "welcome").await;
    assert_eq!(
        carol.recv_on(FrameType::Msg, 20).await.payload().as_ref(),
        b"welcome"
    );
    bob.recv_on(FrameType::Msg, 20).await;

    // Non-members cannot join: not the bound channel, not another channel with the group id.
    let seq = dave
        .control(FrameType::Join, 20, &json!({"members": ["dave-g"]}))
        .await;
    dave.error(seq, "Not A Group Member").await;
    let seq = dave
        .control(FrameType::Join, 21, &json!({"group_id": "team-0001"}))
        .await;
    dave.error(seq, "Not A Group Member").await;
    let seq = dave
        .control(FrameType::Join, 21, &json!({"group_id": "no-such-group"}))
        .await;
    dave.error(seq, "Unknown Group").await;
    // ... nor send to it.
    let seq = dave.send(FrameType::Msg, 20, b"let me in").await;
    dave.error(seq, "Not A Channel Member").await;

    // Only owners and admins invite.
    let invite = json!({"group_id": "team-0001", "device": "dave-g"});
    let seq = carol.control(FrameType::GroupInvite, 20, &invite).await;
    carol.error(seq, "Group Permission Denied").await;
    let seq = dave.control(FrameType::GroupInvite, 20, &invite).await;
    dave.error(seq, "Not A Group Member").await;
    let seq = bob
        .control(
            FrameType::GroupInvite,
            20,
            &json!({"group_id": "nope-0001", "device": "dave-g"}),
        )
        .await;
    bob.error(seq, "Unknown Group").await;
    let seq = bob
        .control(
            FrameType::GroupInvite,
            20,
            &json!({"group_id": "team-0001"}),
        )
        .await;
    bob.error(seq, "Invalid Control Payload").await;

    // bob (admin) invites dave as "owner": dave becomes admin; the ACK echoes the device.
    let seq = bob
        .control(
            FrameType::GroupInvite,
            20,
            &json!({"group_id": "team-0001", "device": "dave-g", "role": "owner"}),
        )
        .await;
    let ack = bob.ack(seq).await;
    assert_eq!(ack.group_id.as_deref(), Some("team-0001"));
    assert_eq!(ack.device.as_deref(), Some("dave-g"));
    for member in [&mut dave, &mut alice, &mut carol] {
        let notice: GroupInvite = member
            .recv_on(FrameType::GroupInvite, 20)
            .await
            .parse_control()
            .unwrap();
        assert_eq!(notice.resolved_device(), Some("dave-g"));
        assert_eq!(notice.role, Some(GroupRole::Admin));
        member
            .members_become(20, &["alice-g", "bob-g", "carol-g", "dave-g"])
            .await;
    }
    let roles: Vec<_> = store
        .group_members("team-0001")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.device_id, m.role.as_str()))
        .collect();
    assert_eq!(
        roles,
        [
            ("alice-g".to_owned(), "owner"),
            ("bob-g".to_owned(), "admin"),
            ("carol-g".to_owned(), "member"),
            ("dave-g".to_owned(), "admin"),
        ]
    );
    // dave may now join, and gets the channel's traffic.
    let members = dave
        .join_with(20, &json!({"members": ["dave-g"], "group_id": "team-0001"}))
        .await;
    assert_eq!(members, ["alice-g", "bob-g", "carol-g", "dave-g"]);
    alice.say(20, "hi dave").await;
    assert_eq!(
        dave.recv_on(FrameType::Msg, 20).await.payload().as_ref(),
        b"hi dave"
    );

    // A group id is created once.
    let seq = carol
        .control(
            FrameType::GroupCreate,
            22,
            &json!({"group_id": "team-0001"}),
        )
        .await;
    carol.error(seq, "Group Exists").await;
    // A group without a client id gets one.
    let seq = carol
        .control(FrameType::GroupCreate, 23, &json!({"members": ["dave-g"]}))
        .await;
    let ack = carol.ack(seq).await;
    let generated = ack.group_id.unwrap();
    assert_eq!(generated.len(), 64);
    let notice: GroupCreate = dave
        .recv_on(FrameType::GroupCreate, 23)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(notice.group_id, Some(generated));
    assert_eq!(notice.owner.as_deref(), Some("carol-g"));
}

async fn the_roster_survives_a_restart_and_offline_members_get_the_create(backend: StoreBackend) {
    let mut server = TestServer::start_on(backend, |_| {}).await;
    let mut alice = server.connect("alice-r").await;
    let bob_identity = {
        let bob = server.connect("bob-r").await;
        bob.identity.clone()
    };
    // bob is offline when alice creates the group: the GROUP_CREATE is queued for him.
    let seq = alice
        .control(
            FrameType::GroupCreate,
            30,
            &json!({"group_id": "keep-0001", "members": ["bob-r"]}),
        )
        .await;
    alice.ack(seq).await;
    let alice_identity = alice.identity.clone();
    drop(alice);

    server.restart().await;
    let mut bob = server.connect_as(bob_identity).await;
    let notice: GroupCreate = bob
        .recv_on(FrameType::GroupCreate, 30)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(notice.owner.as_deref(), Some("alice-r"));
    // The routing tables are empty after the restart; the stored roster governs the JOIN.
    let members = bob
        .join_with(30, &json!({"members": ["bob-r"], "group_id": "keep-0001"}))
        .await;
    assert_eq!(members, ["alice-r", "bob-r"]);
    let mut eve = server.connect("eve-r").await;
    let seq = eve
        .control(FrameType::Join, 31, &json!({"group_id": "keep-0001"}))
        .await;
    eve.error(seq, "Not A Group Member").await;
    let seq = eve.control(FrameType::Join, 30, &json!({})).await;
    eve.error(seq, "Not A Group Member").await;
    // alice, back, is on the roster and reaches bob.
    let mut alice = server.connect_as(alice_identity).await;
    let members = alice.join_with(30, &json!({"group_id": "keep-0001"})).await;
    assert_eq!(members, ["alice-r", "bob-r"]);
    alice.say(30, "still a group").await;
    bob.members_become(30, &["alice-r", "bob-r"]).await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 30).await.payload().as_ref(),
        b"still a group"
    );
    bob.expect_quiet(QUIET).await;
}

#[tokio::test]
async fn a_group_cannot_take_over_someone_elses_channel() {
    let server = TestServer::start(|_| {}).await;
    let [mut alice, mut bob] = server.conversation(5, ["alice-t", "bob-t"]).await;
    let mut mallory = server.connect("mallory-t").await;

    // mallory owns a group, but binding alice and bob's channel to it would evict them.
    let seq = mallory
        .control(FrameType::GroupCreate, 5, &json!({"group_id": "grab-0001"}))
        .await;
    mallory.error(seq, "Not A Channel Member").await;
    let seq = mallory
        .control(FrameType::GroupCreate, 6, &json!({"group_id": "grab-0001"}))
        .await;
    mallory.ack(seq).await;
    let seq = mallory
        .control(FrameType::Join, 5, &json!({"group_id": "grab-0001"}))
        .await;
    mallory.error(seq, "Not A Channel Member").await;
    // A group's channel is not rebound to another group either.
    let seq = alice
        .control(
            FrameType::GroupCreate,
            6,
            &json!({"group_id": "other-0001"}),
        )
        .await;
    alice.error(seq, "Not A Group Member").await;
    // The conversation is intact.
    alice.say(5, "still ours").await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 5).await.payload().as_ref(),
        b"still ours"
    );
    // A member may turn its conversation into a group channel.
    let seq = alice
        .control(
            FrameType::GroupCreate,
            5,
            &json!({"group_id": "ours-0001", "members": ["bob-t"]}),
        )
        .await;
    alice.ack(seq).await;
    let notice: GroupCreate = bob
        .recv_on(FrameType::GroupCreate, 5)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(notice.members, ["alice-t", "bob-t"]);
    mallory.expect_quiet(QUIET).await;
}

/// GROUP_CREATE with fresh ids, one after another: a device past `bounds.groups_per_device`
/// is refused and counted, the refused group is not stored, and another device still creates.
async fn groups_owned_per_device_are_bounded(backend: StoreBackend) {
    const LIMIT: u64 = 3;
    let server = TestServer::start_on(backend, |c| c.bounds.groups_per_device = LIMIT).await;
    let mut mallory = server.connect("mallory-gl").await;
    let mut bob = server.connect("bob-gl").await;
    let create = |id: &str| json!({"group_id": id, "members": ["bob-gl"]});
    for channel in 1..=5u32 {
        let id = format!("spam-{channel:04}");
        let seq = mallory
            .control(FrameType::GroupCreate, channel, &create(&id))
            .await;
        if u64::from(channel) <= LIMIT {
            assert_eq!(
                mallory.ack(seq).await.group_id.as_deref(),
                Some(id.as_str())
            );
        } else {
            let problem = mallory.error(seq, "Group Limit Reached").await;
            assert_eq!(problem.status, Some(429));
            assert!(server.store().await.group(&id).await.unwrap().is_none());
        }
    }
    server
        .metric_becomes(
            "commucat_bound_refusals_total{bound=\"groups_per_device\"} ",
            2,
        )
        .await;
    let seq = bob
        .control(
            FrameType::GroupCreate,
            9,
            &json!({"group_id": "bob-0001", "members": ["mallory-gl"]}),
        )
        .await;
    bob.ack(seq).await;
}

// Rosters live in the store: these run on both backends.
common::on_each_store!(
    create_invite_and_access_control,
    the_roster_survives_a_restart_and_offline_members_get_the_create,
    groups_owned_per_device_are_bounded,
);
