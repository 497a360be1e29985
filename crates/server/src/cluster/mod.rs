//! Several nodes, one service: how the nodes of a deployment that share one PostgreSQL and one
//! Redis reach each other's sessions.
//!
//! The durable offline queue (the store) is the source of truth for every frame the server
//! ACKs; Redis pub/sub only rings doorbells. A MSG for a device that has no session on the
//! sender's node is committed to the queue first (as for an offline device) and only then is
//! the node named by the device's `route:<device>` told to replay ([`Message::Replay`]); that
//! node's session writes the queued frames in their order and deletes them on proof of
//! receipt. A doorbell that is lost (Redis restarting, the target node dying) loses nothing:
//! the frames wait in the queue until the device's next doorbell or reconnect, on any node.
//! See `docs/cluster.md` for the reasoning.
//!
//! Besides doorbells, nodes exchange live-only frames ([`Message::Frame`]: typing, presence,
//! notices, call signaling, dropped like any live-only frame when there is no room), session
//! moves ([`Message::Moved`]: a device that connects to node B ends its session on node A)
//! revocations and key rotations ([`Message::Ended`]), and changes of plain channels'
//! membership ([`Message::Members`], also recorded in Redis so that a node that restarted or
//! that a device moved to knows the channel without a new JOIN).
//!
//! Everything a node sends goes through one bounded outbound queue ([`OUTBOUND_CAPACITY`]) and
//! one publishing task, so the messages of one sender leave in the order it relayed them;
//! durable doorbells wait for room (back-pressure on the sender), live frames are dropped when
//! it is full. What a node receives is refused above its size bound and applied to the hub
//! without waiting ([`subscriber`]).
//!
//! Each node also keeps a bounded snapshot of its live sessions in Redis, which the operator
//! console of every node reads ([`sessions`]).

mod message;
pub mod sessions;
mod subscriber;

pub use message::{EndReason, MAX_DEVICES, Message, MessageError, OVERHEAD_BYTES};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::router::channels::ChannelLimits;
use crate::router::presence::PresenceError;
use crate::router::presence_redis::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::router::remote::Remote;
use crate::router::{Envelope, Hub};

/// Messages waiting to be published at most; beyond that doorbells wait and live frames are
/// dropped.
pub const OUTBOUND_CAPACITY: usize = 4096;

/// Longest a closing node keeps publishing what its sessions queued before it stops.
pub const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// What the publishing task sends.
#[derive(Debug)]
enum Outbound {
    /// Doorbells for these devices (routed by their `route:<device>`).
    Ring(Vec<String>),
    /// A live-only frame for these devices (routed by their `route:<device>`).
    Forward {
        devices: Vec<String>,
        sender: Arc<str>,
        stamp: i64,
        frame: Bytes,
    },
    /// A message for every node.
    Broadcast(Message),
}

