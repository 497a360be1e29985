//! A rolling restart of all three nodes under load: Alice sends MSGs without pause on a
//! channel with Bob and Carol, each starting on its own node; the nodes are stopped and started
//! again one after another (graceful shutdown, as a deployment rolls). Every client whose node
//! goes away reconnects to a node that is up, the sender sending again the MSG whose ACK it
//! did not see; in the end both receivers hold every MSG Alice had acknowledged.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commucat_ccp::control::Ack;
use commucat_ccp::{FrameType, Problem};
use commucat_client::transport::{self, H2Stream};
use commucat_client::{DeviceIdentity, HandshakeOptions, ServerParams, Session, TlsTrust};

use crate::cluster::{Deployment, join_with_peers};
use crate::common::WAIT;

const CHANNEL: u32 = 31;

/// Where the clients may connect: the address of each node that is up.
#[derive(Clone)]
struct Fleet {
    addrs: Arc<Mutex<[Option<SocketAddr>; 3]>>,
    trust: TlsTrust,
    params: ServerParams,
}

impl Fleet {
    fn set(&self, n: usize, addr: Option<SocketAddr>) {
        self.addrs.lock().unwrap()[n] = addr;
    }

    /// A session of `identity` on the first node that is up, from `*preferred` on (which is
    /// updated to the node used); retries until one accepts.
    async fn connect(&self, identity: &DeviceIdentity, preferred: &mut usize) -> Session<H2Stream> {
        let began = Instant::now();
        let options = HandshakeOptions::default().with_delivery_receipts();
        loop {
            let addr = self.addrs.lock().unwrap()[*preferred];
            if let Some(addr) = addr {
                let attempt = async {
                    let stream =
                        transport::open(addr, "localhost", &self.trust, "/connect").await?;
                    Session::handshake(stream, identity, &self.params, &options).await
                };
                if let Ok(Ok(session)) = tokio::time::timeout(WAIT, attempt).await {
                    return session;
                }
            }
            *preferred = (*preferred + 1) % 3;
            assert!(
                began.elapsed() < WAIT,
                "{}: no node accepted a session",
                identity.device_id
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What happened to one MSG sent on a session.
enum Sent {
    Acked,
    /// The link ended before the answer: send it again on the next session.
    LinkLost,
}

/// Sends `text` and waits for its ACK, confirming anything else that arrives.
async fn send(session: &mut Session<H2Stream>, text: &str) -> Sent {
    let Ok(sequence) = session
        .send_bytes(FrameType::Msg, CHANNEL, text.as_bytes().to_vec())
        .await
    else {
        return Sent::LinkLost;
    };
    loop {
        let frame = match tokio::time::timeout(WAIT, session.recv()).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None) | Err(_)) => return Sent::LinkLost,
            Err(_) => panic!("no answer to {text} within {WAIT:?}"),
        };
        match frame.frame_type() {
            FrameType::Ack => {
                if frame
                    .parse_control::<Ack>()
                    .is_ok_and(|a| a.ack == u64::from(sequence))
                {
                    return Sent::Acked;
                }
            }
            FrameType::Error => {
                let problem: Problem = frame.parse_control().unwrap();
                // A session replaced or drained ends with a notice; the MSG is sent again.
                if problem.extensions.get("sequence") == Some(&serde_json::json!(sequence)) {
                    panic!("{text} refused: {problem:?}");
                }
            }
            _ => {
                let _ = session.acknowledge(&frame).await;
            }
        }
    }
}

/// Alice: numbered MSGs until `stop`; returns the texts acknowledged and how many were sent
/// again after a reconnect.
async fn sender(
    fleet: Fleet,
    identity: DeviceIdentity,
    mut node: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) -> usize {
    let mut resent = 0;
    let mut next = 0usize;
    let mut pending: Option<String> = None;
    let mut session = fleet.connect(&identity, &mut node).await;
    loop {
        let text = match pending.take() {
            Some(text) => text,
            None if stop.load(Ordering::SeqCst) => return resent,
            None => {
                next += 1;
                format!("m{next:05}")
            }
        };
        match send(&mut session, &text).await {
            Sent::Acked => acked.lock().unwrap().push(text),
            Sent::LinkLost => {
                pending = Some(text);
                resent += 1;
                node = (node + 1) % 3;
                session = fleet.connect(&identity, &mut node).await;
                eprintln!("alice: link ended at {pending:?}; now on node {}", node + 1);
            }
        }
    }
}

/// Bob or Carol: collects the MSGs on the channel (confirming each), reconnecting whenever the
/// link ends, until `stop`.
async fn receiver(
    fleet: Fleet,
    identity: DeviceIdentity,
    mut node: usize,
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<String>>>,
) -> usize {
    let mut sessions = 1;
    let mut session = fleet.connect(&identity, &mut node).await;
    loop {
        match tokio::time::timeout(Duration::from_millis(200), session.recv()).await {
            Ok(Ok(Some(frame))) => {
                if frame.frame_type() == FrameType::Msg && frame.channel_id() == CHANNEL {
                    got.lock()
                        .unwrap()
                        .push(String::from_utf8(frame.payload().to_vec()).unwrap());
                }
                if !matches!(frame.frame_type(), FrameType::Ack | FrameType::Error) {
                    let _ = session.acknowledge(&frame).await;
                }
            }
            Ok(Ok(None) | Err(_)) => {
                let had = got.lock().unwrap().last().cloned();
                node = (node + 1) % 3;
                session = fleet.connect(&identity, &mut node).await;
                sessions += 1;
                eprintln!(
                    "{}: link ended after {had:?}; now on node {}",
                    identity.device_id,
                    node + 1
                );
            }
            Err(_) if stop.load(Ordering::SeqCst) => return sessions,
            Err(_) => {}
        }
    }
}

/// Waits for the MSG `text` on the channel (a repeat of an earlier one, whose receipt the
/// server had not seen before the session ended, is skipped).
async fn next_is(client: &mut crate::common::Client, text: &str) {
    loop {
        let frame = client.recv_on(FrameType::Msg, CHANNEL).await;
        if frame.payload().as_ref() == text.as_bytes() {
            return;
        }
    }
}

/// Waits until `acked` has grown by `more` since now.
async fn progress(acked: &Mutex<Vec<String>>, more: usize) {
    let target = acked.lock().unwrap().len() + more;
    let began = Instant::now();
    while acked.lock().unwrap().len() < target {
        assert!(began.elapsed() < WAIT, "the sender made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// The reproduction of a loss: a receiver busy with its receipts starved its mailbox, so the
// sender's live MSGs on the shared node sat there unwritten (docs/cluster.md, "The
// rolling-restart loss").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn a_rolling_restart_of_every_node_under_load_loses_no_acknowledged_frame() {
    let mut cluster = Deployment::start().await;
    let ids = ["alice-rr", "bob-rr", "carol-rr"];
    // Registered first, each on its own node; then each JOINs the channel there, declaring the
    // others.
    let mut clients = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        clients.push(cluster.node(n + 1).connect(id).await);
    }
    let mut identities = Vec::new();
    for (client, id) in clients.iter_mut().zip(ids) {
        let peers: Vec<&str> = ids.iter().filter(|p| **p != id).copied().collect();
        join_with_peers(client, CHANNEL, &peers).await;
        identities.push(client.identity.clone());
    }
    drop(clients);
    let fleet = Fleet {
        addrs: Arc::new(Mutex::new([
            Some(cluster.node(1).addr),
            Some(cluster.node(2).addr),
            Some(cluster.node(3).addr),
        ])),
        trust: cluster.node(1).trust.clone(),
        params: cluster.node(1).params.clone(),
    };
    let stop_sending = Arc::new(AtomicBool::new(false));
    let stop_receiving = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let received: Vec<Arc<Mutex<Vec<String>>>> =
        (0..2).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let mut receivers = Vec::new();
    for (i, got) in received.iter().enumerate() {
        receivers.push(tokio::spawn(receiver(
            fleet.clone(),
            identities[i + 1].clone(),
            i + 1,
            stop_receiving.clone(),
            got.clone(),
        )));
    }
    let sending = tokio::spawn(sender(
        fleet.clone(),
        identities[0].clone(),
        0,
        stop_sending.clone(),
        acked.clone(),
    ));

    progress(&acked, 30).await;
    for n in 0..3 {
        // Taken out of the front first, then stopped and started again.
        fleet.set(n, None);
        eprintln!(
            "restarting node {} at {} acked",
            n + 1,
            acked.lock().unwrap().len()
        );
        cluster.nodes[n].restart().await;
        eprintln!("node {} back", n + 1);
        fleet.set(n, Some(cluster.nodes[n].addr));
        progress(&acked, 30).await;
    }
    stop_sending.store(true, Ordering::SeqCst);
    let resent = sending.await.unwrap();
    let acked: Vec<String> = acked.lock().unwrap().clone();

    for (i, got) in received.iter().enumerate() {
        let began = Instant::now();
        loop {
            let missing: Vec<String> = {
                let got: HashSet<String> = got.lock().unwrap().iter().cloned().collect();
                acked
                    .iter()
                    .filter(|t| !got.contains(*t))
                    .cloned()
                    .collect()
            };
            if missing.is_empty() {
                break;
            }
            assert!(
                began.elapsed() < WAIT,
                "{}: {} acknowledged MSGs never arrived: {missing:?}",
                ids[i + 1],
                missing.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop_receiving.store(true, Ordering::SeqCst);
    for (i, task) in receivers.into_iter().enumerate() {
        let sessions = task.await.unwrap();
        let got = received[i].lock().unwrap();
        let distinct: HashSet<&String> = got.iter().collect();
        eprintln!(
            "{}: {} acknowledged, {} received ({} distinct) over {sessions} sessions; {resent} sent again",
            ids[i + 1],
            acked.len(),
            got.len(),
            distinct.len()
        );
        // Something moved: every receiver's first node restarted.
        assert!(sessions > 1, "{} never reconnected", ids[i + 1]);
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn a_sender_moving_to_its_recipients_node_still_reaches_it() {
    let mut cluster = Deployment::start().await;
    let mut alice = cluster.node(1).connect("alice-mv").await;
    let mut bob = cluster.node(2).connect("bob-mv").await;
    join_with_peers(&mut alice, CHANNEL, &["bob-mv"]).await;
    join_with_peers(&mut bob, CHANNEL, &["alice-mv"]).await;
    alice.say(CHANNEL, "from one").await;
    next_is(&mut bob, "from one").await;
    // Bob comes back without a new JOIN (the membership is recorded).
    let bob_identity = bob.identity.clone();
    drop(bob);
    let mut bob = cluster.node(2).connect_as(bob_identity).await;
    alice.say(CHANNEL, "to the returned bob").await;
    next_is(&mut bob, "to the returned bob").await;
    let identity = alice.identity.clone();
    // Alice's node stops under her (as in a rolling restart).
    cluster.nodes[0].stop().await;
    drop(alice);
    let mut alice = cluster.node(2).connect_as(identity).await;
    alice.say(CHANNEL, "from two").await;
    next_is(&mut bob, "from two").await;
    alice.say(CHANNEL, "again").await;
    next_is(&mut bob, "again").await;
    cluster.finish().await;
}
