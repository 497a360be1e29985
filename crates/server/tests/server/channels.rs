//! Channels and groups against hostile members, through the real server: declared member lists
//! are bounded and made of registered devices, channels per device and members per channel are
//! bounded, nothing is queued for made-up ids, a repeated JOIN does not re-broadcast, a group
//! cannot take over a conversation, and channel entries are freed once nobody connected is
//! left in them. Each case checks that a bystander (the deployed client where it matters) is
//! still served.

use crate::common;

use crate::common::deployed::{self, DeployedClient};
use crate::common::{Client, StoreBackend, TestServer};
use commucat_ccp::control::GroupCreate;
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_proto as dp;
use serde_json::{Value, json};

/// `n` made-up member ids of 128 characters.
fn made_up_ids(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("{tag}-{i:06}-{}", "x".repeat(128)))
        .map(|id| id[..128].to_owned())
        .collect()
}

fn refusals(bound: &str) -> String {
    format!("commucat_bound_refusals_total{{bound=\"{bound}\"}} ")
}

/// Reads the deployed client until it has seen `wanted` (other frames are checked by the
/// deployed decoder and skipped).
async fn deployed_until(client: &mut DeployedClient, wanted: impl Fn(&dp::Frame) -> bool) -> Value {
    loop {
        let frame = client.recv().await;
        if wanted(&frame) {
            return match &frame.payload {
                dp::FramePayload::Control(c) => c.properties.clone(),
                dp::FramePayload::Opaque(bytes) => {
                    Value::String(String::from_utf8_lossy(bytes).into_owned())
                }
            };
        }
    }
}

/// A deployed terminal client (commucat-proto / commucat-crypto 1.0.41) that runs `/join 7`,
/// then chats with `peer` (an SDK client that joins after it).
async fn deployed_bystander_chats(server: &TestServer, peer: &mut Client) {
    let id = "device-1700000000042";
    let (mut tui, _, _) = deployed::handshake(server, id, [42u8; 32]).await;
    let join = dp::FramePayload::Control(dp::ControlEnvelope {
        properties: json!({"members": [id], "relay": true}),
    });
    tui.send(dp::FrameType::Join, 7, join).await;
    let ack = deployed_until(&mut tui, |f| f.frame_type == dp::FrameType::Ack).await;
    assert_eq!(ack["ack"], 3);
    let notice = deployed_until(&mut tui, |f| f.frame_type == dp::FrameType::Join).await;
    assert!(
        notice["members"].as_array().unwrap().contains(&json!(id)),
        "{notice}"
    );
    let members = peer.join(7, true).await;
    assert!(members.iter().any(|m| m == id), "{members:?}");
    let notice = deployed_until(&mut tui, |f| {
        f.frame_type == dp::FrameType::Join
            && deployed::properties(f)["members"]
                .as_array()
                .is_some_and(|m| m.contains(&json!(peer.id)))
    })
    .await;
    assert!(notice["members"].as_array().unwrap().len() >= 2);
    peer.say(7, "hello terminal").await;
    let text = deployed_until(&mut tui, |f| f.frame_type == dp::FrameType::Msg).await;
    assert_eq!(text, "hello terminal");
    tui.send(
        dp::FrameType::Msg,
        7,
        dp::FramePayload::Opaque(b"hello sdk".to_vec()),
    )
    .await;
    let got = peer.recv_on(FrameType::Msg, 7).await;
    assert_eq!(got.payload().as_ref(), b"hello sdk");
}

#[tokio::test]
async fn a_member_list_bomb_is_refused_and_the_channel_stays_joinable() {
    let server = TestServer::start(|_| {}).await;
    let mut mallory = server.connect("mallory-bomb").await;
    // Three JOINs of channel 7 declaring ~2,300 made-up 128-character ids between them.
    for round in 0..3 {
        let ids = made_up_ids(770, &format!("bomb{round}"));
        let seq = mallory
            .control(FrameType::Join, 7, &json!({"members": ids, "relay": true}))
            .await;
        mallory.error(seq, "Member List Too Long").await;
    }
    // Under the count bound, made-up ids are still refused, and nothing is applied.
    let seq = mallory
        .control(
            FrameType::Join,
            7,
            &json!({"members": made_up_ids(10, "few")}),
        )
        .await;
    let problem: Problem = mallory.error(seq, "Unknown Device").await;
    assert!(problem.detail.unwrap().contains("few-000000"));
    let seq = mallory.send(FrameType::Msg, 7, b"anyone?").await;
    mallory.error(seq, "Not A Channel Member").await;
    server
        .metric_becomes(&refusals("declared_members_per_join"), 3)
        .await;

    // A user of the deployed terminal client and an SDK user meet on channel 7 and chat.
    let mut alice = server.connect("alice-bomb").await;
    deployed_bystander_chats(&server, &mut alice).await;
    // The bomber's session was kept throughout.
    mallory.join(8, true).await;
}

