//! Offline queue quotas in bytes and frames, per recipient, per sender and in total, and the
//! usage they count.

use std::sync::Arc;

use commucat_store::{
    EnqueueOutcome, NewEnvelope, QueueLimits, QueueUsage, QuotaLimit, Store, UsageScope,
};

use super::messaging::{envelope, frames};

fn limits() -> QueueLimits {
    QueueLimits {
        frames_per_recipient: 100,
        bytes_per_recipient: 25,
        frames_per_sender: 7,
        bytes_per_sender: 60,
        bytes_total: 1_000,
    }
}

fn from(sender: &str, recipients: &[&str], frame: &[u8], limits: QueueLimits) -> NewEnvelope {
    NewEnvelope {
        sender: sender.to_owned(),
        limits,
        ..envelope(recipients, 1, frame)
    }
}

/// `(stored, refused with their limits)` of an outcome.
fn split(outcome: EnqueueOutcome) -> (Vec<String>, Vec<(String, QuotaLimit)>) {
    match outcome {
        EnqueueOutcome::Stored { stored, refused } => (
            stored,
            refused
                .into_iter()
                .map(|r| (r.recipient, r.limit))
                .collect(),
        ),
        EnqueueOutcome::Duplicate => panic!("no idempotency keys were given"),
    }
}

async fn usage(store: &dyn Store, scope: UsageScope<'_>) -> QueueUsage {
    store.queue_usage(scope).await.unwrap()
}

fn used(frames: u64, bytes: u64) -> QueueUsage {
    QueueUsage { frames, bytes }
}

pub(crate) async fn byte_quotas_refuse_per_recipient_sender_and_total(store: Arc<dyn Store>) {
    let ten = [b'x'; 10];
    // Bob takes 2 × 10 bytes; a third would pass his 25.
    for _ in 0..2 {
        let (stored, _) = split(
            store
                .enqueue(from("dev-alice", &["dev-bob"], &ten, limits()))
                .await
                .unwrap(),
        );
        assert_eq!(stored, ["dev-bob"]);
    }
    let (stored, refused) = split(
        store
            .enqueue(from("dev-alice", &["dev-bob", "dev-carol"], &ten, limits()))
            .await
            .unwrap(),
    );
    assert_eq!(stored, ["dev-carol"]);
    assert_eq!(
        refused,
        [("dev-bob".to_owned(), QuotaLimit::RecipientBytes)]
    );
    assert_eq!(
        usage(store.as_ref(), UsageScope::Recipient("dev-bob")).await,
        used(2, 20)
    );
    assert_eq!(
        usage(store.as_ref(), UsageScope::Sender("dev-alice")).await,
        used(3, 30)
    );
    // Alice has 30 of her 60 bytes: four more copies (40) are refused together, for everyone.
    let many = ["dev-d", "dev-e", "dev-f", "dev-g"];
    let (stored, refused) = split(
        store
            .enqueue(from("dev-alice", &many, &ten, limits()))
            .await
            .unwrap(),
    );
    assert!(stored.is_empty());
    assert!(
        refused
            .iter()
            .all(|(_, limit)| *limit == QuotaLimit::SenderBytes)
    );
    assert_eq!(refused.len(), 4);
    // Three fit (60 bytes); then, with room for bytes, her 6 frames of a quota of 6.
    let (stored, _) = split(
        store
            .enqueue(from("dev-alice", &many[..3], &ten, limits()))
            .await
            .unwrap(),
    );
    assert_eq!(stored.len(), 3);
    let (_, refused) = split(
        store
            .enqueue(from(
                "dev-alice",
                &["dev-h"],
                b"y",
                QueueLimits {
                    frames_per_sender: 6,
                    bytes_per_sender: 1_000,
                    ..limits()
                },
            ))
            .await
            .unwrap(),
    );
    assert_eq!(refused, [("dev-h".to_owned(), QuotaLimit::SenderFrames)]);
    // Another sender is not held back by Alice's quota, only by the total.
    let total = QueueLimits {
        bytes_total: 65,
        ..limits()
    };
    let (stored, _) = split(
        store
            .enqueue(from("dev-zed", &["dev-h"], b"12345", total))
            .await
            .unwrap(),
    );
    assert_eq!(stored, ["dev-h"]);
    let (_, refused) = split(
        store
            .enqueue(from("dev-zed", &["dev-h"], b"z", total))
            .await
            .unwrap(),
    );
    assert_eq!(refused, [("dev-h".to_owned(), QuotaLimit::TotalBytes)]);
    assert_eq!(usage(store.as_ref(), UsageScope::Total).await, used(7, 65));
    assert_eq!(frames(store.as_ref(), "dev-h", 100).await, [b"12345"]);
}

