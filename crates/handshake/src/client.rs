//! The client side of the handshake (filled in below).
