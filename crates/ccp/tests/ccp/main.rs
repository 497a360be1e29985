//! The codec's integration tests, in one binary: byte-exact encoding and streaming (`wire`) and
//! agreement with the deployed client's codec `commucat-proto` 1.0.41 (`interop`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod interop;
mod wire;
