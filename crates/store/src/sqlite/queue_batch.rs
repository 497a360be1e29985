//! Offline enqueue by group commit: the store's writer task commits each batch of
//! [`Store::enqueue`](crate::Store::enqueue) calls in one `BEGIN IMMEDIATE` transaction (one
//! WAL fsync under `synchronous = FULL`), with a fixed number of statements whatever the batch
//! size: multi-row inserts, and id lists passed as JSON and read back with `json_each`.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::map_err;
use super::queue::purge_in;
use crate::batch_plan::{self, Current, Plan};
use crate::error::Result;
use crate::group_commit::BatchWriter;
use crate::model::{EnqueueOutcome, NewEnvelope};
use crate::quota;

/// Rows per multi-row insert: 7 parameters a row stays far below SQLite's 32,766.
const ROWS_PER_INSERT: usize = 1000;

/// The enqueue writer of one [`SqliteStore`](super::SqliteStore).
#[derive(Debug)]
pub(super) struct EnqueueWriter {
    pub(super) pool: SqlitePool,
}

impl BatchWriter for EnqueueWriter {
    type Item = NewEnvelope;
    type Output = EnqueueOutcome;

    async fn write(&mut self, batch: Vec<NewEnvelope>) -> Result<Vec<EnqueueOutcome>> {
        write_batch(&self.pool, batch).await
    }
}

async fn write_batch(pool: &SqlitePool, batch: Vec<NewEnvelope>) -> Result<Vec<EnqueueOutcome>> {
    // BEGIN IMMEDIATE: one writer at a time, so the usage read below holds until commit.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
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
async fn read_current(tx: &mut SqliteConnection, batch: &[NewEnvelope]) -> Result<Current> {
    let (recipients, senders) = batch_plan::usage_keys(batch);
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT kind, id, frames, bytes FROM queue_usage
         WHERE kind = 'total'
            OR (kind = 'recipient' AND id IN (SELECT value FROM json_each(?1)))
            OR (kind = 'sender' AND id IN (SELECT value FROM json_each(?2)))",
    )
    .bind(serde_json::Value::from(recipients).to_string())
    .bind(serde_json::Value::from(senders).to_string())
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
        let pairs: Vec<serde_json::Value> = scopes
            .into_iter()
            .zip(keys)
            .map(|(scope, key)| serde_json::Value::from(vec![scope, key]))
            .collect();
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT scope, key, expires_at FROM idempotency
             WHERE (scope, key) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
                                FROM json_each(?1))",
        )
        .bind(serde_json::Value::from(pairs).to_string())
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
async fn write_plan(tx: &mut SqliteConnection, batch: &[NewEnvelope], plan: &Plan) -> Result<()> {
    for chunk in plan.keys.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO idempotency (scope, key, created_at, expires_at) ",
        );
        insert.push_values(chunk, |mut row, (key, at)| {
            row.push_bind(key.scope.as_str())
                .push_bind(key.key.as_str())
                .push_bind(*at)
                .push_bind(key.expires_at);
        });
        // Only absent or expired keys get here (see `batch_plan`).
        insert.push(
            " ON CONFLICT (scope, key) DO UPDATE
                 SET created_at = excluded.created_at, expires_at = excluded.expires_at",
        );
        insert.build().execute(&mut *tx).await.map_err(map_err)?;
    }
    // Ids are given explicitly, following the batch order: the write lock is held, so nobody
    // else takes one meanwhile, and AUTOINCREMENT's counter moves up to the largest given.
    let (payload_base, queue_base): (i64, i64) = sqlx::query_as(
        "SELECT
             MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'relay_payload'), 0),
                 COALESCE((SELECT MAX(payload_id) FROM relay_payload), 0)),
             MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'relay_queue'), 0),
                 COALESCE((SELECT MAX(envelope_id) FROM relay_queue), 0))",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    let payload_ids: Vec<(i64, &NewEnvelope)> = plan
        .payloads
        .iter()
        .enumerate()
        .filter_map(|(n, &index)| batch.get(index).map(|e| (nth_id(payload_base, n), e)))
        .collect();
    for chunk in payload_ids.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO relay_payload
                 (payload_id, channel_id, sender, order_key, frame, enqueued_at, expires_at) ",
        );
        insert.push_values(chunk, |mut row, (id, envelope)| {
            row.push_bind(*id)
                .push_bind(i64::from(envelope.channel_id))
                .push_bind(envelope.sender.as_str())
                .push_bind(envelope.order_key)
                .push_bind(envelope.frame.as_slice())
                .push_bind(envelope.enqueued_at)
                .push_bind(envelope.expires_at);
        });
        insert.build().execute(&mut *tx).await.map_err(map_err)?;
    }
    let queue_rows: Vec<(i64, &str, i64)> = plan
        .queue
        .iter()
        .enumerate()
        .map(|(n, (recipient, payload))| {
            (
                nth_id(queue_base, n),
                recipient.as_str(),
                nth_id(payload_base, *payload),
            )
        })
        .collect();
    for chunk in queue_rows.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO relay_queue (envelope_id, recipient, payload_id) ",
        );
        insert.push_values(chunk, |mut row, (id, recipient, payload_id)| {
            row.push_bind(*id)
                .push_bind(*recipient)
                .push_bind(*payload_id);
        });
        insert.build().execute(&mut *tx).await.map_err(map_err)?;
    }
    let (kinds, ids, frames, bytes) = plan.delta.split().0;
    let usage: Vec<_> = kinds.iter().zip(&ids).zip(&frames).zip(&bytes).collect();
    for chunk in usage.chunks(ROWS_PER_INSERT) {
        let mut upsert =
            QueryBuilder::<Sqlite>::new("INSERT INTO queue_usage (kind, id, frames, bytes) ");
        upsert.push_values(chunk, |mut row, (((kind, id), frames), bytes)| {
            row.push_bind(kind.as_str())
                .push_bind(id.as_str())
                .push_bind(**frames)
                .push_bind(**bytes);
        });
        upsert.push(
            " ON CONFLICT (kind, id) DO UPDATE
                 SET frames = queue_usage.frames + excluded.frames,
                     bytes = queue_usage.bytes + excluded.bytes",
        );
        upsert.build().execute(&mut *tx).await.map_err(map_err)?;
    }
    Ok(())
}

/// The id `base + position + 1` of the row at `position` of a batch's list.
fn nth_id(base: i64, position: usize) -> i64 {
    base.saturating_add(i64::try_from(position).unwrap_or(i64::MAX))
        .saturating_add(1)
}
