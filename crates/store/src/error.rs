//! The one error type every backend returns.

use sqlx::error::ErrorKind;

/// Result alias used throughout the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What went wrong in the store, phrased for the caller (not for the driver).
///
/// Backends map their driver errors into these variants; callers never see `sqlx` types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row the operation needs does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// Kind of row: `"user"`, `"device"`, `"session"`.
        what: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// A uniqueness rule would be broken (taken handle, duplicate id).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Registering one more active device would exceed the per-user limit.
    #[error("user {user_id} already has the maximum of {limit} active devices")]
    DeviceLimit {
        /// The user whose limit was reached.
        user_id: String,
        /// The limit that applied.
        limit: u64,
    },
    /// The device already owns the maximum number of groups it may create.
    #[error("device {device_id} already owns the maximum of {limit} groups")]
    GroupLimit {
        /// The owner whose limit was reached.
        device_id: String,
        /// The limit that applied.
        limit: u64,
    },
    /// The device is revoked: no session may be created for it.
    #[error("device {device_id} is revoked")]
    DeviceRevoked {
        /// The revoked device.
        device_id: String,
    },
    /// The device's stored key is no longer the one the caller authenticated (a rotation
    /// committed in between).
    #[error("device {device_id} has another key now")]
    DeviceKeyChanged {
        /// The device whose key changed.
        device_id: String,
    },
    /// The arguments contradict each other or the stored relations
    /// (e.g. a device whose `user_id` is not the user being registered).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The database cannot be reached or used right now (connection, pool, I/O, lock timeout).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored row does not decode into a record (e.g. a public key that is not 32 bytes).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Applying the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
}

impl StoreError {
    /// Maps a driver error by its backend-independent shape.
    ///
    /// Backends refine database-specific codes (busy, corrupt file, …) before falling back here.
    pub(crate) fn from_sqlx(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation => Self::Conflict(db.message().to_owned()),
                ErrorKind::ForeignKeyViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation => Self::Invalid(db.message().to_owned()),
                _ => Self::Unavailable(db.to_string()),
            },
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. } => Self::Corrupt(err.to_string()),
            sqlx::Error::Migrate(e) => Self::Migration(e.to_string()),
            // Io, Tls, Protocol, PoolTimedOut, PoolClosed, WorkerCrashed, Configuration, …
            other => Self::Unavailable(other.to_string()),
        }
    }
}
