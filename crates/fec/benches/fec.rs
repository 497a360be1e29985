//! CPU cost of FEC at the default parameters (1,152-byte symbols, 35 % repair): encoding one
//! MiB of frames into symbols, and decoding it back (from source symbols only, and from a set
//! with 20 % of the source symbols replaced by repair symbols), next to a plain copy.
//!
//! Run: `cargo bench -p commucat-fec --bench fec`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::hint::black_box;
use std::time::Instant;

use commucat_fec::{Accepted, EncodedObject, Encoder, FecParams, Reassembler, ReassemblyLimits};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const MIB: usize = 1024 * 1024;
/// Frame sizes: one symbol, a typical chat frame batch, a large frame.
const SIZES: [usize; 3] = [1024, 16 * 1024, 64 * 1024];

fn objects(size: usize) -> Vec<Vec<u8>> {
    (0..MIB / size)
        .map(|i| (0..size).map(|j| (i * 31 + j * 7) as u8).collect())
        .collect()
}

fn encode_all(objects: &[Vec<u8>]) -> Vec<EncodedObject> {
    let mut enc = Encoder::new(FecParams::default()).unwrap();
    objects.iter().map(|o| enc.encode(o).unwrap()).collect()
}

fn decode(symbols: &[Vec<&[u8]>]) -> usize {
    let mut r = Reassembler::new(
        FecParams::default().symbol_size,
        ReassemblyLimits::default(),
    );
    let now = Instant::now();
    let mut delivered = 0;
    for object in symbols {
        for s in object {
            if let Accepted::Delivered { data, .. } = r.accept(now, s).unwrap() {
                delivered += data.len();
            }
        }
    }
    delivered
}

fn fec(c: &mut Criterion) {
    let mut group = c.benchmark_group("fec_1MiB");
    group.throughput(Throughput::Bytes(MIB as u64));
    group.sample_size(10);
    for size in SIZES {
        let objects = objects(size);
        let encoded = encode_all(&objects);
        let total: usize = objects.iter().map(Vec::len).sum();

        group.bench_with_input(BenchmarkId::new("memcpy", size), &objects, |b, objects| {
            let mut dst = vec![0u8; size];
            b.iter(|| {
                for o in black_box(objects) {
                    dst.copy_from_slice(o);
                    black_box(&dst);
                }
            });
        });
        group.bench_with_input(BenchmarkId::new("encode", size), &objects, |b, objects| {
            b.iter(|| black_box(encode_all(black_box(objects))));
        });

        let source_only: Vec<Vec<&[u8]>> = encoded
            .iter()
            .map(|o| o.source.iter().map(Vec::as_slice).collect())
            .collect();
        assert_eq!(decode(&source_only), total);
        group.bench_with_input(
            BenchmarkId::new("decode_source", size),
            &source_only,
            |b, s| b.iter(|| black_box(decode(black_box(s)))),
        );

        // Every fifth source symbol lost, replaced by repair symbols (all repair sent).
        let with_repair: Vec<Vec<&[u8]>> = encoded
            .iter()
            .map(|o| {
                o.source
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % 5 != 4)
                    .map(|(_, s)| s.as_slice())
                    .chain(o.repair.iter().map(Vec::as_slice))
                    .collect()
            })
            .collect();
        assert_eq!(decode(&with_repair), total);
        group.bench_with_input(
            BenchmarkId::new("decode_repair", size),
            &with_repair,
            |b, s| b.iter(|| black_box(decode(black_box(s)))),
        );
    }
    group.finish();
}

criterion_group!(benches, fec);
criterion_main!(benches);
