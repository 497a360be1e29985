//! `chat_group` and `group_member` tables.

use sqlx::{SqliteExecutor, SqlitePool};

use super::map_err;
use crate::error::Result;
use crate::model::{GroupMember, GroupRecord};
use crate::rows::{GroupRow, MemberRow, decode_all};
use crate::rules::{
    Taken, check_groups_owned, check_member_role, check_roster, found, written_member,
};

pub(super) async fn create(
    pool: &SqlitePool,
    group: GroupRecord,
    members: Vec<GroupMember>,
    max_owned: u64,
) -> Result<()> {
    check_roster(&group, &members)?;
    // BEGIN IMMEDIATE takes the write lock first: the count below cannot go stale.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    let owned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chat_group WHERE owner_device = ?1")
        .bind(&group.owner_device)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    check_groups_owned(&group.owner_device, owned, max_owned)?;
    sqlx::query(
        "INSERT INTO chat_group (group_id, owner_device, name, relay, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(&group.group_id)
    .bind(&group.owner_device)
    .bind(&group.name)
    .bind(i64::from(group.relay))
    .bind(group.created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| Taken::Group(&group.group_id).or(map_err(e)))?;
    for member in &members {
        insert_member(&mut *tx, member).await?;
    }
    tx.commit().await.map_err(map_err)
}

async fn insert_member(db: impl SqliteExecutor<'_>, member: &GroupMember) -> Result<()> {
    sqlx::query(
        "INSERT INTO group_member (group_id, device_id, role, joined_at)
         VALUES (?1, ?2, ?3, ?4)",
    )
    .bind(&member.group_id)
    .bind(&member.device_id)
    .bind(member.role.as_str())
    .bind(member.joined_at)
    .execute(db)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(super) async fn by_id(
    db: impl SqliteExecutor<'_>,
    group_id: &str,
) -> Result<Option<GroupRecord>> {
    let row = sqlx::query_as::<_, GroupRow>(
        "SELECT group_id, owner_device, name, relay, created_at
         FROM chat_group WHERE group_id = ?1",
    )
    .bind(group_id)
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    row.map(GroupRecord::try_from).transpose()
}

pub(super) async fn members(
    db: impl SqliteExecutor<'_>,
    group_id: &str,
) -> Result<Vec<GroupMember>> {
    let rows = sqlx::query_as::<_, MemberRow>(
        "SELECT group_id, device_id, role, joined_at
         FROM group_member WHERE group_id = ?1
         ORDER BY device_id",
    )
    .bind(group_id)
    .fetch_all(db)
    .await
    .map_err(map_err)?;
    decode_all(rows)
}

async fn member_of(
    db: impl SqliteExecutor<'_>,
    group_id: &str,
    device_id: &str,
) -> Result<Option<GroupMember>> {
    let row = sqlx::query_as::<_, MemberRow>(
        "SELECT group_id, device_id, role, joined_at
         FROM group_member WHERE group_id = ?1 AND device_id = ?2",
    )
    .bind(group_id)
    .bind(device_id)
    .fetch_optional(db)
    .await
    .map_err(map_err)?;
    row.map(GroupMember::try_from).transpose()
}

pub(super) async fn upsert_member(pool: &SqlitePool, member: GroupMember) -> Result<GroupMember> {
    check_member_role(&member)?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    found(
        by_id(&mut *tx, &member.group_id).await?,
        "group",
        &member.group_id,
    )?;
    // The owner keeps its role; anyone else takes the new role (joined_at stays the first).
    sqlx::query(
        "INSERT INTO group_member (group_id, device_id, role, joined_at)
         VALUES (?1, ?2, ?3, ?4)
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
    let stored = written_member(member_of(&mut *tx, &member.group_id, &member.device_id).await?)?;
    tx.commit().await.map_err(map_err)?;
    Ok(stored)
}
