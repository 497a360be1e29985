//! Accepting connections: the TLS accept loop and HTTP serving.

pub mod http;
pub mod signal;
