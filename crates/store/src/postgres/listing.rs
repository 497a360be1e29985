//! Operator views across accounts: every device, pairing code and group, and the offline
//! queue's depth per recipient (bounded lists for the web console). `relay` is a BOOLEAN
//! here; the shared row type reads the 0/1 integer SQLite stores.

use sqlx::PgPool;

use super::map_err;
use crate::error::Result;
use crate::model::{DeviceRecord, GroupRecord, PairingRecord};
use crate::rows::{DeviceRow, GroupRow, PairingRow, count, decode_all};

pub(super) async fn devices(pool: &PgPool, limit: u32) -> Result<Vec<DeviceRecord>> {
    let rows = sqlx::query_as::<_, DeviceRow>(
        "SELECT device_id, user_id, public_key, status, created_at
         FROM devices ORDER BY created_at, device_id LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    decode_all(rows)
}

pub(super) async fn pairings(pool: &PgPool, limit: u32) -> Result<Vec<PairingRecord>> {
    let rows = sqlx::query_as::<_, PairingRow>(
        "SELECT code, user_id, issuer_device_id, issued_at, expires_at, attempts,
                redeemed_at, redeemed_device_id
         FROM pairing_codes ORDER BY issued_at DESC, code LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    decode_all(rows)
}

pub(super) async fn groups(pool: &PgPool, limit: u32) -> Result<Vec<GroupRecord>> {
    let rows = sqlx::query_as::<_, GroupRow>(
        "SELECT group_id, owner_device, name, relay::int4::int8 AS relay, created_at
         FROM chat_group ORDER BY created_at, group_id LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    decode_all(rows)
}

pub(super) async fn queue_depths(
    pool: &PgPool,
    now: i64,
    limit: u32,
) -> Result<Vec<(String, u64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT q.recipient, COUNT(*) AS depth
         FROM relay_queue q JOIN relay_payload p ON p.payload_id = q.payload_id
         WHERE p.expires_at > $1
         GROUP BY q.recipient ORDER BY depth DESC, q.recipient LIMIT $2",
    )
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.into_iter()
        .map(|(device, n)| Ok((device, count(n)?)))
        .collect()
}
