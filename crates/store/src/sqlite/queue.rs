//! The offline relay queue: `relay_payload`, `relay_queue`, `queue_usage`, `inbox_offset` and
//! `idempotency`.

use std::collections::BTreeSet;

use sqlx::{SqliteConnection, SqliteExecutor, SqlitePool};

use super::map_err;
use crate::error::Result;
use crate::model::{InboxOffset, QueueUsage, QueuedEnvelope, UsageScope};
use crate::quota::{self, Delivery, Delta};
use crate::rows::{EnvelopeRow, OffsetRow, count, decode_all};

/// Applies usage changes; recipient and sender rows left with nothing are dropped.
async fn apply(tx: &mut SqliteConnection, delta: &Delta) -> Result<()> {
    let ((kinds, ids, frames, bytes), (less_kinds, less_ids, fewer, less_bytes)) = delta.split();
    for (((kind, id), frames), bytes) in kinds.iter().zip(&ids).zip(&frames).zip(&bytes) {
        sqlx::query(
            "INSERT INTO queue_usage (kind, id, frames, bytes) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, id) DO UPDATE
                 SET frames = queue_usage.frames + excluded.frames,
                     bytes = queue_usage.bytes + excluded.bytes",
        )
        .bind(kind)
        .bind(id)
        .bind(frames)
        .bind(bytes)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    for (((kind, id), frames), bytes) in less_kinds
        .iter()
        .zip(&less_ids)
        .zip(&fewer)
        .zip(&less_bytes)
    {
        sqlx::query(
            "UPDATE queue_usage SET frames = frames + ?3, bytes = bytes + ?4
             WHERE kind = ?1 AND id = ?2",
        )
        .bind(kind)
        .bind(id)
        .bind(frames)
        .bind(bytes)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "DELETE FROM queue_usage
             WHERE kind = ?1 AND id = ?2 AND kind <> 'total' AND frames = 0",
        )
        .bind(kind)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    Ok(())
}

/// Usage of `scope` as the quotas count it.
pub(super) async fn usage_of(
    db: impl SqliteExecutor<'_>,
    scope: UsageScope<'_>,
) -> Result<QueueUsage> {
    let (kind, id) = quota::key(scope);
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT frames, bytes FROM queue_usage WHERE kind = ?1 AND id = ?2")
            .bind(kind)
            .bind(id)
            .fetch_optional(db)
            .await
            .map_err(map_err)?;
    row.map_or(Ok(QueueUsage::default()), |(frames, bytes)| {
        quota::usage(frames, bytes)
    })
}

/// Unexpired envelopes queued for `recipient`.
pub(super) async fn queued(db: impl SqliteExecutor<'_>, recipient: &str, now: i64) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM relay_queue q JOIN relay_payload p ON p.payload_id = q.payload_id
         WHERE q.recipient = ?1 AND p.expires_at > ?2",
    )
    .bind(recipient)
    .bind(now)
    .fetch_one(db)
    .await
    .map_err(map_err)?;
    count(n)
}

pub(super) async fn pending(
    db: impl SqliteExecutor<'_>,
    recipient: &str,
    now: i64,
    limit: u32,
    skip: &[i64],
) -> Result<Vec<QueuedEnvelope>> {
    let rows = sqlx::query_as::<_, EnvelopeRow>(
        "SELECT q.envelope_id, q.recipient, p.channel_id, p.sender, p.order_key, p.frame,
                p.enqueued_at, p.expires_at
         FROM relay_queue q JOIN relay_payload p ON p.payload_id = q.payload_id
         WHERE q.recipient = ?1 AND p.expires_at > ?2
           AND q.envelope_id NOT IN (SELECT value FROM json_each(?4))
         ORDER BY p.order_key, q.envelope_id
         LIMIT ?3",
    )
    .bind(recipient)
    .bind(now)
    .bind(i64::from(limit))
    .bind(id_list(skip))
    .fetch_all(db)
    .await
    .map_err(map_err)?;
    decode_all(rows)
}

