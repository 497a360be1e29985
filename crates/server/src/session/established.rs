//! The task of one established session: it alone owns the connection (codec, Noise transport,
//! sequence numbers). Inbound frames are routed through the [`Hub`]; frames from other
//! sessions arrive through its bounded mailbox.

use std::sync::Arc;

use ccp::control::{Ack, Join, Leave};
use ccp::{Frame, FrameType, Problem, ProblemKind};
use commucat_link::{ByteStream, ConnError, Connection};
use serde_json::Value;
use tokio::sync::mpsc;

use super::handshake::Established;
use crate::router::{Delivery, Handoff, Hub, MAILBOX_CAPACITY, Mailbox};

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client finished its stream.
    ClientClosed,
    /// The client sent ERROR.
    ClientError,
    /// A protocol violation the server reported with this ERROR.
    Problem(Box<Problem>),
    /// The connection failed (I/O, malformed bytes, encryption).
    Conn(ConnError),
    /// A newer session of the same device took over.
    Replaced,
}

struct SessionTask<S> {
    conn: Connection<S>,
    hub: Arc<Hub>,
    device_id: String,
    session_id: String,
    /// Set by the hub if this session's mailbox overflowed.
    overflowed: Arc<std::sync::atomic::AtomicBool>,
}

/// Runs the session until the client leaves or fails; always unregisters it.
pub async fn run<S: ByteStream>(
    conn: Connection<S>,
    established: Established,
    hub: Arc<Hub>,
    remote: &str,
) {
    let (mailbox, mut rx) = Mailbox::new(established.session_id.clone(), MAILBOX_CAPACITY);
    let overflowed = Arc::clone(&mailbox.overflowed);
    if let Some(old) = hub.register(&established.device_id, mailbox) {
        tracing::info!(device = %established.device_id, old_session = %old.session_id, "device reconnected; older session replaced");
    }
    let mut task = SessionTask {
        conn,
        hub: Arc::clone(&hub),
        device_id: established.device_id,
        session_id: established.session_id,
        overflowed,
    };
    let end = task.run(&mut rx).await;
    hub.unregister(&task.device_id, &task.session_id);
    match &end {
        End::ClientClosed | End::ClientError | End::Replaced => {
            tracing::info!(device = %task.device_id, remote, reason = ?end, "session ended");
        }
        End::Problem(problem) => {
            tracing::warn!(device = %task.device_id, remote, title = problem.title.as_deref().unwrap_or(""), detail = problem.detail.as_deref().unwrap_or(""), "session ended by the server");
            if let Err(e) = task.conn.send_problem(problem).await {
                tracing::debug!(error = %e, "could not deliver the closing ERROR");
            }
        }
        End::Conn(error) => {
            tracing::info!(device = %task.device_id, remote, %error, "session connection failed");
            if let ConnError::Stream(commucat_link::StreamError::Codec(codec)) = error {
                // Malformed input: say why before closing, as far as the stream still carries it.
                let _ = task.conn.send_problem(&Problem::from(codec)).await;
            }
        }
    }
}

