//! Pairing and devices: the deployed client's pairing flow, pairing errors, revocation.

use super::*;

/// What the deployed client does: server-info → handshake → devices with the session bearer →
/// pair → claim → the second device handshakes with the claimed certificate → both listed →
/// revoke ends the live session. Every answer decodes into the deployed client's types.
pub(super) async fn pairing_flow_as_the_deployed_client_does_it(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let rest = Rest::new(&server);
    let info: deployed::ServerInfo = rest
        .call(Method::GET, "/api/server-info", None, None)
        .await
        .decode();
    let ca = decode_hex32(info.device_ca_public.as_deref().unwrap()).unwrap();
    let alice = server.connect("alice-1").await;
    let alice_user = alice.session.info().user_id.clone();
    let devices: deployed::DevicesEnvelope =
        rest.get("/api/devices", &token(&alice)).await.decode();
    assert_eq!(devices.devices.len(), 1);

    let answer = rest
        .post("/api/pair", Some(&token(&alice)), &json!({"ttl": 120}))
        .await;
    let ticket: deployed::PairingTicket = answer.decode();
    let issued: contract::Issued = answer.decode();
    let code = ticket.pair_code.as_str();
    assert_eq!(code.len(), 9);
    assert_eq!(&code[4..5], "-");
    assert!(
        code.chars()
            .filter(|c| *c != '-')
            .all(|c| "ABCDEFGHJKMNPQRSTUVWXYZ23456789".contains(c))
    );
    assert_eq!(ticket.ttl, 120);
    assert!(is_rfc3339_utc(&ticket.issued_at));
    assert!(is_rfc3339_utc(&ticket.expires_at));
    assert!(decode_hex32(&ticket.device_seed).is_ok());
    assert_eq!(ticket.issuer_device_id.as_deref(), Some("alice-1"));
    assert_eq!(issued.issuer_device_id, "alice-1");
    assert_eq!(
        Some(&issued.device_ca_public),
        info.device_ca_public.as_ref()
    );

    // Lower case with blanks is accepted (trimmed and upper-cased), with a device name.
    let answer = rest
        .post(
            "/api/pair/claim",
            None,
            &json!({"pair_code": format!("  {}\n", code.to_lowercase()), "device_name": "laptop"}),
        )
        .await;
    let claimed: deployed::PairingClaimResponse = answer.decode();
    let device_id = claimed.device_id.as_str();
    assert_eq!(device_id.len(), 64);
    assert!(device_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let keys = DeviceKeyPair::from_seed_hex(&claimed.private_key).unwrap();
    assert_eq!(claimed.public_key, keys.public_key_hex());
    // private key = BLAKE3(seed), as the deployed `from_seed`
    let seed = hex::decode(&claimed.seed).unwrap();
    assert_eq!(
        DeviceKeyPair::from_seed_material(&seed)
            .unwrap()
            .public_key_hex(),
        keys.public_key_hex()
    );
    assert_eq!(claimed.issuer_device_id, "alice-1");
    assert_eq!(claimed.user.id, alice_user);
    assert_eq!(claimed.user.handle, "alice_1");
    assert_eq!(answer.body["user_id"], alice_user.as_str());
    assert_eq!(claimed.device_name.as_deref(), Some("laptop"));
    assert_eq!(claimed.device_ca_public, info.device_ca_public);
    // The certificate as the deployed crate reads it, signed by the server's device CA.
    let certificate = claimed.device_certificate.as_ref().unwrap();
    certificate.verify(&ca).unwrap();
    assert_eq!(certificate.data.device_id, device_id);
    assert_eq!(certificate.data.user_id, alice_user);
    assert_eq!(certificate.data.public_key, keys.public_key());

    // The claimed device completes the handshake with its certificate and seed.
    let laptop = server.connect_as(claimed_identity(&answer.body)).await;
    assert_eq!(laptop.session.info().user_id, alice_user);
    // Both are listed for either device's bearer; `current` marks the caller.
    for (client, current) in [(&alice, "alice-1"), (&laptop, device_id)] {
        let list: deployed::DevicesEnvelope =
            rest.get("/api/devices", &token(client)).await.decode();
        let mut ids: Vec<&str> = list.devices.iter().map(|d| d.device_id.as_str()).collect();
        ids.sort_unstable();
        let mut want = vec!["alice-1", device_id];
        want.sort_unstable();
        assert_eq!(ids, want);
        for d in &list.devices {
            assert_eq!(d.current, d.device_id == current, "{d:?}");
            assert_eq!(d.status, "active");
        }
    }
    // The registration wrote a key event.
    let store = server.store().await;
    let events = store.key_events(device_id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, DeviceKeyEvent::REGISTER);

    // A redeemed code cannot be claimed again.
    let again = rest
        .post("/api/pair/claim", None, &json!({"pair_code": code}))
        .await;
    again.problem(StatusCode::BAD_REQUEST, "already redeemed");
    assert_eq!(store.pairing(code).await.unwrap().unwrap().attempts, 1);

    // Revoking the laptop from alice ends its live session at once; the deployed client takes
    // any JSON as the answer.
    let mut laptop = laptop;
    let revoked = rest
        .post(
            "/api/devices/revoke",
            Some(&token(&alice)),
            &json!({ "device_id": device_id }),
        )
        .await;
    revoked.decode::<Value>();
    expect_closed_as_revoked(&mut laptop).await;
}

pub(super) async fn pairing_errors_and_ttl_clamp(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |c| {
        c.devices.pairing_ttl = Duration::from_secs(600);
    })
    .await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);

    // Without a bearer: 401 on both paths.
    for path in ["/api/pair", "/api/pairing"] {
        expect(
            &rest.post(path, None, &json!({"ttl": null})).await,
            StatusCode::UNAUTHORIZED,
        );
    }
    // TTL: null → configured; capped by the configuration; at least 60.
    for (ttl, want) in [
        (json!(null), 600),
        (json!(100_000), 600),
        (json!(10), 60),
        (json!(300), 300),
    ] {
        let issued = rest
            .ok(
                Method::POST,
                "/api/pairing",
                Some(&bearer),
                &json!({ "ttl": ttl }),
            )
            .await;
        assert_eq!(issued["ttl"], want, "{ttl}");
    }
    // Bad bodies: 400.
    expect(
        &rest
            .post("/api/pair", Some(&bearer), &json!({"ttl": "soon"}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    expect(
        &rest
            .post("/api/pair/claim", None, &json!({"code": "x"}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    // Unknown code: 404 (alias path too).
    for path in ["/api/pair/claim", "/api/pairing/claim"] {
        expect(
            &rest
                .post(path, None, &json!({"pair_code": "ZZZZ-ZZZZ"}))
                .await,
            StatusCode::NOT_FOUND,
        );
    }
    // Wrong guesses, blocked codes and their caps: tests/pairing.rs.
}

pub(super) async fn revoke_rules_and_revoking_a_connected_device_ends_its_session(
    backend: StoreBackend,
) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bob = server.connect("bob-1").await;
    let bearer = token(&alice);
    let (claimed, mut laptop) = pair_and_connect(&server, &rest, &alice).await;
    let laptop_id = claimed.deployed.device_id.clone();
    let laptop_bearer = token(&laptop);

    let revoke = |device: &str| json!({ "device_id": device });
    rest.post("/api/devices/revoke", None, &revoke(&laptop_id))
        .await
        .problem(StatusCode::UNAUTHORIZED, "missing Authorization");
    rest.post("/api/devices/revoke", Some(&bearer), &revoke("alice-1"))
        .await
        .problem(StatusCode::CONFLICT, "cannot revoke itself");
    rest.post("/api/devices/revoke", Some(&bearer), &revoke("bob-1"))
        .await
        .problem(StatusCode::FORBIDDEN, "another account");
    rest.post("/api/devices/revoke", Some(&bearer), &revoke("nobody"))
        .await
        .problem(StatusCode::NOT_FOUND, "no device nobody");
    rest.post("/api/devices/revoke", Some(&bearer), &json!({"id": 1}))
        .await
        .problem(StatusCode::BAD_REQUEST, "not the expected JSON");

    // Revoking the connected laptop over HTTP/2: 200, and its session ends at once.
    let answer = rest
        .call_on(
            Transport::Http2,
            Method::POST,
            "/api/devices/revoke",
            Some(&bearer),
            Some(&revoke(&laptop_id)),
        )
        .await;
    let revoked: contract::Revoked = answer.decode();
    assert_eq!(revoked.device_id, laptop_id);
    assert_eq!(revoked.status, "revoked");
    expect_closed_as_revoked(&mut laptop).await;

    // Its bearer is dead, the list shows it revoked, the key log has the revocation.
    rest.get("/api/devices", &laptop_bearer)
        .await
        .problem(StatusCode::UNAUTHORIZED, "unknown session");
    let list: deployed::DevicesEnvelope = rest.get("/api/devices", &bearer).await.decode();
    let entry = list
        .devices
        .iter()
        .find(|d| d.device_id == laptop_id)
        .unwrap();
    assert_eq!(entry.status, "revoked");
    assert!(!entry.current);
    let store = server.store().await;
    let actions: Vec<String> = store
        .key_events(&laptop_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, [DeviceKeyEvent::REGISTER, DeviceKeyEvent::REVOKE]);
    // Revoking again is the same 200.
    rest.post("/api/devices/revoke", Some(&bearer), &revoke(&laptop_id))
        .await
        .decode::<contract::Revoked>();
    // The handshake refuses the revoked device.
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect")
        .await
        .unwrap();
    let refused = Session::handshake(
        stream,
        &claimed_identity(&claimed.body),
        &server.params,
        &HandshakeOptions::default(),
    )
    .await;
    assert!(refused.is_err());
    // Bob and Alice are untouched.
    rest.get("/api/devices", &token(&bob))
        .await
        .decode::<deployed::DevicesEnvelope>();
    rest.get("/api/devices", &bearer)
        .await
        .decode::<deployed::DevicesEnvelope>();
}
