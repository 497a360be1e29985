//! Receiver side: symbols from any path, in any order → whole objects, once each.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use raptorq::{EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder};

use crate::symbol::{SymbolError, SymbolRef};
use crate::window::DeliveredWindow;

/// Memory and time bounds of one session's reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Objects being reassembled at once; a symbol of a new object beyond this evicts the oldest.
    pub max_objects: usize,
    /// Symbol bytes held for incomplete objects; beyond this the oldest objects are evicted.
    pub max_bytes: usize,
    /// Largest object accepted (its OTI transfer length).
    pub max_object_len: usize,
    /// An incomplete object is dropped this long after its first symbol.
    pub object_ttl: Duration,
    /// Delivered ids remembered above the contiguous floor (duplicate detection).
    pub delivered_window: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        Self {
            max_objects: 64,
            max_bytes: 8 * 1024 * 1024,
            max_object_len: 1024 * 1024 + 64,
            object_ttl: Duration::from_secs(10),
            delivered_window: 4096,
        }
    }
}

/// What became of one accepted symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// This symbol completed the object: its bytes, exactly once per object id.
    Delivered {
        /// The object id.
        object_id: u64,
        /// The object.
        data: Vec<u8>,
    },
    /// Stored; the object needs more symbols.
    Pending,
    /// The object is finished (delivered, or given up on: expired or evicted; every id below
    /// the duplicate window counts as finished), or this symbol (same ESI) is already stored.
    Duplicate,
    /// The object already holds as many symbols as it may (`2K + 8`); this one was discarded.
    Excess,
}

/// Counters of what the reassembler did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Symbols stored.
    pub symbols_stored: u64,
    /// Symbols dropped as duplicates.
    pub duplicates: u64,
    /// Objects delivered.
    pub delivered: u64,
    /// Incomplete objects dropped on expiry.
    pub expired: u64,
    /// Incomplete objects evicted to stay within the object count or byte budget.
    pub evicted: u64,
}

#[derive(Debug)]
struct Pending {
    oti: ObjectTransmissionInformation,
    decoder: SourceBlockDecoder,
    esis: HashSet<u32>,
    bytes: usize,
    deadline: Instant,
}

/// Reassembly state of one direction of a session.
#[derive(Debug)]
pub struct Reassembler {
    symbol_size: u16,
    limits: ReassemblyLimits,
    pending: BTreeMap<u64, Pending>,
    delivered: DeliveredWindow,
    bytes: usize,
    stats: ReassemblyStats,
}

/// Per-symbol bookkeeping charged against the byte budget besides the data.
const SYMBOL_OVERHEAD: usize = 32;

impl Reassembler {
    /// A reassembler for symbols of `symbol_size` bytes (the negotiated size).
    #[must_use]
    pub fn new(symbol_size: u16, limits: ReassemblyLimits) -> Self {
        Self {
            symbol_size,
            limits,
            pending: BTreeMap::new(),
            delivered: DeliveredWindow::new(limits.delivered_window),
            bytes: 0,
            stats: ReassemblyStats::default(),
        }
    }

    /// Counters so far.
    #[must_use]
    pub const fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Objects being reassembled.
    #[must_use]
    pub fn objects_in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Bytes charged for incomplete objects.
    #[must_use]
    pub const fn bytes_in_flight(&self) -> usize {
        self.bytes
    }

