//! `chat_group` and `group_member` tables.

use sqlx::{PgExecutor, PgPool};

use super::map_err;
use crate::error::Result;
use crate::model::{GroupMember, GroupRecord};
use crate::rows::{GroupRow, MemberRow, decode_all};
use crate::rules::{
    Taken, check_groups_owned, check_member_role, check_roster, found, written_member,
};

pub(super) async fn create(
    pool: &PgPool,
    group: GroupRecord,
    members: Vec<GroupMember>,
    max_owned: u64,
) -> Result<()> {
    check_roster(&group, &members)?;
    let mut tx = pool.begin().await.map_err(map_err)?;
    // One owner's creates are serialised, so the count below cannot go stale.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('group-owner:' || $1, 0))")
        .bind(&group.owner_device)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let owned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chat_group WHERE owner_device = $1")
        .bind(&group.owner_device)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    check_groups_owned(&group.owner_device, owned, max_owned)?;
    sqlx::query(
        "INSERT INTO chat_group (group_id, owner_device, name, relay, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&group.group_id)
    .bind(&group.owner_device)
    .bind(&group.name)
    .bind(group.relay)
    .bind(group.created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| Taken::Group(&group.group_id).or(map_err(e)))?;
    for member in &members {
        sqlx::query(
            "INSERT INTO group_member (group_id, device_id, role, joined_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&member.group_id)
        .bind(&member.device_id)
        .bind(member.role.as_str())
        .bind(member.joined_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)
}

pub(super) async fn by_id(db: impl PgExecutor<'_>, group_id: &str) -> Result<Option<GroupRecord>> {
    // `relay` is a BOOLEAN here; the shared row type reads the 0/1 integer SQLite stores.
    let row = sqlx::query_as::<_, GroupRow>(
        "SELECT group_id, owner_device, name, relay::int4::int8 AS relay, created_at
         FROM chat_group WHERE group_id = $1",
    )
    .bind(group_id)
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    row.map(GroupRecord::try_from).transpose()
}

pub(super) async fn members(db: impl PgExecutor<'_>, group_id: &str) -> Result<Vec<GroupMember>> {
    let rows = sqlx::query_as::<_, MemberRow>(
        "SELECT group_id, device_id, role, joined_at
         FROM group_member WHERE group_id = $1
         ORDER BY device_id",
    )
    .bind(group_id)
    .fetch_all(db)
    .await
    .map_err(map_err)?;
    decode_all(rows)
}

pub(super) async fn upsert_member(pool: &PgPool, member: GroupMember) -> Result<GroupMember> {
    check_member_role(&member)?;
    let mut tx = pool.begin().await.map_err(map_err)?;
    found(
        by_id(&mut *tx, &member.group_id).await?,
        "group",
        &member.group_id,
    )?;
    // The owner keeps its role; anyone else takes the new role (joined_at stays the first).
    // The statement returns nothing when the owner's row is left alone, hence the re-read.
    sqlx::query(
        "INSERT INTO group_member (group_id, device_id, role, joined_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (group_id, device_id) DO UPDATE SET role = excluded.role
         WHERE group_member.role <> 'owner'",
    )
    .bind(&member.group_id)
    .bind(&member.device_id)
    .bind(member.role.as_str())
    .bind(member.joined_at)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    let row = sqlx::query_as::<_, MemberRow>(
        "SELECT group_id, device_id, role, joined_at
         FROM group_member WHERE group_id = $1 AND device_id = $2",
    )
    .bind(&member.group_id)
    .bind(&member.device_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(map_err)?;
    let stored = written_member(row.map(GroupMember::try_from).transpose()?)?;
    tx.commit().await.map_err(map_err)?;
    Ok(stored)
}
