//! The offline relay queue: `relay_payload`, `relay_queue`, `queue_usage`, `inbox_offset` and
//! `idempotency`.
//!
//! Statements work on whole recipient and envelope lists (`unnest`, `= ANY`) so a transaction
//! costs a fixed number of round trips whatever the fan-out.

use sqlx::{PgConnection, PgExecutor, PgPool};

use super::map_err;
use crate::error::Result;
use crate::model::{InboxOffset, QueueUsage, QueuedEnvelope, UsageScope};
use crate::quota::{self, Delivery, Delta};
use crate::rows::{EnvelopeRow, OffsetRow, count, decode_all};

/// Class of the advisory lock that serialises every write to the queue (`"CQ"`): each writer
/// updates the one total usage row anyway, and one lock taken first keeps quota checks true
/// until commit and every lock order trivially the same. The lock's second key is a hash of the
/// store's schema, so stores in different schemas of one database do not wait for each other.
///
/// It is held from before the enqueue's purge and usage reads until commit, so enqueues of one
/// schema never overlap, even for disjoint senders and recipients (see the `enqueue_8_writers`
/// bench). Deliveries and purges only free usage, which cannot let a quota be exceeded; they
/// take the lock for one lock order rather than for the quotas.
const QUEUE_LOCK_CLASS: i32 = 0x4351;

/// Takes the queue lock of this store's schema for the rest of the transaction.
pub(super) async fn lock_queue(tx: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
        .bind(QUEUE_LOCK_CLASS)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Applies usage changes; recipient and sender rows left with nothing are dropped.
pub(super) async fn apply(tx: &mut PgConnection, delta: &Delta) -> Result<()> {
    let (added, removed) = delta.split();
    if !added.0.is_empty() {
        sqlx::query(
            "INSERT INTO queue_usage (kind, id, frames, bytes)
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[])
             ON CONFLICT (kind, id) DO UPDATE
                 SET frames = queue_usage.frames + excluded.frames,
                     bytes = queue_usage.bytes + excluded.bytes",
        )
        .bind(&added.0)
        .bind(&added.1)
        .bind(&added.2)
        .bind(&added.3)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    if !removed.0.is_empty() {
        sqlx::query(
            "UPDATE queue_usage u SET frames = u.frames + d.f, bytes = u.bytes + d.b
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[]) AS d(k, i, f, b)
             WHERE u.kind = d.k AND u.id = d.i",
        )
        .bind(&removed.0)
        .bind(&removed.1)
        .bind(&removed.2)
        .bind(&removed.3)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "DELETE FROM queue_usage u USING unnest($1::text[], $2::text[]) AS d(k, i)
             WHERE u.kind = d.k AND u.id = d.i AND u.kind <> 'total' AND u.frames = 0",
        )
        .bind(&removed.0)
        .bind(&removed.1)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    Ok(())
}

/// Usage of `scope` as the quotas count it.
pub(super) async fn usage_of(db: impl PgExecutor<'_>, scope: UsageScope<'_>) -> Result<QueueUsage> {
    let (kind, id) = quota::key(scope);
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT frames, bytes FROM queue_usage WHERE kind = $1 AND id = $2")
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
pub(super) async fn queued(db: impl PgExecutor<'_>, recipient: &str, now: i64) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM relay_queue q JOIN relay_payload p ON p.payload_id = q.payload_id
         WHERE q.recipient = $1 AND p.expires_at > $2",
    )
    .bind(recipient)
    .bind(now)
    .fetch_one(db)
    .await
    .map_err(map_err)?;
    count(n)
}

pub(super) async fn pending(
    db: impl PgExecutor<'_>,
    recipient: &str,
    now: i64,
    limit: u32,
    skip: &[i64],
) -> Result<Vec<QueuedEnvelope>> {
    let rows = sqlx::query_as::<_, EnvelopeRow>(
        "SELECT q.envelope_id, q.recipient, p.channel_id, p.sender, p.order_key, p.frame,
                p.enqueued_at, p.expires_at
         FROM relay_queue q JOIN relay_payload p ON p.payload_id = q.payload_id
         WHERE q.recipient = $1 AND p.expires_at > $2 AND NOT (q.envelope_id = ANY($4))
         ORDER BY p.order_key, q.envelope_id
         LIMIT $3",
    )
    .bind(recipient)
    .bind(now)
    .bind(i64::from(limit))
    .bind(skip)
    .fetch_all(db)
    .await
    .map_err(map_err)?;
    decode_all(rows)
}

