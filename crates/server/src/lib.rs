//! The CommuCat relay server.
//!
//! [`Server::bind`] turns a [`Config`] into a bound TLS listener: it creates the data
//! directory, loads or generates the server keys ([`keys`]) and TLS certificate ([`tls`]),
//! and binds the socket. [`Server::run`] serves HTTP/2 and HTTP/1.1 over TLS 1.3 until a
//! shutdown future completes ([`listener`]); routes live in the internal `api` module.
//!
//! # Layering
//!
//! The top-level modules form layers; a module uses only modules of lower layers (checked by
//! the `layering_tests` unit test, which fails naming the cycle if two modules use each other):
//!
//! 1. Foundation, using no other module: [`clock`], [`config`], [`live`], `problem`
//!    (problem+json rendering), [`registry`] (identity rules), [`telemetry`],
//!    `ledger_throttle`.
//! 2. Key material and files: [`keys`], [`profile`]; then [`ledger`] and [`tls`].
//! 3. Counters and transport: `metrics`, then [`listener`] (TLS accept loop, the peer address
//!    and activity attached to each request) and [`transport`] (the served outer transports,
//!    ranked per client network).
//! 4. Protocol: `router` (routing, presence, channels, calls), then [`federation`] (signed
//!    events, peers, the outbox worker), then [`session`] (handshake and established sessions).
//! 5. HTTP: `connect` (the `/connect` adapters, given a `ConnectService`), then `api` (REST
//!    routes and the shared `AppState`) and `janitor`, then `console` (the operator web
//!    console at `/admin`, merged into the API router by the server).
//! 6. Running-server wiring: [`reload`] (Noise key reload into the live state) and
//!    [`admin`] (operator actions for the command line), then `error` ([`ServerError`]) and
//!    [`server`], which assemble everything.
//!
//! Modules are `pub` only where the `commucat` binary, the SDK's tests, the benches or the
//! integration tests use them; the HTTP layer (`api`, `connect`, `problem`) is internal.
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

pub mod admin;
pub(crate) mod api;
pub mod clock;
pub mod cluster;
pub mod config;
pub(crate) mod connect;
pub(crate) mod console;
pub(crate) mod error;
pub mod federation;
pub(crate) mod janitor;
pub mod keys;
pub mod ledger;
pub(crate) mod ledger_throttle;
pub mod listener;
pub mod live;
pub(crate) mod metrics;
pub(crate) mod problem;
pub mod profile;
pub mod registry;
pub mod reload;
pub mod router;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod tls;
pub mod transport;

#[cfg(test)]
mod layering_tests;

pub use config::{Config, ConfigError, Loaded};
pub use error::ServerError;
pub use server::{Server, ServerHandle};