impl<S: ByteStream> SessionTask<S> {
    async fn run(&mut self, mailbox: &mut mpsc::Receiver<Delivery>) -> End {
        loop {
            // Handle everything already received before waiting again.
            loop {
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
            tokio::select! {
                filled = self.conn.fill() => match filled {
                    Ok(true) => {}
                    Ok(false) => return End::ClientClosed,
                    Err(e) => return End::Conn(e),
                },
                delivery = mailbox.recv() => match delivery {
                    Some(Delivery::Frame(frame)) => {
                        if let Err(end) = self.send_resequenced(&frame).await {
                            return end;
                        }
                    }
                    // Every sender is gone: the hub dropped this session, for a newer one or
                    // because it did not keep up.
                    None if self.overflowed.load(std::sync::atomic::Ordering::Acquire) => {
                        return End::Problem(Box::new(
                            Problem::new(ProblemKind::SlowConsumer).with_detail(format!(
                                "more than {MAILBOX_CAPACITY} frames waited for this client; reconnect"
                            )),
                        ));
                    }
                    None => return End::Replaced,
                },
            }
        }
    }

    /// Sends a frame from elsewhere under this connection's next sequence number.
    async fn send_resequenced(&mut self, frame: &Frame) -> Result<(), End> {
        let sequence = self.next_sequence()?;
        self.conn
            .send(&frame.with_sequence(sequence))
            .await
            .map_err(End::Conn)
    }

    /// The next sequence number, keeping `u32::MAX` for the closing ERROR.
    fn next_sequence(&mut self) -> Result<u32, End> {
        if self.conn.codec_mut().sequence_nearly_exhausted() {
            return Err(End::Problem(Box::new(
                Problem::new(ProblemKind::SequenceExhausted)
                    .with_detail("sequence numbers exhausted; reconnect to reset them"),
            )));
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
        self.conn.send(&frame).await.map_err(End::Conn)
    }

    async fn ack(&mut self, frame: &Frame) -> Result<(), End> {
        self.send_control(
            FrameType::Ack,
            frame.channel_id(),
            &Ack::sequence(u64::from(frame.sequence())),
        )
        .await
    }

    /// Reports a problem with one frame and keeps the session.
    async fn reject(
        &mut self,
        frame: &Frame,
        kind: ProblemKind,
        detail: String,
    ) -> Result<(), End> {
        let problem = Problem::new(kind)
            .with_detail(detail)
            .with_extension("sequence", frame.sequence())
            .with_extension("channel", frame.channel_id())
            .with_extension("frame_type", frame.frame_type().label());
        self.send_control(FrameType::Error, frame.channel_id(), &problem)
            .await
    }

    async fn inbound(&mut self, frame: Frame) -> Result<(), End> {
        match frame.frame_type() {
            // Handshake leftovers (an IK client's empty AUTH) and client ACKs need no answer.
            FrameType::Hello | FrameType::Auth | FrameType::Ack => Ok(()),
            FrameType::Error => Err(End::ClientError),
            FrameType::Join => self.join(&frame).await,
            FrameType::Leave => self.leave(&frame).await,
            FrameType::Msg | FrameType::KeyUpdate | FrameType::GroupEvent => {
                self.relay(&frame, frame.clone()).await
            }
            FrameType::Typing => {
                let relayed = match with_sender(&frame, &self.device_id) {
                    Ok(relayed) => relayed,
                    Err(detail) => {
                        return self
                            .reject(&frame, ProblemKind::InvalidControlPayload, detail)
                            .await;
                    }
                };
                self.relay(&frame, relayed).await
            }
            other => {
                self.reject(
                    &frame,
                    ProblemKind::UnexpectedFrame,
                    format!("{other} is not handled by this server yet"),
                )
                .await
            }
        }
    }

    async fn join(&mut self, frame: &Frame) -> Result<(), End> {
        let join: Join = match frame.parse_control() {
            Ok(join) => join,
            Err(e) => {
                return self
                    .reject(
                        frame,
                        ProblemKind::InvalidControlPayload,
                        format!("JOIN: {e}"),
                    )
                    .await;
            }
        };
        if join.group_id.is_some() {
            return self
                .reject(
                    frame,
                    ProblemKind::UnexpectedFrame,
                    "group channels are not handled by this server yet".to_owned(),
                )
                .await;
        }
        let channel = frame.channel_id();
        let devices =
            std::iter::once(self.device_id.as_str()).chain(join.members.iter().map(String::as_str));
        let members = self.hub.join(channel, devices);
        self.ack(frame).await?;
        // Every member (the joiner included) learns the full member list (wire-compat §7.4a).
        let notice = Join {
            members: members.clone(),
            relay: join.relay,
            group_id: None,
            name: join.name,
        };
        let notice = Frame::control(FrameType::Join, channel, 0, &notice)
            .map_err(|e| End::Conn(e.into()))?;
        self.deliver(&members, &notice);
        Ok(())
    }

    async fn leave(&mut self, frame: &Frame) -> Result<(), End> {
        let channel = frame.channel_id();
        match self.hub.leave(channel, &self.device_id) {
            Some(remaining) => {
                self.ack(frame).await?;
                let notice = Leave {
                    device: Some(self.device_id.clone()),
                    device_id: None,
                };
                let notice = Frame::control(FrameType::Leave, channel, 0, &notice)
                    .map_err(|e| End::Conn(e.into()))?;
                self.deliver(&remaining, &notice);
                Ok(())
            }
            None => {
                self.reject(
                    frame,
                    ProblemKind::NotChannelMember,
                    format!("not a member of channel {channel}"),
                )
                .await
            }
        }
    }

    /// Relays `relayed` (the frame as recipients get it) to the other members, then ACKs.
    async fn relay(&mut self, frame: &Frame, relayed: Frame) -> Result<(), End> {
        let channel = frame.channel_id();
        let Some(members) = self.hub.members_if_member(channel, &self.device_id) else {
            return self
                .reject(
                    frame,
                    ProblemKind::NotChannelMember,
                    format!("JOIN channel {channel} before sending to it"),
                )
                .await;
        };
        let others = members.iter().filter(|m| **m != self.device_id);
        self.deliver(others, &relayed);
        self.ack(frame).await
    }

    fn deliver<'a>(&self, recipients: impl IntoIterator<Item = &'a String>, frame: &Frame) {
        for (device, outcome) in self
            .hub
            .deliver(recipients.into_iter().map(String::as_str), frame)
        {
            if outcome == Handoff::Overflow {
                tracing::warn!(%device, "mailbox full: recipient is not reading");
            }
        }
    }
}

/// A TYPING frame with the sender's device id set, as deployed clients require.
fn with_sender(frame: &Frame, device_id: &str) -> Result<Frame, String> {
    let mut value: Value = frame.parse_control().map_err(|e| format!("TYPING: {e}"))?;
    let Some(object) = value.as_object_mut() else {
        return Err("TYPING payload must be a JSON object".to_owned());
    };
    object.insert("device".to_owned(), Value::String(device_id.to_owned()));
    Frame::control(
        FrameType::Typing,
        frame.channel_id(),
        frame.sequence(),
        &value,
    )
    .map_err(|e| e.to_string())
}
