//! The surface of devices and pairing.

use super::*;

/// Device list and revocation, pairing codes and both claim forms on both paths, as the
/// deployed client and beyond.
pub(super) async fn devices_and_pairing(world: &World, s: &mut Surface<'_>) {
    let (alice, a) = (&world.alice, token(&world.alice));
    let alice_user = alice.session.info().user_id.clone();
    let info: deployed::ServerInfo = world
        .rest
        .call_on(s.transport, Method::GET, "/api/server-info", None, None)
        .await
        .decode();
    let ca = decode_hex32(info.device_ca_public.as_deref().unwrap()).unwrap();

    // ---- GET /api/devices
    let list: deployed::DevicesEnvelope = s
        .ok(Method::GET, "/api/devices", Some(&a), None)
        .await
        .decode();
    let me = list
        .devices
        .iter()
        .find(|d| d.device_id == "alice-1")
        .unwrap();
    assert!(me.current);
    assert_eq!(me.public_key, alice.identity.keys.public_key_hex());
    assert!(list.devices.iter().all(|d| is_rfc3339_utc(&d.created_at)));
    assert_eq!(list.devices.iter().filter(|d| d.current).count(), 1);
    s.err(
        Method::GET,
        "/api/devices",
        None,
        None,
        StatusCode::UNAUTHORIZED,
        "missing Authorization",
    )
    .await;
    s.err(
        Method::GET,
        "/api/devices",
        Some("not-a-session"),
        None,
        StatusCode::UNAUTHORIZED,
        "unknown session",
    )
    .await;

    // ---- POST /api/pair and /api/pairing
    let mut codes = Vec::new();
    for (path, ttl, want) in [
        ("/api/pair", json!(null), 300),
        ("/api/pairing", json!(90), 90),
        ("/api/pair", json!(5), 60),
    ] {
        let answer = s
            .ok(Method::POST, path, Some(&a), Some(&json!({ "ttl": ttl })))
            .await;
        let ticket: deployed::PairingTicket = answer.decode();
        let issued: contract::Issued = answer.decode();
        assert_eq!(ticket.ttl, want);
        assert_eq!(issued.ttl, want);
        assert_eq!(ticket.pair_code, issued.pair_code);
        assert_eq!(ticket.issuer_device_id.as_deref(), Some("alice-1"));
        assert_eq!(decode_hex32(&issued.device_ca_public).unwrap(), ca);
        assert!(is_rfc3339_utc(&ticket.issued_at) && is_rfc3339_utc(&ticket.expires_at));
        codes.push(ticket.pair_code);
    }
    for path in ["/api/pair", "/api/pairing"] {
        s.err(
            Method::POST,
            path,
            Some(&a),
            Some(&json!({"ttl": "soon"})),
            StatusCode::BAD_REQUEST,
            "request body is not the expected JSON",
        )
        .await;
        s.err_raw(
            Method::POST,
            path,
            Some(&a),
            Some(b"{ttl"),
            StatusCode::BAD_REQUEST,
            "request body is not the expected JSON",
        )
        .await;
        s.err(
            Method::POST,
            path,
            None,
            Some(&json!({"ttl": null})),
            StatusCode::UNAUTHORIZED,
            "missing Authorization",
        )
        .await;
    }

    // ---- POST /api/pair/claim: the deployed client's server-key claim.
    let answer = s
        .ok(
            Method::POST,
            "/api/pair/claim",
            None,
            Some(&json!({"pair_code": codes[0], "device_name": "laptop"})),
        )
        .await;
    let claimed: deployed::PairingClaimResponse = answer.decode();
    assert_eq!(claimed.issuer_device_id, "alice-1");
    assert_eq!(claimed.user.id, alice_user);
    assert_eq!(claimed.device_name.as_deref(), Some("laptop"));
    let keys = DeviceKeyPair::from_seed_hex(&claimed.private_key).unwrap();
    assert_eq!(claimed.public_key, keys.public_key_hex());
    let certificate = claimed.device_certificate.as_ref().unwrap();
    certificate.verify(&ca).unwrap();
    assert_eq!(certificate.data.device_id, claimed.device_id);
    let mut laptop = world
        .server
        .connect_as(claimed_identity(&answer.body))
        .await;

    // ---- POST /api/pairing/claim: a public-key claim.
    let own = DeviceKeyPair::generate();
    let answer = s
        .ok(
            Method::POST,
            "/api/pairing/claim",
            None,
            Some(&json!({"pair_code": codes[1], "public_key": own.public_key_hex()})),
        )
        .await;
    let claimed_own: contract::PublicKeyClaim = answer.decode();
    assert!(claimed_own.private_key.is_none() && claimed_own.seed.is_none());
    assert_eq!(claimed_own.public_key, own.public_key_hex());
    assert_eq!(claimed_own.user_id, alice_user);
    assert_eq!(claimed_own.issuer_device_id, "alice-1");
    assert_eq!(decode_hex32(&claimed_own.device_ca_public).unwrap(), ca);
    claimed_own.device_certificate.verify(&ca).unwrap();
    assert_eq!(
        claimed_own.device_certificate.data.public_key,
        own.public_key()
    );

    for path in ["/api/pair/claim", "/api/pairing/claim"] {
        s.err(
            Method::POST,
            path,
            None,
            Some(&json!({"code": 1})),
            StatusCode::BAD_REQUEST,
            "request body is not the expected JSON",
        )
        .await;
        s.err(
            Method::POST,
            path,
            None,
            Some(&json!({"pair_code": codes[0]})),
            StatusCode::BAD_REQUEST,
            "pairing code already redeemed",
        )
        .await;
        s.err(
            Method::POST,
            path,
            None,
            Some(&json!({"pair_code": codes[2], "public_key": "xyz"})),
            StatusCode::BAD_REQUEST,
            "public_key: expected 64 hex characters",
        )
        .await;
        s.err(
            Method::POST,
            path,
            None,
            Some(&json!({"pair_code": codes[2], "device_name": "n".repeat(129)})),
            StatusCode::BAD_REQUEST,
            "device_name is longer than 128 bytes",
        )
        .await;
        s.err(
            Method::POST,
            path,
            None,
            Some(&json!({"pair_code": "ZZZZ-ZZZZ"})),
            StatusCode::NOT_FOUND,
            "unknown pairing code",
        )
        .await;
    }

    // ---- POST /api/devices/revoke
    let revoke = |device: &str| json!({ "device_id": device });
    let path = "/api/devices/revoke";
    s.err(
        Method::POST,
        path,
        Some(&a),
        Some(&json!({"id": 1})),
        StatusCode::BAD_REQUEST,
        "request body is not the expected JSON",
    )
    .await;
    s.err(
        Method::POST,
        path,
        None,
        Some(&revoke(&claimed.device_id)),
        StatusCode::UNAUTHORIZED,
        "missing Authorization",
    )
    .await;
    s.err(
        Method::POST,
        path,
        Some(&a),
        Some(&revoke("bob-1")),
        StatusCode::FORBIDDEN,
        "the device belongs to another account",
    )
    .await;
    s.err(
        Method::POST,
        path,
        Some(&a),
        Some(&revoke("nobody")),
        StatusCode::NOT_FOUND,
        "no device nobody",
    )
    .await;
    s.err(
        Method::POST,
        path,
        Some(&a),
        Some(&revoke("alice-1")),
        StatusCode::CONFLICT,
        "a device cannot revoke itself",
    )
    .await;
    let answer = s
        .ok(
            Method::POST,
            path,
            Some(&a),
            Some(&revoke(&claimed.device_id)),
        )
        .await;
    answer.decode::<Value>();
    let revoked: contract::Revoked = answer.decode();
    assert_eq!(revoked.device_id, claimed.device_id);
    assert_eq!(revoked.status, "revoked");
    expect_closed_as_revoked(&mut laptop).await;
    let list: deployed::DevicesEnvelope = world
        .rest
        .call_on(s.transport, Method::GET, "/api/devices", Some(&a), None)
        .await
        .decode();
    let entry = list
        .devices
        .iter()
        .find(|d| d.device_id == claimed.device_id)
        .unwrap();
    assert_eq!(entry.status, "revoked");
}
