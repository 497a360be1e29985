//! Accepting connections: the TLS accept loop and HTTP serving.

pub mod activity;
pub mod http;
pub mod per_ip;
pub mod signal;
