//! Deterministic simulations (seeded RNG, simulated time): symbol loss and path failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss
)]

mod loss;
mod multipath;
