//! Operator views across accounts: every device, pairing code and group, and queue depths.

use std::sync::Arc;

use commucat_store::{PairingRecord, Store};

use super::messaging::{NO_GROUP_LIMIT, envelope, sample_group};
use super::seed;

pub(crate) async fn operator_views_list_across_accounts(store: Arc<dyn Store>) {
    assert!(store.list_devices(10).await.unwrap().is_empty());
    assert!(store.list_pairings(10).await.unwrap().is_empty());
    assert!(store.list_groups(10).await.unwrap().is_empty());
    assert!(store.queue_depths(0, 10).await.unwrap().is_empty());

    let (alice, alice_dev) = seed(store.as_ref(), "alice").await;
    let (_, bob_dev) = seed(store.as_ref(), "bob").await;
    let ids: Vec<String> = store
        .list_devices(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(ids, ["dev-alice-1", "dev-bob-1"]);
    assert_eq!(
        store.list_devices(1).await.unwrap(),
        vec![alice_dev.clone()]
    );

    for (code, issued_at) in [("OLD-CODE", 100), ("NEW-CODE", 200)] {
        store
            .create_pairing(PairingRecord {
                code: code.to_owned(),
                user_id: alice.user_id.clone(),
                issuer_device_id: alice_dev.device_id.clone(),
                issued_at,
                expires_at: 10_000,
                attempts: 0,
                redeemed_at: None,
                redeemed_device_id: None,
            })
            .await
            .unwrap();
    }
    let codes: Vec<String> = store
        .list_pairings(10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.code)
        .collect();
    assert_eq!(codes, ["NEW-CODE", "OLD-CODE"]);

    let (group, roster) = sample_group();
    store
        .create_group(group.clone(), roster, NO_GROUP_LIMIT)
        .await
        .unwrap();
    assert_eq!(store.list_groups(10).await.unwrap(), vec![group]);

    // Two envelopes for bob, one for alice; expired ones do not count.
    let (alice_id, bob_id) = (alice_dev.device_id.as_str(), bob_dev.device_id.as_str());
    store
        .enqueue(envelope(&[bob_id, alice_id], 1, b"one"))
        .await
        .unwrap();
    store.enqueue(envelope(&[bob_id], 2, b"two")).await.unwrap();
    assert_eq!(
        store.queue_depths(500, 10).await.unwrap(),
        vec![(bob_id.to_owned(), 2), (alice_id.to_owned(), 1)]
    );
    assert_eq!(
        store.queue_depths(500, 1).await.unwrap(),
        vec![(bob_id.to_owned(), 2)]
    );
    assert!(store.queue_depths(1_000, 10).await.unwrap().is_empty());
}
