//! P2P assist, answered as the deployed client decodes it.

use super::*;

/// The data directory of `server` (beside its database).
fn data_dir(server: &TestServer) -> std::path::PathBuf {
    server.database().parent().unwrap().to_owned()
}

#[tokio::test]
async fn p2p_assist_answers_what_the_deployed_client_decodes() {
    use aws_lc_rs::kem::{EncapsulationKey, ML_KEM_768};
    use aws_lc_rs::signature::{ML_DSA_65, UnparsedPublicKey};

    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let info: deployed::ServerInfo = rest
        .call(Method::GET, "/api/server-info", None, None)
        .await
        .decode();
    let info_body = rest
        .call(Method::GET, "/api/server-info", None, None)
        .await
        .body;
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);

    // The TUI's `/assist <peer>` request, without ALPN.
    let request = json!({
        "peer_hint": "bob",
        "paths": [
            {"address": "192.0.2.7", "id": "hint-b", "port": 3478, "server_name": "https://chat.test/",
             "priority": 2, "reality_fingerprint": null, "reality_pem": null},
            {"address": "198.51.100.1", "id": "hint-a", "port": 443, "server_name": "https://chat.test/",
             "priority": 1, "reality_fingerprint": null, "reality_pem": null}
        ],
        "prefer_reality": true,
        "fec": {"mtu": 1200, "repair_overhead": 0.18},
        "min_paths": 1
    });
    let answer = rest.post("/api/p2p/assist", Some(&bearer), &request).await;
    let assist: deployed::P2pAssistResponse = answer.decode();
    let body = answer.body;

    // noise: the configured prologue and a key pair derived from the returned seed.
    assert_eq!(assist.noise.pattern, "XK");
    assert_eq!(assist.noise.prologue_hex, hex::encode("commucat"));
    let seed = hex::decode(&assist.noise.device_seed_hex).unwrap();
    let derived = DeviceKeyPair::from_seed_material(&seed).unwrap();
    assert_eq!(
        assist.noise.static_public_hex,
        hex::encode(commucat_keys::x25519_public(&derived.x25519_private()))
    );

    // pq: the server's persisted keys, and a bundle signature that verifies.
    let stored = commucat_server::keys::pq::PqKeys::load_or_generate(&data_dir(&server)).unwrap();
    assert_eq!(assist.pq.kem_public_hex, hex::encode(stored.kem_public()));
    assert_eq!(
        assist.pq.signature_public_hex,
        hex::encode(stored.signature_public())
    );
    assert_eq!(
        Some(&assist.pq.identity_public_hex),
        info.device_ca_public.as_ref()
    );
    assert_eq!(assist.pq.signed_prekey_public_hex, info.noise_public);
    assert_eq!(
        info_body["post_quantum"]["kem_public_hex"],
        assist.pq.kem_public_hex.as_str()
    );
    let kem = EncapsulationKey::new(
        &ML_KEM_768,
        &hex::decode(&assist.pq.kem_public_hex).unwrap(),
    )
    .unwrap();
    let (ciphertext, shared) = kem.encapsulate().unwrap();
    assert_eq!(
        stored.decapsulate(ciphertext.as_ref()).unwrap().as_slice(),
        shared.as_ref(),
        "the published KEM key belongs to the server's secret key"
    );
    let message = stored.bundle_message(
        "chat.test",
        &hex::decode(&assist.pq.identity_public_hex).unwrap(),
        &hex::decode(&assist.pq.signed_prekey_public_hex).unwrap(),
    );
    UnparsedPublicKey::new(
        &ML_DSA_65,
        hex::decode(&assist.pq.signature_public_hex).unwrap(),
    )
    .verify(
        &message,
        &hex::decode(body["pq"]["bundle_signature_hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();

    // transports: by priority, then the relay; the candidates are not measured, the relay
    // is offered over the transport alice's handshake completed on, with its time.
    let ids: Vec<&str> = assist
        .transports
        .iter()
        .map(|t| t.path_id.as_str())
        .collect();
    assert_eq!(ids, ["hint-a", "hint-b", "relay"]);
    for t in &assist.transports[..2] {
        assert_eq!(t.latency, "unmeasured");
        assert_eq!(t.throughput, "unmeasured");
    }
    assert_eq!(assist.transports[2].transport, "binary/h2");
    assert!(assist.transports[2].latency.ends_with(" ms"), "{body}");
    assert_eq!(assist.transports[2].throughput, "unmeasured");
    assert_eq!(body["transports"][2]["port"], server.addr.port());
    assert_eq!(assist.multipath.fec_mtu, 1200);
    assert!((assist.multipath.fec_overhead - 0.18).abs() < 1e-6);
    assert_eq!(assist.multipath.primary_path.as_deref(), Some("hint-a"));
    assert!(assist.multipath.sample_segments.is_empty());
    assert!(!assist.obfuscation.domain_fronting);
    assert!(!assist.obfuscation.protocol_mimicry);
    assert!(!assist.obfuscation.tor_bridge);
    assert!(assist.obfuscation.reality_fingerprint_hex.is_none());
    assert_eq!(
        assist.security,
        deployed::SecuritySnapshot {
            noise_handshakes: 1,
            pq_handshakes: 0,
            fec_packets: 0,
            // No session runs over more than its one /connect stream.
            multipath_sessions: 0,
            average_paths: 1.0,
            censorship_deflections: 0,
        }
    );

    // GET with no body over HTTP/2: defaults, the relay alone; counters move.
    let defaults: deployed::P2pAssistResponse = rest
        .call_on(
            Transport::Http2,
            Method::GET,
            "/api/p2p/assist",
            Some(&bearer),
            None,
        )
        .await
        .decode();
    assert_eq!(defaults.transports.len(), 1);
    assert_eq!(defaults.multipath.primary_path.as_deref(), Some("relay"));
    assert_eq!(defaults.multipath.fec_mtu, 1152);
    assert_ne!(defaults.noise.device_seed_hex, assist.noise.device_seed_hex);
    // Assist answers are advice, not sessions: the counters do not move.
    assert_eq!(defaults.security, assist.security);
    // The same counters as /api/security-stats.
    let stats: deployed::SecuritySnapshot = rest
        .call(Method::GET, "/api/security-stats", None, None)
        .await
        .decode();
    assert_eq!(stats, defaults.security);

    // Errors: no bearer 401; bad bodies 400.
    for transport in Transport::ALL {
        rest.call_on(
            transport,
            Method::POST,
            "/api/p2p/assist",
            None,
            Some(&json!({})),
        )
        .await
        .problem(StatusCode::UNAUTHORIZED, "missing Authorization");
    }
    let too_many: Vec<Value> = (0..17).map(|i| json!({"id": format!("p{i}")})).collect();
    for (bad, detail) in [
        (
            json!({"fec": {"repair_overhead": 2.0}}),
            "fec.repair_overhead",
        ),
        (json!({"fec": {"mtu": 10}}), "fec.mtu"),
        (json!({"paths": too_many}), "at most 16 paths"),
        (json!({"paths": [{"id": ""}]}), "paths[].id is empty"),
        (json!({"paths": "none"}), "not the expected JSON"),
        (json!({"min_paths": 100}), "min_paths"),
    ] {
        rest.post("/api/p2p/assist", Some(&bearer), &bad)
            .await
            .problem(StatusCode::BAD_REQUEST, detail);
    }
    rest.call(
        Method::PUT,
        "/api/p2p/assist",
        Some(&bearer),
        Some(&json!({})),
    )
    .await
    .problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "PUT is not allowed on /api/p2p/assist",
    );
}
