//! Server-side handshake work beside the bare cryptographic operations it needs, measured in
//! the same run.
//!
//! Run: `cargo bench -p commucat-server --bench handshake`
//!
//! Crypto floor of one XK handshake on the server: one X25519 key generation (ephemeral), three
//! X25519 agreements (es, ee, se), one Schnorr proof check (two point decompressions and a
//! double-base scalar multiplication) and one Ed25519 signature (certificate issue).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commucat_client::{DeviceIdentity, HandshakeOptions, ServerParams, Session};
use commucat_keys::{
    DeviceCertificate, DeviceCertificateData, DeviceKeyPair, Handshake, HandshakePattern,
    derive_handshake_context, x25519_public,
};
use commucat_link::{Connection, memory};
use commucat_server::live::Live;
use commucat_server::session::handshake::{HandshakeSettings, Handshaker, NoiseKey};
use commucat_store::{SqliteStore, Store};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::Signer;
use zeroize::Zeroizing;

const SERVER_PRIVATE: [u8; 32] = [11; 32];
const PROLOGUE: &[u8] = b"commucat";

fn bare(c: &mut Criterion) {
    let mut group = c.benchmark_group("floor");
    let peer = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([3u8; 32]));
    group.bench_function("x25519_dalek_keygen", |b| {
        b.iter(|| {
            black_box(x25519_dalek::PublicKey::from(
                &x25519_dalek::StaticSecret::from(black_box([5u8; 32])),
            ))
        });
    });
    group.bench_function("x25519_dalek_dh", |b| {
        let secret = x25519_dalek::StaticSecret::from([5u8; 32]);
        b.iter(|| black_box(secret.diffie_hellman(black_box(&peer))));
    });
    group.bench_function("x25519_aws_lc_dh", |b| {
        use aws_lc_rs::agreement::{PrivateKey, UnparsedPublicKey, X25519, agree};
        let peer_bytes = *peer.as_bytes();
        b.iter(|| {
            let secret = PrivateKey::from_private_key(&X25519, &[5u8; 32]).unwrap();
            agree(
                &secret,
                UnparsedPublicKey::new(&X25519, &peer_bytes),
                (),
                |k| {
                    black_box(k.len());
                    Ok(())
                },
            )
            .unwrap();
        });
    });
    let device = DeviceKeyPair::from_seed(&[9; 32]);
    group.bench_function("ed25519_sign", |b| {
        b.iter(|| black_box(device.signing_key().sign(black_box(b"canonical certificate bytes of about two hundred characters ..........................................................................................................."))));
    });
    let a = device.public_key();
    let r = EdwardsPoint::mul_base(&Scalar::from(7u64))
        .compress()
        .to_bytes();
    group.bench_function("schnorr_check_math", |b| {
        // Full-width scalars, as a real challenge and response are (small ones would make the
        // variable-time multiplication look cheaper than it is).
        let wide = |label: &str| {
            let mut out = [0u8; 64];
            blake3::Hasher::new()
                .update(label.as_bytes())
                .finalize_xof()
                .fill(&mut out);
            Scalar::from_bytes_mod_order_wide(&out)
        };
        let c = wide("challenge");
        let s = wide("response");
        b.iter(|| {
            let a_point = CompressedEdwardsY(black_box(a)).decompress().unwrap();
            let r_point = CompressedEdwardsY(black_box(r)).decompress().unwrap();
            let lhs = EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-c), &a_point, &s);
            black_box(lhs == r_point)
        });
    });
    group.finish();
}

fn client_hello_parts() -> (Handshake, Vec<u8>) {
    let mut client = Handshake::initiator(
        HandshakePattern::Xk,
        &[21; 32],
        &x25519_public(&SERVER_PRIVATE),
        PROLOGUE,
    )
    .unwrap();
    let msg1 = client.write_message(&[]).unwrap();
    (client, msg1)
}

