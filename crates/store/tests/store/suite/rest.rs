//! Pairing codes and friend lists.

use std::sync::Arc;

use commucat_store::{
    DeviceKeyEvent, FriendRecord, PairingRecord, RedeemOutcome, Store, StoreError, UserToCreate,
};

use super::{device, event, seed};

fn code(code: &str, user_id: &str, issuer: &str, expires_at: i64) -> PairingRecord {
    PairingRecord {
        code: code.to_owned(),
        user_id: user_id.to_owned(),
        issuer_device_id: issuer.to_owned(),
        issued_at: 10_000,
        expires_at,
        attempts: 0,
        redeemed_at: None,
        redeemed_device_id: None,
    }
}

fn claim_of(user_id: &str, name: &str) -> commucat_store::NewDeviceRegistration {
    let dev = device(user_id, name, 10_100);
    commucat_store::NewDeviceRegistration {
        key_event: event(&dev, DeviceKeyEvent::REGISTER, 10_100),
        user: UserToCreate::Existing(user_id.to_owned()),
        device: dev,
        max_active_devices: None,
    }
}

pub(crate) async fn pairing_code_redeems_once(store: Arc<dyn Store>) {
    let (user, issuer) = seed(store.as_ref(), "alice").await;
    let pairing = code("ABCD-EFGH", &user.user_id, &issuer.device_id, 10_300);
    store.create_pairing(pairing.clone()).await.unwrap();
    assert_eq!(
        store.pairing("ABCD-EFGH").await.unwrap(),
        Some(pairing.clone())
    );
    assert!(matches!(
        store.create_pairing(pairing.clone()).await,
        Err(StoreError::Conflict(_))
    ));

    let outcome = store
        .redeem_pairing("ABCD-EFGH", 10_100, 5, claim_of(&user.user_id, "alice-2"))
        .await
        .unwrap();
    assert_eq!(outcome, RedeemOutcome::Redeemed(user.clone()));
    let stored = store.pairing("ABCD-EFGH").await.unwrap().unwrap();
    assert_eq!(stored.redeemed_at, Some(10_100));
    assert_eq!(stored.redeemed_device_id.as_deref(), Some("dev-alice-2"));
    assert_eq!(stored.attempts, 0);
    let new = store.device("dev-alice-2").await.unwrap().unwrap();
    assert_eq!(new.user_id, user.user_id);
    let events = store.key_events("dev-alice-2").await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, DeviceKeyEvent::REGISTER);

    // A second claim is refused and counted.
    let again = store
        .redeem_pairing("ABCD-EFGH", 10_101, 5, claim_of(&user.user_id, "alice-3"))
        .await
        .unwrap();
    assert_eq!(again, RedeemOutcome::AlreadyRedeemed);
    assert_eq!(
        store.pairing("ABCD-EFGH").await.unwrap().unwrap().attempts,
        1
    );
    assert_eq!(store.device("dev-alice-3").await.unwrap(), None);
}

pub(crate) async fn pairing_refusals_count_attempts(store: Arc<dyn Store>) {
    let (user, issuer) = seed(store.as_ref(), "alice").await;
    store
        .create_pairing(code("AAAA-BBBB", &user.user_id, &issuer.device_id, 10_300))
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_pairing("ZZZZ-ZZZZ", 10_100, 5, claim_of(&user.user_id, "x"))
            .await
            .unwrap(),
        RedeemOutcome::Unknown
    );
    // Expired (at the expiry second exactly) five times, then too many attempts even in time.
    for _ in 0..5 {
        assert_eq!(
            store
                .redeem_pairing("AAAA-BBBB", 10_300, 5, claim_of(&user.user_id, "x"))
                .await
                .unwrap(),
            RedeemOutcome::Expired
        );
    }
    assert_eq!(
        store
            .redeem_pairing("AAAA-BBBB", 10_100, 5, claim_of(&user.user_id, "x"))
            .await
            .unwrap(),
        RedeemOutcome::TooManyAttempts
    );
    assert_eq!(
        store.pairing("AAAA-BBBB").await.unwrap().unwrap().attempts,
        6
    );
    assert_eq!(store.device("dev-x").await.unwrap(), None);
    assert_eq!(store.purge_expired_pairings(10_299).await.unwrap(), 0);
    assert_eq!(store.purge_expired_pairings(10_300).await.unwrap(), 1);
    assert_eq!(store.pairing("AAAA-BBBB").await.unwrap(), None);
}

