//! The server's integration tests, in one binary: the real server on 127.0.0.1:0 over TLS,
//! driven through the client SDK and the deployed 1.0.41 crates. One module per area; shared
//! helpers live in `common` (test server, clients, REST) and `services` (throwaway PostgreSQL
//! and Redis instances).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Test tasks are awaited or ended by the test that spawns them; the wall clock in tests only
// makes unique names and timestamps to compare with the server's.
#![allow(clippy::disallowed_methods)]

mod common;
mod services;

mod call_bounds;
mod calls;
mod channels;
mod cluster;
mod cluster_console;
mod cluster_reconnect;
mod cluster_rolling;
mod connect;
mod connect_modes;
mod connect_traceparent;
mod connection_bounds;
mod console;
mod device_rotation;
mod fec;
mod federation;
mod groups;
mod http3;
mod ledger;
mod messaging;
mod obfuscation;
mod offline;
mod offline_group_commit;
mod offline_quota;
mod outage;
mod pairing;
mod pq_hybrid;
mod pq_ratchet;
mod presence;
mod profile_bounds;
mod rest;
mod rotation;
mod serve;
mod shutdown_drain;
mod transport_bounds;
