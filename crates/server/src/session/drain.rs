//! The shutdown drain of sessions.
//!
//! Every `/connect` session runs on a task this drain tracks, over a [`Stoppable`] stream. On
//! shutdown the server calls [`Drain::stop`]: every session's next read or write fails (a
//! session always waits on one of them), so the session ends as if its connection had failed
//! and queues what it still holds for its device — mailbox frames, the frame it was writing,
//! replayed envelopes not proven received stay queued — in the offline store.
//! [`Drain::finished`] then waits, up to `server.drain_deadline`, until every session task has
//! ended; only after that does the server close the store.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use commucat_link::ByteStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TrackedFuture;

/// Session tasks and the signal that tells them to finish. Clones share both.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    tasks: TaskTracker,
    stop: CancellationToken,
    /// Ends every session at once without its cleanup (a crash, for tests of node loss).
    kill: CancellationToken,
}

impl Drain {
    /// A drain with no tasks, not stopping.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` on a new tracked task.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Tracks `task`, which runs on a task someone else spawned (a WebSocket upgrade), until
    /// it completes or is dropped.
    pub fn track<F: Future>(&self, task: F) -> TrackedFuture<F> {
        self.tasks.track_future(task)
    }

    /// Tells every session to finish. Sessions that start afterwards end as soon as they are
    /// established.
    pub fn stop(&self) {
        self.stop.cancel();
        self.tasks.close();
    }

    /// Drops every session where it stands, as a crash would: nothing it holds is queued, its
    /// route and presence stay behind until they expire.
    pub fn kill(&self) {
        self.kill.cancel();
        self.stop();
    }

    /// Completes once [`Drain::kill`] is called.
    pub async fn killed(&self) {
        self.kill.cancelled().await;
    }

    /// Whether [`Drain::stop`] was called.
    #[must_use]
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Completes once [`Drain::stop`] is called (at once if it was).
    pub async fn stopping(&self) {
        self.stop.cancelled().await;
    }

    /// `stream`, failing every read and write once the drain stops.
    #[must_use]
    pub fn guard<S: ByteStream>(&self, stream: S) -> Stoppable<S> {
        Stoppable {
            inner: stream,
            stop: self.stop.clone(),
        }
    }

    /// Session tasks still running.
    #[must_use]
    pub fn running(&self) -> usize {
        self.tasks.len()
    }

    /// Waits until [`Drain::stop`] was called and every tracked task has ended, for at most
    /// `deadline`. Returns whether they all ended.
    pub async fn finished(&self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, self.tasks.wait())
            .await
            .is_ok()
    }
}

/// A session's byte stream that fails every read and write (`ConnectionAborted`) once its
/// [`Drain`] stops.
#[derive(Debug)]
pub struct Stoppable<S> {
    inner: S,
    stop: CancellationToken,
}

fn stopped() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the server is shutting down",
    )
}

impl<S: ByteStream> ByteStream for Stoppable<S> {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Err(stopped()),
            read = self.inner.read() => read,
        }
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Err(stopped()),
            written = self.inner.write(bytes) => written,
        }
    }

    async fn write_frame(&mut self, header: Bytes, payload: Bytes) -> io::Result<()> {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Err(stopped()),
            written = self.inner.write_frame(header, payload) => written,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finished_waits_for_tasks_told_to_stop() {
        let drain = Drain::new();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let task = drain.spawn({
            let drain = drain.clone();
            async move {
                let _ = started_tx.send(());
                drain.stopping().await;
                "finished"
            }
        });
        let _ = started.await;
        assert_eq!(drain.running(), 1);
        assert!(!drain.is_stopping());
        drain.stop();
        assert!(drain.finished(Duration::from_secs(30)).await);
        assert_eq!(drain.running(), 0);
        assert!(matches!(task.await, Ok("finished")));
    }

    #[tokio::test]
    async fn finished_gives_up_at_the_deadline() {
        let drain = Drain::new();
        let (_never_tx, never) = tokio::sync::oneshot::channel::<()>();
        let stuck = drain.spawn(async move {
            let _ = never.await;
        });
        drain.stop();
        assert!(!drain.finished(Duration::from_millis(10)).await);
        assert_eq!(drain.running(), 1);
        stuck.abort();
    }

    /// A stream whose reads and writes never complete (a client that neither sends nor reads).
    struct Stalled;

    impl ByteStream for Stalled {
        async fn read(&mut self) -> io::Result<Option<Bytes>> {
            std::future::pending().await
        }

        async fn write(&mut self, _bytes: Bytes) -> io::Result<()> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_stopped_drain_fails_pending_and_later_reads_and_writes() {
        let drain = Drain::new();
        let mut stream = drain.guard(Stalled);
        let blocked = drain.spawn(async move {
            let write = stream.write(Bytes::from_static(b"frame")).await;
            (stream, write)
        });
        drain.stop();
        let (mut stream, write) = blocked.await.unwrap();
        assert_eq!(write.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        let read = stream.read().await;
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        let frame = stream
            .write_frame(Bytes::from_static(b"h"), Bytes::from_static(b"p"))
            .await;
        assert_eq!(frame.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
    }

    #[tokio::test]
    async fn tracked_futures_count_until_they_end() {
        let drain = Drain::new();
        let tracked = drain.track(async { 7 });
        assert_eq!(drain.running(), 1);
        assert_eq!(tracked.await, 7);
        drain.stop();
        assert!(drain.finished(Duration::from_secs(30)).await);
    }
}
