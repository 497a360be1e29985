//! A session that survives the loss of its server node.
//!
//! [`ReconnectingSession`] holds the addresses of several nodes of one deployment (or one
//! load-balanced address). When the link fails or the server ends the stream, the next
//! [`send`](ReconnectingSession::send_bytes) or [`recv`](ReconnectingSession::recv) connects
//! again — to the next address, after a delay growing exponentially from
//! [`Backoff::initial`] to [`Backoff::max`] with random jitter (half to all of the delay) —
//! runs the handshake with the same identity and options, JOINs again every channel the
//! application joined (and did not leave), and sends again every frame the server had not
//! acknowledged yet. A node loss is then invisible to the application apart from latency and
//! possible repeats of frames whose receipt was lost with the node (the server replays them
//! byte-identical; deduplicate by message id).
//!
//! Numbering: the sequence numbers the application gets from `send_*` are this session's own
//! (they stay valid across reconnects); ACK and ERROR frames about a frame the application
//! sent are handed back rewritten to name that number.
//!
//! Every frame handed to the application is confirmed to the server at once when
//! `delivery-receipts` was negotiated (the server may then delete its queued copy).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use commucat_ccp::control::Ack;
use commucat_ccp::{Frame, FrameType, Problem};
use serde::Serialize;

use crate::ClientError;
use crate::handshake::{DeviceIdentity, HandshakeOptions, ServerParams};
use crate::session::Session;
use crate::tls::TlsTrust;
use crate::transport::{self, H2Stream};

/// Most frames sent and not yet acknowledged (kept to send again after a reconnect).
pub const MAX_IN_FLIGHT: usize = 1024;
/// Most channels remembered to JOIN again after a reconnect.
pub const MAX_JOINED: usize = 1024;

/// Delays between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first attempt after a loss (doubled after every failed attempt).
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Failed attempts in a row after which the session gives up and returns the last error.
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(5),
            attempts: 30,
        }
    }
}

