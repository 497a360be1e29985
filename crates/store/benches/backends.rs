//! The store backends side by side, in one run: offline enqueue and replay throughput, and the
//! store calls one device handshake makes.
//!
//! Run: `COMMUCAT_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test cargo bench -p
//! commucat-store --bench backends`. Without the variable only SQLite is measured.
//!
//! - `sqlite`: the server's embedded store, a database file (WAL, `synchronous = FULL`);
//! - `postgres`: a fresh schema on the server named by `COMMUCAT_TEST_POSTGRES`, default pool.
//!
//! Each benchmark group reports one backend per function, so criterion's numbers for a group
//! compare the backends under the same load on the same machine.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

#[path = "../tests/support/postgres.rs"]
mod pg;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use commucat_store::{
    DeviceKeyEvent, DeviceRecord, DeviceStatus, IdempotencyKey, NewDeviceRegistration, NewEnvelope,
    SessionRecord, SqliteStore, Store, UserRecord, UserToCreate,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

/// Envelopes fetched and deleted per replay round (the server's `REPLAY_BATCH`).
const REPLAY_BATCH: u32 = 64;
/// Size of a queued frame: a typical short message with its CCP-1 header.
const FRAME_LEN: usize = 1024;

/// One backend under test, and what keeps it alive.
struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    _keep: Keep,
}

#[allow(dead_code)]
enum Keep {
    Dir(tempfile::TempDir),
    Schema(pg::TestSchema),
}

fn backends(runtime: &Runtime) -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = runtime
        .block_on(SqliteStore::open(&dir.path().join("bench.db")))
        .unwrap();
    let mut all = vec![Backend {
        name: "sqlite",
        store: Arc::new(sqlite),
        _keep: Keep::Dir(dir),
    }];
    match runtime.block_on(pg::TestSchema::new()) {
        Some(schema) => {
            let store = runtime.block_on(schema.store());
            all.push(Backend {
                name: "postgres",
                store: Arc::new(store),
                _keep: Keep::Schema(schema),
            });
        }
        None => eprintln!("{} unset: PostgreSQL not measured", pg::POSTGRES_ENV),
    }
    all
}

/// A process-wide counter for unique ids.
fn next() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn envelope(recipients: &[String], keyed: bool) -> NewEnvelope {
    envelope_from("dev-sender", recipients, keyed)
}

fn envelope_from(sender: &str, recipients: &[String], keyed: bool) -> NewEnvelope {
    let n = next();
    NewEnvelope {
        recipients: recipients.to_vec(),
        channel_id: 7,
        sender: sender.to_owned(),
        order_key: i64::try_from(n).unwrap(),
        frame: vec![0x5a; FRAME_LEN],
        enqueued_at: 1_000,
        expires_at: 1_000_000,
        // The relay path records the sender's idempotency key with every queued frame.
        idempotency: keyed.then(|| IdempotencyKey {
            scope: sender.to_owned(),
            key: format!("k{n}"),
            expires_at: 1_000_000,
        }),
        limits: commucat_store::QueueLimits::UNBOUNDED,
    }
}

/// The floors each backend's numbers are read against, measured in the same run: `ping` (one
/// round trip, no write) and `extend_session` (one single-row UPDATE committed durably: the
/// cheapest write the store makes).
fn floors(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let backends = backends(&runtime);
    let mut group = c.benchmark_group("floor_round_trip");
    group.throughput(Throughput::Elements(1));
    for backend in &backends {
        group.bench_function(backend.name, |b| {
            b.iter(|| runtime.block_on(backend.store.ping()).unwrap());
        });
    }
    group.finish();
    let mut group = c.benchmark_group("floor_durable_write");
    group.throughput(Throughput::Elements(1));
    for backend in &backends {
        let dev = runtime.block_on(registered(backend.store.as_ref()));
        let s = session(&dev);
        runtime
            .block_on(backend.store.create_session(s.clone(), &dev.public_key))
            .unwrap();
        let mut expiry = 5_000;
        group.bench_function(backend.name, |b| {
            b.iter(|| {
                expiry += 1;
                runtime
                    .block_on(backend.store.extend_session(&s.session_id, expiry))
                    .unwrap();
            });
        });
    }
    group.finish();
}

