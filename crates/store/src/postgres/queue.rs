//! The offline relay queue: `relay_payload`, `relay_queue`, `inbox_offset` and `idempotency`.
//!
//! Statements work on whole recipient and envelope lists (`unnest`, `= ANY`) so a transaction
//! costs a fixed number of round trips whatever the fan-out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::{PgConnection, PgExecutor, PgPool};

use super::map_err;
use crate::error::{Result, StoreError};
use crate::model::{EnqueueOutcome, IdempotencyKey, InboxOffset, NewEnvelope, QueuedEnvelope};
use crate::rows::{EnvelopeRow, OffsetRow, count, decode_all};

/// First key of the advisory locks that serialise enqueues per recipient (`"CQ"` + 1).
const RECIPIENT_LOCK_SPACE: i32 = 0x4351_0001;

pub(super) async fn enqueue(pool: &PgPool, envelope: NewEnvelope) -> Result<EnqueueOutcome> {
    if envelope.expires_at <= envelope.enqueued_at {
        return Err(StoreError::Invalid(
            "envelope expires before it is enqueued".to_owned(),
        ));
    }
    let mut tx = pool.begin().await.map_err(map_err)?;
    if let Some(key) = &envelope.idempotency
        && !record_key(&mut tx, key, envelope.enqueued_at).await?
    {
        return Ok(EnqueueOutcome::Duplicate);
    }
    let recipients: Vec<&str> = envelope
        .recipients
        .iter()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // One lock per recipient, taken in hash order (so two enqueues never wait on each other in
    // a cycle) and held until commit: the count below stays true until the rows are in.
    sqlx::query(
        "SELECT pg_advisory_xact_lock($1, h)
         FROM (SELECT DISTINCT hashtext(r) AS h FROM unnest($2::text[]) AS r ORDER BY h) AS locks",
    )
    .bind(RECIPIENT_LOCK_SPACE)
    .bind(&recipients)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    let counts: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT r, (SELECT COUNT(*) FROM relay_queue q
                    JOIN relay_payload p ON p.payload_id = q.payload_id
                    WHERE q.recipient = r AND p.expires_at > $2)
         FROM unnest($1::text[]) AS r",
    )
    .bind(&recipients)
    .bind(envelope.enqueued_at)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?
    .into_iter()
    .collect();
    let mut stored = Vec::new();
    let mut refused = Vec::new();
    for recipient in recipients {
        let queued = count(counts.get(recipient).copied().unwrap_or(0))?;
        if queued >= envelope.max_per_recipient {
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
    let payload_id: i64 = sqlx::query_scalar(
        "INSERT INTO relay_payload (channel_id, sender, order_key, frame, enqueued_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
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
    // WITH ORDINALITY keeps the recipients' order, so envelope ids follow it as in SQLite.
    sqlx::query(
        "INSERT INTO relay_queue (recipient, payload_id)
         SELECT r, $2 FROM unnest($1::text[]) WITH ORDINALITY AS t(r, n) ORDER BY n",
    )
    .bind(&stored)
    .bind(payload_id)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(EnqueueOutcome::Stored { stored, refused })
}

/// Records `key` unless an unexpired copy exists; returns whether it was recorded. A concurrent
/// insert of the same key waits for the other transaction and then sees its row.
async fn record_key(tx: &mut PgConnection, key: &IdempotencyKey, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO idempotency (scope, key, created_at, expires_at) VALUES ($1, $2, $3, $4)
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
) -> Result<Vec<QueuedEnvelope>> {
    let rows = sqlx::query_as::<_, EnvelopeRow>(
        "SELECT q.envelope_id, q.recipient, p.channel_id, p.sender, p.order_key, p.frame,
                p.enqueued_at, p.expires_at
         FROM relay_queue q JOIN relay_payload p ON p.payload_id = q.payload_id
         WHERE q.recipient = $1 AND p.expires_at > $2
         ORDER BY p.order_key, q.envelope_id
         LIMIT $3",
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
    pool: &PgPool,
    recipient: &str,
    envelope_ids: &[i64],
    now: i64,
) -> Result<u64> {
    if envelope_ids.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await.map_err(map_err)?;
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
    let deleted: Vec<(i64, i64)> = sqlx::query_as(
        "DELETE FROM relay_queue q USING relay_payload p
         WHERE p.payload_id = q.payload_id AND q.recipient = $1 AND q.envelope_id = ANY($2)
         RETURNING q.envelope_id, p.channel_id",
    )
    .bind(recipient)
    .bind(envelope_ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?;
    // Highest delivered envelope per channel.
    let mut last_per_channel: BTreeMap<i64, i64> = BTreeMap::new();
    for &(envelope_id, channel_id) in &deleted {
        let last = last_per_channel.entry(channel_id).or_insert(envelope_id);
        *last = (*last).max(envelope_id);
    }
    let (channels, lasts): (Vec<i64>, Vec<i64>) = last_per_channel.into_iter().unzip();
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
    // Payloads first, in id order, like `mark_delivered`: the two never deadlock.
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
    let envelopes = sqlx::query("DELETE FROM relay_queue WHERE payload_id = ANY($1)")
        .bind(&payloads)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
    sqlx::query("DELETE FROM relay_payload WHERE payload_id = ANY($1)")
        .bind(&payloads)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(envelopes)
}

pub(super) async fn purge_expired_keys(db: impl PgExecutor<'_>, now: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM idempotency WHERE expires_at <= $1")
        .bind(now)
        .execute(db)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected())
}
