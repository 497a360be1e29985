//! The peer registry in the store (`federation_peer`), merged with the static
//! `[[federation.peers]]` of the configuration when the server starts: a registry row replaces
//! the configured peer of the same domain (so `commucat federation peers block` overrides the
//! file), other configured peers stay. The merged list is checked as the configuration's is.

use std::path::PathBuf;

use commucat_store::FederationPeer;

use crate::config::{ConfigError, FederationSettings, PeerConfig, PeerStatus};

/// The status named `name` (`active`, `pending`, `blocked`).
#[must_use]
pub fn status_named(name: &str) -> Option<PeerStatus> {
    match name {
        "active" => Some(PeerStatus::Active),
        "pending" => Some(PeerStatus::Pending),
        "blocked" => Some(PeerStatus::Blocked),
        _ => None,
    }
}

/// The peer a registry row describes.
///
/// # Errors
/// The row's key or status cannot be read.
pub fn peer_of(row: &FederationPeer) -> Result<PeerConfig, ConfigError> {
    let key = |field: &str| format!("federation_peer[{}].{field}", row.domain);
    let public_key = row
        .public_key
        .as_deref()
        .map(|hex| {
            commucat_keys::decode_hex32(hex.trim())
                .map_err(|e| ConfigError::invalid(&key("public_key"), e.to_string()))
        })
        .transpose()?;
    let status = status_named(&row.status)
        .ok_or_else(|| ConfigError::invalid(&key("status"), format!("{:?}", row.status)))?;
    Ok(PeerConfig {
        domain: row.domain.trim().to_ascii_lowercase(),
        endpoint: row.endpoint.trim().trim_end_matches('/').to_owned(),
        public_key,
        status,
        ca_file: row.ca_file.as_ref().map(PathBuf::from),
    })
}

/// The registry row of `peer`, changed at `at` (unix seconds).
#[must_use]
pub fn row_of(peer: &PeerConfig, at: i64) -> FederationPeer {
    FederationPeer {
        domain: peer.domain.clone(),
        endpoint: peer.endpoint.clone(),
        public_key: peer.public_key.map(hex::encode),
        status: peer.status.name().to_owned(),
        ca_file: peer.ca_file.as_ref().map(|p| p.display().to_string()),
        updated_at: at,
    }
}

/// `settings` with the registry `rows` merged into its peers (a row replaces the configured
/// peer of its domain), checked for this server's `domain`.
///
/// # Errors
/// A row cannot be read, or the merged peers are invalid (e.g. an `https://` endpoint
/// missing, this server's own domain, too many peers).
pub fn merge(
    settings: &FederationSettings,
    rows: &[FederationPeer],
    domain: &str,
) -> Result<FederationSettings, ConfigError> {
    let mut merged = settings.clone();
    for row in rows {
        let peer = peer_of(row)?;
        match merged.peers.iter_mut().find(|p| p.domain == peer.domain) {
            Some(configured) => *configured = peer,
            None => merged.peers.push(peer),
        }
    }
    merged.check(domain)?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured(domain: &str, status: PeerStatus) -> PeerConfig {
        PeerConfig {
            domain: domain.to_owned(),
            endpoint: format!("https://{domain}"),
            public_key: Some(commucat_keys::DeviceKeyPair::from_seed(&[7; 32]).public_key()),
            status,
            ca_file: None,
        }
    }

    #[test]
    fn registry_rows_replace_configured_peers_and_add_new_ones() {
        let settings = FederationSettings {
            enabled: true,
            peers: vec![
                configured("b.test", PeerStatus::Active),
                configured("c.test", PeerStatus::Active),
            ],
            ..FederationSettings::default()
        };
        let blocked_b = row_of(&configured("b.test", PeerStatus::Blocked), 5);
        let new_d = row_of(&configured("d.test", PeerStatus::Pending), 5);
        let merged = merge(&settings, &[blocked_b, new_d.clone()], "a.test").unwrap();
        let statuses: Vec<(&str, PeerStatus)> = merged
            .peers
            .iter()
            .map(|p| (p.domain.as_str(), p.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("b.test", PeerStatus::Blocked),
                ("c.test", PeerStatus::Active),
                ("d.test", PeerStatus::Pending),
            ]
        );
        assert_eq!(
            peer_of(&new_d).unwrap(),
            configured("d.test", PeerStatus::Pending)
        );
        // A row for this server's own domain, or with a bad status, is refused.
        let own = row_of(&configured("a.test", PeerStatus::Active), 5);
        assert!(merge(&settings, &[own], "a.test").is_err());
        let mut bad = row_of(&configured("e.test", PeerStatus::Active), 5);
        bad.status = "friendly".to_owned();
        assert!(merge(&settings, &[bad], "a.test").is_err());
    }
}
