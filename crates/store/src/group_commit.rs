//! Group commit: concurrent callers hand their write to one writer task per store, which
//! commits whatever is waiting as one transaction (one fsync) and then answers each caller.
//!
//! - A caller's future completes only after the transaction holding its write committed (or
//!   failed): an ACK that waits for it still follows the commit of its own write.
//! - The writer takes what is waiting when it becomes free, up to
//!   [`GroupCommitSettings::max_batch`]; with a non-zero [`GroupCommitSettings::max_linger`] it
//!   then waits at most that long for more before committing a batch that is not full. Under
//!   load batches fill while the previous commit runs, so the default is not to linger.
//! - If the transaction fails, every caller of the batch gets the error (nothing of the batch
//!   was written).
//! - The queue to the writer holds at most [`GroupCommitSettings::queue`] writes; callers beyond
//!   that wait for room (backpressure, not unbounded growth).
//! - A caller that gave up (its future dropped) before its batch was taken is left out of it.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StoreError};

/// How a store's group-commit writer forms batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitSettings {
    /// Most writes committed in one transaction (at least 1).
    pub max_batch: usize,
    /// Longest time the writer waits for more writes once it has some and the batch is not
    /// full; zero commits at once what is waiting.
    pub max_linger: Duration,
    /// Writes waiting for the writer at most (at least 1); callers beyond wait for room.
    pub queue: usize,
}

impl Default for GroupCommitSettings {
    fn default() -> Self {
        Self {
            max_batch: 256,
            max_linger: Duration::ZERO,
            queue: 4096,
        }
    }
}

/// Commits batches of items in one transaction each.
pub(crate) trait BatchWriter: Send + 'static {
    /// What a caller hands over.
    type Item: Send + 'static;
    /// What a caller gets back once the batch committed.
    type Output: Send + 'static;

    /// Writes `items` in one transaction and returns one output per item, in order; an error
    /// means nothing was written.
    fn write(
        &mut self,
        items: Vec<Self::Item>,
    ) -> impl Future<Output = Result<Vec<Self::Output>>> + Send;
}

type Reply<O> = oneshot::Sender<Result<O>>;

/// The callers' handle to a writer task. Clones share the task; it ends when the last handle
/// is dropped.
#[derive(Debug)]
pub(crate) struct GroupCommit<I, O> {
    tx: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> Clone for GroupCommit<I, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> GroupCommit<I, O> {
    /// Spawns the writer task on the current Tokio runtime.
    pub(crate) fn spawn<W>(writer: W, settings: GroupCommitSettings) -> Self
    where
        W: BatchWriter<Item = I, Output = O>,
    {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        #[allow(
            clippy::disallowed_methods,
            reason = "the writer ends by itself once the last handle is dropped, after answering \
                      every write it took; callers drain by awaiting their own writes"
        )]
        tokio::spawn(run(writer, rx, settings));
        Self { tx }
    }

    /// Hands `item` to the writer and waits until the transaction holding it committed.
    pub(crate) async fn submit(&self, item: I) -> Result<O> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn gone() -> StoreError {
    StoreError::Unavailable("the store's group-commit writer has stopped".to_owned())
}

