//! `[transport]`: the outer-transport manager and REALITY material (seed 001, "REALITY
//! provisioning").
//!
//! ```toml
//! [transport]
//! reality_cert = "certs/reality.pem"
//! reality_fingerprint = "0123…cdef"   # BLAKE3 of the PEM file, 64 hex digits
//! max_networks = 4096                  # client networks whose transport outcomes are kept
//! deflection_window = 120              # seconds
//! ```
//!
//! The REALITY material is checked at start (`commucat doctor` reports it too); this server
//! provides no REALITY transport, so valid material is reported and never advertised.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// Default `transport.max_networks`.
pub(super) const DEFAULT_MAX_NETWORKS: usize = 4096;
/// Largest `transport.max_networks`.
pub(super) const MAX_NETWORKS: usize = 1 << 20;
/// Default `transport.deflection_window`.
pub(super) const DEFAULT_DEFLECTION_WINDOW: Duration = Duration::from_secs(120);

/// The `[transport]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportSettings {
    /// REALITY certificate (PEM), as configured.
    pub reality_cert: Option<PathBuf>,
    /// BLAKE3 fingerprint of that PEM file, lower-case hex.
    pub reality_fingerprint: Option<String>,
    /// Client networks (/24, /48) whose transport outcomes are remembered.
    pub max_networks: usize,
    /// How soon after a failed attempt a success on another transport is a deflection.
    pub deflection_window: Duration,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            reality_cert: None,
            reality_fingerprint: None,
            max_networks: DEFAULT_MAX_NETWORKS,
            deflection_window: DEFAULT_DEFLECTION_WINDOW,
        }
    }
}

/// The `[transport]` table of the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TransportSection {
    reality_cert: Option<PathBuf>,
    reality_fingerprint: Option<String>,
    max_networks: Option<usize>,
    deflection_window: Option<u64>,
}

impl TransportSection {
    pub(super) fn apply(
        self,
        settings: &mut TransportSettings,
        resolve: impl Fn(PathBuf) -> PathBuf,
    ) {
        if let Some(cert) = self.reality_cert.filter(|p| !p.as_os_str().is_empty()) {
            settings.reality_cert = Some(resolve(cert));
        }
        if let Some(fp) = self.reality_fingerprint.filter(|f| !f.trim().is_empty()) {
            settings.reality_fingerprint = Some(fp.trim().to_ascii_lowercase());
        }
        if let Some(n) = self.max_networks {
            settings.max_networks = n;
        }
        if let Some(secs) = self.deflection_window {
            settings.deflection_window = Duration::from_secs(secs);
        }
    }
}

impl TransportSettings {
    pub(super) fn check(&self, name: impl Fn(&'static str) -> String) -> Result<(), ConfigError> {
        if let Some(fp) = &self.reality_fingerprint
            && (fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ConfigError::invalid(
                &name("transport.reality_fingerprint"),
                "must be 64 hex digits (the BLAKE3 hash of the PEM file)",
            ));
        }
        if self.max_networks == 0 || self.max_networks > MAX_NETWORKS {
            return Err(ConfigError::invalid(
                &name("transport.max_networks"),
                format!("must be between 1 and {MAX_NETWORKS}"),
            ));
        }
        let window = self.deflection_window.as_secs();
        if !(1..=3600).contains(&window) {
            return Err(ConfigError::invalid(
                &name("transport.deflection_window"),
                "must be between 1 and 3600 seconds",
            ));
        }
        Ok(())
    }
}
