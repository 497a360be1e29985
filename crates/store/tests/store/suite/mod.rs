//! Backend-independent behaviour of `Store`. Each backend's test file runs every function
//! here against a fresh, empty store.

mod federation;
mod group_commit;
mod listing;
mod messaging;
mod quota;
mod rest;

pub(crate) use federation::*;
pub(crate) use group_commit::*;
pub(crate) use listing::*;
pub(crate) use messaging::*;
pub(crate) use quota::*;
pub(crate) use rest::*;

use std::sync::Arc;

use commucat_store::{
    DeviceKeyEvent, DeviceRecord, DeviceStatus, KeyRotation, NewDeviceRegistration, RotateOutcome,
    SessionRecord, Store, StoreError, UserRecord, UserToCreate,
};

// ---------------------------------------------------------------- fixtures

pub(crate) fn user(name: &str) -> UserRecord {
    UserRecord {
        user_id: format!("user-{name}"),
        handle: name.to_owned(),
        display_name: None,
        avatar_url: None,
        created_at: 1_000,
    }
}

pub(crate) fn device(user_id: &str, name: &str, created_at: i64) -> DeviceRecord {
    DeviceRecord {
        device_id: format!("dev-{name}"),
        user_id: user_id.to_owned(),
        public_key: key(name),
        status: DeviceStatus::Active,
        created_at,
    }
}

fn key(name: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    for (slot, byte) in key.iter_mut().zip(name.bytes().cycle()) {
        *slot = byte;
    }
    key
}

fn event(device: &DeviceRecord, action: &str, at: i64) -> DeviceKeyEvent {
    DeviceKeyEvent {
        event_id: format!("evt-{action}-{}", device.device_id),
        device_id: device.device_id.clone(),
        public_key: device.public_key,
        recorded_at: at,
        action: action.to_owned(),
    }
}

fn registration(
    owner: UserToCreate,
    device: DeviceRecord,
    limit: Option<u64>,
) -> NewDeviceRegistration {
    NewDeviceRegistration {
        key_event: event(&device, DeviceKeyEvent::REGISTER, device.created_at),
        user: owner,
        device,
        max_active_devices: limit,
    }
}

