#![allow(clippy::cast_possible_truncation)]

use std::time::{Duration, Instant};

use super::*;
use crate::encoder::{EncodedObject, Encoder};
use crate::params::FecParams;
use crate::symbol::SYMBOL_HEADER_LEN;

const T: u16 = 64;

fn params() -> FecParams {
    FecParams {
        symbol_size: T,
        repair_percent: 50,
    }
}

fn encode(enc: &mut Encoder, len: usize) -> (Vec<u8>, EncodedObject) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
    let obj = enc.encode(&data).expect("encode");
    (data, obj)
}

fn feed<'a>(
    r: &mut Reassembler,
    now: Instant,
    symbols: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Accepted> {
    symbols
        .into_iter()
        .map(|s| r.accept(now, s).expect("valid symbol"))
        .collect()
}

#[test]
fn any_order_and_any_sufficient_subset_decodes_once() {
    let t0 = Instant::now();
    let mut enc = Encoder::new(params()).expect("params");
    let mut r = Reassembler::new(T, ReassemblyLimits::default());
    let (data, obj) = encode(&mut enc, 20 * usize::from(T) - 5);
    assert_eq!((obj.source.len(), obj.repair.len()), (20, 10));
    // Drop 8 source symbols, deliver the rest reversed, repair first.
    let mut symbols: Vec<&[u8]> = obj.symbols().collect();
    symbols.drain(2..10);
    symbols.reverse();
    let results = feed(&mut r, t0, symbols.iter().copied());
    let delivered: Vec<_> = results
        .iter()
        .filter_map(|a| match a {
            Accepted::Delivered { data, object_id } => Some((object_id, data)),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, vec![(&0, &data)]);
    // Symbols after delivery are duplicates; nothing is held.
    let after = results
        .iter()
        .skip_while(|a| !matches!(a, Accepted::Delivered { .. }))
        .skip(1);
    assert!(after.clone().all(|a| *a == Accepted::Duplicate));
    assert_eq!(r.objects_in_flight(), 0);
    assert_eq!(r.bytes_in_flight(), 0);
    assert_eq!(r.stats().delivered, 1);
    // Replaying the whole object delivers nothing again.
    assert!(
        feed(&mut r, t0, obj.symbols())
            .iter()
            .all(|a| *a == Accepted::Duplicate)
    );
}

#[test]
fn repeated_symbol_of_a_pending_object_is_a_duplicate() {
    let t0 = Instant::now();
    let mut enc = Encoder::new(params()).expect("params");
    let mut r = Reassembler::new(T, ReassemblyLimits::default());
    let (_, obj) = encode(&mut enc, 300);
    assert_eq!(r.accept(t0, &obj.source[0]), Ok(Accepted::Pending));
    assert_eq!(r.accept(t0, &obj.source[0]), Ok(Accepted::Duplicate));
    assert_eq!(r.stats().symbols_stored, 1);
    assert_eq!(r.stats().duplicates, 1);
}

#[test]
fn objects_in_flight_are_bounded_by_evicting_the_oldest() {
    let t0 = Instant::now();
    let mut enc = Encoder::new(params()).expect("params");
    let limits = ReassemblyLimits {
        max_objects: 3,
        ..ReassemblyLimits::default()
    };
    let mut r = Reassembler::new(T, limits);
    let objects: Vec<_> = (0..5).map(|_| encode(&mut enc, 200).1).collect();
    for (i, obj) in objects.iter().enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        assert_eq!(r.accept(now, &obj.source[0]), Ok(Accepted::Pending));
        assert!(r.objects_in_flight() <= 3);
    }
    assert_eq!(r.objects_in_flight(), 3);
    assert_eq!(r.stats().evicted, 2);
    // An evicted object does not come back (its late symbols are refused), a kept one completes.
    assert_eq!(r.accept(t0, &objects[0].source[1]), Ok(Accepted::Duplicate));
    let rest = feed(&mut r, t0, objects[4].source[1..].iter().map(Vec::as_slice));
    assert!(matches!(
        rest.last(),
        Some(Accepted::Delivered { object_id: 4, .. })
    ));
}

