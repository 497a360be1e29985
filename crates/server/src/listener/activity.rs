//! What one connection is doing: the requests and `/connect` sessions in progress on it.
//!
//! Every request holds a [`Busy`] guard until its response body is dropped (for a `/connect`
//! stream, until the session ends); an upgraded WebSocket session holds one for its whole life.
//! A connection with no guard held for `bounds.idle_connection_timeout` is closed — an HTTP/2
//! connection that never opens a stream (which the server's own PINGs would keep alive) or an
//! HTTP/1.1 client that never completes its request head included.

use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use tokio::sync::watch;

/// The requests and sessions in progress on one connection (cheap to clone).
#[derive(Debug, Clone)]
pub struct Activity {
    in_progress: Arc<watch::Sender<usize>>,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// A connection with nothing in progress.
    #[must_use]
    pub fn new() -> Self {
        Self {
            in_progress: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Marks one request or session in progress until the guard is dropped.
    #[must_use]
    pub fn busy(&self) -> Busy {
        self.in_progress.send_modify(|n| *n = n.saturating_add(1));
        Busy {
            in_progress: Arc::clone(&self.in_progress),
        }
    }

    /// Requests and sessions in progress now.
    #[must_use]
    pub fn in_progress(&self) -> usize {
        *self.in_progress.borrow()
    }

    /// Completes once nothing has been in progress for `timeout` without a break.
    pub async fn idle_for(&self, timeout: Duration) {
        let mut changes = self.in_progress.subscribe();
        loop {
            let quiet = *changes.borrow_and_update() == 0;
            if quiet {
                if tokio::time::timeout(timeout, changes.changed())
                    .await
                    .is_err()
                {
                    return;
                }
            } else if changes.changed().await.is_err() {
                // Unreachable: `self` holds the sender.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Completes once nothing is in progress (sessions that outlive their HTTP exchange, such
    /// as upgraded WebSockets, have ended).
    pub async fn quiet(&self) {
        let mut changes = self.in_progress.subscribe();
        // The sender lives as long as `self`, so `wait_for` only returns once the value is 0.
        let _ = changes.wait_for(|n| *n == 0).await;
    }
}

/// One request or session in progress; dropping it ends it.
#[derive(Debug)]
pub struct Busy {
    in_progress: Arc<watch::Sender<usize>>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.in_progress.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Middleware: the request is in progress until its response body is dropped.
pub async fn track(State(activity): State<Activity>, request: Request, next: Next) -> Response {
    let busy = activity.busy();
    let response = next.run(request).await;
    response.map(|inner| Body::new(Tracked { inner, _busy: busy }))
}

/// A response body holding its request's [`Busy`] guard; size and end are the inner body's,
/// so lengths and transfer encodings stay as they were.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_only_after_a_quiet_stretch() {
        let activity = Activity::new();
        let busy = activity.busy();
        assert_eq!(activity.in_progress(), 1);
        let idle = activity.idle_for(Duration::from_millis(20));
        tokio::pin!(idle);
        // Busy: not idle, however long the idle time-out has passed.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), idle.as_mut())
                .await
                .is_err()
        );
        drop(busy);
        assert_eq!(activity.in_progress(), 0);
        tokio::time::timeout(Duration::from_secs(10), idle)
            .await
            .expect("idle once nothing is in progress");
        tokio::time::timeout(Duration::from_secs(10), activity.quiet())
            .await
            .expect("quiet");
    }
}
