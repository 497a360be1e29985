//! What established sessions share ([`Messaging`]) and their settings.

use std::sync::Arc;
use std::time::Duration;

use commucat_store::Store;

use crate::clock::unix_now;
use crate::cluster::Cluster;
use crate::config::{Bound, BoundSettings, Config, as_usize};
use crate::federation::Federation;
use crate::ledger::Ledger;
use crate::ledger_throttle::Throttle;
use crate::router::Hub;
use crate::router::channels::ChannelLimits;
use crate::router::presence::Presence;
use crate::router::relay::{QueuePolicy, Refusals, Relay};

/// Settings of established sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagingSettings {
    /// Frames that may wait in one session's mailbox.
    pub mailbox_capacity: usize,
    /// Lifetime of a PRESENCE snapshot without refresh.
    pub presence_ttl: Duration,
    /// Lifetime of an offline envelope.
    pub offline_ttl: Duration,
    /// Offline envelopes one device may have queued.
    pub max_queue_per_device: u64,
    /// How long idempotency keys of relayed frames are remembered.
    pub dedup_window: Duration,
    /// Session (REST bearer) lifetime; a connected session keeps moving its expiry forward.
    pub session_ttl: Duration,
    /// This node's id in the presence registry's `route:<device>` entries.
    pub node_id: String,
    /// This server's domain: a sender field may name the sending device bare or as
    /// `device@domain`.
    pub domain: String,
    /// What one device or session may make the server hold (`[bounds]`).
    pub bounds: BoundSettings,
    /// When a `pq-hybrid` session takes a ratchet step (`crypto.pq_ratchet_messages`,
    /// `crypto.pq_ratchet_interval`).
    pub pq_ratchet: commucat_link::RatchetPolicy,
}

impl MessagingSettings {
    /// The settings `config` asks for.
    #[must_use]
    pub fn from_config(config: &Config) -> Self {
        Self {
            mailbox_capacity: config.limits.mailbox_capacity,
            presence_ttl: config.session.presence_ttl,
            offline_ttl: config.offline.ttl,
            max_queue_per_device: config.offline.max_per_device,
            dedup_window: config.offline.dedup_window,
            session_ttl: config.session.ttl,
            node_id: config
                .presence
                .node_id
                .clone()
                .unwrap_or_else(|| format!("node-{}", &crate::registry::random_id()[..16])),
            domain: config.server.domain.clone(),
            bounds: config.bounds.clone(),
            pq_ratchet: commucat_link::RatchetPolicy {
                messages: config.crypto.pq_ratchet_messages,
                interval: config.crypto.pq_ratchet_interval,
            },
        }
    }
}

impl MessagingSettings {
    /// The channel tables' bounds (`bounds.channel_members`, `bounds.channels_per_device`).
    #[must_use]
    pub fn channel_limits(&self) -> ChannelLimits {
        ChannelLimits {
            members: as_usize(self.bounds.channel_members),
            per_device: as_usize(self.bounds.channels_per_device),
        }
    }
}

impl Default for MessagingSettings {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}

/// What established sessions share: routing tables, storage, presence registry, settings.
#[derive(Debug)]
pub struct Messaging {
    /// Routing tables of this node.
    pub hub: Arc<Hub>,
    /// Groups and the offline queue.
    pub store: Arc<dyn Store>,
    /// Presence snapshots.
    pub presence: Arc<dyn Presence>,
    /// Settings.
    pub settings: MessagingSettings,
    /// Audit record of group changes and calls (and, through the REST state, pairing and
    /// device revocation).
    pub ledger: Ledger,
    /// Budget of `bound` ledger records per second.
    bound_records: Throttle,
    /// The other nodes of the deployment (with Redis), or `None` on a single node.
    pub cluster: Option<Arc<Cluster>>,
    /// Federation with peer domains, when configured (remote channel members).
    pub federation: Option<Arc<Federation>>,
}

/// `bound` ledger records written per second at most (the metric counts every refusal).
pub const BOUND_RECORDS_PER_SECOND: u32 = 50;

impl Messaging {
    /// Shared state for sessions with a fresh hub.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        presence: Arc<dyn Presence>,
        settings: MessagingSettings,
    ) -> Self {
        Self {
            hub: Arc::new(Hub::new(settings.dedup_window)),
            store,
            presence,
            settings,
            ledger: Ledger::off(),
            bound_records: Throttle::new(BOUND_RECORDS_PER_SECOND),
            cluster: None,
            federation: None,
        }
    }

    /// This state, federating with the peers of `federation`.
    #[must_use]
    pub fn with_federation(self, federation: Arc<Federation>) -> Self {
        Self {
            federation: Some(federation),
            ..self
        }
    }

    /// This state, reaching devices on the other nodes of the deployment through `cluster`.
    #[must_use]
    pub fn with_cluster(self, cluster: Option<Arc<Cluster>>) -> Self {
        Self { cluster, ..self }
    }

    /// This state, recording in `ledger`.
    #[must_use]
    pub fn with_ledger(self, ledger: Ledger) -> Self {
        Self { ledger, ..self }
    }

    /// Counts a refusal by `bound` in `commucat_bound_refusals_total` and records it in the
    /// ledger (scope `bound`) with the device it was refused to and what was asked for.
    ///
    /// The metric counts every refusal; the ledger takes at most
    /// [`BOUND_RECORDS_PER_SECOND`] of them per second, and the next record written carries
    /// how many were left out (`suppressed_before`), so a flood of refusals cannot grow the
    /// ledger at the rate the client sends.
    pub fn refuse(&self, bound: Bound, device: &str, detail: &str) {
        self.hub.metrics.bound_refusals.count(bound);
        let Some(suppressed) = self.bound_records.admit(unix_now()) else {
            return;
        };
        self.ledger.record("bound", || {
            serde_json::json!({
                "bound": bound.name(),
                "device_id": device,
                "detail": detail,
                "suppressed_before": suppressed,
            })
        });
    }
}

impl Messaging {
    /// The relay service over this state's hub and store.
    pub(crate) fn relay(&self) -> Relay<'_> {
        Relay {
            hub: &self.hub,
            store: &*self.store,
            policy: self.queue_policy(),
            refusals: self,
            remote: self
                .cluster
                .as_deref()
                .map(|c| c as &dyn crate::router::remote::Remote),
        }
    }

    /// The offline queue's quotas and lifetimes from the settings.
    pub(crate) fn queue_policy(&self) -> QueuePolicy {
        let settings = &self.settings;
        let bounds = &settings.bounds;
        QueuePolicy {
            limits: commucat_store::QueueLimits {
                frames_per_recipient: settings
                    .max_queue_per_device
                    .min(bounds.offline_frames_per_device),
                bytes_per_recipient: bounds.offline_bytes_per_device,
                frames_per_sender: bounds.offline_frames_per_sender,
                bytes_per_sender: bounds.offline_bytes_per_sender,
                bytes_total: bounds.offline_bytes_total,
            },
            ttl: settings.offline_ttl,
            dedup_window: settings.dedup_window,
        }
    }
}

impl Refusals for Messaging {
    fn refuse(&self, bound: Bound, device: &str, detail: &str) {
        Messaging::refuse(self, bound, device, detail);
    }
}
