//! Logging: `tracing` to standard error, filtered by `RUST_LOG` (default `info`), as text lines
//! or one JSON object per line (`log.format`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use tracing_subscriber::filter::ParseError;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// `RUST_LOG` does not parse as a filter.
    #[error("RUST_LOG: {0}")]
    Filter(#[from] ParseError),
    /// A global subscriber is already installed.
    #[error("installing the log subscriber: {0}")]
    Install(#[from] TryInitError),
}

/// Installs the global subscriber writing `format` lines.
///
/// JSON lines carry `timestamp`, `level`, `target`, the event's `fields` (its message in
/// `fields.message`), and the current `span` and enclosing `spans` with their fields.
///
/// # Errors
/// One is already installed, or `RUST_LOG` does not parse.
pub fn init_tracing(format: LogFormat) -> Result<(), TelemetryError> {
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) => EnvFilter::try_new(directives)?,
        Err(_) => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.finish().try_init()?,
        LogFormat::Json => builder.json().finish().try_init()?,
    }
    Ok(())
}
