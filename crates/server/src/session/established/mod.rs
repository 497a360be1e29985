//! The task of one established session: it alone owns the connection (codec, Noise transport,
//! sequence numbers). Inbound frames are dispatched to the handlers of this module's children;
//! frames from other sessions arrive through its bounded mailbox.
//!
//! - [`channels`](self::channels): JOIN, LEAVE, relay of MSG/KEY_UPDATE/GROUP_EVENT/TYPING, P2P
//!   candidates;
//! - [`groups`](self::groups): GROUP_CREATE, GROUP_INVITE, JOIN of group channels;
//! - [`presence`](self::presence): PRESENCE snapshots, their expiry and `offline` on disconnect;
//! - [`calls`](self::calls): CALL_* signaling and VOICE/VIDEO media relay;
//! - [`replay`](self::replay): replay on reconnect, deleting on proof of receipt;
//! - [`reply`](self::reply): ERROR answers, parsing control payloads, quota refusals;
//! - [`sender`](self::sender): sender fields of relayed payloads checked against the session.
//!
//! Where a frame goes (mailboxes, the offline queue, refused) is decided by the router's relay
//! service ([`crate::router::relay`]); handlers pick the recipients and answer the client.

mod admission;
mod calls;
mod channels;
mod federated;
mod groups;
mod messaging;
mod presence;
mod ratchet;
mod replay;
mod reply;
mod sender;
mod shared_channels;

pub use federated::{OUTBOX_FULL_TITLE, PEER_BLOCKED_TITLE};
pub use messaging::{BOUND_RECORDS_PER_SECOND, Messaging, MessagingSettings};
pub use presence::{ROUTE_REFRESH, ROUTE_TTL};
pub use sender::CHECKED as SENDER_CHECKED;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use commucat_ccp::control::{Ack, UserInfo};
use commucat_ccp::{Frame, FrameType, Problem, ProblemKind};
use commucat_link::{ByteStream, ConnError, Connection};
use commucat_store::UserRecord;

use super::handshake::Established;
use crate::config::Bound;
use crate::router::{Delivery, Envelope, Mailbox, MailboxReceiver, OverflowSignal, SessionStats};

/// Mailbox deliveries a session acts on between two inbound frames.
pub const MAILBOX_BURST: usize = 32;

/// How long the server keeps trying to deliver a closing ERROR to a client that does not read.
pub const CLOSING_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) use crate::clock::{secs, unix_now};

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client finished its stream.
    ClientClosed,
    /// The client sent ERROR.
    ClientError,
    /// A protocol violation or condition the server reports with this ERROR.
    Problem(Box<Problem>),
    /// The connection failed (I/O, malformed bytes, encryption).
    Conn(ConnError),
    /// A newer session of the same device took over.
    Replaced,
    /// The device connected to another node of the deployment, which serves it now.
    Moved,
}

impl End {
    fn problem(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self::Problem(Box::new(Problem::new(kind).with_detail(detail)))
    }

    fn slow_consumer(settings: &MessagingSettings, overflow: &OverflowSignal) -> Self {
        let waited = if overflow.by_bytes() {
            format!(
                "more than {} bytes of frames (bounds.mailbox_bytes)",
                settings.bounds.mailbox_bytes
            )
        } else {
            format!("more than {} frames", settings.mailbox_capacity)
        };
        Self::problem(
            ProblemKind::SlowConsumer,
            format!(
                "{waited} waited for this client; they were queued for delivery after it \
                 reconnects"
            ),
        )
    }
}

struct SessionTask<S> {
    conn: Connection<S>,
    m: Arc<Messaging>,
    device_id: String,
    session_id: String,
    user: UserRecord,
    /// The client's socket address as observed by the server.
    remote: Option<SocketAddr>,
    /// Raised by the hub if this session's mailbox overflowed.
    overflow: Arc<OverflowSignal>,
    /// When its mailbox was made (Unix microseconds; see [`Mailbox::since`]).
    since: i64,
    /// Frames in and out, listed for the operator.
    stats: Arc<SessionStats>,
    /// When the PRESENCE snapshot this session published expires.
    presence_deadline: Option<tokio::time::Instant>,
    /// The earliest ring deadline of the ringing calls this device offered.
    ring_deadline: Option<tokio::time::Instant>,
    /// Frames taken from the mailbox but not written; queued offline when the session ends.
    unsent: Vec<Envelope>,
    /// Replayed envelopes and (with receipts) live frames not yet proven received.
    in_flight: replay::InFlight,
}

