//! `sessions` table.

use sqlx::{PgExecutor, PgPool};

use super::{devices, map_err};
use crate::error::{Result, StoreError};
use crate::model::SessionRecord;
use crate::rows::SessionRow;
use crate::rules::{Taken, check_session_device, updated};

pub(super) async fn create(
    pool: &PgPool,
    session: SessionRecord,
    device_key: &[u8; 32],
) -> Result<()> {
    // One statement: the insert happens only if the device exists, belongs to the session's
    // user, is active and still has the key the session was authenticated with. `FOR SHARE`
    // makes a concurrent revocation or key rotation (which update the device row) either
    // finish first — then the row no longer qualifies — or wait until this insert is
    // committed and then delete the new session with the others.
    let done = sqlx::query(
        "INSERT INTO sessions (session_id, device_id, user_id, created_at, expires_at)
         SELECT $1, d.device_id, d.user_id, $4, $5 FROM devices d
         WHERE d.device_id = $2 AND d.user_id = $3 AND d.status = 'active'
           AND d.public_key = $6
         FOR SHARE OF d",
    )
    .bind(&session.session_id)
    .bind(&session.device_id)
    .bind(&session.user_id)
    .bind(session.created_at)
    .bind(session.expires_at)
    .bind(device_key.as_slice())
    .execute(pool)
    .await
    .map_err(|e| Taken::Session(&session.session_id).or(map_err(e)))?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    // Nothing inserted: say why (the rules the statement's condition encodes).
    let device = devices::by_id(pool, &session.device_id).await?;
    check_session_device(&session, device, device_key)?;
    Err(StoreError::Unavailable(format!(
        "session {} was not stored; retry",
        session.session_id
    )))
}

pub(super) async fn by_id(
    db: impl PgExecutor<'_>,
    session_id: &str,
) -> Result<Option<SessionRecord>> {
    let row = sqlx::query_as::<_, SessionRow>(
        "SELECT session_id, device_id, user_id, created_at, expires_at
         FROM sessions WHERE session_id = $1",
    )
    .bind(session_id)
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    Ok(row.map(SessionRecord::from))
}

pub(super) async fn extend(
    db: impl PgExecutor<'_>,
    session_id: &str,
    expires_at: i64,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE sessions SET expires_at = GREATEST(expires_at, $1) WHERE session_id = $2",
    )
    .bind(expires_at)
    .bind(session_id)
    .execute(db)
    .await
    .map_err(map_err)?;
    updated(done.rows_affected(), "session", session_id)
}

pub(super) async fn delete(db: impl PgExecutor<'_>, session_id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM sessions WHERE session_id = $1")
        .bind(session_id)
        .execute(db)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn purge_expired(db: impl PgExecutor<'_>, now: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(db)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected())
}
