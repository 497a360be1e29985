//! Established sessions: arbitrary frame sequences from two connected devices.
//!
//! Two devices of a fresh in-memory SQLite store run the server's established-session loop
//! (`commucat_server::session::established::run`) over in-memory pipes, in plain transport mode
//! (the deployed client's mode, wire-compat §6), as if their handshakes had just completed. The
//! input is a script of frames (any type, channel and payload bytes, including control payloads
//! that are not JSON) and raw byte runs, each sent by one of the two devices.
//!
//! Checks:
//! - no panic, in the harness or in a session task;
//! - every byte the server sends either device is a stream of frames the deployed decoder
//!   (`commucat-proto` 1.0.41) reads, never a zero-length frame, and the JSON the deployed client
//!   requires of each received frame type is there (wire-compat §7.3 and §7.4);
//! - afterwards, a session the server did not end still answers a JOIN, and when both are still
//!   up a MSG from one reaches the other;
//! - once the clients finish their streams, both sessions end.
//!
//! Input layout, repeated until the input is used up:
//!
//! ```text
//! op:u8   bit 0: sender (device A or B); bit 1: raw bytes instead of a frame; bits 2..: frame type
//! raw:    len:u8 bytes[len]                       written to the stream as they are
//! frame:  ch:u8 [u32 LE if ch & 0x80] len:u8 [u16 LE if len == 0xff] payload[len]
//! ```
//!
//! The frame type is `(op >> 2) % 21` (0 and 20 are not types the server accepts); the channel
//! is `ch & 0x0f` or the following u32 (the two highest channels are kept by the harness);
//! sequence numbers count up from 3 per device, as the deployed client does. After each step
//! the harness waits until the sender's session has handled it (a LEAVE of a channel nobody
//! joined, answered with an ERROR), so the script orders the two devices' frames.