/// Runs the session until the client leaves or fails; always unregisters it, queues what it
/// could not deliver, and (unless a newer session took over) ends its calls and announces it
/// `offline`.
pub async fn run<S: ByteStream>(
    conn: Connection<S>,
    established: Established,
    messaging: Arc<Messaging>,
    remote: &str,
    mode: &'static str,
) {
    let stats = Arc::new(SessionStats::new(
        established.user.user_id.clone(),
        established.user.handle.clone(),
        mode,
        unix_now(),
    ));
    let (mailbox, mut rx) = Mailbox::bounded(
        established.session_id.clone(),
        messaging.settings.mailbox_capacity,
        crate::config::as_usize(messaging.settings.bounds.mailbox_bytes),
        remote.parse().ok(),
    );
    let mailbox = mailbox.with_stats(Arc::clone(&stats));
    let overflow = Arc::clone(&mailbox.overflow);
    let since = mailbox.since;
    if let Some(old) = messaging.hub.register(&established.device_id, mailbox) {
        tracing::info!(device = %established.device_id, old_session = %old.session_id, "device reconnected; older session replaced");
    }
    presence::claim_route(&messaging, &established.device_id, since).await;
    // Calls a replaced session of this device offered still ring; this one ends them.
    let ring_deadline = messaging
        .hub
        .calls(|c| c.next_ring_deadline(&established.device_id))
        .map(tokio::time::Instant::from_std);
    let in_flight = replay::InFlight::new(
        established
            .accepted_capabilities
            .iter()
            .any(|c| c == super::handshake::CAP_DELIVERY_RECEIPTS),
        messaging.settings.bounds.unconfirmed_frames,
        messaging.settings.bounds.unconfirmed_bytes,
    );
    let mut conn = conn;
    // A `pq-hybrid` session re-keys on the server's schedule (see `ratchet`).
    conn.codec_mut()
        .schedule_ratchet(messaging.settings.pq_ratchet, std::time::Instant::now());
    let mut task = SessionTask {
        conn,
        m: messaging,
        device_id: established.device_id,
        session_id: established.session_id,
        user: established.user,
        remote: remote.parse().ok(),
        overflow,
        since,
        stats,
        presence_deadline: None,
        ring_deadline,
        unsent: Vec::new(),
        in_flight,
    };
    // Registered first, confirmed second: a revocation cannot slip between the two.
    let admitted = admission::confirm(&task.m, &task.device_id, &task.session_id).await;
    let end = match admitted {
        Ok(()) => match task.replay().await {
            Ok(()) => task.run(&mut rx).await,
            Err(end) => end,
        },
        Err(end) => end,
    };
    task.finish(end, rx, remote).await;
}

