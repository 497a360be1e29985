//! `POST /api/friends/requests`: a local user sends a friend request to a user of a peer
//! domain (`handle@peer`), as the reference servers send them (wire-compat §13): signed with
//! this domain's federation key and posted to `<peer endpoint>/federation/friend-request`
//! right away, over verified TLS. The answer says what the peer said; nothing is queued (a
//! refused or unreachable peer is an error the client may retry with the same body: each
//! attempt is a new request id). Like `/federation/*`, the route is not in the OpenAPI
//! document (docs/federation.md describes it).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{Authenticated, store_problem};
use super::problem::{Problem, parse_json};
use crate::clock::unix_nanos_now;
use crate::config::PeerStatus;
use crate::federation::event::format_created_at;
use crate::federation::friend_request::{FriendRequest, MAX_FIELD_LEN, MAX_MESSAGE_LEN, sign};

/// Body of the request.
#[derive(Debug, Deserialize)]
pub(crate) struct SendFriendRequest {
    /// The recipient: `handle@domain` of a peer domain.
    pub to: String,
    /// An optional note (at most 1024 bytes).
    #[serde(default)]
    pub message: Option<String>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub(crate) struct FriendRequestSent {
    /// The id the request was sent under.
    pub request_id: String,
    /// What the peer answered: `accepted` or `duplicate`.
    pub status: String,
    /// The sender as the peer sees it: `handle@this-domain`.
    pub from: String,
}

/// `POST /api/friends/requests` `{"to":"handle@peer","message":?}` → 202 once the peer took it.
///
/// # Errors
/// 400 bad body or a `to` that is not `handle@peer-domain`; 401 without a valid bearer; 403
/// the peer is blocked; 404 federation off or the domain is not a peer; 409 the peer is
/// pending; 502 the peer refused it (its problem detail quoted) or could not be reached.
pub(crate) async fn send(
    State(state): State<AppState>,
    auth: Authenticated,
    body: Bytes,
) -> Result<(StatusCode, Json<FriendRequestSent>), Problem> {
    let request: SendFriendRequest = parse_json(&body)?;
    let Some(federation) = state
        .sessions
        .messaging()
        .federation
        .clone()
        .filter(|f| f.enabled())
    else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "federation is not enabled on this server",
        ));
    };
    let to = request.to.trim();
    let message = request
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    if message.is_some_and(|m| m.len() > MAX_MESSAGE_LEN) || to.len() > MAX_FIELD_LEN {
        return Err(Problem::bad_request(format!(
            "to is at most {MAX_FIELD_LEN} bytes, message at most {MAX_MESSAGE_LEN}"
        )));
    }
    let Some((handle, domain)) = to
        .rsplit_once('@')
        .filter(|(h, d)| !h.is_empty() && !d.eq_ignore_ascii_case(federation.domain()))
    else {
        return Err(Problem::bad_request(
            "to must be handle@domain of a peer domain (friends on this server: PUT /api/friends)",
        ));
    };
    let domain = domain.to_ascii_lowercase();
    let Some(peer) = federation.peer(&domain) else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!("{domain} is not a peer of {}", federation.domain()),
        ));
    };
    match peer.config.status {
        PeerStatus::Active => {}
        PeerStatus::Blocked => {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("peer {domain} is blocked"),
            ));
        }
        PeerStatus::Pending => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!("peer {domain} is pending: an operator must make it active"),
            ));
        }
    }
    let user = state
        .store()
        .user(&auth.user_id)
        .await
        .map_err(|e| store_problem(&e))?
        .ok_or_else(|| Problem::new(StatusCode::UNAUTHORIZED, "the session's user is gone"))?;
    let from = format!("{}@{}", user.handle, federation.domain());
    let signed = sign(
        FriendRequest {
            kind: "friend_request".to_owned(),
            request_id: crate::registry::random_id(),
            from: from.clone(),
            to: format!("{handle}@{domain}"),
            message: message.map(str::to_owned),
            timestamp: format_created_at(unix_nanos_now()),
            signature: String::new(),
        },
        federation.key(),
    );
    let unreachable = |detail: String| Problem::new(StatusCode::BAD_GATEWAY, detail);
    let client = crate::federation::delivery::client(&peer.config)
        .map_err(|e| unreachable(e.to_string()))?;
    let response = client
        .post(format!(
            "{}/federation/friend-request",
            peer.config.endpoint
        ))
        .json(&signed)
        .send()
        .await
        .map_err(|e| unreachable(format!("peer {domain} could not be reached: {e:#}")))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let clipped: String = text.chars().take(300).collect();
    if !status.is_success() {
        return Err(unreachable(format!(
            "peer {domain} refused the request: {status}: {clipped}"
        )));
    }
    let answered = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("status")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "accepted".to_owned());
    tracing::info!(peer = %domain, request_id = %signed.request_id, status = %answered, "friend request sent to a peer domain");
    Ok((
        StatusCode::ACCEPTED,
        Json(FriendRequestSent {
            request_id: signed.request_id,
            status: answered,
            from,
        }),
    ))
}
