//! Several nodes, one service: three real servers on 127.0.0.1:0 sharing a fresh PostgreSQL
//! schema (`COMMUCAT_TEST_POSTGRES`), a fresh Redis key prefix (`COMMUCAT_TEST_REDIS`) and one
//! set of keys (as a deployment behind a load balancer does). Devices spread over the nodes
//! talk 1:1 (typing and presence included) and in a group; plain channels joined on different nodes are one channel, also
//! after a node restarts; a device moving to another node ends its session on the first; a
//! revocation on node 1 ends the session on node 3; Redis restarting under traffic loses
//! nothing and delivery resumes; a node that crashes (or shuts down) while
//! its device receives loses no acknowledged frame: the device gets every one of them after it
//! reconnects to another node.
//!
//! Ignored (with the reason) unless both services are configured.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use crate::common::{Client, StoreBackend, TestServer, WAIT, eventually};
use crate::rest::{Rest, expect_closed_as_revoked, pair_and_connect, token};
use crate::services::ThrowawayRedis;
use commucat_ccp::FrameType;
use commucat_ccp::control::{Ack, PresenceSnapshot};
use rand_core::{OsRng, RngCore};
use redis::AsyncCommands;
use serde_json::json;

/// Three nodes of one deployment, and what they share.
pub(crate) struct Deployment {
    pub(crate) nodes: Vec<TestServer>,
    redis_url: String,
    prefix: String,
    /// Data directories of nodes 2 and 3 (copies of node 1's keys).
    _dirs: Vec<tempfile::TempDir>,
}

