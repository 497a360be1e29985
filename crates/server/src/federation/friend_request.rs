//! Cross-domain friend requests as the reference servers send them (wire-compat §13), sans-IO:
//!
//! ```text
//! POST /federation/friend-request
//! {"type":"friend_request","request_id":s,"from":"handle@domain","to":"handle@domain",
//!  "message":s?,"timestamp":s,"signature":hex}
//! signature = Ed25519(origin's federation key, UTF-8 of
//!             request_id|from|to|message|timestamp), each trimmed, a missing message as ""
//! ```
//!
//! The origin is the domain of `from`; the signature is checked with that peer's pinned key.
//! The request is delivered to every device of the local user `to` names as a GROUP_EVENT on
//! channel 0 (what the reference sends and the deployed terminal client prints).

use commucat_keys::DeviceKeyPair;
use serde::{Deserialize, Serialize};

use super::Federation;
use super::inbound::Refusal;
use crate::config::PeerStatus;

/// Longest accepted `message`, bytes.
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Longest accepted `request_id`, `from`, `to` or `timestamp`, bytes.
pub const MAX_FIELD_LEN: usize = 256;

/// The request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRequest {
    /// `friend_request`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Unique per origin.
    pub request_id: String,
    /// `handle@origin-domain`.
    pub from: String,
    /// `handle@this-domain`.
    pub to: String,
    /// Optional note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was sent (RFC 3339).
    pub timestamp: String,
    /// Ed25519 signature, hex.
    pub signature: String,
}

/// The bytes a friend request's signature covers.
#[must_use]
pub fn signed_bytes(request: &FriendRequest) -> Vec<u8> {
    format!(
        "{}|{}|{}|{}|{}",
        request.request_id.trim(),
        request.from.trim(),
        request.to.trim(),
        request.message.as_deref().unwrap_or("").trim(),
        request.timestamp.trim()
    )
    .into_bytes()
}

/// Signs `request` (its `signature` is replaced) with this domain's federation key.
#[must_use]
pub fn sign(mut request: FriendRequest, key: &DeviceKeyPair) -> FriendRequest {
    request.signature = hex::encode(key.sign(&signed_bytes(&request)));
    request
}

/// A friend request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRequest {
    /// The sending domain.
    pub origin: String,
    /// The local handle it is for.
    pub to_handle: String,
    /// The request as received.
    pub request: FriendRequest,
}

/// Parses and checks a friend request body.
///
/// # Errors
/// The refusal to answer: 400 `InvalidRequest` / `InvalidPayload` / `InvalidTarget`, 403
/// `UnknownPeer` / `PeerBlocked` / `PeerPending` / `InvalidSignature`.
pub fn check(federation: &Federation, body: &[u8]) -> Result<CheckedRequest, Refusal> {
    let refuse = |status, title, detail: String| Refusal {
        status,
        title,
        detail,
        origin: None,
    };
    let request: FriendRequest = serde_json::from_slice(body)
        .map_err(|e| refuse(400, "InvalidRequest", format!("not a friend request: {e}")))?;
    if request.kind != "friend_request" {
        return Err(refuse(
            400,
            "InvalidRequest",
            format!("type {:?}", request.kind),
        ));
    }
    let long = [
        &request.request_id,
        &request.from,
        &request.to,
        &request.timestamp,
    ]
    .iter()
    .any(|f| f.len() > MAX_FIELD_LEN || f.trim().is_empty());
    if long
        || request
            .message
            .as_ref()
            .is_some_and(|m| m.len() > MAX_MESSAGE_LEN)
    {
        return Err(refuse(
            400,
            "InvalidPayload",
            format!(
                "empty or too long fields (at most {MAX_FIELD_LEN} bytes, message {MAX_MESSAGE_LEN})"
            ),
        ));
    }
    let Some((_, origin)) = request.from.trim().rsplit_once('@') else {
        return Err(refuse(
            400,
            "InvalidPayload",
            "from is not handle@domain".to_owned(),
        ));
    };
    let origin = origin.to_ascii_lowercase();
    let with_origin = |mut r: Refusal| {
        r.origin = Some(origin.clone());
        r
    };
    let Some(peer) = federation.peer(&origin) else {
        return Err(with_origin(refuse(
            403,
            "UnknownPeer",
            format!("{origin:?} is not a peer of {}", federation.domain()),
        )));
    };
    match peer.config.status {
        PeerStatus::Blocked => {
            return Err(with_origin(refuse(
                403,
                "PeerBlocked",
                format!("peer {origin} is blocked"),
            )));
        }
        PeerStatus::Pending => {
            return Err(with_origin(refuse(
                403,
                "PeerPending",
                format!("no key is pinned for {origin}"),
            )));
        }
        PeerStatus::Active => {}
    }
    let keys = federation.accepted_keys(&origin, crate::clock::unix_now());
    if keys.is_empty() {
        return Err(with_origin(refuse(
            403,
            "PeerPending",
            format!("no key is pinned for {origin}"),
        )));
    }
    let signature: Option<[u8; 64]> = hex::decode(request.signature.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok());
    let message = signed_bytes(&request);
    let verified = signature.is_some_and(|signature| {
        let signature = ed25519_dalek::Signature::from_bytes(&signature);
        keys.iter()
            .any(|key| key.verify_strict(&message, &signature).is_ok())
    });
    if !verified {
        return Err(with_origin(refuse(
            403,
            "InvalidSignature",
            format!("friend request from {origin}: the signature does not verify"),
        )));
    }
    let to_handle = match request.to.trim().rsplit_once('@') {
        Some((handle, domain))
            if domain.eq_ignore_ascii_case(federation.domain()) && !handle.is_empty() =>
        {
            handle.to_owned()
        }
        _ => {
            return Err(with_origin(refuse(
                400,
                "InvalidTarget",
                format!("{:?} is not a user of {}", request.to, federation.domain()),
            )));
        }
    };
    Ok(CheckedRequest {
        origin,
        to_handle,
        request,
    })
}

