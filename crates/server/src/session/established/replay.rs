//! Replay of the offline queue on connect, deleting envelopes only on proof of receipt.
//!
//! On connect the session writes the device's queue out in order, with fresh sequence numbers.
//! A written envelope is *in flight*: it stays in the store until the client has it.
//!
//! - A client that negotiated `delivery-receipts` ACKs what it receives (`{"ack": n}`,
//!   cumulative: every frame this connection sent with a sequence up to `n`). The ACKed
//!   envelopes are deleted (advancing the inbox offsets). At most [`RECEIPT_WINDOW`] envelopes
//!   are in flight; the replay continues as ACKs arrive.
//! - The deployed terminal client never ACKs, and the HTTP/2 layer offers the server no PING
//!   it could place after the frames. Its proof is the end of its request body: it finishes
//!   its stream only when the user leaves, long after the replay was shown. Its in-flight
//!   envelopes are deleted when the session ends that way; if the connection fails instead
//!   (reset, time-out, a newer session) they stay and are replayed again on the next connect.
//!   What remains: frames written in the last moments before such a client closes may be
//!   deleted without having been read.
//!
//! Either way a connection that dies mid-replay gets the rest — and possibly again what it
//! did receive, without proof — on its next connect: delivery is at least once.
//!
//! Frames relayed live are held the same way towards a client with `delivery-receipts`: a
//! queueable frame written to it stays in flight until a receipt covers it, and if the session
//! ends first (the server cut a slow consumer, the connection failed) it is moved to the
//! offline queue with the mailbox's leftovers, so frames that sat unread in socket buffers are
//! replayed on the next connect. At most `bounds.unconfirmed_frames` of them (and
//! `bounds.unconfirmed_bytes` of their payloads) wait for a receipt; beyond that the client is a
//! slow consumer. Clients without receipts keep write-and-forget.

use std::collections::VecDeque;

use bytes::Bytes;
use commucat_ccp::Frame;
use commucat_ccp::control::Ack;
use commucat_link::ByteStream;

use super::{End, SessionTask, unix_now};
use crate::config::Bound;
use crate::router::Envelope;
use crate::router::relay::queueable;

/// Envelopes fetched and written per replay round (one store transaction each).
const REPLAY_BATCH: u32 = 64;
/// Envelopes in flight at once towards a client that sends receipts.
pub(crate) const RECEIPT_WINDOW: usize = 256;

/// Replayed envelopes and live frames awaiting proof of receipt.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// Whether the client ACKs what it receives (`delivery-receipts`).
    receipts: bool,
    /// `(envelope id, sequence it was sent with)`, in sending order.
    sent: Vec<(i64, u32)>,
    /// Live frames written with receipts negotiated, as `(sequence sent, envelope)`, in
    /// sending order; queued offline if the session ends before a receipt covers them.
    live: VecDeque<(u32, Envelope)>,
    /// Payload bytes of `live`.
    live_bytes: usize,
    /// `bounds.unconfirmed_frames`: live frames that may wait for a receipt.
    max_frames: usize,
    /// `bounds.unconfirmed_bytes`: payload bytes of them.
    max_bytes: usize,
}

impl InFlight {
    pub(crate) fn new(receipts: bool, max_frames: u64, max_bytes: u64) -> Self {
        Self {
            receipts,
            sent: Vec::new(),
            live: VecDeque::new(),
            live_bytes: 0,
            max_frames: usize::try_from(max_frames).unwrap_or(usize::MAX),
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        }
    }

    /// Keeps a live frame written with `sequence` until a receipt covers it (only with
    /// receipts, and only frames the offline queue keeps). The bound passed once more than
    /// `max_frames` frames or (more than one frame and) `max_bytes` bytes wait; the frame is
    /// held all the same, so that it is queued when the session ends.
    pub(crate) fn hold(&mut self, sequence: u32, envelope: Envelope) -> Result<(), Bound> {
        if self.receipts && queueable(envelope.frame.frame_type()) {
            self.live_bytes = self
                .live_bytes
                .saturating_add(envelope.frame.payload().len());
            self.live.push_back((sequence, envelope));
        }
        if self.live.len() > self.max_frames {
            return Err(Bound::UnconfirmedFrames);
        }
        // One frame larger than the byte bound may still wait alone.
        if self.live_bytes > self.max_bytes && self.live.len() > 1 {
            return Err(Bound::UnconfirmedBytes);
        }
        Ok(())
    }