impl Backoff {
    /// The delay before attempt `n` (0-based): `initial · 2ⁿ` capped at `max`, then a random
    /// point between half of it and all of it (so clients of a lost node spread out).
    #[must_use]
    pub fn delay(&self, n: u32) -> Duration {
        let full = self
            .initial
            .saturating_mul(1u32.checked_shl(n.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        let random = RandomState::new().build_hasher().finish();
        #[allow(clippy::cast_precision_loss, reason = "a jitter fraction")]
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
        full.mul_f64(0.5 + fraction / 2.0)
    }
}

/// How to reach the deployment.
#[derive(Debug, Clone)]
pub struct ReconnectOptions {
    /// Node addresses, tried in turn (one address behind a load balancer is fine too).
    pub addrs: Vec<SocketAddr>,
    /// TLS server name.
    pub server_name: String,
    /// TLS trust.
    pub trust: TlsTrust,
    /// The deployment's Noise parameters.
    pub server: ServerParams,
    /// Handshake options, used for every connection.
    pub handshake: HandshakeOptions,
    /// Reconnect delays.
    pub backoff: Backoff,
}

/// A frame sent and not acknowledged yet.
#[derive(Debug)]
struct InFlight {
    /// Its sequence number on the current connection.
    wire: u32,
    /// The application's number; `None` for a JOIN this session sent again by itself.
    id: Option<u32>,
    frame_type: FrameType,
    channel: u32,
    payload: Bytes,
}

/// A session that reconnects by itself; see the [module documentation](self).
#[derive(Debug)]
pub struct ReconnectingSession {
    options: ReconnectOptions,
    identity: DeviceIdentity,
    session: Option<Session<H2Stream>>,
    /// Index into `options.addrs` of the node in use (or to try next).
    node: usize,
    next_id: u32,
    in_flight: VecDeque<InFlight>,
    /// JOIN payloads by channel, sent again after a reconnect.
    joined: BTreeMap<u32, Bytes>,
    /// Whether a session was ever established (later ones count as reconnects).
    established: bool,
    reconnects: u64,
}

impl ReconnectingSession {
    /// Connects to the first address that accepts (with the backoff between attempts).
    ///
    /// # Errors
    /// No address given, the server's refusal of the handshake, or every attempt failed.
    pub async fn connect(
        identity: DeviceIdentity,
        options: ReconnectOptions,
    ) -> Result<Self, ClientError> {
        if options.addrs.is_empty() {
            return Err(ClientError::Config(
                "no server address to connect to".into(),
            ));
        }
        let mut this = Self {
            options,
            identity,
            session: None,
            node: 0,
            next_id: 0,
            in_flight: VecDeque::new(),
            joined: BTreeMap::new(),
            established: false,
            reconnects: 0,
        };
        this.establish().await?;
        Ok(this)
    }

    /// How many times the session was established again after a loss.
    #[must_use]
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The address of the node currently (or last) in use.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        let addrs = &self.options.addrs;
        addrs
            .get(self.node % addrs.len().max(1))
            .or(addrs.first())
            .copied()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Frames sent and not yet acknowledged.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends a frame with a raw payload (control JSON or opaque bytes); returns this session's
    /// number for it, which the ACK or ERROR about it will name. A JOIN is remembered (and a
    /// LEAVE forgets it) to be sent again after a reconnect.
    ///
    /// # Errors
    /// [`ClientError::Config`] when [`MAX_IN_FLIGHT`] frames await their ACK or
    /// [`MAX_JOINED`] channels are joined; a payload over the limits; reconnecting failed.
    pub async fn send_bytes(
        &mut self,
        frame_type: FrameType,
        channel: u32,
        payload: impl Into<Bytes>,
    ) -> Result<u32, ClientError> {
        let payload = payload.into();
        // Checked here: what fails to send after this is the link's fault.
        Frame::new(frame_type, channel, 1, payload.clone())
            .map_err(|e| ClientError::Link(e.into()))?;
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            return Err(ClientError::Config(format!(
                "{MAX_IN_FLIGHT} frames already await their acknowledgement"
            )));
        }
        match frame_type {
            FrameType::Join => {
                if self.joined.len() >= MAX_JOINED && !self.joined.contains_key(&channel) {
                    return Err(ClientError::Config(format!(
                        "{MAX_JOINED} channels already joined"
                    )));
                }
                self.joined.insert(channel, payload.clone());
            }
            FrameType::Leave => {
                self.joined.remove(&channel);
            }
            _ => {}
        }
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        // Recorded first: if the link fails now, the reconnect sends it.
        self.in_flight.push_back(InFlight {
            wire: 0,
            id: Some(id),
            frame_type,
            channel,
            payload: payload.clone(),
        });
        let sent = match self.session.as_mut() {
            Some(session) => session.send_bytes(frame_type, channel, payload).await.ok(),
            None => None,
        };
        match sent {
            Some(wire) => {
                if let Some(entry) = self.in_flight.back_mut() {
                    entry.wire = wire;
                }
            }
            // Lost (or never there): the reconnect sends everything in flight.
            None => self.establish().await?,
        }
        Ok(id)
    }

    /// Sends a control frame; see [`send_bytes`](Self::send_bytes).
    ///
    /// # Errors
    /// As [`send_bytes`](Self::send_bytes), or a value that is not a JSON object.
    pub async fn send_control<T: Serialize + ?Sized>(
        &mut self,
        frame_type: FrameType,
        channel: u32,
        value: &T,
    ) -> Result<u32, ClientError> {
        let json = serde_json::to_vec(value).map_err(|e| ClientError::Config(e.to_string()))?;
        self.send_bytes(frame_type, channel, json).await
    }

    /// The next frame for the application, reconnecting as often as needed (within the
    /// backoff's attempts). ACKs and ERRORs about the application's frames name its numbers;
    /// answers to this session's own JOINs after a reconnect are not handed out.
    ///
    /// # Errors
    /// Reconnecting failed, or the server refused the handshake.
    pub async fn recv(&mut self) -> Result<Frame, ClientError> {
        loop {
            let received = match self.session.as_mut() {
                Some(session) => session.recv().await,
                None => Ok(None),
            };
            let Ok(Some(frame)) = received else {
                self.establish().await?;
                continue;
            };
            match frame.frame_type() {
                FrameType::Ack | FrameType::Error => {
                    if let Some(frame) = self.answer(frame) {
                        return Ok(frame);
                    }
                }
                _ => {
                    if let Some(session) = self.session.as_mut() {
                        // A receipt lost with the link only means the frame comes again.
                        let _ = session.acknowledge(&frame).await;
                    }
                    return Ok(frame);
                }
            }
        }
    }

    /// An ACK or ERROR from the server: settles the frame in flight it names; returns what the
    /// application should see (rewritten to its number), or `None` for an internal one.
    fn answer(&mut self, frame: Frame) -> Option<Frame> {
        let wire = if frame.frame_type() == FrameType::Ack {
            frame.parse_control::<Ack>().ok().map(|a| a.ack)
        } else {
            frame.parse_control::<Problem>().ok().and_then(|p| {
                p.extensions
                    .get("sequence")
                    .and_then(serde_json::Value::as_u64)
            })
        };
        let Some(wire) = wire else {
            return Some(frame);
        };
        let Some(position) = self
            .in_flight
            .iter()
            .position(|f| u64::from(f.wire) == wire && f.wire != 0)
        else {
            return Some(frame);
        };
        let settled = self.in_flight.remove(position)?;
        let id = settled.id?;
        let rewritten = if frame.frame_type() == FrameType::Ack {
            let mut ack: Ack = frame.parse_control().ok()?;
            ack.ack = u64::from(id);
            Frame::control(FrameType::Ack, frame.channel_id(), frame.sequence(), &ack)
        } else {
            let mut problem: Problem = frame.parse_control().ok()?;
            problem
                .extensions
                .insert("sequence".to_owned(), serde_json::Value::from(id));
            Frame::control(
                FrameType::Error,
                frame.channel_id(),
                frame.sequence(),
                &problem,
            )
        };
        Some(rewritten.unwrap_or(frame))
    }

    /// Connects (again) with the backoff, then JOINs the remembered channels and sends what
    /// is in flight.
    async fn establish(&mut self) -> Result<(), ClientError> {
        let first = !self.established;
        self.session = None;
        let backoff = self.options.backoff;
        let mut attempt = 0u32;
        loop {
            if !first || attempt > 0 {
                tokio::time::sleep(backoff.delay(attempt)).await;
            }
            let addr = self.addr();
            match self.open(addr).await {
                Ok(session) => {
                    self.session = Some(session);
                    break;
                }
                // The server refused this device (revoked, unknown, bad proof): another
                // node would too. Other refusals (busy, draining) are worth another try.
                Err(ClientError::Rejected(problem))
                    if problem
                        .status
                        .is_some_and(|s| (400..500).contains(&s) && s != 429) =>
                {
                    return Err(ClientError::Rejected(problem));
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, attempt, "reconnect attempt failed");
                    attempt += 1;
                    if attempt >= backoff.attempts.max(1) {
                        return Err(e);
                    }
                    self.node = (self.node + 1) % self.options.addrs.len();
                }
            }
        }
        if !first {
            self.reconnects += 1;
        }
        self.established = true;
        self.resume().await
    }

