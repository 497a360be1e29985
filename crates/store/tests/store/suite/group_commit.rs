//! Enqueues racing through the store's group-commit writer: each caller gets the answer its
//! own write deserves whatever batch it shared (stored, refused by a quota, duplicate), and
//! the queue holds exactly the stored ones, in each sender's order.

use std::collections::HashMap;
use std::sync::Arc;

use commucat_store::{EnqueueOutcome, IdempotencyKey, NewEnvelope, QueueLimits, QuotaLimit, Store};

use super::messaging::envelope;

fn numbered(sender: &str, recipients: &[&str], n: u32, limits: QueueLimits) -> NewEnvelope {
    NewEnvelope {
        sender: sender.to_owned(),
        limits,
        // One order key for all: replay order is then enqueue order.
        ..envelope(recipients, 1, format!("{sender}:{n:04}").as_bytes())
    }
}

/// `(sender, n)` of a frame made by [`numbered`].
fn origin(frame: &[u8]) -> (String, u32) {
    let text = String::from_utf8(frame.to_vec()).unwrap();
    let (sender, n) = text.split_once(':').unwrap();
    (sender.to_owned(), n.parse().unwrap())
}

pub(crate) async fn concurrent_enqueues_commit_in_each_senders_order(store: Arc<dyn Store>) {
    const SENDERS: u32 = 16;
    const EACH: u32 = 40;
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..SENDERS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let sender = format!("dev-s{s:02}");
            let own = format!("dev-own{s:02}");
            for n in 0..EACH {
                let e = numbered(&sender, &["dev-bob", &own], n, QueueLimits::UNBOUNDED);
                let outcome = store.enqueue(e).await.unwrap();
                assert_eq!(
                    outcome,
                    EnqueueOutcome::Stored {
                        stored: vec!["dev-bob".to_owned(), own.clone()],
                        refused: Vec::new(),
                    }
                );
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let all = store
        .pending_envelopes("dev-bob", 100, 10_000)
        .await
        .unwrap();
    assert_eq!(all.len(), (SENDERS * EACH) as usize);
    // Each sender's envelopes come back once each, in the order it sent them.
    let mut next: HashMap<String, u32> = HashMap::new();
    for e in &all {
        let (sender, n) = origin(&e.frame);
        let expected = next.entry(sender.clone()).or_insert(0);
        assert_eq!(n, *expected, "{sender}");
        *expected += 1;
    }
    assert!(all.windows(2).all(|w| w[0].envelope_id < w[1].envelope_id));
    for s in 0..SENDERS {
        let own = store
            .pending_envelopes(&format!("dev-own{s:02}"), 100, 10_000)
            .await
            .unwrap();
        let numbers: Vec<u32> = own.iter().map(|e| origin(&e.frame).1).collect();
        assert_eq!(numbers, (0..EACH).collect::<Vec<_>>());
    }
    let usage = store
        .queue_usage(commucat_store::UsageScope::Total)
        .await
        .unwrap();
    assert_eq!(usage.frames, u64::from(2 * SENDERS * EACH));
}

pub(crate) async fn quota_refusals_among_racing_enqueues_are_each_callers_own(
    store: Arc<dyn Store>,
) {
    // 32 senders race one envelope each to bob (room for 10) and to a device of their own.
    let limits = QueueLimits::frames_per_recipient(10);
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..32_u32 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let own = format!("dev-own{s:02}");
            let e = numbered(&format!("dev-s{s:02}"), &["dev-bob", &own], 0, limits);
            (own, store.enqueue(e).await.unwrap())
        });
    }
    let mut bob_stored = 0;
    let mut bob_refused = 0;
    while let Some(done) = tasks.join_next().await {
        let (own, outcome) = done.unwrap();
        let EnqueueOutcome::Stored { stored, refused } = outcome else {
            panic!("no keys were given");
        };
        // A refusal for bob never costs the sender's own device its copy.
        assert!(stored.contains(&own), "{stored:?}");
        if stored.iter().any(|r| r == "dev-bob") {
            bob_stored += 1;
            assert!(refused.is_empty());
        } else {
            bob_refused += 1;
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].recipient, "dev-bob");
            assert_eq!(refused[0].limit, QuotaLimit::RecipientFrames);
        }
    }
    assert_eq!((bob_stored, bob_refused), (10, 22));
    assert_eq!(store.queued_count("dev-bob", 100).await.unwrap(), 10);
}

pub(crate) async fn racing_resends_store_one_copy(store: Arc<dyn Store>) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let e = NewEnvelope {
                idempotency: Some(IdempotencyKey {
                    scope: "dev-alice".to_owned(),
                    key: "resent".to_owned(),
                    expires_at: 500,
                }),
                ..envelope(&["dev-bob"], 1, b"once")
            };
            store.enqueue(e).await.unwrap()
        });
    }
    let mut stored = 0;
    let mut duplicates = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            EnqueueOutcome::Stored { stored: to, .. } => {
                assert_eq!(to, ["dev-bob"]);
                stored += 1;
            }
            EnqueueOutcome::Duplicate => duplicates += 1,
        }
    }
    assert_eq!((stored, duplicates), (1, 11));
    assert_eq!(store.queued_count("dev-bob", 100).await.unwrap(), 1);
}
