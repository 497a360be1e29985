//! Groups, the offline queue, inbox offsets and idempotency keys.

use std::sync::Arc;

use commucat_store::{
    EnqueueOutcome, GroupMember, GroupRecord, GroupRole, IdempotencyKey, NewEnvelope, QueueLimits,
    QuotaLimit, Refusal, Store, StoreError,
};

// ---------------------------------------------------------------- fixtures

/// A group limit no test reaches.
pub(crate) const NO_GROUP_LIMIT: u64 = u64::MAX;

fn member(group_id: &str, device: &str, role: GroupRole) -> GroupMember {
    GroupMember {
        group_id: group_id.to_owned(),
        device_id: device.to_owned(),
        role,
        joined_at: 100,
    }
}

/// Group `grp-1` owned by `dev-alice`, with `dev-bob` (admin) and `dev-carol` (member).
pub(crate) fn sample_group() -> (GroupRecord, Vec<GroupMember>) {
    let group = GroupRecord {
        group_id: "grp-1".to_owned(),
        owner_device: "dev-alice".to_owned(),
        name: Some("friends".to_owned()),
        relay: true,
        created_at: 100,
    };
    let roster = vec![
        member("grp-1", "dev-alice", GroupRole::Owner),
        member("grp-1", "dev-bob", GroupRole::Admin),
        member("grp-1", "dev-carol", GroupRole::Member),
    ];
    (group, roster)
}

/// An envelope on channel 7 from `dev-alice`, enqueued at 100, expiring at 1 000.
pub(crate) fn envelope(recipients: &[&str], order_key: i64, frame: &[u8]) -> NewEnvelope {
    NewEnvelope {
        recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
        channel_id: 7,
        sender: "dev-alice".to_owned(),
        order_key,
        frame: frame.to_vec(),
        enqueued_at: 100,
        expires_at: 1_000,
        idempotency: None,
        limits: QueueLimits::frames_per_recipient(100),
    }
}

fn stored(recipients: &[&str]) -> EnqueueOutcome {
    EnqueueOutcome::Stored {
        stored: recipients.iter().map(|r| (*r).to_owned()).collect(),
        refused: Vec::new(),
    }
}

pub(crate) async fn frames(store: &dyn Store, recipient: &str, now: i64) -> Vec<Vec<u8>> {
    store
        .pending_envelopes(recipient, now, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.frame)
        .collect()
}

// ---------------------------------------------------------------- groups

pub(crate) async fn group_lifecycle(store: Arc<dyn Store>) {
    let (group, roster) = sample_group();
    store
        .create_group(group.clone(), roster.clone(), NO_GROUP_LIMIT)
        .await
        .unwrap();
    assert_eq!(store.group("grp-1").await.unwrap(), Some(group.clone()));
    assert_eq!(store.group_members("grp-1").await.unwrap(), roster);

    // A new member, then a role change that keeps the first joined_at.
    let dave = member("grp-1", "dev-dave", GroupRole::Member);
    assert_eq!(store.upsert_group_member(dave.clone()).await.unwrap(), dave);
    let promoted = GroupMember {
        joined_at: 999,
        ..member("grp-1", "dev-dave", GroupRole::Admin)
    };
    let got = store.upsert_group_member(promoted).await.unwrap();
    assert_eq!(got.role, GroupRole::Admin);
    assert_eq!(got.joined_at, 100);

    // The owner keeps its role; nobody is granted `owner`.
    let got = store
        .upsert_group_member(member("grp-1", "dev-alice", GroupRole::Member))
        .await
        .unwrap();
    assert_eq!(got.role, GroupRole::Owner);
    let err = store
        .upsert_group_member(member("grp-1", "dev-eve", GroupRole::Owner))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    let err = store
        .upsert_group_member(member("grp-none", "dev-eve", GroupRole::Member))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { what: "group", id } if id == "grp-none"),
        "{err:?}"
    );

    let devices: Vec<_> = store
        .group_members("grp-1")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.device_id, m.role))
        .collect();
    assert_eq!(
        devices,
        [
            ("dev-alice".to_owned(), GroupRole::Owner),
            ("dev-bob".to_owned(), GroupRole::Admin),
            ("dev-carol".to_owned(), GroupRole::Member),
            ("dev-dave".to_owned(), GroupRole::Admin),
        ]
    );

    // An existing id is a conflict and changes nothing.
    let other = GroupRecord {
        owner_device: "dev-zed".to_owned(),
        ..group.clone()
    };
    let err = store
        .create_group(
            other,
            vec![member("grp-1", "dev-zed", GroupRole::Owner)],
            NO_GROUP_LIMIT,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.group("grp-1").await.unwrap(), Some(group));
    assert_eq!(store.group_members("grp-1").await.unwrap().len(), 4);
}