#![no_main]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use commucat_keys::HandshakePattern;
use commucat_link::{ByteStream, Connection};
use commucat_proto as proto;
use commucat_server::router::presence::LocalPresence;
use commucat_server::session::established::{Messaging, MessagingSettings, run};
use commucat_server::session::handshake::Established;
use commucat_store::{
    DeviceKeyEvent, DeviceRecord, DeviceStatus, NewDeviceRegistration, SqliteStore, Store,
    UserRecord, UserToCreate,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokio::sync::mpsc;

/// Device ids; at least 8 bytes, as the deployed client needs (wire-compat §7.4).
const DEVICES: [&str; 2] = ["device-alice", "device-bob"];
/// Observed client addresses (they reach peers in `relay:false` candidates).
const REMOTES: [&str; 2] = ["127.0.0.1:40001", "127.0.0.1:40002"];
/// The channel of the final checks; scripts never use it.
const PROBE_CHANNEL: u32 = u32::MAX;
/// A channel nobody joins: a LEAVE there is always answered (with an ERROR) and changes
/// nothing, so it tells the harness that the frames before it were handled.
const BARRIER_CHANNEL: u32 = u32::MAX - 1;
/// How long the harness waits for an answer before it reports a hung session.
const PATIENCE: Duration = Duration::from_secs(20);

/// A byte stream whose far end is a pair of channels held by the harness. The server's writes
/// never wait (unbounded), so the script can run ahead of the reader.
struct Pipe {
    rx: mpsc::Receiver<Bytes>,
    tx: mpsc::UnboundedSender<Bytes>,
}

impl ByteStream for Pipe {
    async fn read(&mut self) -> std::io::Result<Option<Bytes>> {
        Ok(self.rx.recv().await)
    }

    async fn write(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.tx
            .send(bytes)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

/// The harness's end of one device's connection.
struct Client {
    index: usize,
    tx: Option<mpsc::Sender<Bytes>>,
    rx: mpsc::UnboundedReceiver<Bytes>,
    buf: BytesMut,
    /// What the server's decoder makes of the bytes sent so far (frame boundary, failure).
    sent: commucat_ccp::FrameDecoder,
    /// Frames decoded but not yet looked at.
    frames: VecDeque<Received>,
    sequence: u64,
    /// The server finished the stream.
    closed: bool,
}

/// A frame as the deployed decoder read it.
struct Received {
    frame_type: proto::FrameType,
    channel: u64,
    control: Option<Value>,
    opaque: Vec<u8>,
}

impl Client {
    async fn write(&mut self, bytes: Bytes) {
        let Some(tx) = &self.tx else {
            return;
        };
        self.sent.extend(&bytes);
        while let Ok(Some(_)) = self.sent.next_frame() {}
        match tokio::time::timeout(PATIENCE, tx.send(bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => self.tx = None,
            Err(_) => panic!("device {}: the server stopped reading", self.index),
        }
    }

    /// Whether the server will read our next frame as one: the stream is still open and what
    /// we sent so far ends on a frame boundary.
    fn at_frame_boundary(&self) -> bool {
        self.tx.is_some() && !self.sent.is_failed() && self.sent.buffered() == 0
    }

    fn next_sequence(&mut self) -> u64 {
        let sequence = self.sequence;
        self.sequence += 1;
        sequence
    }

    /// Takes every complete frame out of the buffer, checking each.
    fn decode_buffered(&mut self) {
        while let Some(total) = complete_frame_len(&self.buf, self.index) {
            let bytes = self.buf.split_to(total);
            let frame = match proto::Frame::decode(&bytes) {
                Ok((frame, used)) => {
                    assert_eq!(used, total, "device {}: frame length", self.index);
                    frame
                }
                Err(error) => panic!(
                    "device {}: the deployed decoder rejects {:02x?}: {error}",
                    self.index,
                    &bytes[..bytes.len().min(64)]
                ),
            };
            self.frames.push_back(check_deployed(frame));
        }
    }

    /// Waits for the next frame; `None` once the server has finished the stream.
    async fn recv(&mut self) -> Option<Received> {
        loop {
            self.decode_buffered();
            if let Some(frame) = self.frames.pop_front() {
                return Some(frame);
            }
            if self.closed {
                return None;
            }
            match tokio::time::timeout(PATIENCE, self.rx.recv()).await {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) => {
                    self.closed = true;
                    assert!(
                        self.buf.is_empty(),
                        "device {}: the stream ended inside a frame: {:02x?}",
                        self.index,
                        &self.buf[..self.buf.len().min(64)]
                    );
                }
                Err(_) => panic!("device {}: no frame from the server in time", self.index),
            }
        }
    }

    /// Reads without waiting: everything the server has sent so far.
    fn drain_ready(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(bytes) => self.buf.extend_from_slice(&bytes),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
        self.decode_buffered();
        // The script does not look at these; keep memory flat.
        self.frames.clear();
    }

    /// Waits until the server has handled everything sent so far (and so has routed what it
    /// relays), so that the script, not scheduling, orders the two devices' frames.
    async fn barrier(&mut self) {
        if !self.at_frame_boundary() {
            return;
        }
        let sequence = self.next_sequence();
        self.write(raw_frame(4, BARRIER_CHANNEL, sequence, b"{}"))
            .await;
        let _ = self.answered(sequence).await;
    }

    /// Waits for the ACK (or ERROR) answering our frame `sequence`; false if the stream ended.
    async fn answered(&mut self, sequence: u64) -> Option<bool> {
        while let Some(frame) = self.recv().await {
            let Some(control) = &frame.control else {
                continue;
            };
            match frame.frame_type {
                proto::FrameType::Ack
                    if control.get("ack").and_then(Value::as_u64) == Some(sequence) =>
                {
                    return Some(true);
                }
                proto::FrameType::Error
                    if control.get("sequence").and_then(Value::as_u64) == Some(sequence) =>
                {
                    return Some(false);
                }
                _ => {}
            }
        }
        None
    }
}

/// The length of the complete frame at the head of `buf` (prefix included), if all of it is
/// there. Panics on a zero-length frame, which stalls the deployed client forever.
fn complete_frame_len(buf: &[u8], index: usize) -> Option<usize> {
    let mut len: u64 = 0;
    for (i, byte) in buf.iter().enumerate().take(10) {
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            assert!(len != 0, "device {index}: zero-length frame");
            assert!(
                len <= proto::MAX_FRAME_LEN as u64,
                "device {index}: frame of {len} bytes"
            );
            let total = i + 1 + usize::try_from(len).ok()?;
            return (buf.len() >= total).then_some(total);
        }
    }
    assert!(buf.len() < 10, "device {index}: length prefix overflows");
    None
}

fn is_string(value: &Value, keys: &[&str]) -> bool {
    keys.iter()
        .any(|key| value.get(key).is_some_and(Value::is_string))
}

/// What the deployed client requires of a received frame (wire-compat §7.3, §7.4).
fn check_deployed(frame: proto::Frame) -> Received {
    let frame_type = frame.frame_type;
    let (control, opaque) = match frame.payload {
        proto::FramePayload::Control(envelope) => {
            check_control(frame_type, &envelope);
            (Some(envelope.properties), Vec::new())
        }
        proto::FramePayload::Opaque(bytes) => (None, bytes),
    };
    Received {
        frame_type,
        channel: frame.channel_id,
        control,
        opaque,
    }
}

fn check_control(frame_type: proto::FrameType, envelope: &proto::ControlEnvelope) {
    use proto::FrameType as T;
    let value = &envelope.properties;
    let ok = match frame_type {
        T::Typing => is_string(value, &["device", "device_id", "sender"]),
        T::Presence => is_string(value, &["entity"]),
        T::Join => {
            value.is_object()
                && value
                    .get("members")
                    .is_none_or(|m| m.as_array().is_some_and(|m| m.iter().all(Value::is_string)))
        }
        T::GroupCreate => value.is_object(),
        T::GroupInvite => {
            value.get("group_id").is_some() && is_string(value, &["device", "member"])
        }
        T::Ack => value.get("ack").is_none_or(|ack| ack.is_u64()),
        // The codec enums of 1.0.41 only have opus, vp8 and vp9: parsing checks them.
        T::CallOffer => proto::call::CallOffer::try_from(envelope).is_ok_and(|offer| {
            let audio = &offer.media.audio;
            offer.call_id.len() >= 8
                && matches!(audio.channels, 1 | 2)
                && matches!(audio.sample_rate, 8000 | 12000 | 16000 | 24000 | 48000)
        }),
        T::CallAnswer => proto::call::CallAnswer::try_from(envelope)
            .is_ok_and(|answer| answer.call_id.len() >= 8),
        T::CallEnd => {
            proto::call::CallEnd::try_from(envelope).is_ok_and(|end| end.call_id.len() >= 8)
        }
        T::CallStats => {
            proto::call::CallStats::try_from(envelope).is_ok_and(|stats| stats.call_id.len() >= 8)
        }
        _ => true,
    };
    assert!(
        ok,
        "the deployed client cannot use {frame_type:?} {}",
        truncated(value)
    );
}

fn truncated(value: &Value) -> String {
    let text = value.to_string();
    text.chars().take(400).collect()
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A CCP-1 frame with any type byte and payload (no check that a control payload is JSON).
fn raw_frame(frame_type: u8, channel: u32, sequence: u64, payload: &[u8]) -> Bytes {
    let mut body = vec![frame_type];
    varint(u64::from(channel), &mut body);
    varint(sequence, &mut body);
    varint(payload.len() as u64, &mut body);
    body.extend_from_slice(payload);
    let mut out = Vec::with_capacity(body.len() + 5);
    varint(body.len() as u64, &mut out);
    out.extend_from_slice(&body);
    out.into()
}

/// Reads the script.
struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.data.split_first()?;
        self.data = rest;
        Some(first)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    fn u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        let taken = self.take(4);
        bytes[..taken.len()].copy_from_slice(taken);
        u32::from_le_bytes(bytes)
    }

    fn len(&mut self) -> usize {
        match self.byte() {
            Some(0xff) => {
                let taken = self.take(2);
                let mut bytes = [0u8; 2];
                bytes[..taken.len()].copy_from_slice(taken);
                usize::from(u16::from_le_bytes(bytes))
            }
            Some(len) => usize::from(len),
            None => 0,
        }
    }
}

fn established(index: usize) -> Established {
    let device = DEVICES[index];
    Established {
        session_id: format!("session-{device}"),
        device_id: device.to_owned(),
        user: user(index),
        protocol_version: 1,
        pattern: HandshakePattern::Xk,
        accepted_capabilities: Vec::new(),
        expires_at: i64::MAX,
        noise_key_version: 1,
        device_known: true,
        had_certificate: false,
        issued_certificate: false,
        pq_hybrid: false,
        adaptive_obf: false,
    }
}

fn user(index: usize) -> UserRecord {
    UserRecord {
        user_id: format!("user-{}", DEVICES[index]),
        handle: DEVICES[index].to_owned(),
        display_name: None,
        avatar_url: None,
        created_at: 0,
    }
}

/// Registers both devices the way a first handshake would.
async fn register(store: &SqliteStore) {
    for index in 0..2 {
        let public_key = [u8::try_from(index + 1).unwrap_or(1); 32];
        let registration = NewDeviceRegistration {
            user: UserToCreate::New(user(index)),
            device: DeviceRecord {
                device_id: DEVICES[index].to_owned(),
                user_id: user(index).user_id,
                public_key,
                status: DeviceStatus::Active,
                created_at: 0,
            },
            key_event: DeviceKeyEvent {
                event_id: format!("event-{index}"),
                device_id: DEVICES[index].to_owned(),
                public_key,
                recorded_at: 0,
                action: DeviceKeyEvent::REGISTER.to_owned(),
            },
            max_active_devices: None,
        };
        store.register_device(registration).await.expect("register");
    }
}

async fn case(data: &[u8]) {
    let store = SqliteStore::open_in_memory().await.expect("store");
    register(&store).await;
    let messaging = Arc::new(Messaging::new(
        Arc::new(store),
        Arc::new(LocalPresence::new()),
        MessagingSettings::default(),
    ));
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for index in 0..2 {
        let (to_server, server_rx) = mpsc::channel(64);
        let (server_tx, from_server) = mpsc::unbounded_channel();
        let conn = Connection::new(
            Pipe {
                rx: server_rx,
                tx: server_tx,
            },
            commucat_ccp::MAX_FRAME_LEN,
        );
        servers.push(tokio::spawn(run(
            conn,
            established(index),
            Arc::clone(&messaging),
            REMOTES[index],
            "binary",
        )));
        clients.push(Client {
            index,
            tx: Some(to_server),
            rx: from_server,
            buf: BytesMut::new(),
            sent: commucat_ccp::FrameDecoder::new(),
            frames: VecDeque::new(),
            sequence: 3,
            closed: false,
        });
    }

    let mut script = Script { data };
    while let Some(op) = script.byte() {
        let client = &mut clients[usize::from(op & 1)];
        if op & 2 != 0 {
            let len = usize::from(script.byte().unwrap_or(0));
            let bytes = Bytes::copy_from_slice(script.take(len));
            client.write(bytes).await;
        } else {
            let frame_type = (op >> 2) % 21;
            let ch = script.byte().unwrap_or(0);
            let channel = if ch & 0x80 != 0 {
                script.u32().min(BARRIER_CHANNEL - 1)
            } else {
                u32::from(ch & 0x0f)
            };
            let len = script.len();
            let payload = script.take(len);
            let sequence = client.next_sequence();
            client
                .write(raw_frame(frame_type, channel, sequence, payload))
                .await;
        }
        client.barrier().await;
        for client in &mut clients {
            client.drain_ready();
        }
    }

    probe(&mut clients).await;

    // Both clients finish their streams: both sessions end.
    for client in &mut clients {
        client.tx = None;
    }
    for server in servers {
        match tokio::time::timeout(PATIENCE, server).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Ok(Err(error)) => panic!("session task failed: {error}"),
            Err(_) => panic!("a session did not end after its client finished"),
        }
    }
    for client in &mut clients {
        while client.recv().await.is_some() {}
    }
}

/// A session still up answers a JOIN; when both are, a MSG from A reaches B.
async fn probe(clients: &mut [Client]) {
    let mut joined = [false; 2];
    for (index, client) in clients.iter_mut().enumerate() {
        if !client.at_frame_boundary() {
            continue;
        }
        let sequence = client.next_sequence();
        let join = format!(r#"{{"members":["{}"],"relay":true}}"#, DEVICES[index]);
        client
            .write(raw_frame(3, PROBE_CHANNEL, sequence, join.as_bytes()))
            .await;
        joined[index] = client.answered(sequence).await == Some(true);
    }
    if joined != [true, true] {
        return;
    }
    let (a, b) = clients.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    let sequence = a.next_sequence();
    a.write(raw_frame(5, PROBE_CHANNEL, sequence, b"probe"))
        .await;
    if a.answered(sequence).await != Some(true) {
        return;
    }
    while let Some(frame) = b.recv().await {
        if frame.frame_type == proto::FrameType::Msg
            && frame.channel == u64::from(PROBE_CHANNEL)
            && frame.opaque == b"probe"
        {
            return;
        }
    }
    panic!("device B's session ended before the MSG from A reached it");
}

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(case(data));
});
