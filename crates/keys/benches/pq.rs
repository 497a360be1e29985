//! The post-quantum operations of a hybrid handshake and ratchet step, one by one.
//!
//! Run: `cargo bench -p commucat-keys --bench pq` (`crates/bench/scripts/criterion.sh OUT pq`)
//!
//! Crypto floor that `pq-hybrid` adds to the server's handshake (issue 14's target): one
//! ML-KEM-768 encapsulation and one ML-DSA-65 verification (group `pq_floor`). Beside it, the
//! other work of the hybrid: checking a `pq_bundle` (no and 32 one-time keys), the session
//! derivation, a message key, a whole ratchet step on each side, and the client's own
//! operations (decapsulation, signing).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use commucat_keys::pq::{
    HybridRole, HybridSession, HybridTranscript, KemKeyPair, KemPublicKey, MAX_ONE_TIME_KEYS,
    OneTimeKeyPairs, OneTimePublicKeys, SigningKeyPair, encode_bundle, validate_bundle,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn transcript_parts() -> (Vec<u8>, Vec<String>, Vec<String>) {
    (
        vec![0x5a; 1088],
        vec!["noise-transport".to_owned(), "pq-hybrid".to_owned()],
        vec!["pq-hybrid".to_owned()],
    )
}

fn floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("pq_floor");
    let kem = KemKeyPair::generate().unwrap();
    group.bench_function("mlkem768_encapsulate", |b| {
        b.iter(|| black_box(kem.public().encapsulate().unwrap()));
    });
    let signing = SigningKeyPair::from_seed(&[7; 32]).unwrap();
    let (ciphertext, offered, accepted) = transcript_parts();
    let transcript = HybridTranscript {
        handshake_hash: &[1; 32],
        pq_ciphertext: &ciphertext,
        salt: &[2; 32],
        device_id: "bench-device",
        offered_capabilities: &offered,
        accepted_capabilities: &accepted,
    };
    let signature = signing.sign_transcript(&transcript).unwrap();
    group.bench_function("mldsa65_verify_transcript", |b| {
        b.iter(|| {
            signing
                .public()
                .verify_transcript(black_box(&transcript), black_box(&signature))
                .unwrap();
        });
    });
    group.finish();
}

fn hybrid(c: &mut Criterion) {
    let mut group = c.benchmark_group("pq_hybrid");
    let kem = KemKeyPair::generate().unwrap();
    let signing = SigningKeyPair::from_seed(&[7; 32]).unwrap();
    let one_time = OneTimeKeyPairs::generate(MAX_ONE_TIME_KEYS).unwrap();
    let bare = encode_bundle(kem.public(), signing.public(), []);
    let full = encode_bundle(kem.public(), signing.public(), one_time.public_keys());
    group.bench_function("validate_bundle_0_one_time_keys", |b| {
        b.iter(|| black_box(validate_bundle(black_box(&bare)).unwrap()));
    });
    group.bench_function("validate_bundle_32_one_time_keys", |b| {
        b.iter(|| black_box(validate_bundle(black_box(&full)).unwrap()));
    });
    group.bench_function("session_derive", |b| {
        b.iter(|| {
            black_box(
                HybridSession::derive(
                    black_box(&[3; 32]),
                    black_box(&[4; 32]),
                    &[5; 32],
                    HybridRole::Encapsulator,
                )
                .unwrap(),
            )
        });
    });
    group.bench_function("message_key", |b| {
        let mut session =
            HybridSession::derive(&[3; 32], &[4; 32], &[5; 32], HybridRole::Encapsulator).unwrap();
        b.iter(|| black_box(session.next_sending_key().unwrap()));
    });
    group.bench_function("ratchet_step_encapsulate", |b| {
        let mut session =
            HybridSession::derive(&[3; 32], &[4; 32], &[5; 32], HybridRole::Encapsulator).unwrap();
        let announced: Vec<_> = (0..64)
            .map(|_| KemKeyPair::generate().unwrap().public().as_bytes().to_vec())
            .collect();
        b.iter_batched(
            || {
                let key = KemPublicKey::from_bytes(&announced[usize::from(next_index())]).unwrap();
                OneTimePublicKeys::new(vec![key])
            },
            |mut keys| black_box(session.ratchet_encapsulate(&mut keys, &[6; 32]).unwrap()),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("mlkem768_decapsulate", |b| {
        let (ciphertext, _) = kem.public().encapsulate().unwrap();
        b.iter(|| black_box(kem.decapsulate(black_box(&ciphertext)).unwrap()));
    });
    let (ciphertext, offered, accepted) = transcript_parts();
    let transcript = HybridTranscript {
        handshake_hash: &[1; 32],
        pq_ciphertext: &ciphertext,
        salt: &[2; 32],
        device_id: "bench-device",
        offered_capabilities: &offered,
        accepted_capabilities: &accepted,
    };
    group.bench_function("mldsa65_sign_transcript", |b| {
        b.iter(|| black_box(signing.sign_transcript(black_box(&transcript)).unwrap()));
    });
    group.finish();
}

/// A cycling index (0..64) so the ratchet bench does not encapsulate to one key only.
fn next_index() -> u8 {
    use std::sync::atomic::{AtomicU8, Ordering};
    static NEXT: AtomicU8 = AtomicU8::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) % 64
}

criterion_group!(benches, floor, hybrid);
criterion_main!(benches);