pub(super) async fn mark_delivered(
    pool: &PgPool,
    recipient: &str,
    envelope_ids: &[i64],
    now: i64,
) -> Result<u64> {
    if envelope_ids.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await.map_err(map_err)?;
    lock_queue(&mut tx).await?;
    // Lock the payloads first (in id order, as the purge does): of two recipients of one
    // payload delivering at once, the second then sees the first's deletion and removes the
    // payload that is no longer referenced.
    let payloads: Vec<i64> = sqlx::query_scalar(
        "SELECT p.payload_id FROM relay_payload p
         WHERE p.payload_id IN (SELECT q.payload_id FROM relay_queue q
                                WHERE q.recipient = $1 AND q.envelope_id = ANY($2))
         ORDER BY p.payload_id
         FOR UPDATE",
    )
    .bind(recipient)
    .bind(envelope_ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?;
    if payloads.is_empty() {
        return Ok(0);
    }
    let deleted: Vec<(i64, i64, String, i32)> = sqlx::query_as(
        "DELETE FROM relay_queue q USING relay_payload p
         WHERE p.payload_id = q.payload_id AND q.recipient = $1 AND q.envelope_id = ANY($2)
         RETURNING q.envelope_id, p.channel_id, p.sender, octet_length(p.frame)",
    )
    .bind(recipient)
    .bind(envelope_ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?;
    let mut delivery = Delivery::default();
    for (envelope_id, channel_id, sender, bytes) in &deleted {
        delivery.entry(
            recipient,
            *envelope_id,
            *channel_id,
            sender,
            i64::from(*bytes),
        );
    }
    let (channels, lasts): (Vec<i64>, Vec<i64>) = delivery.last_per_channel.into_iter().unzip();
    sqlx::query(
        "INSERT INTO inbox_offset (device_id, channel_id, last_envelope_id, updated_at)
         SELECT $1, c, l, $4 FROM unnest($2::int8[], $3::int8[]) AS t(c, l)
         ON CONFLICT (device_id, channel_id) DO UPDATE
             SET last_envelope_id = GREATEST(inbox_offset.last_envelope_id, excluded.last_envelope_id),
                 updated_at = excluded.updated_at",
    )
    .bind(recipient)
    .bind(&channels)
    .bind(&lasts)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    sqlx::query(
        "DELETE FROM relay_payload p WHERE p.payload_id = ANY($1)
         AND NOT EXISTS (SELECT 1 FROM relay_queue q WHERE q.payload_id = p.payload_id)",
    )
    .bind(&payloads)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    apply(&mut tx, &delivery.delta).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(deleted.len() as u64)
}

pub(super) async fn inbox_offset(
    db: impl PgExecutor<'_>,
    device_id: &str,
    channel_id: u32,
) -> Result<Option<InboxOffset>> {
    let row = sqlx::query_as::<_, OffsetRow>(
        "SELECT device_id, channel_id, last_envelope_id, updated_at
         FROM inbox_offset WHERE device_id = $1 AND channel_id = $2",
    )
    .bind(device_id)
    .bind(i64::from(channel_id))
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    row.map(InboxOffset::try_from).transpose()
}

pub(super) async fn purge_expired(pool: &PgPool, now: i64) -> Result<u64> {
    let mut tx = pool.begin().await.map_err(map_err)?;
    lock_queue(&mut tx).await?;
    let envelopes = purge_in(&mut tx, now).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(envelopes)
}

/// Deletes the envelopes expired at `now` and frees their usage (the caller holds the queue
/// lock); returns how many entries went.
pub(super) async fn purge_in(tx: &mut PgConnection, now: i64) -> Result<u64> {
    // Payloads first, in id order, like `mark_delivered`.
    let payloads: Vec<i64> = sqlx::query_scalar(
        "SELECT payload_id FROM relay_payload WHERE expires_at <= $1
         ORDER BY payload_id FOR UPDATE",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?;
    if payloads.is_empty() {
        return Ok(0);
    }
    let expired: Vec<(String, String, i32)> = sqlx::query_as(
        "DELETE FROM relay_queue q USING relay_payload p
         WHERE p.payload_id = q.payload_id AND q.payload_id = ANY($1)
         RETURNING q.recipient, p.sender, octet_length(p.frame)",
    )
    .bind(&payloads)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?;
    sqlx::query("DELETE FROM relay_payload WHERE payload_id = ANY($1)")
        .bind(&payloads)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let delta = Delta::freed(expired.iter().map(|(recipient, sender, bytes)| {
        (recipient.as_str(), sender.as_str(), i64::from(*bytes))
    }));
    apply(tx, &delta).await?;
    Ok(expired.len() as u64)
}

pub(super) async fn purge_expired_keys(db: impl PgExecutor<'_>, now: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM idempotency WHERE expires_at <= $1")
        .bind(now)
        .execute(db)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected())
}