/// An owner at its group limit is refused, and concurrent creates cannot pass the limit
/// together; other owners are not affected.
pub(crate) async fn groups_per_owner_are_bounded(store: Arc<dyn Store>) {
    const LIMIT: u64 = 3;
    let group = |id: &str, owner: &str| {
        let record = GroupRecord {
            group_id: id.to_owned(),
            owner_device: owner.to_owned(),
            name: None,
            relay: true,
            created_at: 100,
        };
        (record, vec![member(id, owner, GroupRole::Owner)])
    };
    let attempts = (0..8).map(|i| {
        let store = Arc::clone(&store);
        let (record, roster) = group(&format!("grp-{i}"), "dev-alice");
        tokio::spawn(async move { store.create_group(record, roster, LIMIT).await })
    });
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => created += 1,
            Err(StoreError::GroupLimit { device_id, limit }) => {
                assert_eq!((device_id.as_str(), limit), ("dev-alice", LIMIT));
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, LIMIT);
    let (record, roster) = group("grp-bob", "dev-bob");
    store.create_group(record, roster, LIMIT).await.unwrap();
}

pub(crate) async fn unknown_group_is_absent(store: Arc<dyn Store>) {
    assert_eq!(store.group("nothing").await.unwrap(), None);
    assert!(store.group_members("nothing").await.unwrap().is_empty());
}

pub(crate) async fn invalid_rosters_are_rejected(store: Arc<dyn Store>) {
    let (group, roster) = sample_group();
    let mut no_owner = roster.clone();
    no_owner[0].role = GroupRole::Admin;
    let mut two_owners = roster.clone();
    two_owners[1].role = GroupRole::Owner;
    let mut twice = roster.clone();
    twice.push(member("grp-1", "dev-bob", GroupRole::Member));
    let mut foreign = roster.clone();
    foreign[2].group_id = "grp-2".to_owned();
    let wrong_owner = GroupRecord {
        owner_device: "dev-bob".to_owned(),
        ..group.clone()
    };
    for (group, roster) in [
        (group.clone(), no_owner),
        (group.clone(), two_owners),
        (group.clone(), twice),
        (group.clone(), foreign),
        (wrong_owner, roster),
    ] {
        let err = store
            .create_group(group, roster, NO_GROUP_LIMIT)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    }
    assert_eq!(store.group("grp-1").await.unwrap(), None);
    assert!(store.group_members("grp-1").await.unwrap().is_empty());
}

// ---------------------------------------------------------------- offline queue

pub(crate) async fn enqueue_and_replay_in_order(store: Arc<dyn Store>) {
    // Order keys decide the replay order, not the enqueue order.
    for (key, frame) in [(30, "c"), (10, "a"), (20, "b")] {
        let outcome = store
            .enqueue(envelope(&["dev-bob"], key, frame.as_bytes()))
            .await
            .unwrap();
        assert_eq!(outcome, stored(&["dev-bob"]));
    }
    // Equal keys keep enqueue order.
    store
        .enqueue(envelope(&["dev-bob"], 30, b"d"))
        .await
        .unwrap();
    assert_eq!(
        frames(store.as_ref(), "dev-bob", 100).await,
        [b"a", b"b", b"c", b"d"]
    );
    let first_two = store.pending_envelopes("dev-bob", 100, 2).await.unwrap();
    assert_eq!(first_two.len(), 2);
    let e = &first_two[0];
    assert_eq!(
        (e.recipient.as_str(), e.channel_id, e.sender.as_str()),
        ("dev-bob", 7, "dev-alice")
    );
    assert_eq!((e.order_key, e.enqueued_at, e.expires_at), (10, 100, 1_000));
    assert!(first_two[0].envelope_id != first_two[1].envelope_id);
    assert_eq!(store.queued_count("dev-bob", 100).await.unwrap(), 4);
    assert_eq!(store.queued_count("dev-carol", 100).await.unwrap(), 0);
    assert!(frames(store.as_ref(), "dev-carol", 100).await.is_empty());
}