/// This node's link to the others, over Redis.
pub struct Cluster {
    node: String,
    prefix: String,
    client: redis::Client,
    /// Commands of this node's own (membership), beside the publishing task's.
    connection: ConnectionManager,
    outbound: mpsc::Sender<Outbound>,
    /// The publishing task's end of the queue, until [`Cluster::listen`] starts it.
    pending: Mutex<Option<(mpsc::Receiver<Outbound>, ConnectionManager, PubSubStream)>>,
    /// Longest message accepted from another node.
    max_message_bytes: usize,
    /// Finish: publish what is queued, then stop.
    stop: CancellationToken,
    /// Stop at once (a crash).
    kill: CancellationToken,
    tasks: TaskTracker,
    /// Live frames dropped because the outbound queue was full.
    dropped: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(error)`
fn error(err: redis::RedisError) -> PresenceError {
    PresenceError(format!("redis: {err}"))
}

impl Cluster {
    /// Connects to the Redis at `url` as node `node` (keys and channels under `prefix`) and
    /// subscribes to this node's channel and the broadcast channel; nothing is applied before
    /// [`Cluster::listen`]. `max_frame_len` bounds the frames other nodes may forward.
    ///
    /// # Errors
    /// Redis cannot be reached (within about [`CONNECT_TIMEOUT`]).
    pub async fn connect(
        url: &str,
        prefix: &str,
        node: &str,
        max_frame_len: usize,
    ) -> Result<Arc<Self>, PresenceError> {
        let client = redis::Client::open(url).map_err(error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(error)?;
        let channels = [node_channel(prefix, node), broadcast_channel(prefix)];
        let stream = subscriber::subscribe(&client, &channels).await?;
        let (outbound, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        Ok(Arc::new(Self {
            node: node.to_owned(),
            prefix: prefix.to_owned(),
            client,
            connection: connection.clone(),
            outbound,
            pending: Mutex::new(Some((rx, connection, stream))),
            // Base64 grows the frame by a third.
            max_message_bytes: max_frame_len
                .saturating_mul(4)
                .div_ceil(3)
                .saturating_add(OVERHEAD_BYTES),
            stop: CancellationToken::new(),
            kill: CancellationToken::new(),
            tasks: TaskTracker::new(),
            dropped: AtomicU64::new(0),
        }))
    }

    /// This node's id.
    #[must_use]
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Live frames dropped so far because the outbound queue was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Starts publishing and applying what other nodes send to `hub`. Only the first call
    /// starts anything.
    pub fn listen(self: &Arc<Self>, hub: Arc<Hub>, limits: ChannelLimits) {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some((rx, connection, stream)) = pending else {
            return;
        };
        let publisher = Publisher {
            node: self.node.clone(),
            prefix: self.prefix.clone(),
            connection,
        };
        self.tasks
            .spawn(publisher.run(rx, self.stop.clone(), self.kill.clone()));
        let channels = [
            node_channel(&self.prefix, &self.node),
            broadcast_channel(&self.prefix),
        ];
        let sessions = sessions::Writer {
            node: self.node.clone(),
            prefix: self.prefix.clone(),
            connection: self.connection.clone(),
            hub: Arc::clone(&hub),
        };
        let listener = subscriber::Listener {
            client: self.client.clone(),
            connection: self.connection.clone(),
            prefix: self.prefix.clone(),
            channels,
            node: self.node.clone(),
            hub,
            limits,
            max_message_bytes: self.max_message_bytes,
        };
        self.tasks.spawn(listener.run(stream, self.stop.clone()));
        self.tasks
            .spawn(sessions.run(self.stop.clone(), self.kill.clone()));
        self.tasks.close();
    }

    /// Tells every other node that `device` now has a session here, started at `since` (Unix
    /// microseconds): their older sessions of it end.
    pub async fn moved(&self, device: &str, since: i64) {
        self.broadcast(Message::Moved {
            device: device.to_owned(),
            origin: self.node.clone(),
            since,
        })
        .await;
    }

    /// Tells every node that `device` was revoked or its key changed: its sessions end with
    /// `reason`'s ERROR and `detail`.
    pub async fn ended(&self, device: &str, reason: EndReason, detail: &str) {
        self.broadcast(Message::Ended {
            device: device.to_owned(),
            reason,
            detail: detail.to_owned(),
        })
        .await;
    }

    /// Records that `device` joined plain channel `channel` (with its `relay` flag) declaring
    /// `declared`, and tells the other nodes. The record (`<prefix>channel:<id>`, a hash of
    /// device → `relay`/`direct`) lives [`CHANNEL_TTL`] after the last JOIN, so a node that
    /// restarted, or one the device moved to, knows the channel without a new JOIN.
    pub async fn share_join(&self, channel: u32, device: &str, relay: bool, declared: &[String]) {
        let key = channel_key(&self.prefix, channel);
        let mut pipe = redis::pipe();
        pipe.hset(&key, device, if relay { "relay" } else { "direct" })
            .ignore();
        for other in declared {
            pipe.hset_nx(&key, other, "relay").ignore();
        }
        pipe.expire(
            &key,
            i64::try_from(CHANNEL_TTL.as_secs()).unwrap_or(i64::MAX),
        )
        .ignore();
        let mut connection = self.connection.clone();
        if let Err(e) = pipe.query_async::<()>(&mut connection).await {
            tracing::warn!(channel, error = %e, "channel membership not recorded in redis");
        }
        let mut joined = vec![device.to_owned()];
        joined.extend(declared.iter().cloned());
        for chunk in joined.chunks(MAX_DEVICES) {
            self.broadcast(Message::Members {
                channel,
                joined: chunk.to_vec(),
                left: Vec::new(),
            })
            .await;
        }
    }

    /// Records that `device` left plain channel `channel`, and tells the other nodes.
    pub async fn share_leave(&self, channel: u32, device: &str) {
        let mut connection = self.connection.clone();
        let removed: Result<i64, _> = redis::cmd("HDEL")
            .arg(channel_key(&self.prefix, channel))
            .arg(device)
            .query_async(&mut connection)
            .await;
        if let Err(e) = removed {
            tracing::warn!(channel, error = %e, "channel departure not recorded in redis");
        }
        self.broadcast(Message::Members {
            channel,
            joined: Vec::new(),
            left: vec![device.to_owned()],
        })
        .await;
    }

    /// The recorded members of plain channel `channel` with their `relay` flags (at most
    /// `most`; empty when none are recorded).
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn shared_members(
        &self,
        channel: u32,
        most: usize,
    ) -> Result<Vec<(String, bool)>, PresenceError> {
        let mut connection = self.connection.clone();
        let key = channel_key(&self.prefix, channel);
        let count: usize = redis::cmd("HLEN")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .map_err(error)?;
        if count > most {
            return Err(PresenceError(format!(
                "channel {channel} has {count} recorded members, more than {most}"
            )));
        }
        let members: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .map_err(error)?;
        Ok(members
            .into_iter()
            .map(|(device, flag)| (device, flag != "direct"))
            .collect())
    }

    async fn broadcast(&self, message: Message) {
        if self
            .outbound
            .send(Outbound::Broadcast(message))
            .await
            .is_err()
        {
            tracing::warn!("cluster link closed; broadcast not sent");
        }
    }

    /// Publishes what is still queued (for up to [`CLOSE_PATIENCE`]), then stops listening.
    pub async fn close(&self) {
        self.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(CLOSE_PATIENCE, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("cluster link did not finish publishing in time");
        }
    }

    /// Stops at once, publishing nothing more (a crash, for tests of node loss).
    pub fn abort(&self) {
        self.kill.cancel();
        self.stop.cancel();
    }
}

#[async_trait::async_trait]
impl Remote for Cluster {
    async fn ring(&self, devices: &[String]) {
        if self
            .outbound
            .send(Outbound::Ring(devices.to_vec()))
            .await
            .is_err()
        {
            tracing::warn!("cluster link closed; doorbell not sent (the frames stay queued)");
        }
    }

    fn forward(&self, devices: &[String], envelope: &Envelope) {
        let item = Outbound::Forward {
            devices: devices.to_vec(),
            sender: Arc::clone(&envelope.sender),
            stamp: envelope.stamp,
            frame: envelope.frame.with_sequence(0).to_bytes(),
        };
        if self.outbound.try_send(item).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("cluster outbound queue full; live frame dropped");
        }
    }
}

/// The pub/sub channel of `node`.
#[must_use]
pub fn node_channel(prefix: &str, node: &str) -> String {
    format!("{prefix}node:{node}")
}

/// How long a plain channel's shared membership outlives its last JOIN.
pub const CHANNEL_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The Redis hash of plain channel `channel`'s members.
#[must_use]
pub fn channel_key(prefix: &str, channel: u32) -> String {
    format!("{prefix}channel:{channel}")
}

/// The pub/sub channel every node listens to.
#[must_use]
pub fn broadcast_channel(prefix: &str) -> String {
    format!("{prefix}nodes")
}

/// The publishing task.
struct Publisher {
    node: String,
    prefix: String,
    connection: ConnectionManager,
}

impl Publisher {
    /// Publishes in queue order until stopped; once stopped, what is already queued still goes
    /// out (the caller bounds how long with [`CLOSE_PATIENCE`]).
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Outbound>,
        stop: CancellationToken,
        kill: CancellationToken,
    ) {
        loop {
            let item = tokio::select! {
                biased;
                () = kill.cancelled() => return,
                item = rx.recv() => item,
                () = stop.cancelled() => None,
            };
            let Some(item) = item else { break };
            self.send(item).await;
        }
        rx.close();
        while let Ok(item) = rx.try_recv() {
            if kill.is_cancelled() {
                return;
            }
            self.send(item).await;
        }
    }

    async fn send(&mut self, item: Outbound) {
        let outcome = match item {
            Outbound::Ring(devices) => {
                self.routed(devices, |devices| Message::Replay { devices })
                    .await
            }
            Outbound::Forward {
                devices,
                sender,
                stamp,
                frame,
            } => {
                self.routed(devices, |devices| {
                    Message::frame(devices, &sender, stamp, &frame)
                })
                .await
            }
            Outbound::Broadcast(message) => {
                let channel = broadcast_channel(&self.prefix);
                self.publish(&channel, &message).await
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "cluster message not published");
        }
    }

    /// Looks up the routes of `devices` and publishes one message per other node serving some
    /// of them.
    async fn routed(
        &mut self,
        devices: Vec<String>,
        message: impl Fn(Vec<String>) -> Message,
    ) -> Result<(), PresenceError> {
        let keys: Vec<String> = devices
            .iter()
            .map(|d| format!("{}route:{d}", self.prefix))
            .collect();
        let routes: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.connection)
            .await
            .map_err(error)?;
        let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (device, route) in devices.into_iter().zip(routes) {
            if let Some(node) = route.filter(|n| *n != self.node) {
                by_node.entry(node).or_default().push(device);
            }
        }
        for (node, devices) in by_node {
            let channel = node_channel(&self.prefix, &node);
            for chunk in devices.chunks(MAX_DEVICES) {
                self.publish(&channel, &message(chunk.to_vec())).await?;
            }
        }
        Ok(())
    }

    async fn publish(&mut self, channel: &str, message: &Message) -> Result<(), PresenceError> {
        let bytes = message.encode().map_err(|e| PresenceError(e.to_string()))?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(bytes)
            .query_async::<i64>(&mut self.connection)
            .await
            .map(drop)
            .map_err(error)
    }
}
