//! Noise key reload: a running server re-reads its key files (`keys/noise_static.key` and
//! `keys/noise_keyring.json`, see [`crate::keys::keyring`]) after `commucat keys rotate` or
//! `retire`, on SIGHUP ([`reload_on_hangup`]) or
//! [`crate::server::ServerHandle::reload_keys`].
//!
//! A reload swaps three things, in this order: the keys new handshakes accept, the
//! `/api/p2p/assist` key bundle (re-signed, its signed prekey is the current Noise key) and the
//! `/api/server-info` body. A client that sees the new key in server-info can therefore already
//! complete a handshake with it. A handshake whose Noise message 1 has arrived keeps the keys it
//! started with. A reload that fails (a file unreadable or corrupt) changes nothing: the
//! server keeps the keys in force, logs an error and records `keys`/`reload` with
//! `result: "failure"`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use zeroize::Zeroizing;

use crate::api::ServerInfo;
use crate::api::p2p::PqBundle;
use crate::keys::keyring::{AcceptedKey, NoiseKeyring};
use crate::keys::pq::{PqError, PqKeys};
use crate::keys::{self, KeyStoreError};
use crate::ledger::Ledger;
use crate::live::Live;
use crate::session::handshake::NoiseKey;

/// The handshake's key set for `accepted` (current first).
#[must_use]
pub fn handshake_keys(accepted: &[AcceptedKey]) -> Vec<NoiseKey> {
    accepted
        .iter()
        .map(|k| NoiseKey {
            version: k.version,
            private: Zeroizing::new(*k.key.private()),
            public: k.key.public(),
            accept_until: k.accept_until,
        })
        .collect()
}

/// Why a reload kept the keys in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// A key file is missing, unreadable or corrupt.
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    /// The key bundle could not be signed with the new key.
    #[error("signing the post-quantum key bundle: {0}")]
    Bundle(PqError),
    /// The reload task stopped before finishing (the runtime is shutting down).
    #[error("key reload did not finish: {0}")]
    Interrupted(tokio::task::JoinError),
}

/// What a successful reload put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Version of the current key.
    pub current_version: u32,
    /// Versions of every accepted key, current first.
    pub accepted_versions: Vec<u32>,
    /// Version current before the reload.
    pub previous_version: u32,
}

/// The key-dependent state of a running server and what it needs to rebuild it; cheap to
/// clone (clones share the state).
#[derive(Debug, Clone)]
pub struct KeyReloader {
    data_dir: PathBuf,
    grace: Option<Duration>,
    domain: String,
    device_ca_public: [u8; 32],
    pq: Arc<PqKeys>,
    ledger: Ledger,
    /// Version of the current key in force; also serializes reloads, so two in a row cannot
    /// store their results out of order.
    version: Arc<Mutex<u32>>,
    handshake: Live<Vec<NoiseKey>>,
    bundle: Live<PqBundle>,
    server_info: Live<ServerInfo>,
}

/// What [`KeyReloader::new`] builds the state from.
#[derive(Debug)]
pub struct ReloadSources<'a> {
    /// The data directory holding `keys/`.
    pub data_dir: PathBuf,
    /// `crypto.noise_key_grace`.
    pub grace: Option<Duration>,
    /// `server.domain`, bound into the bundle signature.
    pub domain: String,
    /// The device CA's Ed25519 public key (the bundle's identity key).
    pub device_ca_public: [u8; 32],
    /// The post-quantum keys that sign the bundle.
    pub pq: Arc<PqKeys>,
    /// Where reloads are recorded.
    pub ledger: Ledger,
    /// The keyring loaded at startup.
    pub keyring: &'a NoiseKeyring,
    /// The server-info body before its Noise keys are filled in.
    pub server_info: ServerInfo,
}

impl KeyReloader {
    /// The state for `sources.keyring` at `now`.
    ///
    /// # Errors
    /// The key bundle could not be signed.
    pub fn new(sources: ReloadSources<'_>, now: i64) -> Result<Self, PqError> {
        let accepted = sources.keyring.accepted(sources.grace, now);
        let bundle = PqBundle::new(
            &sources.domain,
            &sources.pq,
            &sources.device_ca_public,
            &sources.keyring.current.public(),
        )?;
        Ok(Self {
            handshake: Live::new(handshake_keys(&accepted)),
            bundle: Live::new(bundle),
            server_info: Live::new(sources.server_info.with_noise_keys(&accepted)),
            version: Arc::new(Mutex::new(sources.keyring.current_version)),
            data_dir: sources.data_dir,
            grace: sources.grace,
            domain: sources.domain,
            device_ca_public: sources.device_ca_public,
            pq: sources.pq,
            ledger: sources.ledger,
        })
    }