pub(crate) async fn one_payload_serves_many_recipients(store: Arc<dyn Store>) {
    // Duplicated recipients count once.
    let outcome = store
        .enqueue(envelope(&["dev-carol", "dev-bob", "dev-bob"], 1, b"hi all"))
        .await
        .unwrap();
    assert_eq!(outcome, stored(&["dev-bob", "dev-carol"]));
    let bob = store.pending_envelopes("dev-bob", 100, 10).await.unwrap();
    assert_eq!(
        store
            .mark_delivered("dev-bob", &[bob[0].envelope_id], 150)
            .await
            .unwrap(),
        1
    );
    // Carol's copy is still there after Bob's delivery removed his.
    assert_eq!(frames(store.as_ref(), "dev-carol", 150).await, [b"hi all"]);
    assert!(frames(store.as_ref(), "dev-bob", 150).await.is_empty());
    let carol = store.pending_envelopes("dev-carol", 150, 10).await.unwrap();
    // Another recipient's envelope id is ignored.
    assert_eq!(
        store
            .mark_delivered("dev-bob", &[carol[0].envelope_id], 150)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .mark_delivered("dev-carol", &[carol[0].envelope_id], 150)
            .await
            .unwrap(),
        1
    );
    assert!(frames(store.as_ref(), "dev-carol", 150).await.is_empty());
}

pub(crate) async fn delivery_advances_inbox_offsets(store: Arc<dyn Store>) {
    for (channel, frame) in [(7, "a"), (8, "b"), (7, "c")] {
        let mut e = envelope(&["dev-bob"], 1, frame.as_bytes());
        e.channel_id = channel;
        store.enqueue(e).await.unwrap();
    }
    assert_eq!(store.inbox_offset("dev-bob", 7).await.unwrap(), None);
    let pending = store.pending_envelopes("dev-bob", 100, 10).await.unwrap();
    let ids: Vec<i64> = pending.iter().map(|e| e.envelope_id).collect();
    assert_eq!(
        store
            .mark_delivered("dev-bob", &ids[..2], 200)
            .await
            .unwrap(),
        2
    );
    let on7 = store.inbox_offset("dev-bob", 7).await.unwrap().unwrap();
    assert_eq!((on7.device_id.as_str(), on7.channel_id), ("dev-bob", 7));
    assert_eq!((on7.last_envelope_id, on7.updated_at), (ids[0], 200));
    let on8 = store.inbox_offset("dev-bob", 8).await.unwrap().unwrap();
    assert_eq!(on8.last_envelope_id, ids[1]);
    assert_eq!(frames(store.as_ref(), "dev-bob", 200).await, [b"c"]);

    assert_eq!(
        store
            .mark_delivered("dev-bob", &ids[2..], 300)
            .await
            .unwrap(),
        1
    );
    let on7 = store.inbox_offset("dev-bob", 7).await.unwrap().unwrap();
    assert_eq!((on7.last_envelope_id, on7.updated_at), (ids[2], 300));
    // Delivering nothing (or again) changes nothing.
    assert_eq!(store.mark_delivered("dev-bob", &[], 400).await.unwrap(), 0);
    assert_eq!(store.mark_delivered("dev-bob", &ids, 400).await.unwrap(), 0);
    assert_eq!(
        store
            .inbox_offset("dev-bob", 7)
            .await
            .unwrap()
            .unwrap()
            .updated_at,
        300
    );
    assert_eq!(store.inbox_offset("dev-carol", 7).await.unwrap(), None);

    // Envelope ids keep growing after deletions, so offsets stay comparable.
    store
        .enqueue(envelope(&["dev-bob"], 1, b"d"))
        .await
        .unwrap();
    let next = store.pending_envelopes("dev-bob", 100, 10).await.unwrap();
    assert!(next[0].envelope_id > ids[2]);
}

