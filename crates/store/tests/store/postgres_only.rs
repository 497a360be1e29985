//! PostgreSQL specifics: URLs and schema names, reachability, schema isolation, and rows
//! written behind the store's back. Tests that need a server skip when
//! `COMMUCAT_TEST_POSTGRES` is unset.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commucat_store::{PostgresSettings, PostgresStore, Store, StoreError, valid_schema_name};

use super::pg::TestSchema;
use super::suite;

#[tokio::test]
async fn malformed_urls_and_schema_names_are_invalid() {
    let err = PostgresStore::connect("postgres://[::1", &PostgresSettings::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    let settings = PostgresSettings {
        schema: Some("Robert'); DROP TABLE users;--".to_owned()),
        ..PostgresSettings::default()
    };
    let err = PostgresStore::connect("postgres://127.0.0.1:1/test", &settings)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(ref m) if m.contains("schema")),
        "{err:?}"
    );
    assert!(valid_schema_name("commucat"));
    assert!(valid_schema_name("tenant_2"));
    for bad in [
        "",
        "2fast",
        "Upper",
        "with-dash",
        "quo\"te",
        &"x".repeat(64),
    ] {
        assert!(!valid_schema_name(bad), "{bad:?}");
    }
}

#[tokio::test]
async fn unreachable_server_fails_fast_as_unavailable() {
    // Port 1 on loopback: nothing listens there.
    let settings = PostgresSettings {
        acquire_timeout: Duration::from_secs(1),
        ..PostgresSettings::default()
    };
    let started = Instant::now();
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/test", &settings)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{err:?}");
}

#[tokio::test]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
async fn reopen_keeps_data() {
    let schema = TestSchema::new()
        .await
        .expect("COMMUCAT_TEST_POSTGRES is set");
    suite::reopen_keeps_data(async || -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(schema.store().await);
        store
    })
    .await;
}

#[tokio::test]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
async fn schemas_isolate_tests() {
    let one = TestSchema::new()
        .await
        .expect("COMMUCAT_TEST_POSTGRES is set");
    let two = TestSchema::new()
        .await
        .expect("COMMUCAT_TEST_POSTGRES is set");
    let (first, second) = (one.store().await, two.store().await);
    let (alice, _) = suite::seed(&first, "alice").await;
    assert_eq!(second.user(&alice.user_id).await.unwrap(), None);
    // the same rows fit in the other schema: nothing is shared
    let (again, _) = suite::seed(&second, "alice").await;
    assert_eq!(again, alice);
}

#[tokio::test]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
async fn corrupt_public_key_is_reported() {
    let schema = TestSchema::new()
        .await
        .expect("COMMUCAT_TEST_POSTGRES is set");
    let store: Arc<dyn Store> = Arc::new(schema.store().await);
    suite::corrupt_public_key_is_reported(store, async |device_id: &str| {
        let mut conn = schema.raw().await;
        // PostgreSQL cannot switch CHECK constraints off; this schema is the test's own.
        sqlx::query("ALTER TABLE devices DROP CONSTRAINT devices_public_key_check")
            .execute(&mut conn)
            .await
            .unwrap();
        let done = sqlx::query("UPDATE devices SET public_key = '\\x010203' WHERE device_id = $1")
            .bind(device_id)
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    })
    .await;
}

#[tokio::test]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
async fn corrupt_status_is_reported() {
    let schema = TestSchema::new()
        .await
        .expect("COMMUCAT_TEST_POSTGRES is set");
    let store = schema.store().await;
    let (_, dev) = suite::seed(&store, "alice").await;
    let mut conn = schema.raw().await;
    sqlx::query("ALTER TABLE devices DROP CONSTRAINT devices_status_check")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE devices SET status = 'banned' WHERE device_id = $1")
        .bind(&dev.device_id)
        .execute(&mut conn)
        .await
        .unwrap();
    let err = store.device(&dev.device_id).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("banned")),
        "{err:?}"
    );
}

#[tokio::test]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
async fn schema_rejects_bad_key_length() {
    let schema = TestSchema::new()
        .await
        .expect("COMMUCAT_TEST_POSTGRES is set");
    let store = schema.store().await;
    let (_, dev) = suite::seed(&store, "alice").await;
    let mut conn = schema.raw().await;
    let err = sqlx::query("UPDATE devices SET public_key = '\\x01' WHERE device_id = $1")
        .bind(&dev.device_id)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("devices_public_key_check"),
        "{err}"
    );
}

#[tokio::test]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
async fn the_last_delivery_of_a_shared_payload_removes_it() {
    let schema = TestSchema::new()
        .await
        .expect("COMMUCAT_TEST_POSTGRES is set");
    let store = schema.store().await;
    suite::concurrent_deliveries_of_one_payload_leave_nothing(Arc::new(store.clone())).await;
    let mut conn = schema.raw().await;
    let payloads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM relay_payload")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(payloads, 0);
}

#[tokio::test]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
async fn tables_live_in_the_configured_schema() {
    let schema = TestSchema::new()
        .await
        .expect("COMMUCAT_TEST_POSTGRES is set");
    let _store = schema.store().await;
    let mut conn = schema.raw().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = $1 ORDER BY table_name",
    )
    .bind(&schema.name)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for table in [
        "_sqlx_migrations",
        "chat_group",
        "device_key_events",
        "devices",
        "friends",
        "group_member",
        "idempotency",
        "inbox_offset",
        "pairing_codes",
        "relay_payload",
        "relay_queue",
        "sessions",
        "users",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing: {tables:?}"
        );
    }
}
