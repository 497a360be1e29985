//! `friends` table.

use sqlx::{SqliteExecutor, SqlitePool};

use super::{map_err, users};
use crate::error::Result;
use crate::model::FriendRecord;
use crate::rows::FriendRow;
use crate::rules::found;

pub(super) async fn of_user(
    db: impl SqliteExecutor<'_>,
    user_id: &str,
) -> Result<Vec<FriendRecord>> {
    let rows = sqlx::query_as::<_, FriendRow>(
        "SELECT friend_user_id, handle, alias FROM friends
         WHERE user_id = ?1 ORDER BY position",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
    .map_err(map_err)?;
    Ok(rows.into_iter().map(FriendRecord::from).collect())
}

pub(super) async fn replace(
    pool: &SqlitePool,
    user_id: &str,
    friends: Vec<FriendRecord>,
) -> Result<Vec<FriendRecord>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    found(users::by_id(&mut *tx, user_id).await?, "user", user_id)?;
    sqlx::query("DELETE FROM friends WHERE user_id = ?1")
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    for (position, friend) in (0_i64..).zip(&friends) {
        // A repeated user id keeps its first position and takes the later entry's fields.
        sqlx::query(
            "INSERT INTO friends (user_id, friend_user_id, handle, alias, position)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (user_id, friend_user_id)
             DO UPDATE SET handle = excluded.handle, alias = excluded.alias",
        )
        .bind(user_id)
        .bind(&friend.user_id)
        .bind(&friend.handle)
        .bind(&friend.alias)
        .bind(position)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    let stored = of_user(&mut *tx, user_id).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(stored)
}
