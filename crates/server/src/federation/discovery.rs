//! Fetching a peer's published federation key (`GET <endpoint>/.well-known/commucat-federation`
//! over verified TLS, the client of [`super::delivery::client`]) to follow its key rotation:
//! when an event from an active peer fails to verify with the keys accepted from it, and the
//! peer's document carries a rotation signed by one of those keys, its new key is accepted
//! (and the previous one until the rotation's `valid_until`). A document that changes the key
//! without such a rotation is not believed: that change needs an operator.

use std::time::Instant;

use serde::Deserialize;

use super::Federation;
use crate::config::PeerStatus;
use crate::keys::federation::{Rotation, WELL_KNOWN_PATH};

/// Longest well-known document read.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;

/// The parts of a peer's well-known document read here.
#[derive(Debug, Deserialize)]
pub struct Document {
    /// The peer's domain.
    pub domain: String,
    /// Its current key (hex).
    pub public_key: String,
    /// Its last rotation, during the grace period.
    #[serde(default)]
    pub rotation: Option<Rotation>,
}

/// What a refresh came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// A new key of the peer is accepted now.
    Learned,
    /// Nothing changed (not fetched, throttled, or nothing new).
    Unchanged(String),
}

/// Looks for a rotation of `domain`'s key (active peers only, throttled per peer).
pub async fn refresh(federation: &Federation, domain: &str) -> Refresh {
    let Some(peer) = federation.peer(domain) else {
        return Refresh::Unchanged("not a peer".to_owned());
    };
    if peer.config.status != PeerStatus::Active {
        return Refresh::Unchanged("not an active peer".to_owned());
    }
    if !federation.pins().may_refresh(domain, Instant::now()) {
        return Refresh::Unchanged("fetched recently".to_owned());
    }
    let document = match fetch(&peer.config).await {
        Ok(document) => document,
        Err(e) => {
            tracing::info!(peer = domain, error = %e, "federation key document unavailable");
            return Refresh::Unchanged(e);
        }
    };
    if !document.domain.eq_ignore_ascii_case(domain) {
        return Refresh::Unchanged(format!("the document names {:?}", document.domain));
    }
    let Some(rotation) = document.rotation else {
        return Refresh::Unchanged("no rotation published".to_owned());
    };
    if !rotation
        .public_key
        .eq_ignore_ascii_case(&document.public_key)
    {
        return Refresh::Unchanged("the rotation is not to the current key".to_owned());
    }
    let accepted = federation.accepted_keys(domain, crate::clock::unix_now());
    match federation.pins().learn(domain, &accepted, &rotation) {
        Ok(true) => {
            tracing::info!(peer = domain, public_key = %rotation.public_key, valid_until = rotation.valid_until, "federation peer rotated its key; the new key is accepted");
            Refresh::Learned
        }
        Ok(false) => Refresh::Unchanged("key already accepted".to_owned()),
        Err(e) => {
            tracing::warn!(peer = domain, error = %e, "federation peer publishes a rotation this server cannot verify; an operator must pin its key");
            Refresh::Unchanged(e.to_string())
        }
    }
}

/// Fetches the well-known document of `peer` over verified TLS (its `ca_file` or the system
/// roots).
///
/// # Errors
/// The request failed, was not answered 2xx, or the answer is not a federation document.
pub async fn fetch(peer: &crate::config::PeerConfig) -> Result<Document, String> {
    let client = super::delivery::client(peer).map_err(|e| e.to_string())?;
    let mut response = client
        .get(format!("{}{WELL_KNOWN_PATH}", peer.endpoint))
        .send()
        .await
        .map_err(|e| format!("{e:#}"))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("{e:#}"))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err("document too large".to_owned());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("not a federation document: {e}"))
}
