//! Why the server could not start.

use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::keys::KeyStoreError;
use crate::keys::secrets::FileError;
use crate::tls::TlsError;

/// A startup failure; each variant names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be created.
    #[error("data directory: {0}")]
    DataDir(FileError),
    /// The server keys could not be loaded or created.
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    /// The post-quantum key bundle could not be signed.
    #[error("post-quantum keys: {0}")]
    PostQuantum(crate::keys::pq::PqError),
    /// The TLS certificate could not be loaded or created.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The store (the SQLite file, or PostgreSQL at `store.url`) could not be opened or
    /// migrated.
    #[error("store {location}: {source}")]
    Store {
        /// The database file, or the PostgreSQL URL with its password hidden.
        location: String,
        /// Why.
        source: commucat_store::StoreError,
    },
    /// The Redis presence registry (`presence.redis_url`) could not be reached.
    #[error("presence registry {url}: {source}")]
    Presence {
        /// The configured URL (password hidden).
        url: String,
        /// Why.
        source: crate::router::presence::PresenceError,
    },
    /// The ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// The listen address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP/3 (QUIC) endpoint could not be set up.
    #[error("HTTP/3 listener: {0}")]
    Http3(#[from] crate::listener::h3::H3Error),
    /// A federation peer's delivery client could not be built (its `ca_file`).
    #[error(transparent)]
    Federation(#[from] crate::federation::delivery::ClientError),
    /// The server task failed (panicked or was cancelled).
    #[error("server task: {0}")]
    Task(#[from] tokio::task::JoinError),
}