/// The first frame `client` gets after connecting, when it JOINs a channel of its own: nothing
/// was replayed before the ACK of that JOIN.
async fn nothing_replayed(server: &TestServer, device: &str) {
    let mut ghost = server.connect(device).await;
    let seq = ghost
        .control(FrameType::Join, 99, &json!({"members": [device]}))
        .await;
    let first = ghost.recv().await;
    assert_eq!(
        first.frame_type(),
        FrameType::Ack,
        "{device} got {} before its ACK",
        common::describe(&first)
    );
    assert_eq!(
        first
            .parse_control::<commucat_ccp::control::Ack>()
            .unwrap()
            .ack,
        u64::from(seq)
    );
}

async fn made_up_members_get_nothing_queued(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let mut mallory = server.connect("mallory-queue").await;
    let ghosts = ["ghost-queue-1", "ghost-queue-2"];
    let seq = mallory
        .control(
            FrameType::Join,
            8,
            &json!({"members": ghosts, "relay": true}),
        )
        .await;
    mallory.error(seq, "Unknown Device").await;
    // Whatever it sends next is refused (not a member), never queued for the ghosts.
    for _ in 0..10 {
        let seq = mallory.send(FrameType::Msg, 8, b"0123456789abcdef").await;
        mallory.recv_matching("answer", |f| answers(f, seq)).await;
    }
    // A real member queues for a real offline device as before.
    let bob_identity = server.connect("bob-queue").await.identity.clone();
    let mut alice = server.connect("alice-queue").await;
    alice
        .join_with(8, &json!({"members": ["alice-queue", "bob-queue"]}))
        .await;
    alice.say(8, "for bob").await;
    // Devices named after the ghosts that register later find nothing waiting.
    for ghost in ghosts {
        nothing_replayed(&server, ghost).await;
    }
    let mut bob = server.connect_as(bob_identity).await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 8).await.payload().as_ref(),
        b"for bob"
    );
}

fn answers(frame: &Frame, seq: u32) -> bool {
    match frame.frame_type() {
        FrameType::Ack => frame
            .parse_control::<commucat_ccp::control::Ack>()
            .is_ok_and(|a| a.ack == u64::from(seq)),
        FrameType::Error => frame
            .parse_control::<Problem>()
            .is_ok_and(|p| p.extensions.get("sequence") == Some(&json!(seq))),
        _ => false,
    }
}

#[tokio::test]
async fn a_join_flood_is_bounded_per_device_and_the_bystander_is_served() {
    const LIMIT: u64 = 64;
    const CHANNELS: u32 = 100_000;
    const BATCH: u32 = 500;
    let server = TestServer::start(|c| c.bounds.channels_per_device = LIMIT).await;
    let mut flooder = server.connect("mallory-flood").await;
    let (mut accepted, mut refused) = (0u64, 0u64);
    let mut channel = 1;
    while channel <= CHANNELS {
        let end = (channel + BATCH).min(CHANNELS + 1);
        let mut seqs = Vec::new();
        for ch in channel..end {
            seqs.push(
                flooder
                    .control(FrameType::Join, ch, &json!({"members": ["mallory-flood"]}))
                    .await,
            );
        }
        for seq in seqs {
            let frame = flooder.recv_matching("answer", |f| answers(f, seq)).await;
            if frame.frame_type() == FrameType::Ack {
                accepted += 1;
            } else {
                let problem: Problem = frame.parse_control().unwrap();
                assert_eq!(problem.title.as_deref(), Some("Channel Limit Reached"));
                refused += 1;
            }
        }
        channel = end;
    }
    assert_eq!(accepted, LIMIT);
    assert_eq!(refused, u64::from(CHANNELS) - LIMIT);
    server
        .metric_becomes(&refusals("channels_per_device"), refused)
        .await;
    server.metric_becomes("commucat_channels ", LIMIT).await;
    // A bystander joins and chats with the flooder on one of its channels.
    let mut bystander = server.connect("bystander-flood").await;
    let members = bystander.join(1, true).await;
    assert_eq!(members, ["bystander-flood", "mallory-flood"]);
    flooder.say(1, "still working").await;
    assert_eq!(
        bystander
            .recv_on(FrameType::Msg, 1)
            .await
            .payload()
            .as_ref(),
        b"still working"
    );
    // Leaving one frees a place for another.
    let seq = flooder.control(FrameType::Leave, 2, &json!({})).await;
    flooder.ack(seq).await;
    flooder.join(CHANNELS + 1, true).await;
}