    /// The live frames no receipt covered, in sending order.
    pub(crate) fn take_live(&mut self) -> Vec<Envelope> {
        self.live_bytes = 0;
        self.live.drain(..).map(|(_, envelope)| envelope).collect()
    }

    fn ids(&self) -> Vec<i64> {
        self.sent.iter().map(|&(id, _)| id).collect()
    }

    /// Takes the envelopes sent with a sequence up to `ack` (and forgets the live frames it
    /// covers).
    fn confirm(&mut self, ack: u64) -> Vec<i64> {
        while self
            .live
            .front()
            .is_some_and(|&(sequence, _)| u64::from(sequence) <= ack)
        {
            if let Some((_, envelope)) = self.live.pop_front() {
                self.live_bytes = self
                    .live_bytes
                    .saturating_sub(envelope.frame.payload().len());
            }
        }
        let (done, open): (Vec<_>, Vec<_>) = self
            .sent
            .iter()
            .partition(|&&(_, sequence)| u64::from(sequence) <= ack);
        self.sent = open;
        done.into_iter().map(|(id, _)| id).collect()
    }

    fn window_full(&self) -> bool {
        self.receipts && self.sent.len() >= RECEIPT_WINDOW
    }
}

/// The frame stored in an envelope.
fn decode(stored: Vec<u8>) -> Option<Frame> {
    let bytes = Bytes::from(stored);
    match Frame::decode(&bytes) {
        Ok(Some((frame, used))) if used == bytes.len() => Some(frame),
        _ => None,
    }
}