pub(crate) async fn usage_is_freed_by_delivery_and_expiry(store: Arc<dyn Store>) {
    let mut short = from("dev-alice", &["dev-bob", "dev-carol"], b"short", limits());
    short.expires_at = 200;
    store.enqueue(short).await.unwrap();
    store
        .enqueue(from("dev-alice", &["dev-bob"], b"long!!", limits()))
        .await
        .unwrap();
    assert_eq!(
        usage(store.as_ref(), UsageScope::Sender("dev-alice")).await,
        used(3, 16)
    );
    // Delivery frees Bob's copies (and Alice's share of them).
    let ids: Vec<i64> = store
        .pending_envelopes("dev-bob", 100, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.envelope_id)
        .collect();
    store.mark_delivered("dev-bob", &ids, 150).await.unwrap();
    assert_eq!(
        usage(store.as_ref(), UsageScope::Recipient("dev-bob")).await,
        used(0, 0)
    );
    assert_eq!(
        usage(store.as_ref(), UsageScope::Sender("dev-alice")).await,
        used(1, 5)
    );
    // An expired envelope counts until it is purged, by the janitor or by the next enqueue.
    assert_eq!(store.purge_expired_envelopes(200).await.unwrap(), 1);
    assert_eq!(
        usage(store.as_ref(), UsageScope::Sender("dev-alice")).await,
        used(0, 0)
    );
    let mut again = from("dev-alice", &["dev-carol"], b"again", limits());
    again.expires_at = 300;
    store.enqueue(again).await.unwrap();
    let mut later = from("dev-zed", &["dev-dave"], b"later", limits());
    later.enqueued_at = 300;
    later.expires_at = 400;
    store.enqueue(later).await.unwrap();
    assert_eq!(
        usage(store.as_ref(), UsageScope::Recipient("dev-carol")).await,
        used(0, 0)
    );
    assert_eq!(usage(store.as_ref(), UsageScope::Total).await, used(1, 5));
}

pub(crate) async fn quota_accounting_holds_under_concurrent_enqueues(store: Arc<dyn Store>) {
    // 40 enqueues of 10 bytes from two senders to four recipients race; each sender may queue
    // 100 bytes and each recipient 50. Meanwhile deliveries free room.
    let limits = QueueLimits {
        frames_per_recipient: 1_000,
        bytes_per_recipient: 50,
        frames_per_sender: 1_000,
        bytes_per_sender: 100,
        bytes_total: 10_000,
    };
    let recipients = ["dev-r0", "dev-r1", "dev-r2", "dev-r3"];
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..40_usize {
        let sender = if n % 2 == 0 { "dev-s0" } else { "dev-s1" };
        let to = [recipients[n % 4], recipients[(n + 1) % 4]];
        let e = from(sender, &to, &[0_u8; 10], limits);
        let enqueuer = Arc::clone(&store);
        tasks.spawn(async move { enqueuer.enqueue(e).await.unwrap() });
        if n % 10 == 9 {
            let deliverer = Arc::clone(&store);
            let recipient = recipients[n % 4];
            tasks.spawn(async move {
                let store = deliverer;
                let ids: Vec<i64> = store
                    .pending_envelopes(recipient, 100, 100)
                    .await
                    .unwrap()
                    .iter()
                    .map(|e| e.envelope_id)
                    .collect();
                store.mark_delivered(recipient, &ids, 100).await.unwrap();
                EnqueueOutcome::Duplicate
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    // The counted usage is what is queued, and within every quota.
    let mut total = used(0, 0);
    for recipient in recipients {
        let queued = store
            .pending_envelopes(recipient, 100, 1_000)
            .await
            .unwrap();
        let bytes: usize = queued.iter().map(|e| e.frame.len()).sum();
        let counted = usage(store.as_ref(), UsageScope::Recipient(recipient)).await;
        assert_eq!(
            counted,
            used(queued.len() as u64, bytes as u64),
            "{recipient}"
        );
        assert!(counted.bytes <= 50, "{recipient}: {counted:?}");
        total.frames += counted.frames;
        total.bytes += counted.bytes;
    }
    for sender in ["dev-s0", "dev-s1"] {
        let counted = usage(store.as_ref(), UsageScope::Sender(sender)).await;
        assert!(counted.bytes <= 100, "{sender}: {counted:?}");
    }
    let s0 = usage(store.as_ref(), UsageScope::Sender("dev-s0")).await;
    let s1 = usage(store.as_ref(), UsageScope::Sender("dev-s1")).await;
    assert_eq!(s0.bytes + s1.bytes, total.bytes);
    assert_eq!(usage(store.as_ref(), UsageScope::Total).await, total);
    // Everything delivered: nothing is counted any more.
    for recipient in recipients {
        let ids: Vec<i64> = store
            .pending_envelopes(recipient, 100, 1_000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.envelope_id)
            .collect();
        store.mark_delivered(recipient, &ids, 100).await.unwrap();
    }
    assert_eq!(usage(store.as_ref(), UsageScope::Total).await, used(0, 0));
    assert_eq!(
        usage(store.as_ref(), UsageScope::Sender("dev-s0")).await,
        used(0, 0)
    );
}