    /// The keys new handshakes accept.
    #[must_use]
    pub fn handshake_cell(&self) -> Live<Vec<NoiseKey>> {
        self.handshake.clone()
    }

    /// The `/api/p2p/assist` key bundle.
    #[must_use]
    pub fn bundle_cell(&self) -> Live<PqBundle> {
        self.bundle.clone()
    }

    /// The `/api/server-info` body.
    #[must_use]
    pub fn server_info_cell(&self) -> Live<ServerInfo> {
        self.server_info.clone()
    }

    /// Re-reads the key files and swaps the key set in force, or keeps it when they cannot be
    /// read; logs and records the outcome either way. Blocking (file reads and an ML-DSA
    /// signature); async callers use [`KeyReloader::reload_async`].
    ///
    /// # Errors
    /// Why the keys in force were kept.
    pub fn reload(&self, now: i64) -> Result<Reloaded, ReloadError> {
        let mut version = self.version.lock().unwrap_or_else(PoisonError::into_inner);
        let previous_version = *version;
        match self.rebuild(now) {
            Ok((ring, accepted, bundle)) => {
                self.handshake.store(handshake_keys(&accepted));
                self.bundle.store(bundle);
                let info = self.server_info.load().as_ref().clone();
                self.server_info.store(info.with_noise_keys(&accepted));
                *version = ring.current_version;
                let reloaded = Reloaded {
                    current_version: ring.current_version,
                    accepted_versions: accepted.iter().map(|k| k.version).collect(),
                    previous_version,
                };
                let noise_public = hex::encode(ring.current.public());
                tracing::info!(
                    current_version = reloaded.current_version,
                    previous_version,
                    accepted_versions = ?reloaded.accepted_versions,
                    %noise_public,
                    "Noise keys reloaded"
                );
                self.ledger.record("keys", || {
                    json!({
                        "event": "reload",
                        "result": "success",
                        "current_version": reloaded.current_version,
                        "previous_version": previous_version,
                        "accepted_versions": reloaded.accepted_versions,
                        "noise_public": noise_public,
                    })
                });
                Ok(reloaded)
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    current_version = previous_version,
                    "Noise key reload failed; the keys in force stay"
                );
                self.ledger.record("keys", || {
                    json!({
                        "event": "reload",
                        "result": "failure",
                        "current_version": previous_version,
                        "error": error.to_string(),
                    })
                });
                Err(error)
            }
        }
    }

    /// [`KeyReloader::reload`] on the blocking pool, at the current time.
    ///
    /// # Errors
    /// Why the keys in force were kept.
    pub async fn reload_async(&self) -> Result<Reloaded, ReloadError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reload(crate::clock::unix_now()))
            .await
            .map_err(ReloadError::Interrupted)?
    }

    fn rebuild(&self, now: i64) -> Result<(NoiseKeyring, Vec<AcceptedKey>, PqBundle), ReloadError> {
        let current = keys::load_noise_static(&self.data_dir)?;
        let ring = NoiseKeyring::load(&self.data_dir, current)?;
        let accepted = ring.accepted(self.grace, now);
        let bundle = PqBundle::new(
            &self.domain,
            &self.pq,
            &self.device_ca_public,
            &ring.current.public(),
        )
        .map_err(ReloadError::Bundle)?;
        Ok((ring, accepted, bundle))
    }
}

/// Reloads the Noise keys through `reloader` on every SIGHUP (after `commucat keys rotate` or
/// `retire`) until the process ends; spawn the returned future beside the server. The handler
/// is installed before this returns, so a SIGHUP arriving once the server listens never takes
/// the default action (terminating the process). A failed reload is logged and recorded by the
/// reloader and the keys in force stay. If the handler cannot be installed, that is logged and
/// SIGHUP is left alone. Needs a Tokio runtime.
pub fn reload_on_hangup(reloader: KeyReloader) -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let hangups = signal(SignalKind::hangup())
        .map_err(|error| {
            tracing::warn!(%error, "cannot listen for SIGHUP; Noise keys reload on restart only");
        })
        .ok();
    async move {
        let Some(mut hangups) = hangups else { return };
        while hangups.recv().await.is_some() {
            tracing::info!("received SIGHUP: reloading the Noise keys");
            // The outcome is logged and recorded by the reloader.
            let _ = reloader.reload_async().await;
        }
    }
}