/// Registers `name` as a new user with one device `<name>-1`; returns (user, device).
pub(crate) async fn seed(store: &dyn Store, name: &str) -> (UserRecord, DeviceRecord) {
    let user = user(name);
    let device = device(&user.user_id, &format!("{name}-1"), 2_000);
    let owner = store
        .register_device(registration(
            UserToCreate::New(user.clone()),
            device.clone(),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(owner, user);
    (user, device)
}

fn session(id: &str, device: &DeviceRecord, expires_at: i64) -> SessionRecord {
    SessionRecord {
        session_id: id.to_owned(),
        device_id: device.device_id.clone(),
        user_id: device.user_id.clone(),
        created_at: 3_000,
        expires_at,
    }
}

// ---------------------------------------------------------------- users and devices

pub(crate) async fn migrations_are_listed(store: Arc<dyn Store>) {
    let applied = store.applied_migrations().await.unwrap();
    assert!(
        applied.len() >= 3,
        "every backend has its migrations: {applied:?}"
    );
    assert!(applied.windows(2).all(|w| w[0].0 < w[1].0), "oldest first");
    assert!(
        applied
            .iter()
            .all(|(_, description)| !description.is_empty())
    );
}

pub(crate) async fn ping(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

pub(crate) async fn register_new_user_and_device(store: Arc<dyn Store>) {
    let (user, device) = seed(store.as_ref(), "alice").await;
    assert_eq!(store.user(&user.user_id).await.unwrap(), Some(user.clone()));
    assert_eq!(
        store.user_by_handle("alice").await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(
        store.device(&device.device_id).await.unwrap(),
        Some(device.clone())
    );
    assert_eq!(
        store.devices_of_user(&user.user_id).await.unwrap(),
        vec![device]
    );
    assert_eq!(store.count_active_devices(&user.user_id).await.unwrap(), 1);
}

pub(crate) async fn unknown_rows_are_absent(store: Arc<dyn Store>) {
    assert_eq!(store.user("nobody").await.unwrap(), None);
    assert_eq!(store.user_by_handle("nobody").await.unwrap(), None);
    assert_eq!(store.device("nothing").await.unwrap(), None);
    assert!(store.devices_of_user("nobody").await.unwrap().is_empty());
    assert_eq!(store.count_active_devices("nobody").await.unwrap(), 0);
    assert!(store.key_events("nothing").await.unwrap().is_empty());
    assert_eq!(store.session("none").await.unwrap(), None);
}

pub(crate) async fn register_on_existing_user(store: Arc<dyn Store>) {
    let (user, first) = seed(store.as_ref(), "alice").await;
    // same created_at as `first`: the list is then ordered by device_id
    let second = device(&user.user_id, "alice-0", first.created_at);
    let third = device(&user.user_id, "alice-2", 1_500);
    for dev in [&second, &third] {
        let owner = store
            .register_device(registration(
                UserToCreate::Existing(user.user_id.clone()),
                dev.clone(),
                Some(5),
            ))
            .await
            .unwrap();
        assert_eq!(owner, user);
    }
    assert_eq!(
        store.devices_of_user(&user.user_id).await.unwrap(),
        vec![third, second, first]
    );
    assert_eq!(store.count_active_devices(&user.user_id).await.unwrap(), 3);
}

pub(crate) async fn register_on_unknown_user_is_not_found(store: Arc<dyn Store>) {
    let dev = device("user-ghost", "ghost-1", 1);
    let err = store
        .register_device(registration(
            UserToCreate::Existing("user-ghost".into()),
            dev.clone(),
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::NotFound {
            what: "user",
            id: "user-ghost".into()
        }
    );
    assert_eq!(store.device(&dev.device_id).await.unwrap(), None);
}

pub(crate) async fn handle_conflict_rolls_back_everything(store: Arc<dyn Store>) {
    let (alice, _) = seed(store.as_ref(), "alice").await;
    let mut impostor = user("mallory");
    impostor.handle = alice.handle.clone();
    let dev = device(&impostor.user_id, "mallory-1", 5);
    let reg = registration(UserToCreate::New(impostor.clone()), dev.clone(), None);
    let event_id = reg.key_event.event_id.clone();

    let err = store.register_device(reg).await.unwrap_err();
    match err {
        StoreError::Conflict(message) => assert!(message.contains("alice"), "{message}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.user(&impostor.user_id).await.unwrap(), None);
    assert_eq!(store.user_by_handle("alice").await.unwrap(), Some(alice));
    assert_eq!(store.device(&dev.device_id).await.unwrap(), None);
    assert!(store.key_events(&dev.device_id).await.unwrap().is_empty());
    assert!(!event_id.is_empty());
}

pub(crate) async fn failure_after_user_insert_rolls_back_user(store: Arc<dyn Store>) {
    // The new user is inserted, then the device id collides: the user must not remain.
    let (_, alice_dev) = seed(store.as_ref(), "alice").await;
    let bob = user("bob");
    let mut dev = device(&bob.user_id, "bob-1", 5);
    dev.device_id = alice_dev.device_id.clone();
    let err = store
        .register_device(registration(UserToCreate::New(bob.clone()), dev, None))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.user(&bob.user_id).await.unwrap(), None);
    assert_eq!(store.user_by_handle("bob").await.unwrap(), None);
    assert_eq!(
        store.device(&alice_dev.device_id).await.unwrap(),
        Some(alice_dev)
    );
}

pub(crate) async fn duplicate_user_id_is_conflict(store: Arc<dyn Store>) {
    let (alice, _) = seed(store.as_ref(), "alice").await;
    let mut twin = user("twin");
    twin.user_id = alice.user_id.clone();
    let dev = device(&twin.user_id, "twin-1", 5);
    let err = store
        .register_device(registration(UserToCreate::New(twin), dev.clone(), None))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.user_by_handle("twin").await.unwrap(), None);
    assert_eq!(store.device(&dev.device_id).await.unwrap(), None);
}

pub(crate) async fn duplicate_device_id_is_conflict(store: Arc<dyn Store>) {
    let (alice, dev) = seed(store.as_ref(), "alice").await;
    let mut again = dev.clone();
    again.public_key = [9; 32];
    let mut reg = registration(UserToCreate::Existing(alice.user_id.clone()), again, None);
    reg.key_event.event_id = "evt-other".into();
    let err = store.register_device(reg).await.unwrap_err();
    match err {
        StoreError::Conflict(message) => assert!(message.contains(&dev.device_id), "{message}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    // the stored key did not change and no event was added
    assert_eq!(
        store.device(&dev.device_id).await.unwrap(),
        Some(dev.clone())
    );
    assert_eq!(store.key_events(&dev.device_id).await.unwrap().len(), 1);
}

pub(crate) async fn duplicate_event_id_rolls_back_device(store: Arc<dyn Store>) {
    let (alice, dev) = seed(store.as_ref(), "alice").await;
    let taken_event = store
        .key_events(&dev.device_id)
        .await
        .unwrap()
        .remove(0)
        .event_id;
    let second = device(&alice.user_id, "alice-2", 3);
    let mut reg = registration(
        UserToCreate::Existing(alice.user_id.clone()),
        second.clone(),
        None,
    );
    reg.key_event.event_id = taken_event;
    let err = store.register_device(reg).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.device(&second.device_id).await.unwrap(), None);
}

pub(crate) async fn mismatched_ids_are_invalid(store: Arc<dyn Store>) {
    let (alice, _) = seed(store.as_ref(), "alice").await;
    // device claims another owner
    let stray = device("user-bob", "stray", 3);
    let err = store
        .register_device(registration(
            UserToCreate::Existing(alice.user_id.clone()),
            stray.clone(),
            None,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    // key event about another device
    let dev = device(&alice.user_id, "alice-2", 3);
    let mut reg = registration(
        UserToCreate::Existing(alice.user_id.clone()),
        dev.clone(),
        None,
    );
    reg.key_event.device_id = "dev-other".into();
    let err = store.register_device(reg).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.device(&stray.device_id).await.unwrap(), None);
    assert_eq!(store.device(&dev.device_id).await.unwrap(), None);
}

pub(crate) async fn device_limit_is_enforced(store: Arc<dyn Store>) {
    let (alice, first) = seed(store.as_ref(), "alice").await;
    let second = device(&alice.user_id, "alice-2", 3);
    store
        .register_device(registration(
            UserToCreate::Existing(alice.user_id.clone()),
            second,
            Some(2),
        ))
        .await
        .unwrap();
    let third = device(&alice.user_id, "alice-3", 4);
    let err = store
        .register_device(registration(
            UserToCreate::Existing(alice.user_id.clone()),
            third.clone(),
            Some(2),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::DeviceLimit {
            user_id: alice.user_id.clone(),
            limit: 2
        }
    );
    assert_eq!(store.device(&third.device_id).await.unwrap(), None);
    assert!(store.key_events(&third.device_id).await.unwrap().is_empty());

    // revoked devices do not count
    let revoke = event(&first, DeviceKeyEvent::REVOKE, 5);
    store.revoke_device(&first.device_id, revoke).await.unwrap();
    store
        .register_device(registration(
            UserToCreate::Existing(alice.user_id.clone()),
            third,
            Some(2),
        ))
        .await
        .unwrap();
    assert_eq!(store.count_active_devices(&alice.user_id).await.unwrap(), 2);
}

pub(crate) async fn device_limit_holds_under_concurrency(store: Arc<dyn Store>) {
    // a user with no active device: register one, then revoke it
    let (alice, seed_dev) = seed(store.as_ref(), "alice").await;
    store
        .revoke_device(
            &seed_dev.device_id,
            event(&seed_dev, DeviceKeyEvent::REVOKE, 3),
        )
        .await
        .unwrap();
    assert_eq!(store.count_active_devices(&alice.user_id).await.unwrap(), 0);

    // eight registrations race for a limit of 3
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=8 {
        let store = Arc::clone(&store);
        let dev = device(&alice.user_id, &format!("alice-race-{n}"), 10 + n);
        let reg = registration(UserToCreate::Existing(alice.user_id.clone()), dev, Some(3));
        tasks.spawn(async move { store.register_device(reg).await });
    }
    let (mut ok, mut limited) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::DeviceLimit { limit: 3, .. }) => limited += 1,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!((ok, limited), (3, 5));
    assert_eq!(store.count_active_devices(&alice.user_id).await.unwrap(), 3);
    let registered = store.devices_of_user(&alice.user_id).await.unwrap();
    assert_eq!(registered.len(), 4);
    for dev in registered
        .iter()
        .filter(|d| d.status == DeviceStatus::Active)
    {
        assert_eq!(store.key_events(&dev.device_id).await.unwrap().len(), 1);
    }
}

pub(crate) async fn key_events_on_register_and_revoke(store: Arc<dyn Store>) {
    let (_, dev) = seed(store.as_ref(), "alice").await;
    let revoke = event(&dev, DeviceKeyEvent::REVOKE, dev.created_at); // same second as register
    store
        .revoke_device(&dev.device_id, revoke.clone())
        .await
        .unwrap();

    let events = store.key_events(&dev.device_id).await.unwrap();
    assert_eq!(
        events,
        vec![
            event(&dev, DeviceKeyEvent::REGISTER, dev.created_at),
            revoke.clone()
        ]
    );
    let stored = store.device(&dev.device_id).await.unwrap().unwrap();
    assert_eq!(stored.status, DeviceStatus::Revoked);
    assert_eq!(store.count_active_devices(&dev.user_id).await.unwrap(), 0);

    // revoking again changes nothing
    let mut again = revoke;
    again.event_id = "evt-again".into();
    store.revoke_device(&dev.device_id, again).await.unwrap();
    assert_eq!(store.key_events(&dev.device_id).await.unwrap().len(), 2);
}

pub(crate) async fn revoke_unknown_is_not_found(store: Arc<dyn Store>) {
    let ghost = device("user-ghost", "ghost", 1);
    let err = store
        .revoke_device(&ghost.device_id, event(&ghost, DeviceKeyEvent::REVOKE, 2))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::NotFound {
            what: "device",
            id: ghost.device_id.clone()
        }
    );
    assert!(store.key_events(&ghost.device_id).await.unwrap().is_empty());
}

pub(crate) async fn revoke_with_foreign_event_is_invalid(store: Arc<dyn Store>) {
    let (_, dev) = seed(store.as_ref(), "alice").await;
    let mut revoke = event(&dev, DeviceKeyEvent::REVOKE, 5);
    revoke.device_id = "dev-other".into();
    let err = store
        .revoke_device(&dev.device_id, revoke)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.device(&dev.device_id).await.unwrap(), Some(dev));
}

pub(crate) async fn profile_update_coalesces(store: Arc<dyn Store>) {
    let (alice, _) = seed(store.as_ref(), "alice").await;
    let updated = store
        .update_profile(
            &alice.user_id,
            Some("Alice".into()),
            Some("https://a/1.png".into()),
        )
        .await
        .unwrap();
    assert_eq!(updated.display_name.as_deref(), Some("Alice"));
    assert_eq!(updated.avatar_url.as_deref(), Some("https://a/1.png"));

    let updated = store
        .update_profile(&alice.user_id, None, Some("https://a/2.png".into()))
        .await
        .unwrap();
    assert_eq!(updated.display_name.as_deref(), Some("Alice"));
    assert_eq!(updated.avatar_url.as_deref(), Some("https://a/2.png"));

    let updated = store
        .update_profile(&alice.user_id, None, None)
        .await
        .unwrap();
    assert_eq!(
        store.user(&alice.user_id).await.unwrap(),
        Some(updated.clone())
    );
    assert_eq!(updated.handle, "alice");
    assert_eq!(updated.created_at, alice.created_at);

    let err = store
        .update_profile("nobody", Some("x".into()), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { what: "user", .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- sessions

pub(crate) async fn session_lifecycle(store: Arc<dyn Store>) {
    let (_, dev) = seed(store.as_ref(), "alice").await;
    let s = session("sess-1", &dev, 4_000);
    store
        .create_session(s.clone(), &dev.public_key)
        .await
        .unwrap();
    assert_eq!(store.session("sess-1").await.unwrap(), Some(s.clone()));

    let err = store
        .create_session(s.clone(), &dev.public_key)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    store.extend_session("sess-1", 5_000).await.unwrap();
    store.extend_session("sess-1", 5_000).await.unwrap(); // same value again is fine
    store.extend_session("sess-1", 4_500).await.unwrap(); // never shortens
    assert_eq!(
        store.session("sess-1").await.unwrap().unwrap().expires_at,
        5_000
    );

    let err = store.extend_session("sess-none", 9_000).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                what: "session",
                ..
            }
        ),
        "{err:?}"
    );

    assert!(store.delete_session("sess-1").await.unwrap());
    assert!(!store.delete_session("sess-1").await.unwrap());
    assert_eq!(store.session("sess-1").await.unwrap(), None);
}

pub(crate) async fn session_requires_matching_active_device(store: Arc<dyn Store>) {
    let (_, alice_dev) = seed(store.as_ref(), "alice").await;
    let (bob, _) = seed(store.as_ref(), "bob").await;

    let ghost = device(&bob.user_id, "ghost", 1);
    let err = store
        .create_session(session("s-ghost", &ghost, 9), &ghost.public_key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { what: "device", .. }),
        "{err:?}"
    );

    let mut wrong_user = session("s-wrong", &alice_dev, 9);
    wrong_user.user_id = bob.user_id.clone();
    let err = store
        .create_session(wrong_user, &alice_dev.public_key)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    store
        .revoke_device(
            &alice_dev.device_id,
            event(&alice_dev, DeviceKeyEvent::REVOKE, 5),
        )
        .await
        .unwrap();
    let err = store
        .create_session(session("s-revoked", &alice_dev, 9), &alice_dev.public_key)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DeviceRevoked { .. }), "{err:?}");
    for id in ["s-ghost", "s-wrong", "s-revoked"] {
        assert_eq!(store.session(id).await.unwrap(), None);
    }
}

pub(crate) async fn revoke_deletes_sessions(store: Arc<dyn Store>) {
    let (_, dev) = seed(store.as_ref(), "alice").await;
    let (_, other) = seed(store.as_ref(), "bob").await;
    store
        .create_session(session("s-a", &dev, 9_000), &dev.public_key)
        .await
        .unwrap();
    store
        .create_session(session("s-b", &other, 9_000), &other.public_key)
        .await
        .unwrap();
    store
        .revoke_device(&dev.device_id, event(&dev, DeviceKeyEvent::REVOKE, 5))
        .await
        .unwrap();
    assert_eq!(store.session("s-a").await.unwrap(), None);
    assert!(store.session("s-b").await.unwrap().is_some());
}

fn rotation(dev: &DeviceRecord, old: [u8; 32], new: &str, at: i64) -> KeyRotation {
    KeyRotation {
        device_id: dev.device_id.clone(),
        old_public_key: old,
        event: DeviceKeyEvent {
            event_id: format!("evt-rotate-{new}"),
            device_id: dev.device_id.clone(),
            public_key: key(new),
            recorded_at: at,
            action: DeviceKeyEvent::ROTATE.to_owned(),
        },
        min_interval_secs: 100,
    }
}

pub(crate) async fn rotate_replaces_key_and_ends_sessions(store: Arc<dyn Store>) {
    let (_, dev) = seed(store.as_ref(), "alice").await;
    let (_, other) = seed(store.as_ref(), "bob").await;
    for (id, d) in [("s-a", &dev), ("s-b", &other)] {
        store
            .create_session(session(id, d, 9_000), &d.public_key)
            .await
            .unwrap();
    }
    // the first rotation is not limited: right at registration
    let first = rotation(&dev, dev.public_key, "k2", dev.created_at);
    assert_eq!(
        store.rotate_device_key(first.clone()).await.unwrap(),
        RotateOutcome::Rotated
    );
    let stored = store.device(&dev.device_id).await.unwrap().unwrap();
    assert_eq!(stored.public_key, key("k2"));
    assert_eq!(stored.status, DeviceStatus::Active);
    assert_eq!(store.session("s-a").await.unwrap(), None);
    assert!(store.session("s-b").await.unwrap().is_some());
    assert_eq!(
        store.key_events(&dev.device_id).await.unwrap(),
        vec![
            event(&dev, DeviceKeyEvent::REGISTER, dev.created_at),
            first.event.clone()
        ]
    );

    // the next one waits min_interval_secs (100): 99 s later is too soon
    let again = rotation(&dev, key("k2"), "k3", dev.created_at + 99);
    assert_eq!(
        store.rotate_device_key(again).await.unwrap(),
        RotateOutcome::TooSoon {
            last_change_at: dev.created_at
        }
    );
    // a replaced key never comes back
    let back = rotation(&dev, key("k2"), "alice-1", dev.created_at + 500);
    assert_eq!(
        store.rotate_device_key(back).await.unwrap(),
        RotateOutcome::KeyReused
    );
    // a proof made with the replaced key no longer applies
    let stale = rotation(&dev, dev.public_key, "k3", dev.created_at + 500);
    assert_eq!(
        store.rotate_device_key(stale).await.unwrap(),
        RotateOutcome::KeyChanged
    );
    assert_eq!(store.key_events(&dev.device_id).await.unwrap().len(), 2);
}

pub(crate) async fn rotate_refuses_revoked_unknown_and_invalid(store: Arc<dyn Store>) {
    let (_, dev) = seed(store.as_ref(), "alice").await;
    let mut same = rotation(&dev, dev.public_key, "x", 9_000);
    same.event.public_key = dev.public_key;
    assert!(matches!(
        store.rotate_device_key(same).await,
        Err(StoreError::Invalid(_))
    ));
    let mut wrong_action = rotation(&dev, dev.public_key, "x", 9_000);
    wrong_action.event.action = DeviceKeyEvent::REGISTER.to_owned();
    assert!(matches!(
        store.rotate_device_key(wrong_action).await,
        Err(StoreError::Invalid(_))
    ));
    let ghost = device("user-ghost", "ghost", 1);
    assert!(matches!(
        store
            .rotate_device_key(rotation(&ghost, ghost.public_key, "x", 9_000))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .revoke_device(&dev.device_id, event(&dev, DeviceKeyEvent::REVOKE, 5))
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate_device_key(rotation(&dev, dev.public_key, "x", 9_000))
            .await
            .unwrap(),
        RotateOutcome::Revoked
    );
    let stored = store.device(&dev.device_id).await.unwrap().unwrap();
    assert_eq!(stored.public_key, dev.public_key);
}

pub(crate) async fn session_refuses_a_replaced_key(store: Arc<dyn Store>) {
    let (_, dev) = seed(store.as_ref(), "alice").await;
    let turn = rotation(&dev, dev.public_key, "k2", dev.created_at);
    assert_eq!(
        store.rotate_device_key(turn).await.unwrap(),
        RotateOutcome::Rotated
    );
    // A handshake that authenticated the old key before the rotation committed.
    let err = store
        .create_session(session("s-old-key", &dev, 9_000), &dev.public_key)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DeviceKeyChanged { device_id } if *device_id == dev.device_id),
        "{err:?}"
    );
    assert_eq!(store.session("s-old-key").await.unwrap(), None);
    store
        .create_session(session("s-new-key", &dev, 9_000), &key("k2"))
        .await
        .unwrap();
}

pub(crate) async fn sessions_never_outlive_a_concurrent_rotation(store: Arc<dyn Store>) {
    let (_, dev) = seed(store.as_ref(), "alice").await;
    // Twenty inserts authenticated with the old key race one rotation: none may survive it.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..20 {
        let racer = Arc::clone(&store);
        let old = dev.public_key;
        let s = session(&format!("s-turn-{n}"), &dev, 9_000);
        tasks.spawn(async move { racer.create_session(s, &old).await.map(|()| false) });
        if n == 10 {
            let store = Arc::clone(&store);
            let turn = rotation(&dev, dev.public_key, "k2", dev.created_at);
            tasks.spawn(async move {
                let outcome = store.rotate_device_key(turn).await?;
                assert_eq!(outcome, RotateOutcome::Rotated);
                Ok(true)
            });
        }
    }
    let mut rotated = false;
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok(was_rotation) => rotated |= was_rotation,
            Err(StoreError::DeviceKeyChanged { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert!(rotated);
    for n in 0..20 {
        assert_eq!(store.session(&format!("s-turn-{n}")).await.unwrap(), None);
    }
}

pub(crate) async fn purge_expired_sessions(store: Arc<dyn Store>) {
    let (_, dev) = seed(store.as_ref(), "alice").await;
    for (id, expires_at) in [("s-old", 100), ("s-edge", 200), ("s-new", 300)] {
        store
            .create_session(session(id, &dev, expires_at), &dev.public_key)
            .await
            .unwrap();
    }
    assert_eq!(store.purge_expired_sessions(200).await.unwrap(), 2);
    assert_eq!(store.session("s-old").await.unwrap(), None);
    assert_eq!(store.session("s-edge").await.unwrap(), None);
    assert!(store.session("s-new").await.unwrap().is_some());
    assert_eq!(store.purge_expired_sessions(200).await.unwrap(), 0);
}

// ---------------------------------------------------------------- durability and corruption

/// `open` returns a new handle on the same underlying database each time it is called.
pub(crate) async fn reopen_keeps_data<F>(open: F)
where
    F: AsyncFn() -> Arc<dyn Store>,
{
    let store = open().await;
    let (alice, dev) = seed(store.as_ref(), "alice").await;
    let s = session("sess-keep", &dev, 9_000);
    store
        .create_session(s.clone(), &dev.public_key)
        .await
        .unwrap();
    let (group, roster) = messaging::sample_group();
    store
        .create_group(group.clone(), roster.clone(), NO_GROUP_LIMIT)
        .await
        .unwrap();
    let envelope = messaging::envelope(&["dev-bob"], 10, b"kept");
    store.enqueue(envelope).await.unwrap();
    drop(store);

    let store = open().await;
    assert_eq!(store.user(&alice.user_id).await.unwrap(), Some(alice));
    assert_eq!(
        store.device(&dev.device_id).await.unwrap(),
        Some(dev.clone())
    );
    assert_eq!(store.key_events(&dev.device_id).await.unwrap().len(), 1);
    assert_eq!(store.session("sess-keep").await.unwrap(), Some(s));
    assert_eq!(store.group(&group.group_id).await.unwrap(), Some(group));
    assert_eq!(store.group_members("grp-1").await.unwrap(), roster);
    let pending = store.pending_envelopes("dev-bob", 500, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].frame, b"kept");
}

/// `corrupt(device_id)` must overwrite that device's stored public key with 3 bytes,
/// bypassing the store (raw SQL).
pub(crate) async fn corrupt_public_key_is_reported<F>(store: Arc<dyn Store>, corrupt: F)
where
    F: AsyncFnOnce(&str),
{
    let (alice, dev) = seed(store.as_ref(), "alice").await;
    corrupt(&dev.device_id).await;

    let err = store.device(&dev.device_id).await.unwrap_err();
    match err {
        StoreError::Corrupt(message) => {
            assert!(message.contains(&dev.device_id), "{message}");
            assert!(message.contains("3 bytes"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let err = store.devices_of_user(&alice.user_id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    // the rest of the store keeps working
    assert_eq!(store.user(&alice.user_id).await.unwrap(), Some(alice));
}

pub(crate) async fn sessions_never_outlive_a_concurrent_revocation(store: Arc<dyn Store>) {
    let (_, dev) = seed(store.as_ref(), "alice").await;
    // Twenty session inserts race one revocation: whichever way each one falls, no session of
    // the revoked device may remain.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..20 {
        let racer = Arc::clone(&store);
        let key = dev.public_key;
        let s = session(&format!("s-race-{n}"), &dev, 9_000);
        tasks.spawn(async move { racer.create_session(s, &key).await.map(|()| false) });
        if n == 10 {
            let store = Arc::clone(&store);
            let revoke = event(&dev, DeviceKeyEvent::REVOKE, 5);
            let device_id = dev.device_id.clone();
            tasks
                .spawn(async move { store.revoke_device(&device_id, revoke).await.map(|()| true) });
        }
    }
    let mut revoked = false;
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok(was_revoke) => revoked |= was_revoke,
            Err(StoreError::DeviceRevoked { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert!(revoked);
    for n in 0..20 {
        assert_eq!(store.session(&format!("s-race-{n}")).await.unwrap(), None);
    }
}

pub(crate) async fn active_devices_are_looked_up_in_one_batch(store: Arc<dyn Store>) {
    let (_, alice) = seed(store.as_ref(), "alice").await;
    let (_, bob) = seed(store.as_ref(), "bob").await;
    let (_, carol) = seed(store.as_ref(), "carol").await;
    store
        .revoke_device(
            &carol.device_id,
            event(&carol, DeviceKeyEvent::REVOKE, carol.created_at),
        )
        .await
        .unwrap();
    let asked = vec![
        bob.device_id.clone(),
        "ghost\"', ]".to_owned(),
        alice.device_id.clone(),
        carol.device_id.clone(),
        alice.device_id.clone(),
    ];
    assert_eq!(
        store.active_devices_among(&asked).await.unwrap(),
        [alice.device_id.clone(), bob.device_id.clone()]
    );
    assert!(store.active_devices_among(&[]).await.unwrap().is_empty());
}
