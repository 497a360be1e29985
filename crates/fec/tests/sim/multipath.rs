//! Two paths, one killed mid-stream: the sender notices (transport closed), re-sends what the
//! dead path swallowed over the survivor; the receiver delivers every frame exactly once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use commucat_fec::{
    Accepted, Encoder, FecParams, HealthConfig, Outbox, PathId, Reassembler, ReassemblyLimits,
    Scheduler,
};

const FRAMES: u64 = 300;
const KILL_AT: u64 = 120;
/// Frames whose symbols are "on the wire" when the path dies (sent, not yet delivered).
const IN_FLIGHT: u64 = 5;

#[test]
fn killing_one_of_two_paths_loses_and_duplicates_nothing() {
    let t0 = Instant::now();
    let params = FecParams::default();
    let mut enc = Encoder::new(params).unwrap();
    let mut sched = Scheduler::new(2, HealthConfig::default());
    sched.add_path(PathId(0), t0).unwrap();
    sched.add_path(PathId(1), t0).unwrap();
    let mut outbox = Outbox::new(64, 16 << 20);
    let mut rx = Reassembler::new(params.symbol_size, ReassemblyLimits::default());
    let mut delivered = Vec::new();
    // Symbols sent on path 1 whose fate depends on the kill: (frame index, symbol).
    let mut wire_1: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut path_1_alive = true;
    let deliver = |rx: &mut Reassembler, now, s: &[u8], out: &mut Vec<u64>| {
        if let Accepted::Delivered { object_id, data } = rx.accept(now, s).unwrap() {
            assert_eq!(data.len(), 3000 + (object_id as usize % 7) * 100);
            out.push(object_id);
        }
    };
    for i in 0..FRAMES {
        let now = t0 + Duration::from_millis(i * 10);
        if i == KILL_AT {
            // Path 1 dies: whatever was on its wire is gone; the sender sees the close.
            path_1_alive = false;
            wire_1.clear();
            sched.path_mut(PathId(1)).unwrap().on_closed();
            for (path, symbol) in outbox.reroute(PathId(1), now, &sched).unwrap() {
                assert_eq!(path, PathId(0));
                deliver(&mut rx, now, &symbol, &mut delivered);
            }
        }
        let frame = vec![i as u8; 3000 + (i as usize % 7) * 100];
        let obj = enc.encode(&frame).unwrap();
        let plan = sched.schedule(now, &obj).unwrap();
        if !path_1_alive {
            assert!(plan.paths.iter().all(|p| *p == PathId(0)));
        }
        for (path, symbol) in plan.paths.iter().zip(obj.symbols()) {
            match path.0 {
                0 => deliver(&mut rx, now, symbol, &mut delivered),
                _ => wire_1.push((i, symbol.to_vec())),
            }
        }
        outbox.push(obj, plan).unwrap();
        // Path 1 is slower: its symbols arrive IN_FLIGHT frames later.
        let (arrived, waiting): (Vec<_>, Vec<_>) = wire_1
            .drain(..)
            .partition(|(sent, _)| sent + IN_FLIGHT <= i);
        wire_1 = waiting;
        for (_, s) in arrived {
            deliver(&mut rx, now, &s, &mut delivered);
        }
        // The receiver acknowledges delivered objects (acks travel on path 0).
        for id in &delivered {
            outbox.ack(*id);
        }
    }
    let unique: BTreeSet<u64> = delivered.iter().copied().collect();
    assert_eq!(unique.len(), delivered.len(), "no frame delivered twice");
    assert_eq!(unique, (0..FRAMES).collect(), "no frame lost");
    assert!(outbox.is_empty());
    assert_eq!(rx.objects_in_flight(), 0);
}