/// Copies the files under `from` into `to` (the keys and certificate node 1 generated).
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl Deployment {
    /// Three nodes `n1`..`n3` on one schema and one key prefix of `COMMUCAT_TEST_REDIS`.
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// As [`Deployment::start`], each node's configuration changed by `tweak` too.
    pub(crate) async fn start_with(tweak: impl Fn(&mut commucat_server::Config)) -> Self {
        let redis_url = std::env::var("COMMUCAT_TEST_REDIS").expect("COMMUCAT_TEST_REDIS is set");
        Self::start_on(redis_url, tweak).await
    }

    /// Three nodes `n1`..`n3` on one schema and one key prefix of the Redis at `redis_url`.
    pub(crate) async fn start_on(
        redis_url: String,
        tweak: impl Fn(&mut commucat_server::Config),
    ) -> Self {
        let backend = StoreBackend::postgres()
            .await
            .expect("COMMUCAT_TEST_POSTGRES is set");
        let prefix = format!("commucat-cluster-{:016x}:", OsRng.next_u64());
        let configure = |node: &str, config: &mut commucat_server::Config| {
            config.presence.redis_url = Some(redis_url.clone());
            config.presence.key_prefix.clone_from(&prefix);
            config.presence.node_id = Some(node.to_owned());
            tweak(config);
        };
        let first = TestServer::start_on(backend.clone(), |c| configure("n1", c)).await;
        let mut nodes = vec![first];
        let mut dirs = Vec::new();
        for node in ["n2", "n3"] {
            let dir = tempfile::tempdir().unwrap();
            copy_tree(nodes[0].data_dir(), dir.path());
            let data_dir = dir.path().to_owned();
            let server = TestServer::start_on(backend.clone(), |c| {
                configure(node, c);
                c.server.data_dir = data_dir;
            })
            .await;
            assert_eq!(server.params.server_static, nodes[0].params.server_static);
            nodes.push(server);
            dirs.push(dir);
        }
        Self {
            nodes,
            redis_url,
            prefix,
            _dirs: dirs,
        }
    }

    /// Node `n` (1-based, as the node ids).
    pub(crate) fn node(&self, n: usize) -> &TestServer {
        &self.nodes[n - 1]
    }

    /// The node id `route:<device>` names, if any.
    async fn route(&self, device: &str) -> Option<String> {
        let client = redis::Client::open(self.redis_url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        connection
            .get(format!("{}route:{device}", self.prefix))
            .await
            .unwrap()
    }

    /// Waits until `device`'s route names node `n`.
    async fn routed_to(&self, device: &str, n: usize) {
        let node = format!("n{n}");
        eventually(&format!("route of {device} on {node}"), WAIT, || async {
            (self.route(device).await.as_deref() == Some(node.as_str())).then_some(())
        })
        .await;
    }

    /// Stops every node and deletes the prefix's keys.
    pub(crate) async fn finish(mut self) {
        for node in &mut self.nodes {
            node.stop().await;
        }
        let client = redis::Client::open(self.redis_url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = connection.keys(format!("{}*", self.prefix)).await.unwrap();
        if !keys.is_empty() {
            connection.del::<_, ()>(keys).await.unwrap();
        }
    }
}

/// JOINs `channel` declaring `peers` as members too (the 1:1 and plain-group preamble).
pub(crate) async fn join_with_peers(client: &mut Client, channel: u32, peers: &[&str]) {
    let mut members = vec![client.id.clone()];
    members.extend(peers.iter().map(|p| (*p).to_owned()));
    client
        .join_with(channel, &json!({"members": members, "relay": true}))
        .await;
}

/// The next MSG on `channel`, as text.
async fn next_text(client: &mut Client, channel: u32) -> String {
    let frame = client.recv_on(FrameType::Msg, channel).await;
    String::from_utf8(frame.payload().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn one_to_one_across_nodes_both_ways_in_order() {
    let cluster = Deployment::start().await;
    let mut alice = cluster.node(1).connect("alice-x").await;
    let mut bob = cluster.node(2).connect("bob-x").await;
    join_with_peers(&mut alice, 7, &["bob-x"]).await;
    join_with_peers(&mut bob, 7, &["alice-x"]).await;

    for i in 0..20 {
        alice.say(7, &format!("a{i}")).await;
    }
    for i in 0..20 {
        assert_eq!(next_text(&mut bob, 7).await, format!("a{i}"));
    }
    for i in 0..20 {
        bob.say(7, &format!("b{i}")).await;
    }
    for i in 0..20 {
        assert_eq!(next_text(&mut alice, 7).await, format!("b{i}"));
    }
    // Live-only frames cross nodes too.
    let seq = alice
        .control(FrameType::Typing, 7, &json!({"state": "typing"}))
        .await;
    alice.ack(seq).await;
    let typing = bob.recv_on(FrameType::Typing, 7).await;
    let typing: serde_json::Value = typing.parse_control().unwrap();
    assert_eq!(typing["device"], "alice-x");
    // So do presence snapshots.
    let seq = alice
        .control(FrameType::Presence, 0, &json!({"state": "busy"}))
        .await;
    alice.ack(seq).await;
    let snapshot: PresenceSnapshot = bob
        .recv_on(FrameType::Presence, 0)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(
        (snapshot.entity.as_str(), snapshot.state.as_str()),
        ("alice-x", "busy")
    );
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn a_group_spread_over_three_nodes() {
    let cluster = Deployment::start().await;
    let ids = ["ann-x", "ben-x", "cat-x"];
    let mut members = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        members.push(cluster.node(n + 1).connect(id).await);
    }
    let seq = members[0]
        .control(
            FrameType::GroupCreate,
            20,
            &json!({"group_id": "spread-0001", "members": ["ben-x", "cat-x"]}),
        )
        .await;
    let ack: Ack = members[0].ack(seq).await;
    assert_eq!(ack.group_id.as_deref(), Some("spread-0001"));
    // The create reaches the members on the other nodes; each joins the group's channel there.
    for member in &mut members[1..] {
        member.recv_on(FrameType::GroupCreate, 20).await;
        member
            .join_with(20, &json!({"group_id": "spread-0001"}))
            .await;
    }
    for (i, id) in ids.iter().enumerate() {
        members[i].say(20, &format!("from {id}")).await;
        for (j, other) in members.iter_mut().enumerate() {
            if j != i {
                assert_eq!(next_text(other, 20).await, format!("from {id}"));
            }
        }
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn a_device_moving_to_another_node_ends_its_old_session_and_is_reached_there() {
    let cluster = Deployment::start().await;
    let mut alice = cluster.node(3).connect("alice-m").await;
    let mut bob = cluster.node(1).connect("bob-m").await;
    join_with_peers(&mut alice, 9, &["bob-m"]).await;
    join_with_peers(&mut bob, 9, &["alice-m"]).await;
    alice.say(9, "on one").await;
    assert_eq!(next_text(&mut bob, 9).await, "on one");
    cluster.routed_to("bob-m", 1).await;

    let identity = bob.identity.clone();
    let mut moved = cluster.node(2).connect_as(identity).await;
    // The session on node 1 ends as a replaced one does: the stream closes without an ERROR.
    let rest = bob.recv_until_closed().await;
    assert!(
        rest.iter().all(|f| f.frame_type() != FrameType::Error),
        "{:?}",
        rest.iter().map(crate::common::describe).collect::<Vec<_>>()
    );
    cluster.routed_to("bob-m", 2).await;
    join_with_peers(&mut moved, 9, &["alice-m"]).await;
    alice.say(9, "on two").await;
    assert_eq!(next_text(&mut moved, 9).await, "on two");
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn a_revocation_on_node_one_ends_the_session_on_node_three() {
    let cluster = Deployment::start().await;
    let alice = cluster.node(1).connect("alice-r").await;
    let rest = Rest::new(cluster.node(1));
    // The laptop is paired through node 1 and connects to node 3.
    let (claimed, mut laptop) = pair_and_connect(cluster.node(3), &rest, &alice).await;
    let laptop_id = claimed.deployed.device_id.clone();
    cluster.routed_to(&laptop_id, 3).await;
    rest.post(
        "/api/devices/revoke",
        Some(&token(&alice)),
        &json!({ "device_id": laptop_id }),
    )
    .await
    .expect(reqwest::StatusCode::OK);
    expect_closed_as_revoked(&mut laptop).await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn plain_channel_membership_is_shared_and_survives_a_restart() {
    let mut cluster = Deployment::start().await;
    // Each joins only itself, as the deployed client does, on its own node.
    let mut alice = cluster.node(1).connect("alice-p").await;
    let mut bob = cluster.node(2).connect("bob-p").await;
    alice.join(11, true).await;
    let members = bob.join(11, true).await;
    assert_eq!(members, ["alice-p", "bob-p"], "bob's node knows alice");
    alice.say(11, "hi bob").await;
    assert_eq!(next_text(&mut bob, 11).await, "hi bob");
    bob.say(11, "hi alice").await;
    assert_eq!(next_text(&mut alice, 11).await, "hi alice");

    // Node 1 restarts: alice reconnects and talks on the channel without a new JOIN.
    let alice_identity = alice.identity.clone();
    drop(alice);
    cluster.nodes[0].restart().await;
    let mut alice = cluster.node(1).connect_as(alice_identity.clone()).await;
    alice.say(11, "back").await;
    assert_eq!(next_text(&mut bob, 11).await, "back");
    // And from a node she never joined it on.
    let mut elsewhere = cluster.node(3).connect_as(alice_identity).await;
    drop(alice);
    elsewhere.say(11, "moved").await;
    assert_eq!(next_text(&mut bob, 11).await, "moved");
    bob.say(11, "seen").await;
    assert_eq!(next_text(&mut elsewhere, 11).await, "seen");
    cluster.finish().await;
}

/// `GET /readyz` of `node`: its status code.
async fn readyz(node: &TestServer) -> u16 {
    node.http()
        .get(format!("https://localhost:{}/readyz", node.addr.port()))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn a_redis_restart_under_traffic_loses_nothing_and_delivery_resumes() {
    let mut redis = tokio::task::spawn_blocking(ThrowawayRedis::start)
        .await
        .unwrap();
    let cluster = Deployment::start_on(redis.url(), |_| {}).await;
    let mut alice = cluster.node(1).connect("alice-o").await;
    let mut bob = cluster.node(2).connect("bob-o").await;
    join_with_peers(&mut alice, 13, &["bob-o"]).await;
    join_with_peers(&mut bob, 13, &["alice-o"]).await;
    alice.say(13, "before").await;
    assert_eq!(next_text(&mut bob, 13).await, "before");

    // Redis goes away (with every key: it keeps nothing on disk) while alice sends.
    tokio::task::block_in_place(|| redis.kill());
    eventually("node 1 not ready", WAIT, || async {
        (readyz(cluster.node(1)).await == 503).then_some(())
    })
    .await;
    alice.say(13, "during").await;
    tokio::task::block_in_place(|| redis.resume());
    for n in 1..=3 {
        eventually(&format!("node {n} ready"), WAIT, || async {
            (readyz(cluster.node(n)).await == 200).then_some(())
        })
        .await;
    }
    alice.say(13, "after").await;
    assert_eq!(next_text(&mut bob, 13).await, "during");
    assert_eq!(next_text(&mut bob, 13).await, "after");
    // The routes came back without a reconnect.
    cluster.routed_to("bob-o", 2).await;
    cluster.finish().await;
}

/// How node 3 goes away in [`node_loss_loses_no_acknowledged_frame`].
#[derive(Clone, Copy)]
enum Loss {
    Crash,
    Shutdown,
}

/// Alice (node 1) sends to Bob (node 3, with delivery receipts) without pause; node 3 goes
/// away once Bob has read some; Alice goes on sending; Bob reconnects to node 2 and gets every
/// frame Alice had ACKed, in order (duplicates of frames whose receipt was lost allowed).
async fn node_loss_loses_no_acknowledged_frame(loss: Loss) {
    const TOTAL: usize = 200;
    let mut cluster = Deployment::start().await;
    let mut alice = cluster.node(1).connect("alice-k").await;
    let mut bob = cluster.node(3).connect("bob-k").await;
    join_with_peers(&mut alice, 5, &["bob-k"]).await;
    join_with_peers(&mut bob, 5, &["alice-k"]).await;
    let bob_identity = bob.identity.clone();

    let sender = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..TOTAL {
            let text = format!("m{i:03}");
            alice.say(5, &text).await;
            acked.push(text);
        }
        (alice, acked)
    });
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < 20 {
        seen.push(next_text(&mut bob, 5).await);
    }
    match loss {
        Loss::Crash => cluster.nodes[2].kill().await,
        Loss::Shutdown => cluster.nodes[2].stop().await,
    }
    drop(bob);
    let (_alice, acked) = sender.await.unwrap();
    assert_eq!(acked.len(), TOTAL);

    let mut bob = cluster.node(2).connect_as(bob_identity).await;
    let mut after: Vec<String> = Vec::new();
    let wanted: HashSet<&String> = acked.iter().collect();
    let mut got: HashSet<String> = seen.iter().cloned().collect();
    while !wanted.iter().all(|t| got.contains(*t)) {
        let text = match bob.recv_within(WAIT).await {
            Some(frame) if frame.frame_type() == FrameType::Msg => {
                String::from_utf8(frame.payload().to_vec()).unwrap()
            }
            Some(_) => continue,
            None => {
                let missing: Vec<&&String> = wanted.iter().filter(|t| !got.contains(**t)).collect();
                panic!(
                    "{} acknowledged frames never arrived: {missing:?}",
                    missing.len()
                );
            }
        };
        got.insert(text.clone());
        after.push(text);
    }
    // What arrives after the reconnect is in sending order; anything repeated was already
    // delivered before the loss (a receipt that did not reach node 3).
    let mut sorted = after.clone();
    sorted.sort();
    sorted.dedup();
    let mut firsts: Vec<&String> = Vec::new();
    for text in &after {
        if !firsts.contains(&text) {
            firsts.push(text);
        }
    }
    assert_eq!(
        firsts,
        sorted.iter().collect::<Vec<_>>(),
        "order after reconnect"
    );
    // Duplicates are bounded: only frames delivered before the loss come again, each once.
    assert_eq!(
        sorted.len(),
        after.len(),
        "a frame came twice after the reconnect"
    );
    bob.expect_quiet(Duration::from_millis(300)).await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn a_crashed_node_loses_no_acknowledged_frame() {
    node_loss_loses_no_acknowledged_frame(Loss::Crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn a_node_shut_down_under_traffic_loses_no_acknowledged_frame() {
    node_loss_loses_no_acknowledged_frame(Loss::Shutdown).await;
}
