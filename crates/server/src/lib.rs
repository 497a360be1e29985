//! The CommuCat relay server.
//!
//! [`Server::bind`] turns a [`Config`] into a bound TLS listener: it creates the data
//! directory, loads or generates the server keys ([`keys`]) and TLS certificate ([`tls`]),
//! and binds the socket. [`Server::run`] serves HTTP/2 and HTTP/1.1 over TLS 1.3 until a
//! shutdown future completes ([`listener`]); routes live in [`api`].
//!
//! ```no_run
//! # async fn example() -> Result<(), commucat_server::ServerError> {
//! use commucat_server::{Config, Server};
//!
//! let mut config = Config::default();
//! config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
//! let server = Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(commucat_server::listener::signal::shutdown_signal()).await
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod clock;
pub mod config;
pub mod connect;
pub mod error;
pub mod janitor;
pub mod keys;
pub mod ledger;
pub mod ledger_throttle;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod profile;
pub mod registry;
pub mod router;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod tls;

pub use config::{Config, ConfigError, Loaded};
pub use error::ServerError;
pub use server::{Server, ServerHandle};