pub(super) async fn mark_delivered(
    pool: &SqlitePool,
    recipient: &str,
    envelope_ids: &[i64],
    now: i64,
) -> Result<u64> {
    if envelope_ids.is_empty() {
        return Ok(0);
    }
    // The ids as a JSON array, read back with `json_each`: one statement per step whatever the
    // batch size (integers only, so nothing to escape).
    let ids = id_list(envelope_ids);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    // This recipient's entries among the ids (others are ignored), with their channels.
    let rows: Vec<(i64, i64, i64, String, i64)> = sqlx::query_as(
        "SELECT q.envelope_id, q.payload_id, p.channel_id, p.sender, length(p.frame)
         FROM relay_queue q JOIN relay_payload p ON p.payload_id = q.payload_id
         WHERE q.recipient = ?1 AND q.envelope_id IN (SELECT value FROM json_each(?2))",
    )
    .bind(recipient)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?;
    if rows.is_empty() {
        return Ok(0);
    }
    sqlx::query(
        "DELETE FROM relay_queue
         WHERE recipient = ?1 AND envelope_id IN (SELECT value FROM json_each(?2))",
    )
    .bind(recipient)
    .bind(&ids)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    // The payloads that may now be unreferenced.
    let mut payloads = BTreeSet::new();
    let mut delivery = Delivery::default();
    for (envelope_id, payload_id, channel_id, sender, bytes) in &rows {
        delivery.entry(recipient, *envelope_id, *channel_id, sender, *bytes);
        payloads.insert(*payload_id);
    }
    for (channel_id, last) in delivery.last_per_channel {
        sqlx::query(
            "INSERT INTO inbox_offset (device_id, channel_id, last_envelope_id, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (device_id, channel_id) DO UPDATE
                 SET last_envelope_id = MAX(inbox_offset.last_envelope_id, excluded.last_envelope_id),
                     updated_at = excluded.updated_at",
        )
        .bind(recipient)
        .bind(channel_id)
        .bind(last)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    let payloads = format!(
        "[{}]",
        payloads
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    sqlx::query(
        "DELETE FROM relay_payload
         WHERE payload_id IN (SELECT value FROM json_each(?1))
         AND NOT EXISTS (SELECT 1 FROM relay_queue q WHERE q.payload_id = relay_payload.payload_id)",
    )
    .bind(&payloads)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    apply(&mut tx, &delivery.delta).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(rows.len() as u64)
}

pub(super) async fn inbox_offset(
    db: impl SqliteExecutor<'_>,
    device_id: &str,
    channel_id: u32,
) -> Result<Option<InboxOffset>> {
    let row = sqlx::query_as::<_, OffsetRow>(
        "SELECT device_id, channel_id, last_envelope_id, updated_at
         FROM inbox_offset WHERE device_id = ?1 AND channel_id = ?2",
    )
    .bind(device_id)
    .bind(i64::from(channel_id))
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    row.map(InboxOffset::try_from).transpose()
}

pub(super) async fn purge_expired(pool: &SqlitePool, now: i64) -> Result<u64> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    let envelopes = purge_in(&mut tx, now).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(envelopes)
}

/// Deletes the envelopes expired at `now` and frees their usage; returns how many entries went.
pub(super) async fn purge_in(tx: &mut SqliteConnection, now: i64) -> Result<u64> {
    let expired: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT q.recipient, p.sender, length(p.frame)
         FROM relay_queue q JOIN relay_payload p ON p.payload_id = q.payload_id
         WHERE p.expires_at <= ?1",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?;
    let delta = Delta::freed(
        expired
            .iter()
            .map(|(recipient, sender, bytes)| (recipient.as_str(), sender.as_str(), *bytes)),
    );
    sqlx::query(
        "DELETE FROM relay_queue WHERE payload_id IN
             (SELECT payload_id FROM relay_payload WHERE expires_at <= ?1)",
    )
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    sqlx::query("DELETE FROM relay_payload WHERE expires_at <= ?1")
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    apply(tx, &delta).await?;
    Ok(expired.len() as u64)
}

pub(super) async fn purge_expired_keys(db: impl SqliteExecutor<'_>, now: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM idempotency WHERE expires_at <= ?1")
        .bind(now)
        .execute(db)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected())
}

/// Ids as a JSON array, read back with `json_each` (integers only, so nothing to escape).
fn id_list(ids: &[i64]) -> String {
    format!(
        "[{}]",
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    )
}
