//! `users` table.

use sqlx::{SqliteConnection, SqliteExecutor};

use super::map_err;
use crate::error::Result;
use crate::model::UserRecord;
use crate::rows::UserRow;
use crate::rules::{Taken, found};

pub(super) async fn by_id(
    db: impl SqliteExecutor<'_>,
    user_id: &str,
) -> Result<Option<UserRecord>> {
    let row = sqlx::query_as::<_, UserRow>(
        "SELECT user_id, handle, display_name, avatar_url, created_at
         FROM users WHERE user_id = ?1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    Ok(row.map(UserRecord::from))
}

pub(super) async fn by_handle(
    db: impl SqliteExecutor<'_>,
    handle: &str,
) -> Result<Option<UserRecord>> {
    let row = sqlx::query_as::<_, UserRow>(
        "SELECT user_id, handle, display_name, avatar_url, created_at
         FROM users WHERE handle = ?1",
    )
    .bind(handle)
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    Ok(row.map(UserRecord::from))
}

/// Inserts a user inside the caller's write transaction, naming what is taken on conflict.
pub(super) async fn insert(conn: &mut SqliteConnection, user: &UserRecord) -> Result<()> {
    if by_handle(&mut *conn, &user.handle).await?.is_some() {
        return Err(Taken::Handle(&user.handle).error());
    }
    if by_id(&mut *conn, &user.user_id).await?.is_some() {
        return Err(Taken::User(&user.user_id).error());
    }
    sqlx::query(
        "INSERT INTO users (user_id, handle, display_name, avatar_url, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(&user.user_id)
    .bind(&user.handle)
    .bind(&user.display_name)
    .bind(&user.avatar_url)
    .bind(user.created_at)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(super) async fn update_profile(
    db: impl SqliteExecutor<'_>,
    user_id: &str,
    display_name: Option<String>,
    avatar_url: Option<String>,
) -> Result<UserRecord> {
    let row = sqlx::query_as::<_, UserRow>(
        "UPDATE users
         SET display_name = COALESCE(?1, display_name),
             avatar_url = COALESCE(?2, avatar_url)
         WHERE user_id = ?3
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