fn components(c: &mut Criterion) {
    let mut group = c.benchmark_group("server");
    let device = DeviceKeyPair::from_seed(&[9; 32]);
    let ctx = derive_handshake_context(
        "chat.example",
        "device-1",
        &device.public_key(),
        &device.x25519_static(),
    )
    .unwrap();
    let proof =
        commucat_keys::prove(device.signing_key(), &ctx, &mut commucat_keys::OsRng).unwrap();
    let (device_public, client_static) = (device.public_key(), device.x25519_static());
    group.bench_function("proof_verify", |b| {
        b.iter(|| {
            let ctx = derive_handshake_context(
                "chat.example",
                "device-1",
                &device_public,
                &client_static,
            )
            .unwrap();
            commucat_keys::verify(&ctx, &device_public, black_box(&proof)).unwrap();
        });
    });
    group.bench_function("noise_msg1_msg2", |b| {
        b.iter_batched(
            client_hello_parts,
            |(_client, msg1)| {
                let mut server =
                    Handshake::responder(HandshakePattern::Xk, &SERVER_PRIVATE, PROLOGUE).unwrap();
                server.read_message(&msg1).unwrap();
                black_box(
                    server
                        .write_message(br#"{"session":"0123456789abcdef0123456789abcdef"}"#)
                        .unwrap(),
                );
            },
            BatchSize::SmallInput,
        );
    });
    // The same responder work on snow's default X25519 (curve25519-dalek), for comparison.
    group.bench_function("noise_msg1_msg2_snow_default", |b| {
        let params: snow::params::NoiseParams =
            HandshakePattern::Xk.protocol_name().parse().unwrap();
        b.iter_batched(
            client_hello_parts,
            |(_client, msg1)| {
                let mut server = snow::Builder::new(params.clone())
                    .prologue(PROLOGUE)
                    .unwrap()
                    .local_private_key(&SERVER_PRIVATE)
                    .unwrap()
                    .build_responder()
                    .unwrap();
                let mut payload = [0u8; 64];
                server.read_message(&msg1, &mut payload).unwrap();
                let mut out = [0u8; 256];
                black_box(
                    server
                        .write_message(
                            br#"{"session":"0123456789abcdef0123456789abcdef"}"#,
                            &mut out,
                        )
                        .unwrap(),
                );
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("noise_msg3", |b| {
        b.iter_batched(
            || {
                let (mut client, msg1) = client_hello_parts();
                let mut server =
                    Handshake::responder(HandshakePattern::Xk, &SERVER_PRIVATE, PROLOGUE).unwrap();
                server.read_message(&msg1).unwrap();
                let msg2 = server.write_message(b"{}").unwrap();
                client.read_message(&msg2).unwrap();
                let msg3 = client.write_message(&[]).unwrap();
                (server, msg3)
            },
            |(mut server, msg3)| {
                server.read_message(&msg3).unwrap();
                black_box(server.remote_static());
            },
            BatchSize::SmallInput,
        );
    });
    let ca = DeviceKeyPair::from_seed(&[6; 32]);
    group.bench_function("certificate_issue", |b| {
        b.iter(|| {
            let data = DeviceCertificateData {
                serial: 42,
                user_id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
                device_id: "device-1700000000000".into(),
                public_key: device.public_key(),
                issuer: ca.public_key(),
                issued_at: 1_700_000_000,
                expires_at: 1_702_592_000,
            };
            black_box(DeviceCertificate::issue(ca.signing_key(), data).unwrap())
        });
    });
    group.finish();
}

fn settings(ca: &DeviceKeyPair) -> HandshakeSettings {
    HandshakeSettings {
        domain: "chat.example".into(),
        prologue: PROLOGUE.to_vec(),
        noise_keys: Live::new(vec![NoiseKey {
            version: 1,
            private: Zeroizing::new(SERVER_PRIVATE),
            public: x25519_public(&SERVER_PRIVATE),
            accept_until: None,
        }]),
        device_ca: ca.clone(),
        auto_approve: true,
        max_auto_devices_per_user: 0,
        certificate_validity_secs: 30 * 86_400,
        renewal_margin_secs: 7 * 86_400,
        session_ttl_secs: 3600,
        keepalive_secs: 30,
        clock_skew_secs: 300,
        profile: commucat_server::profile::ProfileBounds::from_settings(
            &commucat_server::config::BoundSettings::default(),
        ),
        pq_hybrid: true,
        adaptive_obf: true,
        obf_max_padding: 64,
    }
}

/// A whole handshake in memory on one thread: client and server, new device registered in an
/// in-memory SQLite store, session stored, certificate issued.
fn end_to_end(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca = DeviceKeyPair::from_seed(&[6; 32]);
    let store: Arc<dyn Store> = Arc::new(runtime.block_on(SqliteStore::open_in_memory()).unwrap());
    let handshaker = Handshaker::new(Arc::new(settings(&ca)), store);
    let params = ServerParams::new("chat.example", x25519_public(&SERVER_PRIVATE));
    let options = HandshakeOptions::default();
    let mut counter = 0u64;
    c.bench_function("handshake/in_memory_new_device", |b| {
        b.iter_custom(|iters| {
            let identities: Vec<DeviceIdentity> = (0..iters)
                .map(|_| {
                    counter += 1;
                    DeviceIdentity::generate(format!("device-{counter}"))
                })
                .collect();
            let start = Instant::now();
            runtime.block_on(async {
                for identity in &identities {
                    let (client_end, server_end) = memory::pair();
                    let server = handshaker.clone();
                    let serve = async move {
                        let mut conn = Connection::new(server_end, commucat_ccp::MAX_FRAME_LEN);
                        server.run(&mut conn).await.unwrap();
                    };
                    let client = Session::handshake(client_end, identity, &params, &options);
                    let (_, session) = tokio::join!(serve, client);
                    black_box(session.unwrap());
                }
            });
            start.elapsed()
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bare, components, end_to_end
}
criterion_main!(benches);
