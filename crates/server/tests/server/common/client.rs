//! An SDK session as a test drives it: receive with a deadline, wait for a frame of a kind
//! (keeping the others in order), ACKs and ERRORs about a sequence, JOINs.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use commucat_ccp::control::{Ack, Join};
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_client::transport::H2Stream;
use commucat_client::{DeviceIdentity, Session};
use serde_json::{Value, json};

use super::{Tapped, WAIT};

/// An SDK session plus a backlog of frames received while waiting for others.
pub struct Client {
    pub id: String,
    pub identity: DeviceIdentity,
    pub session: Session<Tapped<H2Stream>>,
    backlog: VecDeque<Frame>,
}

impl Client {
    /// A client for an established session.
    pub fn new(identity: DeviceIdentity, session: Session<Tapped<H2Stream>>) -> Self {
        Self {
            id: identity.device_id.clone(),
            identity,
            session,
            backlog: VecDeque::new(),
        }
    }

    /// The next frame (backlog first); panics after [`WAIT`] or if the stream ends.
    pub async fn recv(&mut self) -> Frame {
        match self.recv_within(WAIT).await {
            Some(frame) => frame,
            None => panic!("{}: no frame within {WAIT:?}", self.id),
        }
    }

    /// The next frame, or `None` if none arrives within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Frame> {
        if let Some(frame) = self.backlog.pop_front() {
            return Some(frame);
        }
        match tokio::time::timeout(wait, self.session.recv()).await {
            Ok(Ok(Some(frame))) => {
                self.acknowledge(&frame).await;
                Some(frame)
            }
            Ok(Ok(None)) => panic!("{}: server closed the stream", self.id),
            Ok(Err(e)) => panic!("{}: link failed: {e}", self.id),
            Err(_) => None,
        }
    }

    /// ACKs `frame` if the session negotiated `delivery-receipts` (a link already gone is
    /// ignored: the frame simply stays queued on the server).
    async fn acknowledge(&mut self, frame: &Frame) {
        if frame.frame_type() != FrameType::Ack && frame.frame_type() != FrameType::Error {
            let _ = self.session.acknowledge(frame).await;
        }
    }

    /// Reads until the server ends the stream; returns every frame (backlog first).
    pub async fn recv_until_closed(&mut self) -> Vec<Frame> {
        let mut frames: Vec<Frame> = self.backlog.drain(..).collect();
        loop {
            match tokio::time::timeout(WAIT, self.session.recv()).await {
                Ok(Ok(Some(frame))) => {
                    self.acknowledge(&frame).await;
                    frames.push(frame);
                }
                Ok(Ok(None) | Err(_)) => return frames,
                Err(_) => panic!("{}: stream still open after {WAIT:?}", self.id),
            }
        }
    }

    /// The first frame matching `wanted` (from the backlog or the stream); frames before it
    /// that do not match stay in the backlog, in order.
    pub async fn recv_matching(&mut self, what: &str, wanted: impl Fn(&Frame) -> bool) -> Frame {
        if let Some(i) = self.backlog.iter().position(&wanted) {
            return self.backlog.remove(i).unwrap();
        }
        loop {
            let frame = match tokio::time::timeout(WAIT, self.session.recv()).await {
                Ok(Ok(Some(frame))) => frame,
                Ok(Ok(None)) => panic!("{}: stream closed waiting for {what}", self.id),
                Ok(Err(e)) => panic!("{}: link failed waiting for {what}: {e}", self.id),
                Err(_) => panic!(
                    "{}: no {what} within {WAIT:?}; backlog {:?}",
                    self.id,
                    self.backlog.iter().map(describe).collect::<Vec<_>>()
                ),
            };
            self.acknowledge(&frame).await;
            if wanted(&frame) {
                return frame;
            }
            self.backlog.push_back(frame);
        }
    }

    /// The next frame of `frame_type` on `channel`.
    pub async fn recv_on(&mut self, frame_type: FrameType, channel: u32) -> Frame {
        self.recv_matching(&format!("{frame_type} on {channel}"), |f| {
            f.frame_type() == frame_type && f.channel_id() == channel
        })
        .await
    }

    /// Asserts that nothing arrives (and nothing is in the backlog) for `wait`, and that the
    /// connection is still open at the end: a closed stream or a failed connection is not quiet.
    pub async fn expect_quiet(&mut self, wait: Duration) {
        assert!(
            self.backlog.is_empty(),
            "{}: unexpected {:?}",
            self.id,
            self.backlog.iter().map(describe).collect::<Vec<_>>()
        );
        match tokio::time::timeout(wait, self.session.recv()).await {
            // Quiet: nothing arrived and the connection is still up.
            Err(_elapsed) => {}
            Ok(Ok(Some(frame))) => panic!("{}: unexpected {}", self.id, describe(&frame)),
            Ok(Ok(None)) => panic!(
                "{}: the server closed the stream instead of staying quiet",
                self.id
            ),
            Ok(Err(error)) => panic!(
                "{}: the connection failed instead of staying quiet: {error}",
                self.id
            ),
        }
    }

    /// Sends an opaque frame (MSG, KEY_UPDATE, VOICE/VIDEO); returns its sequence.
    pub async fn send(&mut self, frame_type: FrameType, channel: u32, payload: &[u8]) -> u32 {
        self.session
            .send_bytes(frame_type, channel, Bytes::copy_from_slice(payload))
            .await
            .unwrap()
    }

    /// Sends a control frame; returns its sequence.
    pub async fn control(&mut self, frame_type: FrameType, channel: u32, value: &Value) -> u32 {
        self.session
            .send_control(frame_type, channel, value)
            .await
            .unwrap()
    }

    /// Waits for the ACK of `sequence`; an ERROR about that sequence fails the test.
    pub async fn ack(&mut self, sequence: u32) -> Ack {
        let frame = self
            .recv_matching(&format!("ACK of {sequence}"), |f| {
                is_ack_of(f, sequence) || is_error_about(f, sequence)
            })
            .await;
        if frame.frame_type() == FrameType::Error {
            let problem: Problem = frame.parse_control().unwrap();
            panic!(
                "{}: ERROR instead of ACK of {sequence}: {problem:?}",
                self.id
            );
        }
        frame.parse_control().unwrap()
    }

    /// Waits for an ERROR about `sequence` and checks its title.
    pub async fn error(&mut self, sequence: u32, title: &str) -> Problem {
        let frame = self
            .recv_matching(&format!("ERROR about {sequence}"), |f| {
                is_ack_of(f, sequence) || is_error_about(f, sequence)
            })
            .await;
        assert_eq!(
            frame.frame_type(),
            FrameType::Error,
            "{}: ACK where {title} was expected",
            self.id
        );
        let problem: Problem = frame.parse_control().unwrap();
        assert_eq!(problem.title.as_deref(), Some(title), "{problem:?}");
        problem
    }

    /// Sends a MSG and waits for its ACK.
    pub async fn say(&mut self, channel: u32, text: &str) -> u32 {
        let sequence = self.send(FrameType::Msg, channel, text.as_bytes()).await;
        self.ack(sequence).await;
        sequence
    }

    /// JOINs `channel` (declaring only itself, like the deployed client) and returns the member
    /// list of the server's JOIN notice.
    pub async fn join(&mut self, channel: u32, relay: bool) -> Vec<String> {
        let members = json!({"members": [self.id], "relay": relay});
        self.join_with(channel, &members).await
    }

    /// JOINs with an explicit payload; returns the notice's member list.
    pub async fn join_with(&mut self, channel: u32, payload: &Value) -> Vec<String> {
        let sequence = self.control(FrameType::Join, channel, payload).await;
        self.ack(sequence).await;
        let notice: Join = self
            .recv_on(FrameType::Join, channel)
            .await
            .parse_control()
            .unwrap();
        notice.members
    }

    /// Waits for a JOIN notice on `channel` listing exactly `members`.
    pub async fn members_become(&mut self, channel: u32, members: &[&str]) {
        loop {
            let notice: Join = self
                .recv_on(FrameType::Join, channel)
                .await
                .parse_control()
                .unwrap();
            if notice.members == members {
                return;
            }
        }
    }

    /// Ends the stream (the server sees the client leave).
    pub fn close(self) {
        drop(self);
    }
}

fn is_ack_of(frame: &Frame, sequence: u32) -> bool {
    frame.frame_type() == FrameType::Ack
        && frame
            .parse_control::<Ack>()
            .is_ok_and(|a| a.ack == u64::from(sequence))
}

fn is_error_about(frame: &Frame, sequence: u32) -> bool {
    frame.frame_type() == FrameType::Error
        && frame
            .parse_control::<Problem>()
            .is_ok_and(|p| p.extensions.get("sequence") == Some(&json!(sequence)))
}

/// A short description of a frame for assertion messages.
pub fn describe(frame: &Frame) -> String {
    let payload = if frame.frame_type().is_control() {
        String::from_utf8_lossy(frame.payload()).into_owned()
    } else {
        format!("{} bytes", frame.payload().len())
    };
    format!(
        "{} ch{} #{} {payload}",
        frame.frame_type(),
        frame.channel_id(),
        frame.sequence()
    )
}

/// The JSON of a control frame.
pub fn json_of(frame: &Frame) -> Value {
    frame.parse_control().unwrap()
}
