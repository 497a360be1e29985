//! Offline enqueue by group commit: the store's writer task commits each batch of
//! [`Store::enqueue`](crate::Store::enqueue) calls in one transaction (one WAL flush), with a
//! fixed number of round trips whatever the batch size: every statement works on whole
//! columns (`unnest`, `= ANY`).

use sqlx::{PgConnection, PgPool};

use super::map_err;
use super::queue::{apply, lock_queue, purge_in};
use crate::batch_plan::{self, Current, Plan};
use crate::error::{Result, StoreError};
use crate::group_commit::BatchWriter;
use crate::model::{EnqueueOutcome, NewEnvelope};
use crate::quota;

/// The enqueue writer of one [`PostgresStore`](super::PostgresStore).
#[derive(Debug)]
pub(super) struct EnqueueWriter {
    pub(super) pool: PgPool,
}

impl BatchWriter for EnqueueWriter {
    type Item = NewEnvelope;
    type Output = EnqueueOutcome;

    async fn write(&mut self, batch: Vec<NewEnvelope>) -> Result<Vec<EnqueueOutcome>> {
        write_batch(&self.pool, batch).await
    }
}

async fn write_batch(pool: &PgPool, batch: Vec<NewEnvelope>) -> Result<Vec<EnqueueOutcome>> {
    let mut tx = pool.begin().await.map_err(map_err)?;
    // Taken first, before the keys and usage are read: every queue write of the schema waits
    // for it, so what is read here holds until commit.
    lock_queue(&mut tx).await?;
    let now = batch.iter().map(|e| e.enqueued_at).max().unwrap_or(0);
    let purged = purge_in(&mut tx, now).await?;
    let current = read_current(&mut tx, &batch).await?;
    let plan = batch_plan::plan(&batch, current);
    if plan.payloads.is_empty() {
        if purged > 0 {
            tx.commit().await.map_err(map_err)?;
        }
        // Otherwise nothing to commit: dropping the transaction also forgets the keys of
        // refused envelopes, so a resend is judged afresh.
        return Ok(plan.outcomes);
    }
    write_plan(&mut tx, &batch, &plan).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(plan.outcomes)
}

/// The usage rows and idempotency keys the batch is judged against.
async fn read_current(tx: &mut PgConnection, batch: &[NewEnvelope]) -> Result<Current> {
    let (recipients, senders) = batch_plan::usage_keys(batch);
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT kind, id, frames, bytes FROM queue_usage
         WHERE kind = 'total'
            OR (kind = 'recipient' AND id = ANY($1))
            OR (kind = 'sender' AND id = ANY($2))",
    )
    .bind(&recipients)
    .bind(&senders)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?;
    let mut current = Current::default();
    for (kind, id, frames, bytes) in rows {
        current
            .usage
            .insert((quota::kind(&kind)?, id), quota::usage(frames, bytes)?);
    }
    let (scopes, keys) = batch_plan::key_columns(batch);
    if !keys.is_empty() {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT i.scope, i.key, i.expires_at
             FROM idempotency i JOIN unnest($1::text[], $2::text[]) AS k(s, k)
                  ON i.scope = k.s AND i.key = k.k",
        )
        .bind(&scopes)
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        for (scope, key, expires_at) in rows {
            current.keys.insert((scope, key), expires_at);
        }
    }
    Ok(current)
}

/// Writes the planned keys, payloads, queue rows and usage.
async fn write_plan(tx: &mut PgConnection, batch: &[NewEnvelope], plan: &Plan) -> Result<()> {
    if !plan.keys.is_empty() {
        let scopes: Vec<&str> = plan.keys.iter().map(|(k, _)| k.scope.as_str()).collect();
        let keys: Vec<&str> = plan.keys.iter().map(|(k, _)| k.key.as_str()).collect();
        let created: Vec<i64> = plan.keys.iter().map(|(_, at)| *at).collect();
        let expires: Vec<i64> = plan.keys.iter().map(|(k, _)| k.expires_at).collect();
        // Only absent or expired keys get here (see `batch_plan`).
        sqlx::query(
            "INSERT INTO idempotency (scope, key, created_at, expires_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[])
             ON CONFLICT (scope, key) DO UPDATE
                 SET created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .bind(&scopes)
        .bind(&keys)
        .bind(&created)
        .bind(&expires)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    // Ids are drawn from the identity sequences up front and given in batch order, so
    // envelope ids follow the order the callers arrived in (the queue lock is held, so ids of
    // later batches are larger).
    let (mut payload_ids, mut envelope_ids): (Vec<i64>, Vec<i64>) = sqlx::query_as(
        "SELECT
             ARRAY(SELECT nextval(pg_get_serial_sequence('relay_payload', 'payload_id'))
                   FROM generate_series(1, $1)),
             ARRAY(SELECT nextval(pg_get_serial_sequence('relay_queue', 'envelope_id'))
                   FROM generate_series(1, $2))",
    )
    .bind(count(plan.payloads.len())?)
    .bind(count(plan.queue.len())?)
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    payload_ids.sort_unstable();
    envelope_ids.sort_unstable();
    if payload_ids.len() != plan.payloads.len() || envelope_ids.len() != plan.queue.len() {
        return Err(StoreError::Unavailable(
            "the identity sequences returned too few ids".to_owned(),
        ));
    }
    let stored: Vec<&NewEnvelope> = plan
        .payloads
        .iter()
        .filter_map(|&index| batch.get(index))
        .collect();
    let channels: Vec<i64> = stored.iter().map(|e| i64::from(e.channel_id)).collect();
    let senders: Vec<&str> = stored.iter().map(|e| e.sender.as_str()).collect();
    let order_keys: Vec<i64> = stored.iter().map(|e| e.order_key).collect();
    let frames: Vec<&[u8]> = stored.iter().map(|e| e.frame.as_slice()).collect();
    let enqueued: Vec<i64> = stored.iter().map(|e| e.enqueued_at).collect();
    let expires: Vec<i64> = stored.iter().map(|e| e.expires_at).collect();
    sqlx::query(
        "INSERT INTO relay_payload
             (payload_id, channel_id, sender, order_key, frame, enqueued_at, expires_at)
         OVERRIDING SYSTEM VALUE
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::bytea[],
                              $6::int8[], $7::int8[])",
    )
    .bind(&payload_ids)
    .bind(&channels)
    .bind(&senders)
    .bind(&order_keys)
    .bind(&frames)
    .bind(&enqueued)
    .bind(&expires)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    let recipients: Vec<&str> = plan.queue.iter().map(|(r, _)| r.as_str()).collect();
    let payload_of: Vec<i64> = plan
        .queue
        .iter()
        .filter_map(|(_, position)| payload_ids.get(*position).copied())
        .collect();
    sqlx::query(
        "INSERT INTO relay_queue (envelope_id, recipient, payload_id)
         OVERRIDING SYSTEM VALUE
         SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[])",
    )
    .bind(&envelope_ids)
    .bind(&recipients)
    .bind(&payload_of)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    apply(tx, &plan.delta).await
}

fn count(n: usize) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Invalid(format!("batch of {n} rows")))
}
