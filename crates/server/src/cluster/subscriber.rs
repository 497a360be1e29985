//! Receiving what other nodes publish: one pub/sub connection subscribed to this node's
//! channel and the broadcast channel, re-established with backoff when Redis goes away. After
//! a reconnect every local session replays its queue, since doorbells published meanwhile are
//! gone. Messages are applied to the hub without waiting (mailbox `try_send`s), so a busy node
//! never holds the connection back; the pub/sub connection's own buffer is drained as fast as
//! the hub takes messages, and Redis bounds what it keeps for a slow subscriber
//! (`client-output-buffer-limit pubsub`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use commucat_ccp::{Frame, Problem};
use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, PubSubStream};
use tokio_util::sync::CancellationToken;

use super::{Message, error};
use crate::router::channels::ChannelLimits;
use crate::router::presence::{PresenceError, ROUTE_TTL};
use crate::router::presence_redis::REFRESH_IF_OWNED;
use crate::router::{Envelope, Hub};

/// First pause before re-subscribing after the connection is lost (doubling up to
/// [`MAX_BACKOFF`]).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two attempts to re-subscribe.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A pub/sub connection subscribed to `channels`.
pub(super) async fn subscribe(
    client: &redis::Client,
    channels: &[String],
) -> Result<PubSubStream, PresenceError> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await.map_err(error)?;
        pubsub.subscribe(channels).await.map_err(error)?;
        Ok(pubsub.into_on_message())
    };
    tokio::time::timeout(super::CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| PresenceError("redis: subscribing timed out".to_owned()))?
}

/// The receiving side of a node.
pub(super) struct Listener {
    pub(super) client: redis::Client,
    pub(super) connection: ConnectionManager,
    pub(super) prefix: String,
    pub(super) channels: [String; 2],
    pub(super) node: String,
    pub(super) hub: Arc<Hub>,
    pub(super) limits: ChannelLimits,
    pub(super) max_message_bytes: usize,
}

impl Listener {
    /// Applies messages from `stream`, and from new subscriptions whenever it ends, until
    /// `stop`.
    pub(super) async fn run(self, mut stream: PubSubStream, stop: CancellationToken) {
        loop {
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => return,
                    message = stream.next() => message,
                };
                let Some(message) = message else { break };
                self.receive(message.get_payload_bytes());
            }
            tracing::warn!(node = %self.node, "cluster subscription lost; re-subscribing");
            let mut pause = FIRST_BACKOFF;
            stream = loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                match subscribe(&self.client, &self.channels).await {
                    Ok(stream) => break stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "re-subscribing failed");
                        pause = (pause * 2).min(MAX_BACKOFF);
                    }
                }
            };
            tracing::info!(node = %self.node, "cluster subscription restored");
            // A restarted Redis may have lost the routes of this node's devices: without them
            // no doorbell finds them.
            self.reclaim_routes().await;
            // Doorbells published while this node was not subscribed are gone.
            self.hub.nudge_all();
        }
    }

    /// Records the route of every device connected here that has none (or still has this
    /// node's), as the sessions' refresh would at their next tick.
    async fn reclaim_routes(&self) {
        let devices = self.hub.online_devices();
        if devices.is_empty() {
            return;
        }
        let mut connection = self.connection.clone();
        for device in &devices {
            let set: Result<i64, _> = redis::cmd("EVAL")
                .arg(REFRESH_IF_OWNED)
                .arg(1)
                .arg(format!("{}route:{device}", self.prefix))
                .arg(&self.node)
                .arg(ROUTE_TTL.as_secs().max(1))
                .query_async(&mut connection)
                .await;
            if let Err(e) = set {
                tracing::warn!(%device, error = %e, "route not restored after re-subscribing");
                return;
            }
        }
        tracing::info!(
            devices = devices.len(),
            "routes of this node's devices restored"
        );
    }

    fn receive(&self, payload: &[u8]) {
        match Message::decode(payload, self.max_message_bytes) {
            Ok(message) => apply(&self.hub, &self.node, self.limits, message),
            Err(e) => tracing::warn!(error = %e, "cluster message refused"),
        }
    }
}

