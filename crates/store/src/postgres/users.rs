//! `users` table.

use sqlx::{PgConnection, PgExecutor};

use super::map_err;
use crate::error::Result;
use crate::model::UserRecord;
use crate::rows::UserRow;
use crate::rules::{Taken, found};

pub(super) async fn by_id(db: impl PgExecutor<'_>, user_id: &str) -> Result<Option<UserRecord>> {
    let row = sqlx::query_as::<_, UserRow>(
        "SELECT user_id, handle, display_name, avatar_url, created_at
         FROM users WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    Ok(row.map(UserRecord::from))
}

/// The user, with its row locked until the caller's transaction ends: writers that check a
/// per-user rule (the device limit, the friend list) take this lock first, so they cannot race.
pub(super) async fn lock(conn: &mut PgConnection, user_id: &str) -> Result<Option<UserRecord>> {
    let row = sqlx::query_as::<_, UserRow>(
        "SELECT user_id, handle, display_name, avatar_url, created_at
         FROM users WHERE user_id = $1 FOR NO KEY UPDATE",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await
    .map_err(map_err)?;
    Ok(row.map(UserRecord::from))
}

pub(super) async fn by_handle(db: impl PgExecutor<'_>, handle: &str) -> Result<Option<UserRecord>> {
    let row = sqlx::query_as::<_, UserRow>(
        "SELECT user_id, handle, display_name, avatar_url, created_at
         FROM users WHERE handle = $1",
    )
    .bind(handle)
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    Ok(row.map(UserRecord::from))
}

/// Inserts a user inside the caller's transaction, naming what is taken on conflict. The unique
/// indexes decide (a concurrent insert of the same handle or id waits for the other
/// transaction, then fails), so no read comes first.
pub(super) async fn insert(conn: &mut PgConnection, user: &UserRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (user_id, handle, display_name, avatar_url, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&user.user_id)
    .bind(&user.handle)
    .bind(&user.display_name)
    .bind(&user.avatar_url)
    .bind(user.created_at)
    .execute(&mut *conn)
    .await
    .map_err(|e| match super::violated_constraint(&e) {
        Some("users_handle") => Taken::Handle(&user.handle).error(),
        Some("users_pkey") => Taken::User(&user.user_id).error(),
        _ => map_err(e),
    })?;
    Ok(())
}

pub(super) async fn update_profile(
    db: impl PgExecutor<'_>,
    user_id: &str,
    display_name: Option<String>,
    avatar_url: Option<String>,
) -> Result<UserRecord> {
    let row = sqlx::query_as::<_, UserRow>(
        "UPDATE users
         SET display_name = COALESCE($1, display_name),
             avatar_url = COALESCE($2, avatar_url)
         WHERE user_id = $3
         RETURNING user_id, handle, display_name, avatar_url, created_at",
    )
    .bind(display_name)
    .bind(avatar_url)
    .bind(user_id)
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    found(row.map(UserRecord::from), "user", user_id)
}
