//! The handshake machines without I/O, in one test binary: the classical handshake (`pair`) and
//! `pq-hybrid` sessions (`pq`), `adaptive-obf` negotiation (`obf`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod obf;
mod pair;
mod pq;
