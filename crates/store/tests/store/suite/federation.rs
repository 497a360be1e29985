//! The federation outbox and claimed idempotency keys.

use std::sync::Arc;

use commucat_store::{IdempotencyKey, NewOutboxEvent, OutboxPush, Store, StoreError};

fn event(peer: &str, channel_id: u32, n: u32, at: i64) -> NewOutboxEvent {
    NewOutboxEvent {
        peer: peer.to_owned(),
        channel_id,
        event_id: format!("evt-{peer}-{n}"),
        body: format!("body {n}").into_bytes(),
        enqueued_at: at,
        expires_at: at + 100,
    }
}

pub(crate) async fn outbox_keeps_order_and_bounds_each_peer(store: Arc<dyn Store>) {
    for n in 0..3 {
        let pushed = store
            .push_outbox(event("b.test", n % 2, n, 1_000), 3)
            .await
            .unwrap();
        assert!(matches!(pushed, OutboxPush::Stored { .. }), "{pushed:?}");
    }
    // Full for b.test, but another peer has its own bound.
    assert_eq!(
        store
            .push_outbox(event("b.test", 0, 9, 1_000), 3)
            .await
            .unwrap(),
        OutboxPush::Full { depth: 3 }
    );
    assert!(matches!(
        store
            .push_outbox(event("c.test", 0, 0, 1_000), 3)
            .await
            .unwrap(),
        OutboxPush::Stored { .. }
    ));
    let batch = store.outbox_batch("b.test", 1_000, 10).await.unwrap();
    let ids: Vec<&str> = batch.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["evt-b.test-0", "evt-b.test-1", "evt-b.test-2"]);
    assert!(batch.windows(2).all(|w| w[0].outbox_id < w[1].outbox_id));
    assert_eq!(batch[1].channel_id, 1);
    assert_eq!(batch[0].body, b"body 0");
    assert_eq!(
        store.outbox_batch("b.test", 1_000, 2).await.unwrap().len(),
        2
    );

    store
        .outbox_failed(batch[0].outbox_id, "connection refused", 1_010)
        .await
        .unwrap();
    let again = store.outbox_batch("b.test", 1_010, 1).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("connection refused"));
    let stats = store.outbox_stats(1_010).await.unwrap();
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0].peer, "b.test");
    assert_eq!(stats[0].depth, 3);
    assert_eq!(stats[0].oldest_enqueued_at, Some(1_000));
    assert_eq!(stats[0].last_error.as_deref(), Some("connection refused"));
    assert_eq!(stats[0].last_attempt_at, Some(1_010));
    assert_eq!(stats[1].peer, "c.test");
    assert_eq!(stats[1].last_error, None);

    assert!(store.outbox_done(batch[0].outbox_id).await.unwrap());
    assert!(!store.outbox_done(batch[0].outbox_id).await.unwrap());
    assert!(matches!(
        store
            .push_outbox(event("b.test", 0, 3, 1_020), 3)
            .await
            .unwrap(),
        OutboxPush::Stored { .. }
    ));
    let ids: Vec<String> = store
        .outbox_batch("b.test", 1_020, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(ids, ["evt-b.test-1", "evt-b.test-2", "evt-b.test-3"]);
}

pub(crate) async fn outbox_expiry_frees_room_and_purges(store: Arc<dyn Store>) {
    store
        .push_outbox(event("b.test", 0, 0, 1_000), 1)
        .await
        .unwrap();
    // Expired at 1_100: never handed out, and a later push takes its place.
    assert!(
        store
            .outbox_batch("b.test", 1_100, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.outbox_stats(1_100).await.unwrap().is_empty());
    assert!(matches!(
        store
            .push_outbox(event("b.test", 0, 1, 1_100), 1)
            .await
            .unwrap(),
        OutboxPush::Stored { .. }
    ));
    store
        .push_outbox(event("c.test", 0, 0, 1_000), 1)
        .await
        .unwrap();
    assert_eq!(store.purge_expired_outbox(1_100).await.unwrap(), 1);
    assert_eq!(
        store.outbox_batch("b.test", 1_100, 10).await.unwrap().len(),
        1
    );
    let mut bad = event("b.test", 0, 2, 1_000);
    bad.expires_at = 1_000;
    assert!(matches!(
        store.push_outbox(bad, 10).await,
        Err(StoreError::Invalid(_))
    ));
}

pub(crate) async fn outbox_bound_holds_under_concurrency(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for n in 0..12 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .push_outbox(event("b.test", 0, n, 1_000), 5)
                .await
                .unwrap()
        }));
    }
    let mut stored = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), OutboxPush::Stored { .. }) {
            stored += 1;
        }
    }
    assert_eq!(stored, 5);
    assert_eq!(store.outbox_stats(1_000).await.unwrap()[0].depth, 5);
}

pub(crate) async fn claimed_keys_are_once_per_window(store: Arc<dyn Store>) {
    let key = |expires_at| IdempotencyKey {
        scope: "federation:a.test".to_owned(),
        key: "evt-1".to_owned(),
        expires_at,
    };
    assert!(store.claim_key(key(2_000), 1_000).await.unwrap());
    assert!(!store.claim_key(key(2_000), 1_500).await.unwrap());
    // Released: the work failed, a retry may claim it again.
    store
        .release_key("federation:a.test", "evt-1")
        .await
        .unwrap();
    assert!(store.claim_key(key(2_000), 1_600).await.unwrap());
    // Expired keys count as absent, and are purged with the queue's.
    assert!(store.claim_key(key(3_000), 2_000).await.unwrap());
    assert_eq!(store.purge_expired_idempotency(3_000).await.unwrap(), 1);
}

fn registry_peer(domain: &str, status: &str) -> commucat_store::FederationPeer {
    commucat_store::FederationPeer {
        domain: domain.to_owned(),
        endpoint: format!("https://{domain}:8443"),
        public_key: Some("ab".repeat(32)),
        status: status.to_owned(),
        ca_file: None,
        updated_at: 1_000,
    }
}

pub(crate) async fn peer_registry_adds_replaces_and_blocks(store: Arc<dyn Store>) {
    assert!(store.federation_peers().await.unwrap().is_empty());
    store
        .put_federation_peer(registry_peer("c.test", "active"))
        .await
        .unwrap();
    store
        .put_federation_peer(registry_peer("b.test", "pending"))
        .await
        .unwrap();
    // Replacing the row of a domain.
    let mut b = registry_peer("b.test", "active");
    b.ca_file = Some("/etc/b.pem".to_owned());
    b.public_key = None;
    store.put_federation_peer(b.clone()).await.unwrap();
    let peers = store.federation_peers().await.unwrap();
    assert_eq!(peers, vec![b, registry_peer("c.test", "active")]);
    assert!(
        store
            .set_federation_peer_status("c.test", "blocked", 2_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_federation_peer_status("x.test", "blocked", 2_000)
            .await
            .unwrap()
    );
    let c = &store.federation_peers().await.unwrap()[1];
    assert_eq!((c.status.as_str(), c.updated_at), ("blocked", 2_000));
    // Invalid statuses and rows are refused before anything is written.
    assert!(matches!(
        store
            .set_federation_peer_status("c.test", "trusted", 2_000)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .put_federation_peer(registry_peer("d.test", "friendly"))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.federation_peers().await.unwrap().len(), 2);
}