impl<S: ByteStream> SessionTask<S> {
    /// Writes the device's offline queue in order, leaving what was written in the store until
    /// it is proven received. A store failure stops the replay (what is left stays queued for
    /// the next one); a connection failure ends the session.
    pub(super) async fn replay(&mut self) -> Result<(), End> {
        loop {
            if self.in_flight.window_full() {
                // Continued by the client's next ACK.
                return Ok(());
            }
            let skip = self.in_flight.ids();
            let batch = match self
                .m
                .store
                .pending_envelopes_except(&self.device_id, unix_now(), REPLAY_BATCH, &skip)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(device = %self.device_id, error = %e, "offline queue unavailable; replay postponed");
                    return Ok(());
                }
            };
            if batch.is_empty() {
                break;
            }
            let mut undecodable = Vec::new();
            for envelope in batch {
                let id = envelope.envelope_id;
                let Some(frame) = decode(envelope.frame) else {
                    tracing::warn!(device = %self.device_id, envelope = id, "undecodable envelope dropped");
                    undecodable.push(id);
                    continue;
                };
                let sequence = self.next_sequence()?;
                self.write(&frame.with_sequence(sequence)).await?;
                self.in_flight.sent.push((id, sequence));
            }
            self.delete(&undecodable).await;
        }
        if let Err(e) = self.m.store.purge_expired_envelopes(unix_now()).await {
            tracing::debug!(error = %e, "purging expired envelopes failed");
        }
        Ok(())
    }

    /// A client ACK: with `delivery-receipts`, forgets the live frames and deletes the
    /// replayed envelopes it covers, and continues the replay. Other clients' ACKs need no answer.
    pub(super) async fn receipt(&mut self, frame: &Frame) -> Result<(), End> {
        if !self.in_flight.receipts {
            return Ok(());
        }
        let Some(ack) = self.parsed::<Ack>(frame).await? else {
            return Ok(());
        };
        let confirmed = self.in_flight.confirm(ack.ack);
        if confirmed.is_empty() {
            return Ok(());
        }
        self.delete(&confirmed).await;
        self.replay().await
    }

    /// At the end of the session: a client without receipts that finished its stream
    /// (`closed_by_client`) had what was replayed to it; anything else stays queued.
    pub(super) async fn settle_replay(&mut self, closed_by_client: bool) {
        if self.in_flight.receipts || !closed_by_client {
            return;
        }
        let ids = self.in_flight.ids();
        self.in_flight.sent.clear();
        self.delete(&ids).await;
    }

    /// Deletes envelopes the client has (or that can never be sent).
    async fn delete(&mut self, ids: &[i64]) {
        if ids.is_empty() {
            return;
        }
        if let Err(e) = self
            .m
            .store
            .mark_delivered(&self.device_id, ids, unix_now())
            .await
        {
            tracing::warn!(device = %self.device_id, error = %e, "could not mark envelopes delivered; they will be replayed again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_decode_only_whole_frames() {
        let frame = Frame::new(commucat_ccp::FrameType::Msg, 7, 0, &b"hi"[..]).unwrap();
        let bytes = frame.to_bytes().to_vec();
        assert_eq!(decode(bytes.clone()), Some(frame));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(decode(trailing), None);
        assert_eq!(decode(bytes[..3].to_vec()), None);
    }

    #[test]
    fn acks_confirm_cumulatively() {
        const FRAMES: u64 = 1024;
        const BYTES: u64 = 8 * 1024 * 1024;
        let mut in_flight = InFlight::new(true, FRAMES, BYTES);
        in_flight.sent = vec![(10, 3), (11, 4), (12, 6)];
        assert_eq!(in_flight.confirm(2), Vec::<i64>::new());
        assert_eq!(in_flight.confirm(4), [10, 11]);
        assert_eq!(in_flight.ids(), [12]);
        assert!(!in_flight.window_full());
        assert!(!InFlight::new(false, FRAMES, BYTES).window_full());
    }

    fn envelope(frame_type: commucat_ccp::FrameType, payload: &[u8]) -> Envelope {
        Envelope {
            frame: Frame::new(frame_type, 7, 0, Bytes::copy_from_slice(payload)).unwrap(),
            stamp: 1,
            sender: std::sync::Arc::from("peer"),
        }
    }

    #[test]
    fn live_frames_wait_for_receipts_within_a_bound() {
        use commucat_ccp::FrameType;
        const FRAMES: u64 = 1024;
        const BYTES: u64 = 8 * 1024 * 1024;
        let mut in_flight = InFlight::new(true, FRAMES, BYTES);
        assert_eq!(in_flight.hold(3, envelope(FrameType::Msg, b"a")), Ok(()));
        // Live-only frames are not kept.
        assert_eq!(
            in_flight.hold(4, envelope(FrameType::Typing, b"{}")),
            Ok(())
        );
        assert_eq!(in_flight.hold(5, envelope(FrameType::Msg, b"bc")), Ok(()));
        assert_eq!(in_flight.live_bytes, 3);
        assert_eq!(in_flight.confirm(4), Vec::<i64>::new());
        assert_eq!(in_flight.live_bytes, 2);
        let left = in_flight.take_live();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].frame.payload().as_ref(), b"bc");

        // Beyond the bound the client is too slow; without receipts nothing is kept.
        for sequence in 0..u32::try_from(FRAMES).unwrap() {
            assert_eq!(
                in_flight.hold(sequence, envelope(FrameType::Msg, b"x")),
                Ok(())
            );
        }
        assert_eq!(
            in_flight.hold(9999, envelope(FrameType::Msg, b"x")),
            Err(Bound::UnconfirmedFrames)
        );
        let big = vec![0; usize::try_from(BYTES).unwrap() + 1];
        let mut large = InFlight::new(true, FRAMES, BYTES);
        assert_eq!(large.hold(1, envelope(FrameType::Msg, &big)), Ok(()));
        assert_eq!(
            large.hold(2, envelope(FrameType::Msg, b"x")),
            Err(Bound::UnconfirmedBytes)
        );
        let mut plain = InFlight::new(false, FRAMES, BYTES);
        assert_eq!(plain.hold(1, envelope(FrameType::Msg, &big)), Ok(()));
        assert!(plain.take_live().is_empty());
    }
}
