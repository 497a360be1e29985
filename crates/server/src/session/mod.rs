//! Sessions: the device handshake, then the established session's task.

pub mod drain;
pub mod established;
pub mod handshake;
pub mod ik_replay;

#[cfg(test)]
mod race_tests;
#[cfg(test)]
mod racing_store;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use commucat_link::{ByteStream, Connection};

use crate::router::Hub;
use crate::transport::TransportManager;
use drain::Drain;
use established::Messaging;
use handshake::Handshaker;

/// Runs `/connect` sessions: handshake, then the established loop.
#[derive(Debug, Clone)]
pub struct Sessions {
    inner: Arc<SessionsInner>,
}

#[derive(Debug)]
struct SessionsInner {
    handshaker: Handshaker,
    messaging: Arc<Messaging>,
    handshake_timeout: Duration,
    max_frame_len: usize,
    drain: Drain,
    transports: TransportManager,
}

impl Sessions {
    /// A session service.
    #[must_use]
    pub fn new(
        handshaker: Handshaker,
        messaging: Arc<Messaging>,
        handshake_timeout: Duration,
        max_frame_len: usize,
        transports: TransportManager,
    ) -> Self {
        Self {
            inner: Arc::new(SessionsInner {
                handshaker,
                messaging,
                handshake_timeout,
                max_frame_len,
                drain: Drain::new(),
                transports,
            }),
        }
    }

    /// The transport manager: outcomes per transport and client network.
    #[must_use]
    pub fn transports(&self) -> &TransportManager {
        &self.inner.transports
    }

    /// The routing tables.
    #[must_use]
    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.messaging.hub
    }

    /// What established sessions share (routing tables, store, presence, settings).
    #[must_use]
    pub fn messaging(&self) -> &Arc<Messaging> {
        &self.inner.messaging
    }

    /// The session tasks and the shutdown signal: run sessions on tasks it tracks, stop it on
    /// shutdown.
    #[must_use]
    pub fn drain(&self) -> &Drain {
        &self.inner.drain
    }

    /// Serves one connection, made in connect mode `mode` (shown to the operator), until it
    /// ends (or the drain stops: the session then queues what it holds and ends). Failures are
    /// reported to the client (ERROR frame) and to the log; they never affect other sessions.
    pub async fn serve<S: ByteStream>(&self, stream: S, remote: String, mode: &'static str) {
        tokio::select! {
            biased;
            () = self.inner.drain.killed() => {}
            () = self.serve_until_done(stream, remote, mode) => {}
        }
    }

    async fn serve_until_done<S: ByteStream>(&self, stream: S, remote: String, mode: &'static str) {
        let inner = &self.inner;
        let mut conn = Connection::new(inner.drain.guard(stream), inner.max_frame_len);
        let metrics = &inner.messaging.hub.metrics;
        let started = std::time::Instant::now();
        let outcome = inner
            .handshaker
            .run_and_report(&mut conn, &remote, inner.handshake_timeout)
            .await;
        let elapsed = started.elapsed();
        // Recorded before the handshake counters, so a reader who sees the counter move sees
        // the transport outcome too.
        if let Some(carried) = transport_outcome(&outcome) {
            inner.transports.record(&remote, mode, carried, elapsed);
        }
        metrics.handshake(outcome.is_ok(), elapsed);
        if outcome.as_ref().is_ok_and(|e| e.pq_hybrid) {
            metrics.pq_handshake();
        }
        if outcome.as_ref().is_ok_and(|e| e.adaptive_obf) {
            metrics.obf_session();
        }
        let Ok(established) = outcome else {
            return;
        };
        let _active = metrics.session_started();
        established::run(
            conn,
            established,
            Arc::clone(&inner.messaging),
            &remote,
            mode,
        )
        .await;
    }
}

/// What a handshake's outcome says about the transport that carried it: `Some(true)` when the
/// handshake completed, `Some(false)` when the link failed under it (closed, unreadable,
/// undecodable bytes, or no answer in time: what a blocked or throttled path looks like), and
/// `None` for a refusal the server decided (bad proof, revoked device, …), which the transport
/// carried fine and which says nothing about it.
fn transport_outcome(
    outcome: &Result<handshake::Established, handshake::HandshakeFailure>,
) -> Option<bool> {
    use commucat_handshake::FailReason;
    match outcome {
        Ok(_) => Some(true),
        Err(e) => matches!(
            e.reason,
            FailReason::ClientClosed
                | FailReason::Read
                | FailReason::Decode(_)
                | FailReason::Timeout
        )
        .then_some(false),
    }
}
