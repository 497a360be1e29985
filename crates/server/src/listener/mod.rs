//! Accepting connections: the TLS accept loop and HTTP serving, and the HTTP/3 (QUIC) listener.

pub mod activity;
pub mod h3;
mod h3_bridge;
pub mod http;
pub mod per_ip;
pub mod signal;
