//! Federation with other domains: signed events in the reference servers' format
//! (wire-compat §13, [`event`]), static peers with pinned keys, the inbound checks
//! ([`inbound`]), building outbound events for remote members ([`outbound`]) and their
//! delivery from the durable outbox ([`delivery`]).
//!
//! [`Federation`] is the running state: this domain's key, the peers, the per-peer inbound
//! limiter, the delivery wake-ups and the counters. The HTTP endpoint (`api::federation`)
//! and the sessions (remote members of a channel) use it.

pub mod delivery;
pub mod discovery;
pub mod event;
pub mod friend_request;
pub mod inbound;
pub mod limiter;
pub mod metrics;
pub mod outbound;
pub mod pins;
pub mod registry;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use commucat_keys::{DeviceKeyPair, VerifyingKey};
use tokio::sync::Notify;

use crate::config::{FederationSettings, PeerConfig, PeerStatus};
pub use metrics::Counters;

/// Inbound refusal records written to the ledger per second at most.
pub const RECORDS_PER_SECOND: u32 = 50;

/// A peer as the running server sees it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its configuration.
    pub config: PeerConfig,
    /// Its pinned key, parsed.
    pub key: Option<VerifyingKey>,
}

/// The federation state of a running server.
pub struct Federation {
    domain: String,
    key: DeviceKeyPair,
    settings: FederationSettings,
    peers: HashMap<String, Peer>,
    limiter: limiter::PeerLimiter,
    wake: HashMap<String, Arc<Notify>>,
    /// When this node's delivery worker of each peer next retries (unix seconds, 0: none
    /// waiting); one entry per configured peer.
    next_attempt: HashMap<String, AtomicI64>,
    pins: pins::Pins,
    rotation: Option<crate::keys::federation::Rotation>,
    /// Traffic counters.
    pub counters: Counters,
    /// Budget of refusal records in the ledger.
    records: crate::ledger_throttle::Throttle,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("domain", &self.domain)
            .field("public_key", &self.key.public_key_hex())
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Federation {
    /// The state for this server's `domain`, its federation `key` and `settings` (already
    /// validated: every pinned key parses).
    #[must_use]
    pub fn new(domain: &str, key: DeviceKeyPair, settings: FederationSettings) -> Self {
        let peers: HashMap<String, Peer> = settings
            .peers
            .iter()
            .map(|config| {
                let key = config
                    .public_key
                    .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok());
                (
                    config.domain.clone(),
                    Peer {
                        config: config.clone(),
                        key,
                    },
                )
            })
            .collect();
        let wake = peers
            .keys()
            .map(|domain| (domain.clone(), Arc::new(Notify::new())))
            .collect();
        let next_attempt = peers
            .keys()
            .map(|domain| (domain.clone(), AtomicI64::new(0)))
            .collect();
        Self {
            domain: domain.to_ascii_lowercase(),
            limiter: limiter::PeerLimiter::per_minute(settings.events_per_minute),
            key,
            settings,
            peers,
            wake,
            next_attempt,
            pins: pins::Pins::default(),
            rotation: None,
            counters: Counters::default(),
            records: crate::ledger_throttle::Throttle::new(RECORDS_PER_SECOND),
        }
    }

    /// This state publishing `rotation`, the last rotation of this domain's key (during its
    /// grace period).
    #[must_use]
    pub fn with_rotation(self, rotation: Option<crate::keys::federation::Rotation>) -> Self {
        Self { rotation, ..self }
    }

    /// The last rotation of this domain's key, while its grace period lasts.
    #[must_use]
    pub fn rotation(&self) -> Option<&crate::keys::federation::Rotation> {
        self.rotation.as_ref()
    }

    /// The keys learned from peers' rotations.
    #[must_use]
    pub fn pins(&self) -> &pins::Pins {
        &self.pins
    }

    /// The keys an event from `domain` may be signed with at `now` (unix seconds): the pinned
    /// key, or after the peer rotated, its new key and the previous one until its grace ends.
    #[must_use]
    pub fn accepted_keys(&self, domain: &str, now: i64) -> Vec<VerifyingKey> {
        let configured = self.peers.get(domain).and_then(|p| p.key);
        self.pins.accepted(domain, configured, now)
    }

    /// Whether federation is switched on (`federation.enabled`).
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// This server's domain (lowercase).
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// This domain's federation key.
    #[must_use]
    pub fn key(&self) -> &DeviceKeyPair {
        &self.key
    }

    /// The settings in force.
    #[must_use]
    pub fn settings(&self) -> &FederationSettings {
        &self.settings
    }

    /// The peer named `domain` (lowercase).
    #[must_use]
    pub fn peer(&self, domain: &str) -> Option<&Peer> {
        self.peers.get(domain)
    }

    /// Every configured peer, by domain.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        let mut peers: Vec<&Peer> = self.peers.values().collect();
        peers.sort_by(|a, b| a.config.domain.cmp(&b.config.domain));
        peers.into_iter()
    }

    /// The peer domain of a member id `device@domain` when federation is on and `domain` is a
    /// configured peer; `None` for a local id (an id with `@` whose domain is not a peer is
    /// left to the local checks).
    #[must_use]
    pub fn remote_peer<'a>(&'a self, member: &str) -> Option<&'a Peer> {
        if !self.settings.enabled {
            return None;
        }
        let (_, domain) = member.rsplit_once('@')?;
        self.peers.get(&domain.to_ascii_lowercase())
    }

    /// Takes one inbound token for `domain`; `Err(seconds)` to wait when it has none.
    ///
    /// # Errors
    /// The peer is over `federation.events_per_minute`.
    pub fn admit(&self, domain: &str) -> Result<(), u64> {
        self.limiter.check(domain)
    }

    /// Wakes the delivery worker of `domain`.
    pub fn wake(&self, domain: &str) {
        if let Some(notify) = self.wake.get(domain) {
            notify.notify_one();
        }
    }

    /// The wake-up of `domain`'s delivery worker.
    #[must_use]
    pub fn wake_handle(&self, domain: &str) -> Option<Arc<Notify>> {
        self.wake.get(domain).cloned()
    }

    /// Records an inbound refusal in `ledger` (scope `federation`), at most
    /// [`RECORDS_PER_SECOND`] per second; the next record written carries how many were left
    /// out (`suppressed_before`).
    pub fn record_refusal(&self, ledger: &crate::ledger::Ledger, refusal: &inbound::Refusal) {
        let Some(suppressed) = self.records.admit(crate::clock::unix_now()) else {
            return;
        };
        ledger.record("federation", || {
            serde_json::json!({
                "direction": "inbound",
                "peer": refusal.origin,
                "status": refusal.status,
                "title": refusal.title,
                "detail": refusal.detail,
                "outcome": "refused",
                "suppressed_before": suppressed,
            })
        });
    }

    /// Records when this node's delivery worker of `domain` next retries a failed event
    /// (unix seconds), or that it waits for none (`None`).
    pub fn set_next_attempt(&self, domain: &str, at: Option<i64>) {
        if let Some(slot) = self.next_attempt.get(domain) {
            slot.store(at.unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// When this node's delivery worker of `domain` next retries a failed event (unix
    /// seconds); `None` when no retry is waiting.
    #[must_use]
    pub fn next_attempt(&self, domain: &str) -> Option<i64> {
        self.next_attempt
            .get(domain)
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|at| *at > 0)
    }

    /// Status of `domain`: `None` for an unknown domain.
    #[must_use]
    pub fn status(&self, domain: &str) -> Option<PeerStatus> {
        self.peers.get(domain).map(|p| p.config.status)
    }
}
