//! The binary's integration tests, in one binary: the built `commucat` run as a child process
//! in temporary directories (`cli`, `chat`, `sighup`) and killed under load (`crash`).
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

mod chat;
mod cli;
mod cluster;
mod crash;
mod doctor;
mod sighup;
mod unit;