/// The GROUP_EVENT payload announcing `checked` to the local user `user_id`.
#[must_use]
pub fn notice(checked: &CheckedRequest, user_id: &str) -> serde_json::Value {
    let from = checked.request.from.trim();
    serde_json::json!({
        "type": "friend_request",
        "request_id": checked.request.request_id,
        "from": from,
        "handle": from,
        "to": checked.request.to.trim(),
        "user_id": user_id,
        "federated": true,
        "timestamp": checked.request.timestamp,
        "message": checked.request.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FederationSettings, PeerConfig};

    fn federation() -> Federation {
        let settings = FederationSettings {
            enabled: true,
            peers: vec![PeerConfig {
                domain: "a.test".to_owned(),
                endpoint: "https://a.test".to_owned(),
                public_key: Some(DeviceKeyPair::from_seed(&[1; 32]).public_key()),
                status: PeerStatus::Active,
                ca_file: None,
            }],
            ..FederationSettings::default()
        };
        Federation::new("b.test", DeviceKeyPair::from_seed(&[2; 32]), settings)
    }

    fn request() -> FriendRequest {
        FriendRequest {
            kind: "friend_request".to_owned(),
            request_id: "fr-1".to_owned(),
            from: "alice@a.test".to_owned(),
            to: "bob@b.test".to_owned(),
            message: None,
            timestamp: "2026-01-02T03:04:05Z".to_owned(),
            signature: String::new(),
        }
    }

    #[test]
    fn the_signed_bytes_are_the_trimmed_fields_joined() {
        let mut r = request();
        r.from = " alice@a.test ".to_owned();
        assert_eq!(
            signed_bytes(&r),
            b"fr-1|alice@a.test|bob@b.test||2026-01-02T03:04:05Z".to_vec()
        );
    }

    #[test]
    fn a_signed_request_passes_and_a_changed_one_does_not() {
        let signed = sign(request(), &DeviceKeyPair::from_seed(&[1; 32]));
        let body = serde_json::to_vec(&signed).unwrap();
        let checked = check(&federation(), &body).unwrap();
        assert_eq!(
            (checked.origin.as_str(), checked.to_handle.as_str()),
            ("a.test", "bob")
        );
        let mut changed = signed.clone();
        changed.message = Some("hi".to_owned());
        let refused = check(&federation(), &serde_json::to_vec(&changed).unwrap()).unwrap_err();
        assert_eq!(refused.title, "InvalidSignature");
        let mut elsewhere = sign(request(), &DeviceKeyPair::from_seed(&[1; 32]));
        elsewhere.to = "bob@c.test".to_owned();
        let elsewhere = sign(elsewhere, &DeviceKeyPair::from_seed(&[1; 32]));
        let refused = check(&federation(), &serde_json::to_vec(&elsewhere).unwrap()).unwrap_err();
        assert_eq!(refused.title, "InvalidTarget");
        let mut unknown = request();
        unknown.from = "x@x.test".to_owned();
        let unknown = sign(unknown, &DeviceKeyPair::from_seed(&[1; 32]));
        let refused = check(&federation(), &serde_json::to_vec(&unknown).unwrap()).unwrap_err();
        assert_eq!(refused.title, "UnknownPeer");
    }
}
