//! `GET /api/friends` and `PUT /api/friends`: each user's friend list, stored as the client
//! pushes it (wire-compat §8: the deployed client always sends `handle`, possibly null).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use commucat_store::FriendRecord;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{Authenticated, store_problem};
use super::problem::{Problem, parse_json};
use crate::profile::{ProfileBounds, ProfileField};
use commucat_ccp::ProblemKind;

/// Most entries one friend list may hold.
pub(crate) const MAX_FRIENDS: usize = 1000;
/// Longest `user_id`, `handle` or `alias`, in bytes.
pub(crate) const MAX_FIELD_LEN: usize = 256;

/// Body of both requests' answers, and of `PUT`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct FriendList {
    /// The entries, in the client's order.
    pub friends: Vec<Friend>,
}

/// One friend.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Friend {
    /// The friend's user id.
    pub user_id: String,
    /// The friend's handle, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// The caller's name for the friend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

impl From<FriendRecord> for Friend {
    fn from(f: FriendRecord) -> Self {
        Self {
            user_id: f.user_id,
            handle: f.handle,
            alias: f.alias,
        }
    }
}

/// Checks one entry: `user_id` 1..=[`MAX_FIELD_LEN`] bytes (400); `handle` at most
/// [`MAX_FIELD_LEN`] bytes (it may carry a domain) and `alias`, a display name, at most
/// `bounds.display_name_bytes` (413 "Profile Field Too Long", the alias counted and ledgered).
fn check(state: &AppState, device: &str, friend: &Friend) -> Result<(), Problem> {
    if friend.user_id.is_empty() || friend.user_id.len() > MAX_FIELD_LEN {
        return Err(Problem::bad_request(format!(
            "user_id must be 1..={MAX_FIELD_LEN} bytes"
        )));
    }
    if let Some(handle) = friend.handle.as_ref().filter(|h| h.len() > MAX_FIELD_LEN) {
        return Err(Problem::of_kind(
            ProblemKind::ProfileFieldTooLong,
            format!(
                "handle of {} is {} bytes; at most {MAX_FIELD_LEN} are allowed",
                friend.user_id,
                handle.len()
            ),
        ));
    }
    let messaging = state.sessions.messaging();
    let bounds = ProfileBounds::from_settings(&messaging.settings.bounds);
    if let Err(e) = bounds.check(ProfileField::DisplayName, friend.alias.as_deref()) {
        let detail = format!(
            "alias of {} is {} bytes; at most {} are allowed (bounds.{})",
            friend.user_id,
            e.len,
            e.max,
            e.field.bound().name()
        );
        messaging.refuse(e.field.bound(), device, &detail);
        return Err(Problem::of_kind(ProblemKind::ProfileFieldTooLong, detail));
    }
    Ok(())
}

/// `GET /api/friends` → 200 `{"friends":[{user_id, handle?, alias?}]}`.
///
/// # Errors
/// 401 without a valid bearer; 503/500 on store failures.
#[utoipa::path(
    get, path = "/api/friends", tag = "friends",
    responses(
        (status = 200, description = "The stored list", body = FriendList),
        (status = 401, description = "No valid bearer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<FriendList>, Problem> {
    let friends = state
        .store()
        .friends(&auth.user_id)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(Json(FriendList {
        friends: friends.into_iter().map(Friend::from).collect(),
    }))
}

/// `PUT /api/friends` `{"friends":[{user_id, handle, alias}]}` → 200 with the list as stored
/// (a user id listed twice keeps its first place and its last fields).
///
/// # Errors
/// 400 bad body or entries; 401 without a valid bearer; 413 a handle or alias too long;
/// 503/500 on store failures.
#[utoipa::path(
    put, path = "/api/friends", tag = "friends",
    request_body = FriendList,
    responses(
        (status = 200, description = "The list as stored", body = FriendList),
        (status = 400, description = "Body is not the expected JSON or a value is out of range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A handle or alias is longer than allowed (Profile Field Too Long)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn replace(
    State(state): State<AppState>,
    auth: Authenticated,
    body: Bytes,
) -> Result<Json<FriendList>, Problem> {
    let request: FriendList = parse_json(&body)?;
    if request.friends.len() > MAX_FRIENDS {
        return Err(Problem::bad_request(format!(
            "at most {MAX_FRIENDS} friends per list"
        )));
    }
    request
        .friends
        .iter()
        .try_for_each(|f| check(&state, &auth.device_id, f))?;
    let records = request
        .friends
        .into_iter()
        .map(|f| FriendRecord {
            user_id: f.user_id,
            handle: f.handle,
            alias: f.alias,
        })
        .collect();
    let stored = state
        .store()
        .replace_friends(&auth.user_id, records)
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(Json(FriendList {
        friends: stored.into_iter().map(Friend::from).collect(),
    }))
}
