//! The `HybridRatchet` of a `pq-hybrid` session, on the server's schedule
//! (`crypto.pq_ratchet_messages`, `crypto.pq_ratchet_interval`). The step itself (one-time key,
//! encapsulation, step message, key switch) is the link codec's; this decides when, and ends
//! the session with ERROR `PQ One-Time Keys Exhausted` when a step is due and the client's
//! announced one-time keys are all spent (the client reconnects with fresh ones).

use std::sync::Arc;
use std::time::Instant;

use commucat_ccp::ProblemKind;
use commucat_link::{ByteStream, ConnError, RatchetError, StreamError};

use super::{End, SessionTask};

impl<S: ByteStream> SessionTask<S> {
    /// Takes a ratchet step when one is due.
    pub(super) async fn ratchet_if_due(&mut self) -> Result<(), End> {
        if !self.conn.codec_mut().ratchet_due(Instant::now()) {
            return Ok(());
        }
        let sequence = self.next_sequence()?;
        let overflow = Arc::clone(&self.overflow);
        let sent = tokio::select! {
            biased;
            sent = self.conn.ratchet(sequence, Instant::now()) => sent,
            () = overflow.raised() => {
                return Err(End::slow_consumer(&self.m.settings, &overflow));
            }
        };
        match sent {
            Ok(()) => {
                self.stats.frame_out();
                tracing::debug!(
                    device = %self.device_id,
                    epoch = self.conn.codec_mut().ratchet_epoch().unwrap_or(0),
                    one_time_keys_left = self.conn.codec_mut().one_time_keys_left().unwrap_or(0),
                    "pq-hybrid ratchet step sent"
                );
                Ok(())
            }
            Err(ConnError::Stream(StreamError::Ratchet(RatchetError::Exhausted))) => {
                Err(End::problem(
                    ProblemKind::PqOneTimeKeysExhausted,
                    "a pq-hybrid ratchet step is due and every one-time key this session's \
                     HELLO announced is spent; reconnect with fresh one-time keys",
                ))
            }
            Err(e) => Err(End::Conn(e)),
        }
    }
}
