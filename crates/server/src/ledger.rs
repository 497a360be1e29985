//! The ledger: an append-only audit record, one JSON object per line (JSONL).
//!
//! Records are handed to a dedicated writer thread through a bounded queue
//! (`ledger.queue`), so a code path that records never waits for the disk. When the queue is
//! full the new record is dropped and counted; once the writer catches up it appends a
//! `{"scope":"ledger","event":"dropped","count":n}` record, so a gap is itself on record.
//!
//! The writer takes every record waiting in the queue, appends them, and flushes the batch to
//! the operating system (`write(2)`); with `ledger.fsync = true` it also `fdatasync`s the
//! file after every batch, so an acknowledged batch survives a power loss. Without it, the
//! records survive a crash of the process but a power loss may cost the last seconds.
//!
//! Every record carries `ts` (RFC 3339 UTC), `seq` (per writing process, from 1: the server
//! and operator commands may append to one file, so order across processes by `ts`), `scope`
//! and the fields of its event. Session ids are recorded as their store key (BLAKE3 hash), never as
//! the bearer token itself.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde_json::{Map, Value};

use crate::config::{LedgerSettings, LedgerSink};

/// Records one batch takes from the queue at most.
const MAX_BATCH: usize = 512;

/// A handle for recording; cheap to clone. [`Ledger::off`] records nothing.
#[derive(Debug, Clone)]
pub struct Ledger {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    queue: SyncSender<Message>,
    dropped: AtomicU64,
    /// Records handed to the sink in batches that were written without error.
    written: AtomicU64,
}

#[derive(Debug)]
enum Message {
    Record(Map<String, Value>),
    /// Answered once everything queued before it is written and flushed.
    Flush(std::sync::mpsc::Sender<()>),
}

/// Why the ledger could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("ledger {path}: {source}")]
pub struct LedgerError {
    /// The ledger file.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

impl Ledger {
    /// A ledger that records nothing.
    #[must_use]
    pub fn off() -> Self {
        Self { inner: None }
    }

    /// Opens the sink `settings` asks for (a file is created with mode 0600 if missing and
    /// appended to otherwise) and starts its writer thread.
    ///
    /// # Errors
    /// The file cannot be opened or the thread cannot be started.
    pub fn start(settings: &LedgerSettings, data_dir: &Path) -> Result<Self, LedgerError> {
        let target = settings
            .file_path(data_dir)
            .unwrap_or_else(|| PathBuf::from("<stdout>"));
        let sink: Box<dyn Write + Send> = match settings.sink {
            LedgerSink::Off => return Ok(Self::off()),
            LedgerSink::Stdout => Box::new(io::stdout()),
            LedgerSink::File => {
                let path = target.clone();
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(crate::keys::secrets::FILE_MODE)
                    .open(&path)
                    .map_err(|source| LedgerError {
                        path: path.clone(),
                        source,
                    })?;
                Box::new(FileSink {
                    file,
                    fsync: settings.fsync,
                })
            }
        };
        let (queue, records) = sync_channel(settings.queue);
        let inner = Arc::new(Inner {
            queue,
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
        });
        let shared = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("commucat-ledger".to_owned())
            .spawn(move || write_loop(&records, sink, &shared))
            .map_err(|source| LedgerError {
                path: target.clone(),
                source,
            })?;
        tracing::info!(sink = ?settings.sink, path = %target.display(), "ledger open");
        Ok(Self { inner: Some(inner) })
    }

    /// Whether records go anywhere.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Records dropped because the queue was full, since start.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.dropped.load(Ordering::Relaxed))
    }

