//! The offline relay queue: `relay_payload`, `relay_queue`, `inbox_offset` and `idempotency`.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{SqliteConnection, SqliteExecutor, SqlitePool};

use super::map_err;
use crate::error::{Result, StoreError};
use crate::model::{EnqueueOutcome, IdempotencyKey, InboxOffset, NewEnvelope, QueuedEnvelope};
use crate::rows::{EnvelopeRow, OffsetRow, count, decode_all};

pub(super) async fn enqueue(pool: &SqlitePool, envelope: NewEnvelope) -> Result<EnqueueOutcome> {
    if envelope.expires_at <= envelope.enqueued_at {
        return Err(StoreError::Invalid(
            "envelope expires before it is enqueued".to_owned(),
        ));
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    if let Some(key) = &envelope.idempotency
        && !record_key(&mut tx, key, envelope.enqueued_at).await?
    {
        return Ok(EnqueueOutcome::Duplicate);
    }
    let recipients: BTreeSet<&str> = envelope.recipients.iter().map(String::as_str).collect();
    let mut stored = Vec::new();
    let mut refused = Vec::new();
    for recipient in recipients {
        if queued(&mut *tx, recipient, envelope.enqueued_at).await? >= envelope.max_per_recipient {
            refused.push(recipient.to_owned());
        } else {
            stored.push(recipient.to_owned());
        }
    }
    if stored.is_empty() {
        // Nothing to commit: dropping the transaction also forgets the idempotency key, so a
        // resend is judged afresh.
        return Ok(EnqueueOutcome::Stored { stored, refused });
    }
    {
        let payload_id: i64 = sqlx::query_scalar(
            "INSERT INTO relay_payload
                 (channel_id, sender, order_key, frame, enqueued_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             RETURNING payload_id",
        )
        .bind(i64::from(envelope.channel_id))
        .bind(&envelope.sender)
        .bind(envelope.order_key)
        .bind(&envelope.frame)
        .bind(envelope.enqueued_at)
        .bind(envelope.expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        for recipient in &stored {
            sqlx::query("INSERT INTO relay_queue (recipient, payload_id) VALUES (?1, ?2)")
                .bind(recipient)
                .bind(payload_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
    }
    tx.commit().await.map_err(map_err)?;
    Ok(EnqueueOutcome::Stored { stored, refused })
}

/// Records `key` unless an unexpired copy exists; returns whether it was recorded.
async fn record_key(tx: &mut SqliteConnection, key: &IdempotencyKey, now: i64) -> Result<bool> {
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
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected() > 0)
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
) -> Result<Vec<QueuedEnvelope>> {
    let rows = sqlx::query_as::<_, EnvelopeRow>(
        "SELECT q.envelope_id, q.recipient, p.channel_id, p.sender, p.order_key, p.frame,
                p.enqueued_at, p.expires_at
         FROM relay_queue q JOIN relay_payload p ON p.payload_id = q.payload_id
         WHERE q.recipient = ?1 AND p.expires_at > ?2
         ORDER BY p.order_key, q.envelope_id
         LIMIT ?3",
    )
    .bind(recipient)
    .bind(now)
    .bind(i64::from(limit))
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
    let ids = format!(
        "[{}]",
        envelope_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    // This recipient's entries among the ids (others are ignored), with their channels.
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT q.envelope_id, q.payload_id, p.channel_id
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
    // Highest delivered envelope per channel, and the payloads that may now be unreferenced.
    let mut last_per_channel: BTreeMap<i64, i64> = BTreeMap::new();
    let mut payloads = BTreeSet::new();
    for &(envelope_id, payload_id, channel_id) in &rows {
        payloads.insert(payload_id);
        let last = last_per_channel.entry(channel_id).or_insert(envelope_id);
        *last = (*last).max(envelope_id);
    }
    for (channel_id, last) in last_per_channel {
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
    let envelopes = sqlx::query(
        "DELETE FROM relay_queue WHERE payload_id IN
             (SELECT payload_id FROM relay_payload WHERE expires_at <= ?1)",
    )
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?
    .rows_affected();
    sqlx::query("DELETE FROM relay_payload WHERE expires_at <= ?1")
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(envelopes)
}

pub(super) async fn purge_expired_keys(db: impl SqliteExecutor<'_>, now: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM idempotency WHERE expires_at <= ?1")
        .bind(now)
        .execute(db)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected())
}