    async fn open(&self, addr: SocketAddr) -> Result<Session<H2Stream>, ClientError> {
        let options = &self.options;
        let stream =
            transport::open(addr, &options.server_name, &options.trust, "/connect").await?;
        Session::handshake(stream, &self.identity, &options.server, &options.handshake).await
    }

    /// On a fresh session: JOINs every remembered channel, then sends every frame in flight
    /// again (in the order the application sent them). A link that fails meanwhile is left
    /// for the next `send`/`recv` to notice.
    async fn resume(&mut self) -> Result<(), ClientError> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        self.in_flight.retain(|f| f.id.is_some());
        let mut rejoins = Vec::with_capacity(self.joined.len());
        for (channel, payload) in &self.joined {
            let Ok(wire) = session
                .send_bytes(FrameType::Join, *channel, payload.clone())
                .await
            else {
                self.session = None;
                return Ok(());
            };
            rejoins.push(InFlight {
                wire,
                id: None,
                frame_type: FrameType::Join,
                channel: *channel,
                payload: payload.clone(),
            });
        }
        for entry in &mut self.in_flight {
            match session
                .send_bytes(entry.frame_type, entry.channel, entry.payload.clone())
                .await
            {
                Ok(wire) => entry.wire = wire,
                Err(_) => {
                    self.session = None;
                    break;
                }
            }
        }
        // Internal JOINs are answered first; they go to the front.
        for rejoin in rejoins.into_iter().rev() {
            if self.in_flight.len() < MAX_IN_FLIGHT + MAX_JOINED {
                self.in_flight.push_front(rejoin);
            }
        }
        Ok(())
    }
}
