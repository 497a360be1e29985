#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Test tasks are awaited or ended by the test that spawns them; the wall clock in tests only
// makes unique names and timestamps to compare with the server's.
#![allow(clippy::disallowed_methods)]
//! The shared `Store` suite, written once in `suite/` and run by [`suite_tests!`] against
//! every backend:
//!
//! - `sqlite_file`: a fresh SQLite database file per test;
//! - `sqlite_memory`: a private in-memory SQLite database per test;
//! - `postgres`: a fresh schema per test on the server named by `COMMUCAT_TEST_POSTGRES`
//!   (skipped when it is unset; an unreachable server fails the test). Each schema is dropped
//!   afterwards, so the tests run in parallel on one database.
//!
//! Backend-specific behaviour (files, URLs, raw corruption) lives in `sqlite_only.rs` and
//! `postgres_only.rs`.

mod postgres_only;
mod sqlite_only;
mod suite;

#[path = "../support/postgres.rs"]
mod pg;

use std::path::PathBuf;
use std::sync::Arc;

use commucat_store::{SqliteStore, Store};
use tempfile::TempDir;

/// A fresh SQLite file in a temporary directory (kept alive by the returned `TempDir`).
async fn fresh_file() -> (TempDir, PathBuf, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    // a missing parent directory is created by `open`
    let path = dir.path().join("data").join("commucat.db");
    let store = SqliteStore::open(&path).await.unwrap();
    (dir, path, Arc::new(store))
}

/// Generates one test per suite function and backend.
macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, _path, store) = super::fresh_file().await;
                    super::suite::$name(store).await;
                }
            )*
        }

        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = commucat_store::SqliteStore::open_in_memory().await.unwrap();
                    super::suite::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
                async fn $name() {
                    let schema = super::pg::TestSchema::new().await.expect("COMMUCAT_TEST_POSTGRES is set");
                    let store = schema.store().await;
                    super::suite::$name(std::sync::Arc::new(store.clone())).await;
                    store.close().await;
                }
            )*
        }
    };
}

suite_tests!(
    ping,
    outbox_keeps_order_and_bounds_each_peer,
    outbox_expiry_frees_room_and_purges,
    outbox_bound_holds_under_concurrency,
    claimed_keys_are_once_per_window,
    peer_registry_adds_replaces_and_blocks,
    migrations_are_listed,
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
    session_refuses_a_replaced_key,
    purge_expired_sessions,
    group_lifecycle,
    operator_views_list_across_accounts,
    unknown_group_is_absent,
    groups_per_owner_are_bounded,
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
    pairing_claims_race_for_one_redemption,
    concurrent_sign_ups_share_no_handle,
    queue_bound_holds_under_concurrency,
    active_devices_are_looked_up_in_one_batch,
    concurrent_deliveries_of_one_payload_leave_nothing,
    sessions_never_outlive_a_concurrent_revocation,
    byte_quotas_refuse_per_recipient_sender_and_total,
    usage_is_freed_by_delivery_and_expiry,
    quota_accounting_holds_under_concurrent_enqueues,
    sessions_never_outlive_a_concurrent_rotation,
    concurrent_enqueues_commit_in_each_senders_order,
    quota_refusals_among_racing_enqueues_are_each_callers_own,
    racing_resends_store_one_copy,
);
