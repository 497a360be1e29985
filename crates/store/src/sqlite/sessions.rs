//! `sessions` table.

use sqlx::{SqliteExecutor, SqlitePool};

use super::{devices, map_err};
use crate::error::Result;
use crate::model::SessionRecord;
use crate::rows::SessionRow;
use crate::rules::{Taken, check_session_device, updated};

pub(super) async fn create(
    pool: &SqlitePool,
    session: SessionRecord,
    device_key: &[u8; 32],
) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    // Checked in the same transaction as the insert, so a concurrent revocation or key
    // rotation cannot leave a session behind for a revoked device or a replaced key.
    let device = devices::by_id(&mut *tx, &session.device_id).await?;
    check_session_device(&session, device, device_key)?;
    sqlx::query(
        "INSERT INTO sessions (session_id, device_id, user_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(&session.session_id)
    .bind(&session.device_id)
    .bind(&session.user_id)
    .bind(session.created_at)
    .bind(session.expires_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| Taken::Session(&session.session_id).or(map_err(e)))?;
    tx.commit().await.map_err(map_err)
}

pub(super) async fn by_id(
    db: impl SqliteExecutor<'_>,
    session_id: &str,
) -> Result<Option<SessionRecord>> {
    let row = sqlx::query_as::<_, SessionRow>(
        "SELECT session_id, device_id, user_id, created_at, expires_at
         FROM sessions WHERE session_id = ?1",
    )
    .bind(session_id)
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    Ok(row.map(SessionRecord::from))
}

pub(super) async fn extend(
    db: impl SqliteExecutor<'_>,
    session_id: &str,
    expires_at: i64,
) -> Result<()> {
    let done =
        sqlx::query("UPDATE sessions SET expires_at = MAX(expires_at, ?1) WHERE session_id = ?2")
            .bind(expires_at)
            .bind(session_id)
            .execute(db)
            .await
            .map_err(map_err)?;
    updated(done.rows_affected(), "session", session_id)
}

pub(super) async fn delete(db: impl SqliteExecutor<'_>, session_id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM sessions WHERE session_id = ?1")
        .bind(session_id)
        .execute(db)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn purge_expired(db: impl SqliteExecutor<'_>, now: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= ?1")
        .bind(now)
        .execute(db)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected())
}
