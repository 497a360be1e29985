//! `bounds.transport_buffer_bytes`: the bytes a transport (WebSocket, HTTP body) holds for one
//! client that has not taken them yet.
//!
//! Each write reserves its length (at most the whole budget, so one large frame still goes
//! through) before it is queued; the reservation is released once the chunk has left for the
//! client. A write that finds the budget spent waits — the session then stops taking frames
//! from its mailbox, whose own bounds end it as a slow consumer (frames re-queued, ERROR
//! `Slow Consumer`) if the client does not catch up. A write abandoned that way is counted as
//! a refusal by `transport_buffer_bytes`.

use std::io;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Bound;
use crate::metrics::Metrics;

/// The byte budget of one transport.
#[derive(Debug, Clone)]
pub(crate) struct ByteBudget {
    permits: Arc<Semaphore>,
    max: u32,
    metrics: Arc<Metrics>,
}

/// Bytes reserved for one queued chunk; dropping it gives them back.
pub(crate) type Reserved = OwnedSemaphorePermit;

impl ByteBudget {
    /// A budget of `bytes`, counting abandoned waits in `metrics`.
    #[must_use]
    pub(crate) fn new(bytes: usize, metrics: Arc<Metrics>) -> Self {
        let bytes = bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let max = u32::try_from(bytes).unwrap_or(u32::MAX);
        Self {
            permits: Arc::new(Semaphore::new(bytes)),
            max,
            metrics,
        }
    }

    /// Reserves room for `len` bytes, waiting while the client has not taken earlier ones.
    ///
    /// # Errors
    /// Never in practice: the budget is not closed while a transport holds it.
    pub(crate) async fn reserve(&self, len: usize) -> io::Result<Reserved> {
        let wanted = u32::try_from(len).unwrap_or(u32::MAX).min(self.max);
        if let Ok(reserved) = Arc::clone(&self.permits).try_acquire_many_owned(wanted) {
            return Ok(reserved);
        }
        let mut waiting = Waiting {
            metrics: Some(&self.metrics),
        };
        let reserved = Arc::clone(&self.permits)
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "transport closed"));
        waiting.metrics = None;
        reserved
    }

    /// Bytes reserved now.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn in_use(&self) -> usize {
        (self.max as usize).saturating_sub(self.permits.available_permits())
    }
}

/// Counts a wait for a full buffer that was abandoned (the session gave the client up).
struct Waiting<'a> {
    metrics: Option<&'a Metrics>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(metrics) = self.metrics {
            metrics.bound_refusals.count(Bound::TransportBufferBytes);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn reserved_bytes_bound_and_abandoned_waits_count() {
        let metrics = Arc::new(Metrics::default());
        let budget = ByteBudget::new(100, Arc::clone(&metrics));
        let a = budget.reserve(60).await.unwrap();
        // One chunk larger than the whole budget waits for all of it, not forever.
        let b = budget.reserve(40).await.unwrap();
        assert_eq!(budget.in_use(), 100);
        let blocked = tokio::time::timeout(Duration::from_millis(50), budget.reserve(1)).await;
        assert!(blocked.is_err());
        assert_eq!(metrics.bound_refusals.get(Bound::TransportBufferBytes), 1);
        drop((a, b));
        let whole = budget.reserve(10_000).await.unwrap();
        assert_eq!(budget.in_use(), 100);
        drop(whole);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(metrics.bound_refusals.get(Bound::TransportBufferBytes), 1);
    }
}
