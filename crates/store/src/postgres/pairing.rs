//! `pairing_codes` table.

use sqlx::{PgExecutor, PgPool};

use super::{devices, map_err};
use crate::error::Result;
use crate::model::{NewDeviceRegistration, PairingRecord, RedeemOutcome};
use crate::rows::PairingRow;
use crate::rules::{Taken, check_issuer, check_pairing_times};

pub(super) async fn create(pool: &PgPool, pairing: PairingRecord) -> Result<()> {
    check_pairing_times(&pairing)?;
    let mut tx = pool.begin().await.map_err(map_err)?;
    let issuer = devices::by_id(&mut *tx, &pairing.issuer_device_id).await?;
    check_issuer(issuer, &pairing)?;
    sqlx::query(
        "INSERT INTO pairing_codes
             (code, user_id, issuer_device_id, issued_at, expires_at, attempts,
              redeemed_at, redeemed_device_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&pairing.code)
    .bind(&pairing.user_id)
    .bind(&pairing.issuer_device_id)
    .bind(pairing.issued_at)
    .bind(pairing.expires_at)
    .bind(i64::from(pairing.attempts))
    .bind(pairing.redeemed_at)
    .bind(&pairing.redeemed_device_id)
    .execute(&mut *tx)
    .await
    .map_err(|e| Taken::PairingCode(&pairing.code).or(map_err(e)))?;
    tx.commit().await.map_err(map_err)
}

pub(super) async fn by_code(db: impl PgExecutor<'_>, code: &str) -> Result<Option<PairingRecord>> {
    let row = sqlx::query_as::<_, PairingRow>(
        "SELECT code, user_id, issuer_device_id, issued_at, expires_at, attempts,
                redeemed_at, redeemed_device_id
         FROM pairing_codes WHERE code = $1",
    )
    .bind(code)
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    row.map(PairingRecord::try_from).transpose()
}

pub(super) async fn redeem(
    pool: &PgPool,
    code: &str,
    now: i64,
    max_attempts: u32,
    registration: NewDeviceRegistration,
) -> Result<RedeemOutcome> {
    let mut tx = pool.begin().await.map_err(map_err)?;
    // The code's row stays locked until commit: two claims of one code run one after the other,
    // so only one can redeem it and every refusal is counted.
    let row = sqlx::query_as::<_, PairingRow>(
        "SELECT code, user_id, issuer_device_id, issued_at, expires_at, attempts,
                redeemed_at, redeemed_device_id
         FROM pairing_codes WHERE code = $1 FOR NO KEY UPDATE",
    )
    .bind(code)
    .fetch_optional(&mut *tx)
    .await
    .map_err(map_err)?;
    let Some(pairing) = row.map(PairingRecord::try_from).transpose()? else {
        return Ok(RedeemOutcome::Unknown);
    };
    if let Some(refusal) = pairing.refusal(now, max_attempts) {
        sqlx::query("UPDATE pairing_codes SET attempts = attempts + 1 WHERE code = $1")
            .bind(code)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        return Ok(refusal);
    }
    pairing.check_registration(&registration)?;
    let device_id = registration.device.device_id.clone();
    let owner = devices::register_in(&mut tx, registration).await?;
    sqlx::query(
        "UPDATE pairing_codes SET redeemed_at = $1, redeemed_device_id = $2 WHERE code = $3",
    )
    .bind(now)
    .bind(&device_id)
    .bind(code)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(RedeemOutcome::Redeemed(owner))
}

pub(super) async fn purge_expired(db: impl PgExecutor<'_>, now: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM pairing_codes WHERE expires_at <= $1")
        .bind(now)
        .execute(db)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected())
}
