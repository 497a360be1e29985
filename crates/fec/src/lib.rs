//! RaptorQ forward error correction and multipath striping for CCP-1 frames, sans-IO.
//!
//! Seed 001 ("Forward Error Correction & Multipath Delivery"): each frame is encoded into
//! systematic (source) and repair symbols; source symbols are striped round-robin over the active
//! paths, repair symbols go preferably to the non-primary paths; the receiver rebuilds the frame
//! from any sufficient subset, from any path, and delivers it once.
//!
//! - [`Encoder`]: one object (an encoded frame) → [`EncodedObject`] (serialized symbols);
//! - [`SymbolRef`]: the symbol wire format (object id + RFC 6330 OTI + payload id + data) and its
//!   validating parser (typed [`SymbolError`], never a panic);
//! - [`Reassembler`]: symbols in any order → objects, duplicates dropped, bounded in objects,
//!   bytes and time ([`ReassemblyLimits`]);
//! - [`Outbox`]: sent objects kept until acknowledged, so a dead path's symbols are re-sent
//!   over the survivors;
//! - [`Scheduler`] and [`PathHealth`]: which path carries which symbol, and which paths are
//!   alive, from RTT / loss / throughput estimates fed by the caller's events.
//!
//! Nothing here does I/O or reads a clock: the caller passes `Instant`s in.

#![forbid(unsafe_code)]

mod encoder;
mod health;
mod outbox;
mod params;
mod reassembler;
mod scheduler;
mod symbol;
mod window;

pub use encoder::{EncodeError, EncodedObject, Encoder};
pub use health::{HealthConfig, PathHealth, PathState};
pub use outbox::{Outbox, OutboxFull};
pub use params::{
    BoundsError, DEFAULT_REPAIR_PERCENT, DEFAULT_SYMBOL_SIZE, FecBounds, FecParams,
    SYMBOL_ALIGNMENT,
};
pub use reassembler::{Accepted, Reassembler, ReassemblyLimits, ReassemblyStats};
pub use scheduler::{PathId, Schedule, ScheduleError, Scheduler};
pub use symbol::{OTI_LEN, SYMBOL_HEADER_LEN, SYMBOL_VERSION, SymbolError, SymbolRef};

/// Most source symbols one RaptorQ source block holds (RFC 6330 `K'_max`).
pub const MAX_SOURCE_SYMBOLS: usize = 56_403;

/// Capability name a client lists in `HELLO.capabilities` to ask for FEC framing.
pub const CAP_FEC: &str = "fec";
/// Capability name for attaching further paths to a session.
pub const CAP_MULTIPATH: &str = "multipath";
/// CCP-1 frame type code of the carrier frame (`FEC_SYMBOL`, opaque payload = one symbol);
/// sent only on sessions that negotiated [`CAP_FEC`].
pub const FEC_SYMBOL_FRAME_CODE: u8 = 0x14;
