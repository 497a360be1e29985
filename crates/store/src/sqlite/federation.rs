//! `federation_outbox`, and idempotency keys claimed on their own (inbound federation events).

use sqlx::SqlitePool;

use super::map_err;
use crate::error::Result;
use crate::model::{IdempotencyKey, NewOutboxEvent, OutboxEvent, OutboxPush, OutboxStats};
use crate::rows::{OutboxRow, OutboxStatsRow, check_outbox_event, count, decode_all};

pub(super) async fn push(
    pool: &SqlitePool,
    event: NewOutboxEvent,
    max_per_peer: u64,
) -> Result<OutboxPush> {
    check_outbox_event(&event)?;
    // BEGIN IMMEDIATE: one writer at a time, so the count below holds until commit.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    sqlx::query("DELETE FROM federation_outbox WHERE peer = ?1 AND expires_at <= ?2")
        .bind(&event.peer)
        .bind(event.enqueued_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let depth: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM federation_outbox WHERE peer = ?1")
        .bind(&event.peer)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    let depth = count(depth)?;
    if depth >= max_per_peer {
        return Ok(OutboxPush::Full { depth });
    }
    let outbox_id: i64 = sqlx::query_scalar(
        "INSERT INTO federation_outbox
             (peer, channel_id, event_id, body, enqueued_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING outbox_id",
    )
    .bind(&event.peer)
    .bind(i64::from(event.channel_id))
    .bind(&event.event_id)
    .bind(&event.body)
    .bind(event.enqueued_at)
    .bind(event.expires_at)
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(OutboxPush::Stored { outbox_id })
}

pub(super) async fn batch(
    pool: &SqlitePool,
    peer: &str,
    now: i64,
    limit: u32,
) -> Result<Vec<OutboxEvent>> {
    let rows = sqlx::query_as::<_, OutboxRow>(
        "SELECT outbox_id, peer, channel_id, event_id, body, enqueued_at, expires_at, attempts,
                last_error
         FROM federation_outbox WHERE peer = ?1 AND expires_at > ?2
         ORDER BY outbox_id LIMIT ?3",
    )
    .bind(peer)
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    decode_all(rows)
}

pub(super) async fn done(pool: &SqlitePool, outbox_id: i64) -> Result<bool> {
    let done = sqlx::query("DELETE FROM federation_outbox WHERE outbox_id = ?1")
        .bind(outbox_id)
        .execute(pool)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn failed(pool: &SqlitePool, outbox_id: i64, error: &str, at: i64) -> Result<()> {
    sqlx::query(
        "UPDATE federation_outbox
         SET attempts = attempts + 1, last_error = ?2, last_attempt_at = ?3
         WHERE outbox_id = ?1",
    )
    .bind(outbox_id)
    .bind(error)
    .bind(at)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(super) async fn stats(pool: &SqlitePool, now: i64) -> Result<Vec<OutboxStats>> {
    let rows = sqlx::query_as::<_, OutboxStatsRow>(
        "SELECT o.peer AS peer, COUNT(*) AS depth, MIN(o.enqueued_at) AS oldest,
                (SELECT f.last_error FROM federation_outbox f
                 WHERE f.peer = o.peer AND f.last_attempt_at IS NOT NULL
                 ORDER BY f.last_attempt_at DESC, f.outbox_id DESC LIMIT 1) AS last_error,
                MAX(o.last_attempt_at) AS last_attempt_at
         FROM federation_outbox o WHERE o.expires_at > ?1
         GROUP BY o.peer ORDER BY o.peer",
    )
    .bind(now)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    decode_all(rows)
}

pub(super) async fn purge_expired(pool: &SqlitePool, now: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM federation_outbox WHERE expires_at <= ?1")
        .bind(now)
        .execute(pool)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected())
}

pub(super) async fn claim_key(pool: &SqlitePool, key: IdempotencyKey, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO idempotency (scope, key, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (scope, key) DO UPDATE
             SET created_at = excluded.created_at, expires_at = excluded.expires_at
             WHERE idempotency.expires_at <= excluded.created_at",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .bind(now)
    .bind(key.expires_at)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn release_key(pool: &SqlitePool, scope: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM idempotency WHERE scope = ?1 AND key = ?2")
        .bind(scope)
        .bind(key)
        .execute(pool)
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(super) async fn peers(pool: &SqlitePool) -> Result<Vec<crate::model::FederationPeer>> {
    sqlx::query_as::<_, crate::model::FederationPeer>(
        "SELECT domain, endpoint, public_key, status, ca_file, updated_at
         FROM federation_peer ORDER BY domain",
    )
    .fetch_all(pool)
    .await
    .map_err(map_err)
}

pub(super) async fn put_peer(pool: &SqlitePool, peer: crate::model::FederationPeer) -> Result<()> {
    crate::rows::check_peer(&peer)?;
    sqlx::query(
        "INSERT INTO federation_peer (domain, endpoint, public_key, status, ca_file, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (domain) DO UPDATE SET endpoint = excluded.endpoint,
             public_key = excluded.public_key, status = excluded.status,
             ca_file = excluded.ca_file, updated_at = excluded.updated_at",
    )
    .bind(&peer.domain)
    .bind(&peer.endpoint)
    .bind(&peer.public_key)
    .bind(&peer.status)
    .bind(&peer.ca_file)
    .bind(peer.updated_at)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(super) async fn set_peer_status(
    pool: &SqlitePool,
    domain: &str,
    status: &str,
    at: i64,
) -> Result<bool> {
    crate::rows::check_peer_status(status)?;
    let done =
        sqlx::query("UPDATE federation_peer SET status = ?2, updated_at = ?3 WHERE domain = ?1")
            .bind(domain)
            .bind(status)
            .bind(at)
            .execute(pool)
            .await
            .map_err(map_err)?;
    Ok(done.rows_affected() > 0)
}
