//! `devices` and `device_key_events` tables.

use sqlx::{SqliteConnection, SqliteExecutor, SqlitePool};

use super::{map_err, users};
use crate::error::{Result, StoreError};
use crate::model::{
    DeviceKeyEvent, DeviceRecord, KeyRotation, NewDeviceRegistration, RotateOutcome, UserRecord,
    UserToCreate,
};
use crate::rows::{DeviceRow, KeyEventRow, count, decode_all};
use crate::rules::{
    Taken, check_device_limit, found, key_reused, needs_revoking, rotation_blocked,
    rotation_too_soon,
};

pub(super) async fn by_id(
    db: impl SqliteExecutor<'_>,
    device_id: &str,
) -> Result<Option<DeviceRecord>> {
    let row = sqlx::query_as::<_, DeviceRow>(
        "SELECT device_id, user_id, public_key, status, created_at
         FROM devices WHERE device_id = ?1",
    )
    .bind(device_id)
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    row.map(DeviceRecord::try_from).transpose()
}

pub(super) async fn active_among(
    db: impl SqliteExecutor<'_>,
    device_ids: &[String],
) -> Result<Vec<String>> {
    if device_ids.is_empty() {
        return Ok(Vec::new());
    }
    // The ids as a JSON array, read back with `json_each` (serde_json escapes them).
    let ids = serde_json::to_string(device_ids)
        .map_err(|e| StoreError::Invalid(format!("device ids: {e}")))?;
    sqlx::query_scalar(
        "SELECT device_id FROM devices
         WHERE status = 'active' AND device_id IN (SELECT value FROM json_each(?1))
         ORDER BY device_id",
    )
    .bind(ids)
    .fetch_all(db)
    .await
    .map_err(map_err)
}

pub(super) async fn of_user(
    db: impl SqliteExecutor<'_>,
    user_id: &str,
) -> Result<Vec<DeviceRecord>> {
    let rows = sqlx::query_as::<_, DeviceRow>(
        "SELECT device_id, user_id, public_key, status, created_at
         FROM devices WHERE user_id = ?1
         ORDER BY created_at, device_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
    .map_err(map_err)?;
    decode_all(rows)
}

pub(super) async fn count_active(db: impl SqliteExecutor<'_>, user_id: &str) -> Result<u64> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE user_id = ?1 AND status = 'active'")
            .bind(user_id)
            .fetch_one(db)
            .await
            .map_err(map_err)?;
    count(n)
}

pub(super) async fn key_events(
    db: impl SqliteExecutor<'_>,
    device_id: &str,
) -> Result<Vec<DeviceKeyEvent>> {
    let rows = sqlx::query_as::<_, KeyEventRow>(
        "SELECT event_id, device_id, public_key, recorded_at, action
         FROM device_key_events WHERE device_id = ?1
         ORDER BY recorded_at, rowid",
    )
    .bind(device_id)
    .fetch_all(db)
    .await
    .map_err(map_err)?;
    decode_all(rows)
}

pub(super) async fn register(
    pool: &SqlitePool,
    registration: NewDeviceRegistration,
) -> Result<UserRecord> {
    // IMMEDIATE takes the write lock up front: the checks below cannot be raced.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    let owner = register_in(&mut tx, registration).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(owner)
}

/// The steps of [`register`] inside the caller's write transaction.
pub(super) async fn register_in(
    tx: &mut SqliteConnection,
    registration: NewDeviceRegistration,
) -> Result<UserRecord> {
    registration.check()?;
    let NewDeviceRegistration {
        user,
        device,
        key_event,
        max_active_devices,
    } = registration;

    let owner = match user {
        UserToCreate::Existing(user_id) => {
            found(users::by_id(&mut *tx, &user_id).await?, "user", &user_id)?
        }
        UserToCreate::New(user) => {
            users::insert(tx, &user).await?;
            user
        }
    };
    if let Some(limit) = max_active_devices {
        check_device_limit(&owner, limit, count_active(&mut *tx, &owner.user_id).await?)?;
    }
    if by_id(&mut *tx, &device.device_id).await?.is_some() {
        return Err(Taken::Device(&device.device_id).error());
    }
    sqlx::query(
        "INSERT INTO devices (device_id, user_id, public_key, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(&device.device_id)
    .bind(&device.user_id)
    .bind(device.public_key.as_slice())
    .bind(device.status.as_str())
    .bind(device.created_at)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    insert_event(tx, &key_event).await?;
    Ok(owner)
}

pub(super) async fn revoke(
    pool: &SqlitePool,
    device_id: &str,
    event: DeviceKeyEvent,
) -> Result<()> {
    event.check_device(device_id)?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    let device = found(by_id(&mut *tx, device_id).await?, "device", device_id)?;
    if !needs_revoking(&device) {
        return Ok(());
    }
    sqlx::query("UPDATE devices SET status = 'revoked' WHERE device_id = ?1")
        .bind(device_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    sqlx::query("DELETE FROM sessions WHERE device_id = ?1")
        .bind(device_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    insert_event(&mut tx, &event).await?;
    tx.commit().await.map_err(map_err)
}

pub(super) async fn rotate(pool: &SqlitePool, rotation: KeyRotation) -> Result<RotateOutcome> {
    rotation.check()?;
    let KeyRotation {
        device_id,
        old_public_key,
        event,
        min_interval_secs,
    } = rotation;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    let device = found(by_id(&mut *tx, &device_id).await?, "device", &device_id)?;
    if let Some(refused) = rotation_blocked(&device, &old_public_key) {
        return Ok(refused);
    }
    let reused: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM device_key_events WHERE device_id = ?1 AND public_key = ?2",
    )
    .bind(&device_id)
    .bind(event.public_key.as_slice())
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    if let Some(refused) = key_reused(reused) {
        return Ok(refused);
    }
    let last_rotation: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(recorded_at) FROM device_key_events
         WHERE device_id = ?1 AND action = 'rotate'",
    )
    .bind(&device_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    if let Some(refused) = rotation_too_soon(last_rotation, &event, min_interval_secs) {
        return Ok(refused);
    }
    // Compare-and-set on the old key: the write lock already rules out a concurrent change,
    // the condition keeps the statement correct on its own.
    let updated =
        sqlx::query("UPDATE devices SET public_key = ?1 WHERE device_id = ?2 AND public_key = ?3")
            .bind(event.public_key.as_slice())
            .bind(&device_id)
            .bind(old_public_key.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    if updated.rows_affected() != 1 {
        return Ok(RotateOutcome::KeyChanged);
    }
    sqlx::query("DELETE FROM sessions WHERE device_id = ?1")
        .bind(&device_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    insert_event(&mut tx, &event).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(RotateOutcome::Rotated)
}

async fn insert_event(conn: &mut SqliteConnection, event: &DeviceKeyEvent) -> Result<()> {
    sqlx::query(
        "INSERT INTO device_key_events (event_id, device_id, public_key, recorded_at, action)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(&event.event_id)
    .bind(&event.device_id)
    .bind(event.public_key.as_slice())
    .bind(event.recorded_at)
    .bind(&event.action)
    .execute(conn)
    .await
    .map_err(|e| Taken::KeyEvent(&event.event_id).or(map_err(e)))?;
    Ok(())
}