/// Applies one message from another node to this node's hub.
pub(super) fn apply(hub: &Hub, node: &str, limits: ChannelLimits, message: Message) {
    match message {
        Message::Members {
            channel,
            joined,
            left,
        } => {
            // A device with a session here speaks for itself through this node.
            let remote: Vec<&String> = left.iter().filter(|d| !hub.is_online(d)).collect();
            hub.channels(|c| {
                c.merge_remote(channel, joined.iter().map(String::as_str), limits);
                for device in remote {
                    if c.group_of(channel).is_none() {
                        c.leave(channel, device);
                    }
                }
            });
        }
        Message::Replay { devices } => hub.nudge(devices.iter().map(String::as_str)),
        Message::Frame {
            devices,
            sender,
            stamp,
            frame,
        } => {
            let Some(frame) = Message::frame_bytes(&frame)
                .ok()
                .and_then(|bytes| decode(&Bytes::from(bytes)))
            else {
                tracing::warn!(%sender, "forwarded frame undecodable; dropped");
                return;
            };
            let envelope = Envelope {
                frame,
                stamp,
                sender: Arc::from(sender),
            };
            hub.deliver(devices.iter().map(String::as_str), &envelope);
        }
        Message::Moved {
            device,
            origin,
            since,
        } => {
            if origin != node && hub.move_away(&device, since) {
                tracing::info!(%device, to = %origin, "device connected to another node; session here ended");
            }
        }
        Message::Ended {
            device,
            reason,
            detail,
        } => {
            let problem = Problem::new(reason.problem_kind()).with_detail(detail);
            if hub.disconnect(&device, problem) {
                tracing::info!(%device, ?reason, "device ended on another node; session here ended");
            }
        }
    }
}

/// The one whole frame in `bytes`.
fn decode(bytes: &Bytes) -> Option<Frame> {
    match Frame::decode(bytes) {
        Ok(Some((frame, used))) if used == bytes.len() => Some(frame),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{Delivery, Mailbox};
    use commucat_ccp::FrameType;

    const L: ChannelLimits = ChannelLimits {
        members: 8,
        per_device: 8,
    };

    #[test]
    fn membership_changes_merge_into_held_channels() {
        let hub = Hub::default();
        let (a, _a_rx) = Mailbox::new("s-a", 8, None);
        hub.register("a", a);
        hub.channels(|c| c.join(7, "a", true, [], L)).unwrap();
        let members = |joined: &[&str], left: &[&str]| Message::Members {
            channel: 7,
            joined: joined.iter().map(|d| (*d).to_owned()).collect(),
            left: left.iter().map(|d| (*d).to_owned()).collect(),
        };
        apply(&hub, "n1", L, members(&["b", "c"], &[]));
        let now = hub.channels(|c| c.members_if_member(7, "a")).unwrap();
        assert_eq!(now, ["a", "b", "c"]);
        // "a" is connected here: only its own session removes it.
        apply(&hub, "n1", L, members(&[], &["b", "a"]));
        let now = hub.channels(|c| c.members_if_member(7, "a")).unwrap();
        assert_eq!(now, ["a", "c"]);
    }

    #[test]
    fn messages_reach_the_sessions_they_name() {
        let hub = Hub::default();
        let (a, mut a_rx) = Mailbox::new("s-a", 8, None);
        hub.register("a", a.clone());
        apply(
            &hub,
            "n1",
            L,
            Message::Replay {
                devices: vec!["a".into(), "gone".into()],
            },
        );
        assert!(matches!(a_rx.try_recv(), Ok(Delivery::Replay)));

        let frame = Frame::new(FrameType::Typing, 7, 0, &b"{}"[..]).unwrap();
        let forwarded = Message::frame(vec!["a".into()], "b", 42, &frame.to_bytes());
        apply(&hub, "n1", L, forwarded);
        let Ok(Delivery::Frame(got)) = a_rx.try_recv() else {
            panic!("forwarded frame expected")
        };
        assert_eq!((got.frame, got.stamp, &*got.sender), (frame, 42, "b"));
        apply(
            &hub,
            "n1",
            L,
            Message::frame(vec!["a".into()], "b", 1, b"junk"),
        );
        assert!(a_rx.try_recv().is_err());

        // A move announced by this node itself, or older than the session here, changes nothing.
        let moved = |origin: &str, since| Message::Moved {
            device: "a".into(),
            origin: origin.into(),
            since,
        };
        apply(&hub, "n1", L, moved("n1", a.since + 1));
        apply(&hub, "n1", L, moved("n2", a.since));
        assert!(hub.is_online("a"));
        apply(&hub, "n1", L, moved("n2", a.since + 1));
        assert!(!hub.is_online("a"));
        assert!(matches!(a_rx.try_recv(), Ok(Delivery::Moved)));

        let (b, mut b_rx) = Mailbox::new("s-b", 8, None);
        hub.register("b", b);
        apply(
            &hub,
            "n1",
            L,
            Message::Ended {
                device: "b".into(),
                reason: super::super::EndReason::Revoked,
                detail: "revoked".into(),
            },
        );
        assert!(!hub.is_online("b"));
        let Ok(Delivery::Close(problem)) = b_rx.try_recv() else {
            panic!("closing ERROR expected")
        };
        assert_eq!(problem.detail.as_deref(), Some("revoked"));
    }
}