pub(crate) async fn expired_envelopes_are_dropped_and_purged(store: Arc<dyn Store>) {
    let mut short = envelope(&["dev-bob", "dev-carol"], 1, b"short");
    short.expires_at = 200;
    store.enqueue(short).await.unwrap();
    store
        .enqueue(envelope(&["dev-bob"], 2, b"long"))
        .await
        .unwrap();
    assert_eq!(
        frames(store.as_ref(), "dev-bob", 199).await,
        [b"short".as_slice(), b"long"]
    );
    // At and after expiry the envelope is never replayed nor counted.
    assert_eq!(frames(store.as_ref(), "dev-bob", 200).await, [b"long"]);
    assert_eq!(store.queued_count("dev-bob", 200).await.unwrap(), 1);
    assert_eq!(store.purge_expired_envelopes(200).await.unwrap(), 2);
    assert_eq!(store.purge_expired_envelopes(200).await.unwrap(), 0);
    assert_eq!(frames(store.as_ref(), "dev-bob", 100).await, [b"long"]);
    assert!(frames(store.as_ref(), "dev-carol", 100).await.is_empty());

    let mut dead = envelope(&["dev-bob"], 1, b"dead");
    dead.expires_at = dead.enqueued_at;
    let err = store.enqueue(dead).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

pub(crate) async fn full_queues_refuse_new_envelopes(store: Arc<dyn Store>) {
    let bounded = |frame: &[u8], recipients: &[&str]| NewEnvelope {
        limits: QueueLimits::frames_per_recipient(3),
        ..envelope(recipients, 1, frame)
    };
    let mut expiring = bounded(b"old", &["dev-bob"]);
    expiring.expires_at = 150;
    store.enqueue(expiring).await.unwrap();
    store.enqueue(bounded(b"1", &["dev-bob"])).await.unwrap();
    store.enqueue(bounded(b"2", &["dev-bob"])).await.unwrap();
    // Full for Bob (at time 100 the expiring one still counts), not for Carol.
    let outcome = store
        .enqueue(bounded(b"3", &["dev-bob", "dev-carol"]))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        EnqueueOutcome::Stored {
            stored: vec!["dev-carol".to_owned()],
            refused: vec![Refusal {
                recipient: "dev-bob".to_owned(),
                limit: QuotaLimit::RecipientFrames,
            }],
        }
    );
    assert_eq!(
        frames(store.as_ref(), "dev-bob", 100).await,
        [b"old".as_slice(), b"1", b"2"]
    );
    assert_eq!(frames(store.as_ref(), "dev-carol", 100).await, [b"3"]);
    // Once the old one has expired there is room again: nothing is dropped to make room.
    let mut later = bounded(b"4", &["dev-bob"]);
    later.enqueued_at = 150;
    assert_eq!(store.enqueue(later).await.unwrap(), stored(&["dev-bob"]));
    assert_eq!(
        frames(store.as_ref(), "dev-bob", 150).await,
        [b"1".as_slice(), b"2", b"4"]
    );
}