#[tokio::test]
async fn members_per_channel_are_bounded() {
    let server = TestServer::start(|c| c.bounds.channel_members = 2).await;
    let mut a = server.connect("dev-full-a").await;
    let mut b = server.connect("dev-full-b").await;
    let mut c = server.connect("dev-full-c").await;
    a.join(3, true).await;
    b.join(3, true).await;
    let seq = c
        .control(FrameType::Join, 3, &json!({"members": ["dev-full-c"]}))
        .await;
    c.error(seq, "Channel Full").await;
    // Declaring a member that would overflow it is refused too.
    let seq = a
        .control(FrameType::Join, 3, &json!({"members": ["dev-full-c"]}))
        .await;
    a.error(seq, "Channel Full").await;
    server.metric_becomes(&refusals("channel_members"), 2).await;
    // Each refusal is in the ledger, with the device it was refused to.
    let ledger = server.data_dir().join("ledger.jsonl");
    let lines = common::ledger_records(&ledger, 2, |l| {
        l["scope"] == "bound" && l["bound"] == "channel_members"
    })
    .await;
    let devices: Vec<&Value> = lines
        .iter()
        .filter(|l| l["scope"] == "bound")
        .map(|l| &l["device_id"])
        .collect();
    assert_eq!(devices, [&json!("dev-full-c"), &json!("dev-full-a")]);
    a.say(3, "two of us").await;
    assert_eq!(
        b.recv_on(FrameType::Msg, 3).await.payload().as_ref(),
        b"two of us"
    );
    // c is served elsewhere.
    c.join(4, true).await;
}

#[tokio::test]
async fn a_repeated_join_answers_the_joiner_only() {
    let server = TestServer::start(|_| {}).await;
    let [mut alice, mut bob] = server.conversation(5, ["alice-again", "bob-again"]).await;
    for _ in 0..3 {
        assert_eq!(alice.join(5, true).await, ["alice-again", "bob-again"]);
    }
    alice.say(5, "after the joins").await;
    // bob's next frame on channel 5 is the MSG: no JOIN notice was re-broadcast.
    let next = bob
        .recv_matching("frame on 5", |f| f.channel_id() == 5)
        .await;
    assert_eq!(
        next.frame_type(),
        FrameType::Msg,
        "{}",
        common::describe(&next)
    );
}