#[test]
fn bytes_in_flight_are_bounded() {
    let t0 = Instant::now();
    let mut enc = Encoder::new(params()).expect("params");
    let per_symbol = usize::from(T) + 32;
    let limits = ReassemblyLimits {
        max_bytes: 10 * per_symbol,
        ..ReassemblyLimits::default()
    };
    let mut r = Reassembler::new(T, limits);
    // Object 0: 8 source symbols, 6 stored; object 1: 8 source symbols, all arriving.
    let (_, a) = encode(&mut enc, 8 * usize::from(T));
    let (data_b, b) = encode(&mut enc, 8 * usize::from(T));
    feed(&mut r, t0, a.source[..6].iter().map(Vec::as_slice));
    assert_eq!(r.bytes_in_flight(), 6 * per_symbol);
    let results = feed(&mut r, t0, b.source.iter().map(Vec::as_slice));
    assert!(r.bytes_in_flight() <= 10 * per_symbol);
    assert_eq!(r.stats().evicted, 1);
    assert_eq!(
        results.last(),
        Some(&Accepted::Delivered {
            object_id: 1,
            data: data_b
        })
    );
    assert_eq!(r.bytes_in_flight(), 0);
}

#[test]
fn an_object_larger_than_the_budget_is_refused_and_one_that_fills_it_is_capped() {
    let t0 = Instant::now();
    let mut enc = Encoder::new(params()).expect("params");
    let per_symbol = usize::from(T) + 32;
    let mut r = Reassembler::new(
        T,
        ReassemblyLimits {
            max_bytes: 4 * per_symbol,
            ..ReassemblyLimits::default()
        },
    );
    let (_, big) = encode(&mut enc, 5 * usize::from(T));
    assert_eq!(
        r.accept(t0, &big.source[0]),
        Err(SymbolError::OverBudget {
            len: 5 * u64::from(T)
        })
    );
    // Exactly K symbols fit: with one source symbol missing, repair symbols beyond the budget
    // are discarded rather than stored.
    let (_, fits) = encode(&mut enc, 4 * usize::from(T));
    feed(&mut r, t0, fits.source[..3].iter().map(Vec::as_slice));
    assert_eq!(r.bytes_in_flight(), 3 * per_symbol);
    let results = feed(&mut r, t0, fits.repair.iter().map(Vec::as_slice));
    assert!(r.bytes_in_flight() <= 4 * per_symbol);
    assert!(
        results
            .iter()
            .any(|a| matches!(a, Accepted::Delivered { .. } | Accepted::Excess))
    );
}

#[test]
fn incomplete_objects_expire() {
    let t0 = Instant::now();
    let mut enc = Encoder::new(params()).expect("params");
    let ttl = Duration::from_secs(10);
    let mut r = Reassembler::new(T, ReassemblyLimits::default());
    let (_, obj) = encode(&mut enc, 500);
    assert_eq!(r.accept(t0, &obj.source[0]), Ok(Accepted::Pending));
    assert_eq!(r.next_deadline(), Some(t0 + ttl));
    assert_eq!(r.expire(t0 + ttl - Duration::from_millis(1)), 0);
    assert_eq!(r.expire(t0 + ttl), 1);
    assert_eq!((r.objects_in_flight(), r.bytes_in_flight()), (0, 0));
    assert_eq!(r.stats().expired, 1);
    // Expiry also runs on accept: a late symbol does not restart the object.
    assert_eq!(r.accept(t0 + ttl, &obj.source[1]), Ok(Accepted::Duplicate));
    let (_, next) = encode(&mut enc, 500);
    assert_eq!(r.accept(t0, &next.source[0]), Ok(Accepted::Pending));
    assert_eq!(
        r.accept(t0 + 2 * ttl, &next.source[1]),
        Ok(Accepted::Duplicate)
    );
    assert_eq!(r.stats().expired, 2);
}