pub(crate) async fn idempotency_keys_drop_resends(store: Arc<dyn Store>) {
    let keyed = |frame: &[u8], key: &str, at: i64| NewEnvelope {
        enqueued_at: at,
        idempotency: Some(IdempotencyKey {
            scope: "dev-alice".to_owned(),
            key: key.to_owned(),
            expires_at: 300,
        }),
        ..envelope(&["dev-bob"], 1, frame)
    };
    assert_eq!(
        store.enqueue(keyed(b"once", "k1", 100)).await.unwrap(),
        stored(&["dev-bob"])
    );
    assert_eq!(
        store.enqueue(keyed(b"once", "k1", 200)).await.unwrap(),
        EnqueueOutcome::Duplicate
    );
    // Another key, or the same key in another scope, is new.
    assert_eq!(
        store.enqueue(keyed(b"twice", "k2", 200)).await.unwrap(),
        stored(&["dev-bob"])
    );
    let mut other_scope = keyed(b"other", "k1", 200);
    if let Some(key) = other_scope.idempotency.as_mut() {
        key.scope = "dev-carol".to_owned();
    }
    assert_eq!(
        store.enqueue(other_scope).await.unwrap(),
        stored(&["dev-bob"])
    );
    assert_eq!(frames(store.as_ref(), "dev-bob", 200).await.len(), 3);
    // An expired key no longer counts.
    let mut renewed = keyed(b"again", "k1", 300);
    renewed.expires_at = 2_000;
    if let Some(key) = renewed.idempotency.as_mut() {
        key.expires_at = 900;
    }
    assert_eq!(store.enqueue(renewed).await.unwrap(), stored(&["dev-bob"]));

    // A frame refused for every recipient does not record its key.
    let mut refused = keyed(b"full", "k3", 200);
    refused.limits = QueueLimits::frames_per_recipient(1);
    assert!(matches!(
        store.enqueue(refused.clone()).await.unwrap(),
        EnqueueOutcome::Stored { stored, .. } if stored.is_empty()
    ));
    refused.limits = QueueLimits::frames_per_recipient(100);
    assert_eq!(store.enqueue(refused).await.unwrap(), stored(&["dev-bob"]));

    // k2, k3 and the dev-carol k1 expire at 300; the renewed k1 lives on.
    assert_eq!(store.purge_expired_idempotency(300).await.unwrap(), 3);
    assert_eq!(store.purge_expired_idempotency(300).await.unwrap(), 0);
    assert_eq!(
        store.enqueue(keyed(b"k1 again", "k1", 400)).await.unwrap(),
        EnqueueOutcome::Duplicate
    );
}

pub(crate) async fn queue_bound_holds_under_concurrency(store: Arc<dyn Store>) {
    // Ten senders race to fill a queue bounded at 4: exactly 4 frames are stored.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..10_u8 {
        let store = Arc::clone(&store);
        let e = NewEnvelope {
            limits: QueueLimits::frames_per_recipient(4),
            ..envelope(&["dev-bob", "dev-carol"], i64::from(n), &[n])
        };
        tasks.spawn(async move { store.enqueue(e).await });
    }
    let mut stored_for_bob = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap().unwrap() {
            EnqueueOutcome::Stored { stored, refused } => {
                assert_eq!(stored.len() + refused.len(), 2);
                if stored.iter().any(|r| r == "dev-bob") {
                    stored_for_bob += 1;
                }
            }
            EnqueueOutcome::Duplicate => panic!("no idempotency keys were given"),
        }
    }
    assert_eq!(stored_for_bob, 4);
    assert_eq!(store.queued_count("dev-bob", 100).await.unwrap(), 4);
    assert_eq!(store.queued_count("dev-carol", 100).await.unwrap(), 4);
}

pub(crate) async fn concurrent_deliveries_of_one_payload_leave_nothing(store: Arc<dyn Store>) {
    // One payload for eight recipients, all delivered at once: every copy goes and every
    // recipient's offset moves (backends check that the shared payload went with the last).
    let recipients: Vec<String> = (0..8).map(|n| format!("dev-r{n}")).collect();
    let names: Vec<&str> = recipients.iter().map(String::as_str).collect();
    store.enqueue(envelope(&names, 1, b"shared")).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for recipient in recipients.clone() {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let ids: Vec<i64> = store
                .pending_envelopes(&recipient, 100, 10)
                .await
                .unwrap()
                .iter()
                .map(|e| e.envelope_id)
                .collect();
            store.mark_delivered(&recipient, &ids, 150).await.unwrap()
        });
    }
    let mut delivered = 0;
    while let Some(joined) = tasks.join_next().await {
        delivered += joined.unwrap();
    }
    assert_eq!(delivered, 8);
    for recipient in &recipients {
        assert_eq!(store.queued_count(recipient, 100).await.unwrap(), 0);
        assert!(store.inbox_offset(recipient, 7).await.unwrap().is_some());
    }
    assert_eq!(store.purge_expired_envelopes(i64::MAX).await.unwrap(), 0);
}