    /// When the oldest incomplete object expires (for the caller's timer).
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Drops incomplete objects whose time is up; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.give_up(*id);
        }
        self.stats.expired += expired.len() as u64;
        expired.len()
    }

    /// Accepts one serialized symbol received at `now` from any path.
    ///
    /// # Errors
    /// A [`SymbolError`] for malformed symbols, a symbol size other than the negotiated one, an
    /// object over the size limit or budget, or an OTI that contradicts the object's earlier
    /// symbols. The reassembler's state is unchanged by a refused symbol.
    pub fn accept(&mut self, now: Instant, bytes: &[u8]) -> Result<Accepted, SymbolError> {
        self.expire(now);
        let symbol = SymbolRef::parse(bytes)?;
        if symbol.oti.symbol_size() != self.symbol_size {
            return Err(SymbolError::SymbolSizeMismatch {
                negotiated: self.symbol_size,
                got: symbol.oti.symbol_size(),
            });
        }
        let len = symbol.oti.transfer_length();
        if len > self.limits.max_object_len as u64 {
            return Err(SymbolError::ObjectTooLarge {
                len,
                max: self.limits.max_object_len,
            });
        }
        let k = symbol.source_symbols();
        let per_symbol = usize::from(self.symbol_size) + SYMBOL_OVERHEAD;
        if k.saturating_mul(per_symbol) > self.limits.max_bytes {
            return Err(SymbolError::OverBudget { len });
        }
        let id = symbol.object_id;
        if self.delivered.contains(id) {
            self.stats.duplicates += 1;
            return Ok(Accepted::Duplicate);
        }
        if let Some(p) = self.pending.get(&id) {
            if p.oti != symbol.oti {
                return Err(SymbolError::OtiMismatch { object_id: id });
            }
            if p.esis.contains(&symbol.esi) {
                self.stats.duplicates += 1;
                return Ok(Accepted::Duplicate);
            }
            if p.esis.len() >= 2 * k + 8 {
                return Ok(Accepted::Excess);
            }
        } else {
            while self.pending.len() >= self.limits.max_objects.max(1) {
                self.evict_oldest(id);
            }
            self.pending.insert(
                id,
                Pending {
                    oti: symbol.oti,
                    decoder: SourceBlockDecoder::new(
                        0,
                        &symbol.oti,
                        (k as u64) * u64::from(self.symbol_size),
                    ),
                    esis: HashSet::new(),
                    bytes: 0,
                    deadline: now + self.limits.object_ttl,
                },
            );
        }
        while self.bytes + per_symbol > self.limits.max_bytes {
            if !self.evict_oldest(id) {
                break;
            }
        }
        let Some(p) = self.pending.get_mut(&id) else {
            // Unreachable: eviction keeps `id`. Treat as finished rather than panic.
            return Ok(Accepted::Duplicate);
        };
        if self.bytes + per_symbol > self.limits.max_bytes {
            // Only this object is left and it fills the budget: discard the symbol.
            return Ok(Accepted::Excess);
        }
        p.esis.insert(symbol.esi);
        p.bytes += per_symbol;
        self.bytes += per_symbol;
        self.stats.symbols_stored += 1;
        let packet = EncodingPacket::new(PayloadId::new(0, symbol.esi), symbol.data.to_vec());
        let Some(mut data) = p.decoder.decode(std::iter::once(packet)) else {
            return Ok(Accepted::Pending);
        };
        // The decoded block is K × T bytes; the object is its first F bytes (F ≤ K × T).
        data.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        self.remove(id);
        self.delivered.insert(id);
        self.stats.delivered += 1;
        Ok(Accepted::Delivered {
            object_id: id,
            data,
        })
    }

    /// Evicts the oldest incomplete object other than `keep`; false when there is none.
    fn evict_oldest(&mut self, keep: u64) -> bool {
        let oldest = self
            .pending
            .iter()
            .filter(|(id, _)| **id != keep)
            .min_by_key(|(id, p)| (p.deadline, **id))
            .map(|(id, _)| *id);
        match oldest {
            Some(id) => {
                self.give_up(id);
                self.stats.evicted += 1;
                true
            }
            None => false,
        }
    }

    fn give_up(&mut self, id: u64) {
        self.remove(id);
        // Late symbols of an abandoned object must not start it again.
        self.delivered.insert(id);
    }

    fn remove(&mut self, id: u64) {
        if let Some(p) = self.pending.remove(&id) {
            self.bytes -= p.bytes;
        }
    }
}

#[cfg(test)]
#[path = "reassembler_tests.rs"]
mod tests;