#[test]
fn ids_below_the_window_count_as_finished() {
    let t0 = Instant::now();
    let mut enc = Encoder::new(params()).expect("params");
    let mut r = Reassembler::new(
        T,
        ReassemblyLimits {
            delivered_window: 2,
            ..ReassemblyLimits::default()
        },
    );
    let objects: Vec<_> = (0..5).map(|_| encode(&mut enc, 10).1).collect();
    // Object 0 is lost; 1..=4 delivered: the window moves past 0 and 1.
    for obj in &objects[1..] {
        assert!(matches!(
            r.accept(t0, &obj.source[0]),
            Ok(Accepted::Delivered { .. })
        ));
    }
    assert_eq!(r.accept(t0, &objects[0].source[0]), Ok(Accepted::Duplicate));
    assert_eq!(r.objects_in_flight(), 0);
    assert_eq!(r.accept(t0, &objects[4].repair[0]), Ok(Accepted::Duplicate));
}

#[test]
fn malformed_or_inconsistent_symbols_are_typed_errors_and_change_nothing() {
    let t0 = Instant::now();
    let mut enc = Encoder::new(params()).expect("params");
    let mut r = Reassembler::new(
        T,
        ReassemblyLimits {
            max_object_len: 1000,
            ..ReassemblyLimits::default()
        },
    );
    let (_, obj) = encode(&mut enc, 300);
    assert_eq!(r.accept(t0, &obj.source[0]), Ok(Accepted::Pending));
    // Same object id, different transfer length.
    let mut other = obj.source[1].clone();
    other[9 + 4] ^= 1;
    assert_eq!(
        r.accept(t0, &other),
        Err(SymbolError::OtiMismatch { object_id: 0 })
    );
    let mut wrong_size = Encoder::new(FecParams {
        symbol_size: 128,
        repair_percent: 0,
    })
    .expect("params");
    let (_, o128) = encode(&mut wrong_size, 100);
    assert_eq!(
        r.accept(t0, &o128.source[0]),
        Err(SymbolError::SymbolSizeMismatch {
            negotiated: T,
            got: 128
        })
    );
    let (_, too_big) = encode(&mut enc, 1001);
    assert_eq!(
        r.accept(t0, &too_big.source[0]),
        Err(SymbolError::ObjectTooLarge {
            len: 1001,
            max: 1000
        })
    );
    assert_eq!(
        r.accept(t0, &obj.source[1][..SYMBOL_HEADER_LEN]),
        Err(SymbolError::Truncated {
            len: SYMBOL_HEADER_LEN
        })
    );
    assert_eq!(r.objects_in_flight(), 1);
    assert_eq!(r.stats().symbols_stored, 1);
    // The object still completes from the genuine symbols.
    let rest = feed(&mut r, t0, obj.source[1..].iter().map(Vec::as_slice));
    assert!(matches!(rest.last(), Some(Accepted::Delivered { .. })));
}

#[test]
fn symbols_per_object_are_capped() {
    let t0 = Instant::now();
    let mut enc = Encoder::new(params()).expect("params");
    let (_, obj) = encode(&mut enc, 4 * usize::from(T));
    let mut r = Reassembler::new(T, ReassemblyLimits::default());
    assert_eq!(r.accept(t0, &obj.source[0]), Ok(Accepted::Pending));
    // A rank-deficient set that never decodes is what the cap is for; RaptorQ decodes almost
    // every set of K + 2 symbols, so fill the object's ESI record directly: 2K + 8 = 16 held.
    let pending = r.pending.get_mut(&0).expect("pending");
    pending.esis.extend(1000..1015);
    assert_eq!(r.accept(t0, &obj.source[1]), Ok(Accepted::Excess));
    r.pending.get_mut(&0).expect("pending").esis.remove(&1000);
    assert_eq!(r.accept(t0, &obj.source[1]), Ok(Accepted::Pending));
}