/// Offline enqueue: one frame for one offline recipient, and one frame for eight (stored
/// once, queued eight times), each with an idempotency key, as the relay path does. Every
/// iteration uses recipients with empty queues, so this is the fixed cost of the transaction
/// (the queue-bound count grows with the recipient's queue on both backends).
fn enqueue(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let backends = backends(&runtime);
    for fan_out in [1_usize, 8] {
        let mut group = c.benchmark_group(format!("enqueue_{fan_out}_recipients"));
        group.throughput(Throughput::Elements(1));
        for backend in &backends {
            group.bench_function(backend.name, |b| {
                b.iter_batched(
                    || {
                        let batch = next();
                        let recipients: Vec<String> = (0..fan_out)
                            .map(|r| format!("dev-enq-{batch}-{r}"))
                            .collect();
                        envelope(&recipients, true)
                    },
                    |e| runtime.block_on(backend.store.enqueue(e)).unwrap(),
                    BatchSize::SmallInput,
                );
            });
        }
        group.finish();
    }
}

/// Writers enqueueing at once in [`enqueue_concurrent`].
const WRITERS: usize = 8;

/// Offline enqueue from [`WRITERS`] senders at once, each frame for one fresh recipient, so no
/// two writers share a sender or recipient quota row. Read against `enqueue_1_recipients`: a
/// time per element close to it means the writers ran one at a time (both backends serialise
/// queue writes, for the total quota: SQLite's single writer, PostgreSQL's per-schema lock).
fn enqueue_concurrent(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let backends = backends(&runtime);
    let mut group = c.benchmark_group(format!("enqueue_{WRITERS}_writers"));
    group.throughput(Throughput::Elements(WRITERS as u64));
    for backend in &backends {
        group.bench_function(backend.name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    let mut writers = tokio::task::JoinSet::new();
                    for w in 0..WRITERS {
                        let store = Arc::clone(&backend.store);
                        writers.spawn(async move {
                            let sender = format!("dev-writer-{w}");
                            for _ in 0..iters {
                                let recipient = [format!("dev-conc-{}", next())];
                                store
                                    .enqueue(envelope_from(&sender, &recipient, true))
                                    .await
                                    .unwrap();
                            }
                        });
                    }
                    while let Some(done) = writers.join_next().await {
                        done.unwrap();
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

/// Replay: one round of the reconnect path for a queue of [`REPLAY_BATCH`] envelopes —
/// `pending_envelopes` then `mark_delivered` of all of them. Filling the queue is not timed.
fn replay(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let backends = backends(&runtime);
    let mut group = c.benchmark_group("replay_batch_64");
    group.throughput(Throughput::Elements(u64::from(REPLAY_BATCH)));
    for backend in &backends {
        let store = &backend.store;
        group.bench_function(backend.name, |b| {
            b.iter_custom(|rounds| {
                runtime.block_on(async {
                    let mut timed = Duration::ZERO;
                    for _ in 0..rounds {
                        let recipient = format!("dev-replay-{}", next());
                        let one = [recipient.clone()];
                        for _ in 0..REPLAY_BATCH {
                            store.enqueue(envelope(&one, false)).await.unwrap();
                        }
                        let started = Instant::now();
                        let batch = store
                            .pending_envelopes(&recipient, 2_000, REPLAY_BATCH)
                            .await
                            .unwrap();
                        let ids: Vec<i64> = batch.iter().map(|e| e.envelope_id).collect();
                        let deleted = store.mark_delivered(&recipient, &ids, 2_000).await.unwrap();
                        timed += started.elapsed();
                        assert_eq!(deleted, u64::from(REPLAY_BATCH));
                    }
                    timed
                })
            });
        });
    }
    group.finish();
}

fn device(user_id: &str, device_id: &str) -> DeviceRecord {
    DeviceRecord {
        device_id: device_id.to_owned(),
        user_id: user_id.to_owned(),
        public_key: [7; 32],
        status: DeviceStatus::Active,
        created_at: 1_000,
    }
}

/// A new user with one device; returns the device.
async fn registered(store: &dyn Store) -> DeviceRecord {
    let n = next();
    let user = UserRecord {
        user_id: format!("user-k-{n}"),
        handle: format!("known{n}"),
        display_name: None,
        avatar_url: None,
        created_at: 1_000,
    };
    let dev = device(&user.user_id, &format!("dev-k-{n}"));
    store
        .register_device(NewDeviceRegistration {
            user: UserToCreate::New(user),
            key_event: DeviceKeyEvent {
                event_id: format!("evt-k-{n}"),
                device_id: dev.device_id.clone(),
                public_key: dev.public_key,
                recorded_at: 1_000,
                action: DeviceKeyEvent::REGISTER.to_owned(),
            },
            device: dev.clone(),
            max_active_devices: None,
        })
        .await
        .unwrap();
    dev
}

fn session(device: &DeviceRecord) -> SessionRecord {
    SessionRecord {
        session_id: format!("sess-{}", next()),
        device_id: device.device_id.clone(),
        user_id: device.user_id.clone(),
        created_at: 1_000,
        expires_at: 5_000,
    }
}

/// The store calls of one handshake, in the handshake's order:
///
/// - `new_device` (first connect, auto-approval): `device` (absent), `user_by_handle` (free),
///   `register_device` (new user, device, key event, device limit 5), `create_session`,
///   `count_active_devices`;
/// - `known_device` (every later connect): `device`, `user`, `create_session`,
///   `count_active_devices`.
fn handshake(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let backends = backends(&runtime);
    let mut group = c.benchmark_group("handshake_store_calls_new_device");
    group.throughput(Throughput::Elements(1));
    for backend in &backends {
        let store = &backend.store;
        group.bench_function(backend.name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let n = next();
                    let (device_id, handle) = (format!("dev-h-{n}"), format!("handle{n}"));
                    assert!(store.device(&device_id).await.unwrap().is_none());
                    assert!(store.user_by_handle(&handle).await.unwrap().is_none());
                    let user = UserRecord {
                        user_id: format!("user-h-{n}"),
                        handle,
                        display_name: None,
                        avatar_url: None,
                        created_at: 1_000,
                    };
                    let dev = device(&user.user_id, &device_id);
                    store
                        .register_device(NewDeviceRegistration {
                            user: UserToCreate::New(user),
                            key_event: DeviceKeyEvent {
                                event_id: format!("evt-{n}"),
                                device_id: device_id.clone(),
                                public_key: dev.public_key,
                                recorded_at: 1_000,
                                action: DeviceKeyEvent::REGISTER.to_owned(),
                            },
                            device: dev.clone(),
                            max_active_devices: Some(5),
                        })
                        .await
                        .unwrap();
                    store
                        .create_session(session(&dev), &dev.public_key)
                        .await
                        .unwrap();
                    store.count_active_devices(&dev.user_id).await.unwrap()
                })
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("handshake_store_calls_known_device");
    group.throughput(Throughput::Elements(1));
    for backend in &backends {
        let store = &backend.store;
        // One registered device that reconnects over and over.
        let dev = runtime.block_on(registered(store.as_ref()));
        group.bench_function(backend.name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let found = store.device(&dev.device_id).await.unwrap().unwrap();
                    store.user(&found.user_id).await.unwrap().unwrap();
                    store
                        .create_session(session(&found), &found.public_key)
                        .await
                        .unwrap();
                    store.count_active_devices(&found.user_id).await.unwrap()
                })
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30);
    targets = floors, enqueue, enqueue_concurrent, replay, handshake
}
criterion_main!(benches);