async fn run<W: BatchWriter>(
    mut writer: W,
    mut rx: mpsc::Receiver<(W::Item, Reply<W::Output>)>,
    settings: GroupCommitSettings,
) {
    let max_batch = settings.max_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        if batch.len() < max_batch && !settings.max_linger.is_zero() {
            let deadline = tokio::time::Instant::now() + settings.max_linger;
            while batch.len() < max_batch {
                let more = max_batch - batch.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, more)).await {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        }
        let (items, replies): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .filter(|(_, reply)| !reply.is_closed())
            .unzip();
        if items.is_empty() {
            continue;
        }
        let count = items.len();
        match writer.write(items).await {
            Ok(outputs) if outputs.len() == count => {
                for (reply, output) in replies.into_iter().zip(outputs) {
                    // A caller that went away meanwhile needs no answer.
                    let _ = reply.send(Ok(output));
                }
            }
            Ok(outputs) => {
                let err = StoreError::Corrupt(format!(
                    "group commit wrote {count} items but answered {}",
                    outputs.len()
                ));
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
            Err(err) => {
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        clippy::disallowed_methods,
        reason = "test callers are plain tasks the test awaits"
    )]

    use std::sync::{Arc, Mutex};

    use tokio::sync::{Semaphore, mpsc::UnboundedSender};

    use super::*;

    /// Reports each batch's size when it starts, waits for a permit, then answers `item * 10`,
    /// or fails the batch if it holds a negative item.
    struct Recorder {
        started: UnboundedSender<usize>,
        gate: Arc<Semaphore>,
        sizes: Arc<Mutex<Vec<usize>>>,
    }

    impl BatchWriter for Recorder {
        type Item = i32;
        type Output = i32;

        async fn write(&mut self, items: Vec<i32>) -> Result<Vec<i32>> {
            self.started.send(items.len()).unwrap();
            self.gate.acquire().await.unwrap().forget();
            self.sizes.lock().unwrap().push(items.len());
            if items.iter().any(|&i| i < 0) {
                return Err(StoreError::Unavailable("disk full".to_owned()));
            }
            Ok(items.into_iter().map(|i| i * 10).collect())
        }
    }

    struct Rig {
        group: GroupCommit<i32, i32>,
        started: mpsc::UnboundedReceiver<usize>,
        gate: Arc<Semaphore>,
        sizes: Arc<Mutex<Vec<usize>>>,
        settings: GroupCommitSettings,
    }

    fn rig(settings: GroupCommitSettings) -> Rig {
        let (started_tx, started) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(0));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let writer = Recorder {
            started: started_tx,
            gate: gate.clone(),
            sizes: sizes.clone(),
        };
        Rig {
            group: GroupCommit::spawn(writer, settings),
            started,
            gate,
            sizes,
            settings,
        }
    }

    impl Rig {
        fn call(&self, item: i32) -> tokio::task::JoinHandle<Result<i32>> {
            let group = self.group.clone();
            tokio::spawn(async move { group.submit(item).await })
        }

        /// Waits until `n` writes wait in the queue (the writer is held at the gate).
        async fn queued(&self, n: usize) {
            while self.group.tx.capacity() > self.settings.queue - n {
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test]
    async fn waiting_callers_share_a_batch_and_each_gets_its_answer() {
        let mut rig = rig(GroupCommitSettings {
            max_batch: 4,
            ..GroupCommitSettings::default()
        });
        let calls: Vec<_> = (0..9).map(|i| (i, rig.call(i))).collect();
        // The writer took a first batch and waits at the gate; the others queue meanwhile.
        let first = rig.started.recv().await.unwrap();
        rig.queued(9 - first).await;
        rig.gate.add_permits(9);
        for (i, call) in calls {
            assert_eq!(call.await.unwrap().unwrap(), i * 10);
        }
        let sizes = rig.sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 9);
        assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
        // The 9 - first writes that waited behind the first batch went in full batches.
        assert_eq!(sizes.len(), 1 + (9 - first).div_ceil(4), "{sizes:?}");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_caller_in_it() {
        let mut rig = rig(GroupCommitSettings::default());
        let first = rig.call(1);
        assert_eq!(rig.started.recv().await, Some(1));
        let good = rig.call(2);
        let bad = rig.call(-1);
        rig.queued(2).await;
        rig.gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(10));
        let unavailable = StoreError::Unavailable("disk full".to_owned());
        assert_eq!(good.await.unwrap(), Err(unavailable.clone()));
        assert_eq!(bad.await.unwrap(), Err(unavailable));
        assert_eq!(*rig.sizes.lock().unwrap(), [1, 2]);
    }

    #[tokio::test]
    async fn a_bounded_linger_gathers_late_callers() {
        let mut rig = rig(GroupCommitSettings {
            max_batch: 3,
            // Long enough that it never expires here: the batch fills first.
            max_linger: Duration::from_secs(600),
            ..GroupCommitSettings::default()
        });
        rig.gate.add_permits(1);
        let calls: Vec<_> = (0..3)
            .map(|i| {
                let call = rig.call(i);
                (i, call)
            })
            .collect();
        assert_eq!(rig.started.recv().await, Some(3));
        for (i, call) in calls {
            assert_eq!(call.await.unwrap(), Ok(i * 10));
        }
    }
}