async fn a_group_cannot_evict_a_conversation(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |c| c.bounds.channel_members = 3).await;
    let [mut alice, mut bob] = server.conversation(5, ["alice-take", "bob-take"]).await;
    let carol = server.connect("carol-take").await;

    // bob, a member, would evict alice by binding channel 5 to a group without her.
    let seq = bob
        .control(
            FrameType::GroupCreate,
            5,
            &json!({"group_id": "takeover-01", "members": ["carol-take"]}),
        )
        .await;
    bob.error(seq, "Group Permission Denied").await;
    // Made-up roster members are refused, and so is a roster longer than a channel.
    let seq = bob
        .control(
            FrameType::GroupCreate,
            6,
            &json!({"group_id": "ghosts-0001", "members": ["ghost-take"]}),
        )
        .await;
    bob.error(seq, "Unknown Device").await;
    let seq = bob
        .control(
            FrameType::GroupCreate,
            6,
            &json!({"group_id": "crowd-0001",
                    "members": ["alice-take", "carol-take", "mallory-take"]}),
        )
        .await;
    bob.error(seq, "Member List Too Long").await;
    let store = server.store().await;
    for group in ["takeover-01", "ghosts-0001", "crowd-0001"] {
        assert!(
            store.group(group).await.unwrap().is_none(),
            "{group} stored"
        );
    }
    // The conversation is intact.
    alice.say(5, "still ours").await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 5).await.payload().as_ref(),
        b"still ours"
    );
    // With everyone on the roster, a member may turn it into a group channel.
    let seq = bob
        .control(
            FrameType::GroupCreate,
            5,
            &json!({"group_id": "ours-00001", "members": ["alice-take", "carol-take"]}),
        )
        .await;
    bob.ack(seq).await;
    let notice: GroupCreate = alice
        .recv_on(FrameType::GroupCreate, 5)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(notice.members, ["alice-take", "bob-take", "carol-take"]);
    // The roster is full: no one more is invited.
    let _mallory = server.connect("mallory-take").await;
    let seq = bob
        .control(
            FrameType::GroupInvite,
            5,
            &json!({"group_id": "ours-00001", "device": "mallory-take"}),
        )
        .await;
    bob.error(seq, "Channel Full").await;
    // A member joining the group's channel again is answered alone.
    for _ in 0..2 {
        let members = alice.join_with(5, &json!({"group_id": "ours-00001"})).await;
        assert_eq!(members, ["alice-take", "bob-take", "carol-take"]);
    }
    alice.say(5, "no notices").await;
    let next = bob
        .recv_matching("frame on 5", |f| f.channel_id() == 5)
        .await;
    assert_eq!(
        next.frame_type(),
        FrameType::Msg,
        "{}",
        common::describe(&next)
    );
    drop(carol);
}

#[tokio::test]
async fn channel_entries_are_freed_once_no_connected_member_is_left() {
    let server = TestServer::start(|_| {}).await;
    let offline_bob = server.connect("bob-free").await.identity.clone();
    let mut alice = server.connect("alice-free").await;
    let mut carol = server.connect("carol-free").await;
    for channel in 1..=20 {
        alice
            .join_with(channel, &json!({"members": ["alice-free", "bob-free"]}))
            .await;
    }
    carol.join(1, true).await;
    server.metric_becomes("commucat_channels ", 20).await;
    // alice leaves by disconnecting: channel 1 keeps carol (and offline bob), the others go.
    drop(alice);
    server.metric_becomes("commucat_channels ", 1).await;
    carol.say(1, "for bob").await;
    drop(carol);
    server.metric_becomes("commucat_channels ", 0).await;
    // bob still gets what was queued for him while he was a member.
    let mut bob = server.connect_as(offline_bob).await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 1).await.payload().as_ref(),
        b"for bob"
    );
    assert_eq!(bob.join(1, true).await, ["bob-free"]);
}

common::on_each_store!(
    made_up_members_get_nothing_queued,
    a_group_cannot_evict_a_conversation,
);

#[tokio::test]
async fn a_roster_notice_past_the_control_limit_never_breaks_the_creator() {
    let server = TestServer::start(|_| {}).await;
    let mut owner = server.connect("owner-big").await;
    // 115 registered devices with 120-character ids: the notice repeats each id in `members`
    // and `roles`, so with a long name it would pass the 256 KiB control limit.
    let mut members = Vec::new();
    for i in 0..115 {
        let id = format!("member-big-{i:03}-{}", "m".repeat(120))[..120].to_owned();
        let identity =
            commucat_client::DeviceIdentity::generate(&id).with_handle(format!("member_big_{i}"));
        members.push(server.connect_as(identity).await);
    }
    let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
    let listed = serde_json::to_vec(&ids).unwrap().len();
    let name = "n".repeat(commucat_ccp::MAX_CONTROL_JSON_LEN - listed - 200);
    let seq = owner
        .control(
            FrameType::GroupCreate,
            12,
            &json!({"group_id": "big-00001", "members": ids, "name": name}),
        )
        .await;
    owner.ack(seq).await;
    let notice: GroupCreate = members[114]
        .recv_on(FrameType::GroupCreate, 12)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(notice.owner.as_deref(), Some("owner-big"));
    assert_eq!(notice.members.len(), 116);
    // The owner's session goes on.
    owner.say(12, "big group").await;
    assert_eq!(
        members[0]
            .recv_on(FrameType::Msg, 12)
            .await
            .payload()
            .as_ref(),
        b"big group"
    );
}
