#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The shared `Store` suite against SQLite: a fresh database file per test, and the
//! in-memory variant.

mod suite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use commucat_store::{SqliteStore, Store};
use sqlx::Connection;
use tempfile::TempDir;

async fn fresh_file() -> (TempDir, PathBuf, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    // a missing parent directory is created by `open`
    let path = dir.path().join("data").join("commucat.db");
    let store = SqliteStore::open(&path).await.unwrap();
    (dir, path, Arc::new(store))
}

macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {
        mod file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, _path, store) = super::fresh_file().await;
                    super::suite::$name(store).await;
                }
            )*
        }

        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = commucat_store::SqliteStore::open_in_memory().await.unwrap();
                    super::suite::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
    };
}

suite_tests!(
    ping,
    register_new_user_and_device,
    unknown_rows_are_absent,
    register_on_existing_user,
    register_on_unknown_user_is_not_found,
    handle_conflict_rolls_back_everything,
    failure_after_user_insert_rolls_back_user,
    duplicate_user_id_is_conflict,
    duplicate_device_id_is_conflict,
    duplicate_event_id_rolls_back_device,
    mismatched_ids_are_invalid,
    device_limit_is_enforced,
    device_limit_holds_under_concurrency,
    key_events_on_register_and_revoke,
    revoke_unknown_is_not_found,
    revoke_with_foreign_event_is_invalid,
    profile_update_coalesces,
    session_lifecycle,
    session_requires_matching_active_device,
    revoke_deletes_sessions,
    rotate_replaces_key_and_ends_sessions,
    rotate_refuses_revoked_unknown_and_invalid,
    purge_expired_sessions,
    group_lifecycle,
    unknown_group_is_absent,
    invalid_rosters_are_rejected,
    enqueue_and_replay_in_order,
    one_payload_serves_many_recipients,
    delivery_advances_inbox_offsets,
    expired_envelopes_are_dropped_and_purged,
    full_queues_refuse_new_envelopes,
    idempotency_keys_drop_resends,
    pairing_code_redeems_once,
    pairing_refusals_count_attempts,
    pairing_rules_are_checked,
    friend_lists_are_replaced,
);

#[tokio::test]
async fn reopen_file_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("commucat.db");
    suite::reopen_keeps_data(async || -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
        store
    })
    .await;
}

/// Raw connection to the file, bypassing the store (and its CHECK constraints).
async fn raw(path: &Path) -> sqlx::SqliteConnection {
    let mut conn = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(path),
    )
    .await
    .unwrap();
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

#[tokio::test]
async fn corrupt_public_key_is_reported() {
    let (_dir, path, store) = fresh_file().await;
    suite::corrupt_public_key_is_reported(store, async |device_id: &str| {
        let mut conn = raw(&path).await;
        let done = sqlx::query("UPDATE devices SET public_key = x'010203' WHERE device_id = ?1")
            .bind(device_id)
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
        conn.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn corrupt_status_is_reported() {
    let (_dir, path, store) = fresh_file().await;
    let (_, dev) = suite::seed(store.as_ref(), "alice").await;
    let mut conn = raw(&path).await;
    sqlx::query("UPDATE devices SET status = 'banned' WHERE device_id = ?1")
        .bind(&dev.device_id)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let err = store.device(&dev.device_id).await.unwrap_err();
    assert!(
        matches!(&err, commucat_store::StoreError::Corrupt(m) if m.contains("banned")),
        "{err:?}"
    );
}

#[tokio::test]
async fn schema_rejects_bad_key_length() {
    // without the test-only pragma, the CHECK constraint stops a bad key at write time
    let (_dir, path, store) = fresh_file().await;
    let (_, dev) = suite::seed(store.as_ref(), "alice").await;
    let mut conn = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
    )
    .await
    .unwrap();
    let err = sqlx::query("UPDATE devices SET public_key = x'01' WHERE device_id = ?1")
        .bind(&dev.device_id)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("CHECK"), "{err}");
}

#[tokio::test]
async fn file_that_is_not_a_database_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(
        matches!(err, commucat_store::StoreError::Corrupt(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn unreachable_path_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    // the parent "directory" is a regular file
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = SqliteStore::open(&blocker.join("db.sqlite"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, commucat_store::StoreError::Unavailable(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn database_file_is_in_wal_mode() {
    let (_dir, path, store) = fresh_file().await;
    drop(store);
    let mut conn = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
    )
    .await
    .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn database_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path, store) = fresh_file().await;
    store.ping().await.unwrap();
    let mut checked = 0;
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(meta) = std::fs::metadata(&file) {
            assert_eq!(
                meta.permissions().mode() & 0o777,
                0o600,
                "{}",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "database and WAL files exist");
}