pub(crate) async fn pairing_rules_are_checked(store: Arc<dyn Store>) {
    let (alice, alice_dev) = seed(store.as_ref(), "alice").await;
    let (bob, _) = seed(store.as_ref(), "bob").await;
    // issuer of another user, unknown issuer, expiry before issue
    assert!(matches!(
        store
            .create_pairing(code("C1", &bob.user_id, &alice_dev.device_id, 10_300))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .create_pairing(code("C2", &alice.user_id, "dev-none", 10_300))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .create_pairing(code("C3", &alice.user_id, &alice_dev.device_id, 10_000))
            .await,
        Err(StoreError::Invalid(_))
    ));
    store
        .create_pairing(code("C4", &alice.user_id, &alice_dev.device_id, 10_300))
        .await
        .unwrap();
    // A registration for another user is refused; nothing is written, not even an attempt.
    assert!(matches!(
        store
            .redeem_pairing("C4", 10_100, 5, claim_of(&bob.user_id, "bob-2"))
            .await,
        Err(StoreError::Invalid(_))
    ));
    // A failing registration (taken device id) rolls everything back.
    assert!(matches!(
        store
            .redeem_pairing("C4", 10_100, 5, claim_of(&alice.user_id, "alice-1"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let stored = store.pairing("C4").await.unwrap().unwrap();
    assert_eq!((stored.attempts, stored.redeemed_at), (0, None));
}

fn friend(id: &str, handle: Option<&str>, alias: Option<&str>) -> FriendRecord {
    FriendRecord {
        user_id: id.to_owned(),
        handle: handle.map(str::to_owned),
        alias: alias.map(str::to_owned),
    }
}

pub(crate) async fn friend_lists_are_replaced(store: Arc<dyn Store>) {
    let (alice, _) = seed(store.as_ref(), "alice").await;
    let (bob, _) = seed(store.as_ref(), "bob").await;
    assert!(store.friends(&alice.user_id).await.unwrap().is_empty());
    let list = vec![
        friend("u-2", Some("zed"), None),
        friend("u-1", None, Some("Mum")),
        friend("u-2", Some("zed2"), Some("Z")),
    ];
    let stored = store.replace_friends(&alice.user_id, list).await.unwrap();
    let expected = vec![
        friend("u-2", Some("zed2"), Some("Z")),
        friend("u-1", None, Some("Mum")),
    ];
    assert_eq!(stored, expected);
    assert_eq!(store.friends(&alice.user_id).await.unwrap(), expected);
    // Lists are per user.
    assert!(store.friends(&bob.user_id).await.unwrap().is_empty());
    // Replacing drops entries that are no longer listed.
    store
        .replace_friends(&alice.user_id, vec![friend("u-3", None, None)])
        .await
        .unwrap();
    assert_eq!(
        store.friends(&alice.user_id).await.unwrap(),
        vec![friend("u-3", None, None)]
    );
    store.replace_friends(&alice.user_id, vec![]).await.unwrap();
    assert!(store.friends(&alice.user_id).await.unwrap().is_empty());
    assert!(matches!(
        store.replace_friends("nobody", vec![]).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub(crate) async fn pairing_claims_race_for_one_redemption(store: Arc<dyn Store>) {
    let (user, issuer) = seed(store.as_ref(), "alice").await;
    store
        .create_pairing(code("RACE-CODE", &user.user_id, &issuer.device_id, 10_300))
        .await
        .unwrap();
    // Six claims of one code at once: exactly one redeems it, every other is a counted refusal.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..6 {
        let store = Arc::clone(&store);
        let claim = claim_of(&user.user_id, &format!("alice-claim-{n}"));
        tasks.spawn(async move { store.redeem_pairing("RACE-CODE", 10_100, 50, claim).await });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined.unwrap().unwrap());
    }
    let redeemed = outcomes
        .iter()
        .filter(|o| matches!(o, RedeemOutcome::Redeemed(_)))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| **o == RedeemOutcome::AlreadyRedeemed)
        .count();
    assert_eq!((redeemed, refused), (1, 5), "{outcomes:?}");
    let stored = store.pairing("RACE-CODE").await.unwrap().unwrap();
    assert_eq!(stored.attempts, 5);
    assert_eq!(store.count_active_devices(&user.user_id).await.unwrap(), 2);
}

pub(crate) async fn concurrent_sign_ups_share_no_handle(store: Arc<dyn Store>) {
    // Four new accounts race for one handle: one wins, the others are told it is taken.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..4 {
        let store = Arc::clone(&store);
        let mut user = super::user(&format!("racer{n}"));
        user.handle = "popular".to_owned();
        let dev = device(&user.user_id, &format!("racer{n}-1"), 2_000);
        let reg = commucat_store::NewDeviceRegistration {
            key_event: event(&dev, DeviceKeyEvent::REGISTER, 2_000),
            user: UserToCreate::New(user),
            device: dev,
            max_active_devices: None,
        };
        tasks.spawn(async move { store.register_device(reg).await });
    }
    let (mut ok, mut taken) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict(message)) => {
                assert!(message.contains("popular"), "{message}");
                taken += 1;
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!((ok, taken), (1, 3));
    let owner = store.user_by_handle("popular").await.unwrap().unwrap();
    assert_eq!(
        store.devices_of_user(&owner.user_id).await.unwrap().len(),
        1
    );
}
