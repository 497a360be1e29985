//! Devices served by other nodes of the deployment: the seam through which the relay reaches
//! them ([`Remote`]). The router only knows the trait; the Redis implementation lives in
//! [`crate::cluster`]. A single node has no remote ([`super::relay::Relay::remote`] is `None`).

use super::Envelope;

/// The other nodes of the deployment, as the relay sees them.
#[async_trait::async_trait]
pub trait Remote: Send + Sync + std::fmt::Debug {
    /// Frames were committed to the offline queue for `devices`: the nodes serving any of them
    /// (other than this one) are told to replay their queue. Waits while the node's outbound
    /// queue is full (back-pressure on the sender) but never fails: the frames are durable, and
    /// a doorbell that is lost only delays them until the device's next doorbell or reconnect.
    async fn ring(&self, devices: &[String]);

    /// Offers a live-only frame (typing, presence, notices, call signaling, media) to the
    /// `devices` other nodes serve. Dropped (and counted) when the outbound queue is full, like
    /// any live-only frame that finds no room.
    fn forward(&self, devices: &[String], envelope: &Envelope);
}