    /// Records written to the sink since start (those of batches whose write succeeded,
    /// including the writer's own `ledger`/`dropped` records).
    #[must_use]
    pub fn written(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.written.load(Ordering::Relaxed))
    }

    /// Queues a record of `scope` with the fields `fields` builds (a JSON object; anything else
    /// is recorded under `value`); with the ledger off they are never built. Never blocks: a
    /// full queue drops the record and counts it.
    pub fn record(&self, scope: &'static str, fields: impl FnOnce() -> Value) {
        let Some(inner) = &self.inner else { return };
        let mut record = Map::new();
        record.insert("scope".to_owned(), Value::from(scope));
        match fields() {
            Value::Object(map) => record.extend(map),
            other => {
                record.insert("value".to_owned(), other);
            }
        }
        match inner.queue.try_send(Message::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer stopped after a panic; its loss was logged there.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Ledger {
    /// Waits until every record queued so far is written and flushed (and synced, with
    /// `ledger.fsync`). For short-lived processes such as the operator commands.
    pub fn flush(&self) {
        let Some(inner) = &self.inner else { return };
        let (done, wait) = std::sync::mpsc::channel();
        if inner.queue.send(Message::Flush(done)).is_ok() {
            // An error means the writer is gone; nothing more can be written.
            let _ = wait.recv();
        }
    }
}

/// A file sink in append mode: each record reaches the file in one `write(2)` (see
/// [`write_batch`]), so records of several processes appending to one ledger never interleave
/// inside a line; with `fsync`, every batch is synced.
struct FileSink {
    file: std::fs::File,
    fsync: bool,
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

fn write_loop(records: &Receiver<Message>, mut sink: Box<dyn Write + Send>, inner: &Inner) {
    let mut seq: u64 = 0;
    let mut reported_dropped = 0;
    let mut failing = false;
    // Ends when every handle is gone and the queue is drained.
    while let Ok(first) = records.recv() {
        let mut batch = Vec::new();
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Record(record) => batch.push(record),
                Message::Flush(done) => waiting.push(done),
            }
            if batch.len() < MAX_BATCH {
                next = records.try_recv().ok();
            }
        }
        let dropped = inner.dropped.load(Ordering::Relaxed);
        if dropped > reported_dropped {
            let mut gap = Map::new();
            gap.insert("scope".to_owned(), Value::from("ledger"));
            gap.insert("event".to_owned(), Value::from("dropped"));
            gap.insert("count".to_owned(), Value::from(dropped - reported_dropped));
            batch.push(gap);
            reported_dropped = dropped;
        }
        let records = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let outcome = write_batch(&mut *sink, batch, &mut seq);
        if outcome.is_ok() {
            inner.written.fetch_add(records, Ordering::Relaxed);
        }
        match (outcome, failing) {
            (Ok(()), true) => {
                tracing::info!("ledger writes succeed again");
                failing = false;
            }
            (Err(e), false) => {
                tracing::error!(error = %e, "ledger write failed; records are being lost");
                failing = true;
            }
            _ => {}
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
    if let Err(e) = sink.flush() {
        tracing::error!(error = %e, "ledger final flush failed");
    }
}

fn write_batch(
    sink: &mut dyn Write,
    batch: Vec<Map<String, Value>>,
    seq: &mut u64,
) -> io::Result<()> {
    let ts = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    for fields in batch {
        *seq += 1;
        let mut record = Map::with_capacity(fields.len() + 2);
        record.insert("ts".to_owned(), Value::from(ts.as_str()));
        record.insert("seq".to_owned(), Value::from(*seq));
        record.extend(fields);
        let mut line = serde_json::to_vec(&record)?;
        line.push(b'\n');
        sink.write_all(&line)?;
    }
    sink.flush()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;

    fn settings(sink: LedgerSink, path: Option<PathBuf>, queue: usize) -> LedgerSettings {
        LedgerSettings {
            sink,
            path,
            queue,
            fsync: true,
        }
    }

    fn wait_for_lines(path: &Path, count: usize) -> Vec<Value> {
        for _ in 0..500 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() >= count {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("ledger never reached {count} lines");
    }

    #[test]
    fn records_are_appended_as_json_lines_with_ts_and_seq() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::start(&settings(LedgerSink::File, None, 16), dir.path()).unwrap();
        assert!(ledger.is_on());
        ledger.record(
            "device",
            || serde_json::json!({"event": "register", "device": "d1"}),
        );
        ledger.record("call", || serde_json::json!({"event": "start"}));
        ledger.flush();
        let path = dir.path().join(crate::config::LEDGER_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!((ledger.written(), ledger.dropped()), (2, 0));
        let lines = wait_for_lines(&path, 2);
        assert_eq!(lines[0]["scope"], "device");
        assert_eq!(lines[0]["event"], "register");
        assert_eq!(lines[0]["device"], "d1");
        assert_eq!(lines[0]["seq"], 1);
        assert_eq!(lines[1]["seq"], 2);
        assert!(lines[0]["ts"].as_str().unwrap().ends_with('Z'));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // A second ledger on the same file appends.
        drop(ledger);
        let again = Ledger::start(&settings(LedgerSink::File, None, 16), dir.path()).unwrap();
        again.record("device", || serde_json::json!({"event": "revoke"}));
        let lines = wait_for_lines(&path, 3);
        assert_eq!(lines[2]["event"], "revoke");
    }

    #[test]
    fn a_full_queue_drops_and_the_gap_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let ledger = Ledger::start(
            &settings(LedgerSink::File, Some(path.clone()), 1),
            dir.path(),
        )
        .unwrap();
        for n in 0..2000 {
            ledger.record("test", || serde_json::json!({"n": n}));
        }
        assert!(ledger.dropped() > 0, "a queue of 1 never filled");
        // Queue one more record for sure: the batch that takes it reports every drop so far.
        loop {
            let before = ledger.dropped();
            ledger.record("test", || serde_json::json!({"n": "last"}));
            if ledger.dropped() == before {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let dropped = ledger.dropped();
        for _ in 0..500 {
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let gaps: u64 = lines
                .iter()
                .filter(|l| l["scope"] == "ledger")
                .map(|l| l["count"].as_u64().unwrap())
                .sum();
            let kept = lines.iter().filter(|l| l["scope"] == "test").count() as u64;
            if gaps == dropped {
                // Every attempt is either on file or counted in a gap record.
                let attempts = kept + dropped;
                assert!(attempts >= 2001, "{attempts}");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the gap of {dropped} records was never recorded");
    }

    #[test]
    fn off_records_nothing_and_a_bad_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::start(&settings(LedgerSink::Off, None, 4), dir.path()).unwrap();
        assert!(!ledger.is_on());
        ledger.record("device", || serde_json::json!({}));
        assert_eq!((ledger.written(), ledger.dropped()), (0, 0));
        assert!(!dir.path().join(crate::config::LEDGER_FILE).exists());
        let bad = settings(
            LedgerSink::File,
            Some(dir.path().join("missing/dir/ledger.jsonl")),
            4,
        );
        let error = Ledger::start(&bad, dir.path()).unwrap_err();
        assert!(error.to_string().contains("missing/dir"), "{error}");
    }
}
