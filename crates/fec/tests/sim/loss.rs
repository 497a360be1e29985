//! Recovered share of frames at 10 % and 30 % independent random symbol loss, default
//! parameters (1,152-byte symbols, 35 % repair), no retransmission.
//!
//! `cargo test -p commucat-fec --test sim loss -- --nocapture` prints the table recorded in
//! docs/BENCHMARKS.md.

use std::time::Instant;

use commucat_fec::{Accepted, Encoder, FecParams, Reassembler, ReassemblyLimits};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const FRAMES: usize = 400;
const SIZES: [usize; 4] = [200, 1024, 16 * 1024, 64 * 1024];

struct Outcome {
    recovered: usize,
    sent_symbols: usize,
    lost_symbols: usize,
}

fn run(params: FecParams, size: usize, loss: f64, seed: u64) -> Outcome {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut enc = Encoder::new(params).unwrap();
    let mut r = Reassembler::new(params.symbol_size, ReassemblyLimits::default());
    let now = Instant::now();
    let mut out = Outcome {
        recovered: 0,
        sent_symbols: 0,
        lost_symbols: 0,
    };
    for i in 0..FRAMES {
        let frame: Vec<u8> = (0..size).map(|j| (i * 13 + j) as u8).collect();
        let obj = enc.encode(&frame).unwrap();
        for symbol in obj.symbols() {
            out.sent_symbols += 1;
            if rng.r#gen::<f64>() < loss {
                out.lost_symbols += 1;
                continue;
            }
            if let Accepted::Delivered { data, .. } = r.accept(now, symbol).unwrap() {
                assert_eq!(data, frame, "a recovered frame is byte-identical");
                out.recovered += 1;
            }
        }
    }
    out
}

fn share(params: FecParams, size: usize, loss: f64) -> f64 {
    let o = run(params, size, loss, 0x5eed ^ size as u64);
    let measured = o.lost_symbols as f64 / o.sent_symbols as f64;
    assert!(
        (measured - loss).abs() < 0.05,
        "loss {measured} near {loss}"
    );
    o.recovered as f64 / FRAMES as f64
}

#[test]
fn recovered_share_at_10_and_30_percent_loss() {
    let fec = FecParams::default();
    let none = FecParams {
        repair_percent: 0,
        ..fec
    };
    println!("frame bytes | loss | recovered without repair | recovered with 35 % repair");
    for size in SIZES {
        let mut with = Vec::new();
        for loss in [0.10, 0.30] {
            let plain = share(none, size, loss);
            let coded = share(fec, size, loss);
            println!(
                "{size:>11} | {:>3.0} % | {:>6.1} % | {:>6.1} %",
                loss * 100.0,
                plain * 100.0,
                coded * 100.0
            );
            assert!(coded >= plain, "repair symbols never hurt");
            with.push(coded);
        }
        // 10 % loss is well inside a 35 % overhead: nearly every frame is recovered.
        assert!(with[0] >= 0.95, "{size}: {} at 10 %", with[0]);
        assert!(with[0] >= with[1]);
    }
    // Without repair, a one-symbol frame survives 10 % loss about 90 % of the time; repair
    // must improve that substantially.
    assert!(share(fec, 200, 0.10) > share(none, 200, 0.10) + 0.05);
}
