//! FEC parameters (symbol size, repair overhead) and their negotiation within server bounds.

use crate::MAX_SOURCE_SYMBOLS;

/// Symbol alignment used for every object: symbol sizes are multiples of it.
pub const SYMBOL_ALIGNMENT: u16 = 8;
/// Default symbol size (`mtu`) in bytes, as in seed 001.
pub const DEFAULT_SYMBOL_SIZE: u16 = 1152;
/// Default repair overhead: repair symbols per 100 source symbols (35 %, as in seed 001).
pub const DEFAULT_REPAIR_PERCENT: u16 = 35;

/// The parameters one direction of a session encodes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecParams {
    /// Bytes of object data per symbol (RaptorQ `T`, the `mtu` of seed 001). A multiple of
    /// [`SYMBOL_ALIGNMENT`].
    pub symbol_size: u16,
    /// Repair symbols generated per 100 source symbols (rounded up, at least one when non-zero).
    pub repair_percent: u16,
}

impl Default for FecParams {
    fn default() -> Self {
        Self {
            symbol_size: DEFAULT_SYMBOL_SIZE,
            repair_percent: DEFAULT_REPAIR_PERCENT,
        }
    }
}

impl FecParams {
    /// Number of source symbols for an object of `len` bytes.
    #[must_use]
    pub fn source_symbols(&self, len: usize) -> usize {
        len.div_ceil(usize::from(self.symbol_size)).max(1)
    }

    /// Number of repair symbols generated for `source` source symbols.
    #[must_use]
    pub fn repair_symbols(&self, source: usize) -> usize {
        (source * usize::from(self.repair_percent)).div_ceil(100)
    }

    /// The largest object these parameters can carry in one RaptorQ source block.
    #[must_use]
    pub fn max_object_len(&self) -> usize {
        usize::from(self.symbol_size) * MAX_SOURCE_SYMBOLS
    }
}

/// What a server accepts; a client's request is clamped into these bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecBounds {
    /// Smallest symbol size accepted.
    pub min_symbol_size: u16,
    /// Largest symbol size accepted.
    pub max_symbol_size: u16,
    /// Largest repair overhead accepted (percent).
    pub max_repair_percent: u16,
    /// Used when the peer does not ask for specific values.
    pub default: FecParams,
}

impl Default for FecBounds {
    fn default() -> Self {
        Self {
            min_symbol_size: 64,
            max_symbol_size: 1400,
            max_repair_percent: 100,
            default: FecParams::default(),
        }
    }
}

/// Why bounds are unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BoundsError {
    /// `min_symbol_size > max_symbol_size`, a bound below the alignment, or a default outside the bounds.
    #[error("FEC bounds are inconsistent")]
    Inconsistent,
}

impl FecBounds {
    /// Checks the bounds are usable.
    ///
    /// # Errors
    /// [`BoundsError::Inconsistent`] for empty ranges, unaligned limits or a default outside them.
    pub fn validate(&self) -> Result<(), BoundsError> {
        let ok = self.min_symbol_size >= SYMBOL_ALIGNMENT
            && self.min_symbol_size <= self.max_symbol_size
            && align_down(self.max_symbol_size) >= self.min_symbol_size
            && self.default.symbol_size >= self.min_symbol_size
            && self.default.symbol_size <= self.max_symbol_size
            && self.default.symbol_size.is_multiple_of(SYMBOL_ALIGNMENT)
            && self.default.repair_percent <= self.max_repair_percent;
        if ok {
            Ok(())
        } else {
            Err(BoundsError::Inconsistent)
        }
    }

    /// The parameters granted for a request: each requested value is clamped into the bounds
    /// (symbol size rounded down to the alignment); a missing value takes the default.
    #[must_use]
    pub fn negotiate(&self, symbol_size: Option<u16>, repair_percent: Option<u16>) -> FecParams {
        let min = align_up(self.min_symbol_size);
        let max = align_down(self.max_symbol_size).max(min);
        let symbol_size = symbol_size.map_or(self.default.symbol_size, |s| {
            align_down(s.clamp(min, max)).max(min)
        });
        let repair_percent = repair_percent.map_or(self.default.repair_percent, |r| {
            r.min(self.max_repair_percent)
        });
        FecParams {
            symbol_size,
            repair_percent,
        }
    }
}

const fn align_down(v: u16) -> u16 {
    v - v % SYMBOL_ALIGNMENT
}

const fn align_up(v: u16) -> u16 {
    match v % SYMBOL_ALIGNMENT {
        0 => v,
        r => v.saturating_add(SYMBOL_ALIGNMENT - r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_seed() {
        let p = FecParams::default();
        assert_eq!(p.symbol_size, 1152);
        assert_eq!(p.repair_percent, 35);
        assert_eq!(p.source_symbols(0), 1);
        assert_eq!(p.source_symbols(1152), 1);
        assert_eq!(p.source_symbols(1153), 2);
        assert_eq!(p.repair_symbols(1), 1);
        assert_eq!(p.repair_symbols(20), 7);
        assert!(FecBounds::default().validate().is_ok());
    }

    #[test]
    fn negotiation_clamps_into_bounds() {
        let b = FecBounds::default();
        assert_eq!(b.negotiate(None, None), FecParams::default());
        let p = b.negotiate(Some(1200), Some(18));
        assert_eq!((p.symbol_size, p.repair_percent), (1200, 18));
        let p = b.negotiate(Some(65_535), Some(900));
        assert_eq!((p.symbol_size, p.repair_percent), (1400, 100));
        let p = b.negotiate(Some(3), Some(0));
        assert_eq!((p.symbol_size, p.repair_percent), (64, 0));
        let p = b.negotiate(Some(1201), None);
        assert_eq!(p.symbol_size, 1200);
    }

    #[test]
    fn inconsistent_bounds_are_refused() {
        let mut b = FecBounds {
            min_symbol_size: 512,
            max_symbol_size: 256,
            ..FecBounds::default()
        };
        assert_eq!(b.validate(), Err(BoundsError::Inconsistent));
        b = FecBounds::default();
        b.default.repair_percent = 300;
        assert_eq!(b.validate(), Err(BoundsError::Inconsistent));
        b = FecBounds::default();
        b.default.symbol_size = 1150;
        assert_eq!(b.validate(), Err(BoundsError::Inconsistent));
    }
}
