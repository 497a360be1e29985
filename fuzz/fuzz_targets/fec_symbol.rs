//! FEC symbol / OTI decoder and reassembler (`commucat-fec`).
//!
//! Input layout:
//!
//! ```text
//! mode:u8  records...        record = len:u16be bytes[len]   (a short tail is one record)
//! ```
//!
//! Every record is parsed by `SymbolRef::parse` and accepted by a `Reassembler` (64-byte
//! symbols, small limits: 4 objects, 16 KiB, 4 KiB objects, delivered window 8) at a time that
//! advances by `mode` milliseconds per record. Checks: no panic; a refused symbol changes
//! nothing; the object count and byte budget hold after every record; no object id is delivered
//! twice; a delivered object has exactly its OTI transfer length. Then the input bytes are
//! encoded as one object and its symbols must deliver them back once, byte for byte.

#![no_main]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use commucat_fec::{Accepted, Encoder, FecParams, ReassemblyLimits, Reassembler, SymbolRef};
use libfuzzer_sys::fuzz_target;

const T: u16 = 64;

fn records(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < 256 {
        if data.len() < 2 {
            out.push(data);
            break;
        }
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        data = &rest[take..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let limits = ReassemblyLimits {
        max_objects: 4,
        max_bytes: 16 * 1024,
        max_object_len: 4096,
        object_ttl: Duration::from_millis(100),
        delivered_window: 8,
    };
    let mut r = Reassembler::new(T, limits);
    let t0 = Instant::now();
    let mut now = t0;
    let mut seen = BTreeSet::new();
    let records = records(data);
    for record in &records {
        now += Duration::from_millis(u64::from(mode));
        let parsed = SymbolRef::parse(record);
        let before = (r.objects_in_flight(), r.bytes_in_flight(), r.stats().symbols_stored);
        r.expire(now);
        let expired_before = (r.objects_in_flight(), r.bytes_in_flight());
        match r.accept(now, record) {
            Ok(Accepted::Delivered { object_id, data }) => {
                let oti = parsed.expect("a delivered symbol parses").oti;
                assert_eq!(data.len() as u64, oti.transfer_length());
                assert!(seen.insert(object_id), "object {object_id} delivered twice");
            }
            Ok(_) => {}
            Err(_) => {
                assert_eq!(
                    (r.objects_in_flight(), r.bytes_in_flight()),
                    expired_before,
                    "a refused symbol changes nothing (state before: {before:?})"
                );
            }
        }
        assert!(r.objects_in_flight() <= limits.max_objects);
        assert!(r.bytes_in_flight() <= limits.max_bytes);
    }

    // Round trip: the input itself as one object; all its symbols deliver it back exactly once.
    let object: Vec<u8> = data.iter().copied().take(4096).collect();
    if object.is_empty() {
        return;
    }
    let mut enc = Encoder::new(FecParams {
        symbol_size: T,
        repair_percent: u16::from(mode % 101),
    })
    .expect("aligned symbol size");
    let mut genuine = Reassembler::new(T, limits);
    let encoded = enc.encode(&object).expect("within limits");
    let mut delivered = Vec::new();
    for symbol in encoded.symbols() {
        match genuine.accept(now, symbol).expect("a genuine symbol is accepted") {
            Accepted::Delivered { object_id, data } => delivered.push((object_id, data)),
            Accepted::Pending | Accepted::Duplicate => {}
            other => panic!("genuine symbol: {other:?}"),
        }
    }
    assert_eq!(delivered, vec![(0, object)]);
});
