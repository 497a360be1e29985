//! An in-memory [`ByteStream`] pair for protocol tests without sockets.

use std::io;

use bytes::Bytes;

use crate::ByteStream;
use tokio::sync::mpsc;

/// One end of an in-memory duplex byte pipe.
#[derive(Debug)]
pub struct MemoryStream {
    rx: mpsc::Receiver<Bytes>,
    tx: Option<mpsc::Sender<Bytes>>,
}

/// Two connected ends.
pub fn pair() -> (MemoryStream, MemoryStream) {
    let (a_tx, b_rx) = mpsc::channel(64);
    let (b_tx, a_rx) = mpsc::channel(64);
    (
        MemoryStream {
            rx: a_rx,
            tx: Some(a_tx),
        },
        MemoryStream {
            rx: b_rx,
            tx: Some(b_tx),
        },
    )
}

impl MemoryStream {
    /// Finishes sending (the other end reads `None`).
    pub fn close_write(&mut self) {
        self.tx = None;
    }
}

impl ByteStream for MemoryStream {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        Ok(self.rx.recv().await)
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        match &self.tx {
            Some(tx) => tx
                .send(bytes)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "peer gone")),
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write side closed",
            )),
        }
    }
}
