//! Encode and decode throughput for 64 B, 1 KiB and 64 KiB MSG frames, next to a plain copy of
//! the same bytes measured in the same run (the ratio is what matters on a noisy machine).
//!
//! Run: `cargo bench -p commucat-ccp --bench codec`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use commucat_ccp::{Frame, FrameDecoder, FrameType};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Frames per batch: large enough to amortise per-iteration overhead, small enough for cache.
const BATCH: usize = 64;
const SIZES: [usize; 3] = [64, 1024, 64 * 1024];

fn frames(size: usize) -> Vec<Frame> {
    let payload = Bytes::from(vec![0xa5u8; size]);
    (0..BATCH)
        .map(|i| {
            let seq = u32::try_from(i).unwrap_or(u32::MAX);
            Frame::new(FrameType::Msg, 7, 1000 + seq, payload.clone()).unwrap()
        })
        .collect()
}

fn encoded(frames: &[Frame]) -> Bytes {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out);
    }
    out.freeze()
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for size in SIZES {
        let frames = frames(size);
        let wire = encoded(&frames);
        group.throughput(Throughput::Bytes(wire.len() as u64));

        group.bench_with_input(BenchmarkId::new("memcpy", size), &wire, |b, wire| {
            let mut dst = vec![0u8; wire.len()];
            b.iter(|| {
                dst.copy_from_slice(black_box(wire));
                black_box(&dst);
            });
        });

        group.bench_with_input(BenchmarkId::new("encode", size), &frames, |b, frames| {
            let mut out = BytesMut::with_capacity(wire.len());
            b.iter(|| {
                out.clear();
                for frame in black_box(frames) {
                    frame.encode(&mut out);
                }
                black_box(&out);
            });
        });

        // Streaming decode: the bytes arrive in one chunk (as from one socket read) and every
        // frame is taken out; the copy into the receive buffer is part of the measurement.
        group.bench_with_input(BenchmarkId::new("decode", size), &wire, |b, wire| {
            b.iter(|| {
                let mut decoder = FrameDecoder::new();
                decoder.extend(black_box(wire));
                let mut n = 0;
                while let Some(frame) = decoder.next_frame().unwrap() {
                    black_box(&frame);
                    n += 1;
                }
                assert_eq!(n, BATCH);
            });
        });

        // Decode from an already-received buffer: no copy at all, payloads are slices of it.
        group.bench_with_input(
            BenchmarkId::new("decode_in_place", size),
            &wire,
            |b, wire| {
                b.iter(|| {
                    let mut rest = black_box(wire).clone();
                    let mut n = 0;
                    while let Some((frame, used)) = Frame::decode(&rest).unwrap() {
                        black_box(&frame);
                        rest = rest.slice(used..);
                        n += 1;
                    }
                    assert_eq!(n, BATCH);
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