/// How often a connected session moves its stored expiry forward: a quarter of the TTL, between
/// 1 s and 5 min, so the stored expiry stays at least three quarters of the TTL ahead.
#[must_use]
pub fn refresh_interval(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

impl<S: ByteStream> SessionTask<S> {
    async fn run(&mut self, mailbox: &mut MailboxReceiver) -> End {
        let overflow = Arc::clone(&self.overflow);
        let every = refresh_interval(self.m.settings.session_ttl);
        let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut route_refresh = tokio::time::interval_at(
            tokio::time::Instant::now() + presence::ROUTE_REFRESH,
            presence::ROUTE_REFRESH,
        );
        route_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Handle everything already received before waiting again; between two inbound
            // frames, what waits in the mailbox is written too, so a client that keeps sending
            // (receipts, MSGs) never starves the frames relayed to it.
            loop {
                if let Err(end) = self.drain_mailbox(mailbox).await {
                    return end;
                }
                match self.conn.next_buffered() {
                    Ok(Some(frame)) => {
                        if let Err(end) = self.inbound(frame).await {
                            return end;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return End::Conn(e),
                }
            }
            if let Err(end) = self.ratchet_if_due().await {
                return end;
            }
            let ratchet_deadline = self
                .conn
                .codec_mut()
                .ratchet_deadline()
                .map(tokio::time::Instant::from_std);
            let (presence_deadline, ring_deadline) = (self.presence_deadline, self.ring_deadline);
            let step = tokio::select! {
                filled = self.conn.fill() => match filled {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(End::ClientClosed),
                    Err(e) => Err(End::Conn(e)),
                },
                delivery = mailbox.recv() => match delivery {
                    Some(delivery) => self.delivered(delivery).await,
                    // Every sender is gone: the hub dropped this session, for a newer one or
                    // because it did not keep up.
                    None if overflow.is_raised() => {
                        Err(End::slow_consumer(&self.m.settings, &overflow))
                    }
                    None => Err(End::Replaced),
                },
                () = overflow.raised() => {
                    Err(End::slow_consumer(&self.m.settings, &overflow))
                }
                () = presence::expiry(presence_deadline) => self.expire_presence().await,
                () = presence::expiry(ring_deadline) => self.expire_rings().await,
                () = presence::expiry(ratchet_deadline) => self.ratchet_if_due().await,
                _ = refresh.tick() => self.refresh_session().await,
                _ = route_refresh.tick() => {
                    // On its own task: a slow registry never holds up this session's frames.
                    let (m, device, since) = (Arc::clone(&self.m), self.device_id.clone(), self.since);
                    #[allow(clippy::disallowed_methods, reason = "nothing to drain: a refresh")]
                    tokio::spawn(async move { presence::refresh_route(&m, &device, since).await });
                    Ok(())
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Acts on one delivery from the mailbox.
    async fn delivered(&mut self, delivery: Delivery) -> Result<(), End> {
        match delivery {
            Delivery::Frame(envelope) => self.forward(envelope).await,
            Delivery::Replay => self.replay().await,
            Delivery::Close(problem) => Err(End::Problem(problem)),
            Delivery::Moved => Err(End::Moved),
        }
    }

    /// Acts on up to [`MAILBOX_BURST`] deliveries already waiting in the mailbox, without
    /// waiting for more. Called between inbound frames: `tokio::select!` alone let a client
    /// that kept the connection busy (a receipt for every frame, each costing store round
    /// trips) starve the mailbox, so frames relayed to it waited there unwritten until the
    /// session ended — and were lost if it never ended cleanly.
    async fn drain_mailbox(&mut self, mailbox: &mut MailboxReceiver) -> Result<(), End> {
        for _ in 0..MAILBOX_BURST {
            match mailbox.try_recv() {
                Ok(delivery) => self.delivered(delivery).await?,
                // Empty, or closed (the `select!` sees the end and says why).
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// Moves the stored session's expiry to now + TTL (one indexed UPDATE), so the session id
    /// stays a valid bearer token while the session is connected. A session row that is gone
    /// because the device was revoked ends the session.
    async fn refresh_session(&mut self) -> Result<(), End> {
        let key = crate::registry::session_key(&self.session_id);
        let expires_at = unix_now().saturating_add(secs(self.m.settings.session_ttl));
        match self.m.store.extend_session(&key, expires_at).await {
            Ok(()) => Ok(()),
            Err(commucat_store::StoreError::NotFound { .. }) => {
                match self.m.store.device(&self.device_id).await {
                    Ok(Some(device)) if device.status == commucat_store::DeviceStatus::Active => {
                        tracing::warn!(device = %self.device_id, "stored session vanished; bearer token no longer valid");
                        Ok(())
                    }
                    Ok(_) => Err(End::problem(
                        ProblemKind::DeviceRevoked,
                        "this device has been revoked",
                    )),
                    Err(e) => {
                        tracing::warn!(device = %self.device_id, error = %e, "device lookup failed");
                        Ok(())
                    }
                }
            }
            Err(e) => {
                tracing::warn!(device = %self.device_id, error = %e, "session refresh failed");
                Ok(())
            }
        }
    }

    /// Writes a frame; gives up as soon as the hub reports this session too slow (the client
    /// does not read, so the write may never finish).
    async fn write(&mut self, frame: &Frame) -> Result<(), End> {
        let overflow = Arc::clone(&self.overflow);
        let sent = tokio::select! {
            biased;
            sent = self.conn.send(frame) => sent.map_err(End::Conn),
            () = overflow.raised() => {
                Err(End::slow_consumer(&self.m.settings, &overflow))
            }
        };
        if sent.is_ok() {
            let fec = self.conn.codec_mut().take_fec_symbols_sent();
            if fec > 0 {
                self.m.hub.metrics.fec_packets.inc_by(fec);
            }
            self.m.hub.metrics.frames_out.count(frame.frame_type());
            self.stats.frame_out();
        }
        sent
    }

    /// Sends a frame from the mailbox under this connection's next sequence number; if that
    /// fails it is kept for the offline queue.
    ///
    /// A delivered frame's relay latency is the time since its stamp (the sender's session
    /// took it, in Unix microseconds) until the write completed.
    ///
    /// Towards a client with `delivery-receipts` the written frame stays in flight until a
    /// receipt covers it (see [`replay`](self::replay)); too many unconfirmed make the client a
    /// slow consumer.
    async fn forward(&mut self, envelope: Envelope) -> Result<(), End> {
        let sequence = match self.next_sequence() {
            Ok(sequence) => sequence,
            Err(end) => {
                self.unsent.push(envelope);
                return Err(end);
            }
        };
        if let Err(end) = self.write(&envelope.frame.with_sequence(sequence)).await {
            self.unsent.push(envelope);
            return Err(end);
        }
        let waited = crate::clock::unix_micros_now().saturating_sub(envelope.stamp);
        let waited = u64::try_from(waited).unwrap_or(0);
        self.m
            .hub
            .metrics
            .relay_latency
            .observe(Duration::from_micros(waited));
        let Err(bound) = self.in_flight.hold(sequence, envelope) else {
            return Ok(());
        };
        let bounds = &self.m.settings.bounds;
        let detail = format!(
            "more than {} frames or {} bytes written to this client were not confirmed by a \
             receipt (bounds.unconfirmed_frames, bounds.unconfirmed_bytes); they were queued \
             for delivery after it reconnects",
            bounds.unconfirmed_frames, bounds.unconfirmed_bytes
        );
        self.m.refuse(bound, &self.device_id, &detail);
        Err(End::problem(ProblemKind::SlowConsumer, detail))
    }

    /// The next sequence number, keeping `u32::MAX` for the closing ERROR.
    fn next_sequence(&mut self) -> Result<u32, End> {
        if self.conn.codec_mut().sequence_nearly_exhausted() {
            return Err(End::problem(
                ProblemKind::SequenceExhausted,
                "sequence numbers exhausted; reconnect to reset them",
            ));
        }
        self.conn
            .codec_mut()
            .next_sequence()
            .map_err(|e| End::Conn(e.into()))
    }

    async fn send_control<T: serde::Serialize>(
        &mut self,
        frame_type: FrameType,
        channel: u32,
        value: &T,
    ) -> Result<(), End> {
        let sequence = self.next_sequence()?;
        let frame = Frame::control(frame_type, channel, sequence, value)
            .map_err(|e| End::Conn(e.into()))?;
        self.write(&frame).await
    }

    /// ACKs `frame` with `ack` (whose `ack` field is set here).
    async fn ack_with(&mut self, frame: &Frame, ack: Ack) -> Result<(), End> {
        let ack = Ack {
            ack: u64::from(frame.sequence()),
            ..ack
        };
        self.send_control(FrameType::Ack, frame.channel_id(), &ack)
            .await
    }

    async fn ack(&mut self, frame: &Frame) -> Result<(), End> {
        self.ack_with(frame, Ack::default()).await
    }

    /// The profile peers see in this device's presence snapshots.
    fn user_info(&self) -> UserInfo {
        UserInfo::profile(
            self.user.user_id.clone(),
            self.user.handle.clone(),
            self.user.display_name.clone(),
            self.user.avatar_url.clone(),
        )
    }

    async fn inbound(&mut self, frame: Frame) -> Result<(), End> {
        self.m.hub.metrics.frames_in.count(frame.frame_type());
        self.stats.frame_in();
        match frame.frame_type() {
            // Handshake leftovers (an IK client's empty AUTH) and client ACKs need no answer.
            FrameType::Hello | FrameType::Auth => Ok(()),
            FrameType::Ack => self.receipt(&frame).await,
            FrameType::Error => Err(End::ClientError),
            FrameType::Join => self.join(&frame).await,
            FrameType::Leave => self.leave(&frame).await,
            FrameType::Msg | FrameType::KeyUpdate | FrameType::GroupEvent => {
                self.relay_envelope(&frame).await
            }
            FrameType::Typing => self.relay_typing(&frame).await,
            FrameType::Presence => self.presence(&frame).await,
            FrameType::GroupCreate => self.group_create(&frame).await,
            FrameType::GroupInvite => self.group_invite(&frame).await,
            FrameType::CallOffer => self.call_offer(&frame).await,
            FrameType::CallAnswer => self.call_answer(&frame).await,
            FrameType::CallEnd => self.call_end(&frame).await,
            FrameType::CallStats => self.call_stats(&frame).await,
            FrameType::VoiceFrame | FrameType::VideoFrame => self.media(&frame).await,
            other => {
                self.reject(
                    &frame,
                    ProblemKind::UnexpectedFrame,
                    format!("{other} is not handled by this server"),
                )
                .await
            }
        }
    }

    /// Unregisters the session, queues the frames it could not deliver, tells peers it left
    /// (unless a newer session took over), and sends the closing ERROR if there is one.
    async fn finish(mut self, end: End, mut rx: MailboxReceiver, remote: &str) {
        let successor = self.m.hub.unregister(&self.device_id, &self.session_id);
        rx.close();
        if self.overflow.by_bytes() {
            self.m.refuse(
                Bound::MailboxBytes,
                &self.device_id,
                "frames waiting for the session passed bounds.mailbox_bytes",
            );
        }
        // Written but never confirmed, then taken but not written, then still in the mailbox:
        // the order they were relayed in.
        let mut leftovers = self.in_flight.take_live();
        leftovers.append(&mut self.unsent);
        while let Ok(delivery) = rx.try_recv() {
            if let Delivery::Frame(envelope) = delivery {
                leftovers.push(envelope);
            }
        }
        let requeued = self.m.relay().requeue(&self.device_id, leftovers).await;
        self.settle_replay(matches!(end, End::ClientClosed)).await;
        if requeued > 0 {
            // A session of this device may have registered (and replayed) before these were
            // stored, whether or not it replaced this one, here or on another node: it replays
            // them now.
            self.m.hub.nudge([self.device_id.as_str()]);
            self.m.relay().ring(&[self.device_id.clone()]).await;
        }
        if successor.is_none() && matches!(end, End::Moved) {
            // The node it moved to owns its route and presence now.
            self.m.hub.release_idle_channels(&self.device_id, None);
            calls::end_calls_of(&self.m, &self.device_id).await;
        } else if successor.is_none() {
            self.m.hub.release_idle_channels(&self.device_id, None);
            calls::end_calls_of(&self.m, &self.device_id).await;
            // A session of the device that started here meanwhile owns the route now.
            if !self.m.hub.is_online(&self.device_id) {
                presence::withdraw_route(&self.m, &self.device_id).await;
            }
            presence::announce_offline(&self.m, &self.device_id, self.user_info()).await;
        }
        let device = &self.device_id;
        match &end {
            End::ClientClosed | End::ClientError | End::Replaced | End::Moved => {
                tracing::info!(device = %device, remote, reason = ?end, requeued, "session ended");
            }
            End::Problem(problem) => {
                tracing::warn!(device = %device, remote, requeued, title = problem.title.as_deref().unwrap_or(""), detail = problem.detail.as_deref().unwrap_or(""), "session ended by the server");
                self.send_closing(problem).await;
            }
            End::Conn(error) => {
                tracing::info!(device = %device, remote, %error, requeued, "session connection failed");
                match error {
                    ConnError::Stream(commucat_link::StreamError::Codec(codec)) => {
                        // Malformed input: say why before closing, as far as the stream still
                        // carries it.
                        self.send_closing(&Problem::from(codec)).await;
                    }
                    ConnError::Stream(commucat_link::StreamError::Fec(fec)) => {
                        // A malformed FEC unit or symbol: the same, as an FEC-encoded ERROR.
                        let problem = Problem::new(commucat_ccp::ProblemKind::UnexpectedFrame)
                            .with_detail(fec.to_string());
                        self.send_closing(&problem).await;
                    }
                    _ => {}
                }
                if let ConnError::Stream(commucat_link::StreamError::Obfuscation(obf)) = error {
                    self.integrity_failure(obf, remote).await;
                }
            }
        }
    }

    /// An `adaptive-obf` wrapper failed: counted, logged, ledgered, and answered with the
    /// terminal ERROR (`IntegrityCheckFailed`, or the codec's title for a malformed frame
    /// inside an authentic wrapper).
    async fn integrity_failure(&mut self, error: &commucat_link::obf::ObfError, remote: &str) {
        if error.is_integrity() {
            self.m.hub.metrics.obf_integrity_failures.inc();
            tracing::warn!(device = %self.device_id, remote, %error, "adaptive-obf integrity check failed");
            let device = self.device_id.clone();
            let detail = error.to_string();
            self.m.ledger.record("obfuscation", || {
                serde_json::json!({
                    "result": "failure",
                    "title": commucat_link::obf::INTEGRITY_TITLE,
                    "device": device,
                    "remote_addr": remote,
                    "detail": detail,
                })
            });
        }
        self.send_closing(&error.problem()).await;
    }

    /// Sends the closing ERROR, giving a client that does not read a bounded time to take it.
    async fn send_closing(&mut self, problem: &Problem) {
        match tokio::time::timeout(CLOSING_WRITE_TIMEOUT, self.conn.send_problem(problem)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "could not deliver the closing ERROR"),
            Err(_) => tracing::debug!("client did not take the closing ERROR in time"),
        }
    }
}

#[cfg(test)]
mod tests;
