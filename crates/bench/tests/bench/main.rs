//! The load tool's integration tests, in one binary: every scenario against the real server in
//! this process, with small counts. Tests that read the process's memory take
//! [`common::MEMORY`] for writing and run alone.
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

mod flood;
mod scenarios;
mod soak;
