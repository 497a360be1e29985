//! The surface of key rotations.

use super::*;

/// `POST /api/devices/rotate` on a fresh device: every refusal, the rotation, the refusal of a
/// key used before and of a second rotation within the minimum interval; and the refusal of a
/// server with rotation disabled.
pub(super) async fn rotations(world: &World, s: &mut Surface<'_>, n: usize) {
    let path = "/api/devices/rotate";
    let device = world.server.connect(&format!("rot-{n}")).await;
    let id = device.identity.device_id.clone();
    let old = device.identity.keys.clone();
    let bearer = token(&device);
    let b = Some(bearer.as_str());
    let now = unix_now();
    let new = DeviceKeyPair::generate();
    let good = rotation(&id, &old.public_key(), &old, &new.public_key(), now);

    // 400
    s.err_raw(
        Method::POST,
        path,
        b,
        Some(b"{not json"),
        StatusCode::BAD_REQUEST,
        "request body is not the expected JSON",
    )
    .await;
    s.err(
        Method::POST,
        path,
        b,
        Some(&json!({"device_id": id})),
        StatusCode::BAD_REQUEST,
        "missing field",
    )
    .await;
    let mut extra = good.clone();
    extra["extra"] = json!(1);
    s.err(
        Method::POST,
        path,
        b,
        Some(&extra),
        StatusCode::BAD_REQUEST,
        "unknown field",
    )
    .await;
    s.err(
        Method::POST,
        path,
        b,
        Some(&with(&good, "/public_key", json!("abcd"))),
        StatusCode::BAD_REQUEST,
        "public_key",
    )
    .await;
    s.err(
        Method::POST,
        path,
        b,
        Some(&with(&good, "/proof", json!("00ff"))),
        StatusCode::BAD_REQUEST,
        "proof: expected 128 hex characters",
    )
    .await;
    s.err(
        Method::POST,
        path,
        b,
        Some(&rotation(
            &id,
            &old.public_key(),
            &old,
            &old.public_key(),
            now,
        )),
        StatusCode::BAD_REQUEST,
        "the new key equals the current key",
    )
    .await;
    // 401
    s.err(
        Method::POST,
        path,
        None,
        Some(&good),
        StatusCode::UNAUTHORIZED,
        "missing Authorization",
    )
    .await;
    // 403: another device's id, a proof by another key, a proof outside the window
    let bob = &world.bob.identity;
    s.err(
        Method::POST,
        path,
        b,
        Some(&rotation(
            &bob.device_id,
            &bob.keys.public_key(),
            &bob.keys,
            &new.public_key(),
            now,
        )),
        StatusCode::FORBIDDEN,
        "a device can only rotate its own key",
    )
    .await;
    s.err(
        Method::POST,
        path,
        b,
        Some(&rotation(
            &id,
            &old.public_key(),
            &DeviceKeyPair::generate(),
            &new.public_key(),
            now,
        )),
        StatusCode::FORBIDDEN,
        "proof is not a signature by the device's current key",
    )
    .await;
    let stale = sign_rotation(&old, &id, &new.public_key(), now - 1_000).unwrap();
    s.err(
        Method::POST,
        path,
        b,
        Some(&json!({"device_id": id, "public_key": new.public_key_hex(),
                     "issued_at": now - 1_000, "proof": encode_hex(&stale)})),
        StatusCode::FORBIDDEN,
        "from the server clock",
    )
    .await;

    // 200, with a certificate for the new key; the old bearer is gone with the old key.
    let answer = s.ok(Method::POST, path, b, Some(&good)).await;
    let rotated: contract::Rotated = answer.decode();
    assert_eq!(rotated.device_id, id);
    assert_eq!(rotated.status, "rotated");
    assert_eq!(rotated.public_key, new.public_key_hex());
    assert_eq!(rotated.previous_public_key, old.public_key_hex());
    assert!(is_rfc3339_utc(&rotated.rotated_at));
    let ca = decode_hex32(&rotated.device_ca_public).unwrap();
    rotated.device_certificate.verify(&ca).unwrap();
    assert_eq!(rotated.device_certificate.data.public_key, new.public_key());
    s.err(
        Method::POST,
        path,
        b,
        Some(&good),
        StatusCode::UNAUTHORIZED,
        "unknown session",
    )
    .await;

    // With the new key: back to the old one is 409, any other within the interval 429.
    let certificate: DeviceCertificate =
        serde_json::from_value(answer.body["device_certificate"].clone()).unwrap();
    let device = world
        .server
        .connect_as(DeviceIdentity {
            device_id: id.clone(),
            keys: new.clone(),
            certificate: Some(certificate),
            user: None,
            pq: None,
        })
        .await;
    let bearer = token(&device);
    let now = unix_now();
    s.err(
        Method::POST,
        path,
        Some(&bearer),
        Some(&rotation(
            &id,
            &new.public_key(),
            &new,
            &old.public_key(),
            now,
        )),
        StatusCode::CONFLICT,
        "this device used that key before",
    )
    .await;
    let third = DeviceKeyPair::generate().public_key();
    let answer = s
        .err(
            Method::POST,
            path,
            Some(&bearer),
            Some(&rotation(&id, &new.public_key(), &new, &third, now)),
            StatusCode::TOO_MANY_REQUESTS,
            "the next rotation is allowed in",
        )
        .await;
    too_many(&answer, "", 3600);

    // A server with rotation disabled refuses it, also for a valid proof.
    let other = world.disabled.connect(&format!("rot-{n}")).await;
    let me = &other.identity;
    let body = rotation(
        &me.device_id,
        &me.keys.public_key(),
        &me.keys,
        &DeviceKeyPair::generate().public_key(),
        unix_now(),
    );
    let answer = world
        .disabled_rest
        .clients
        .call(
            s.transport,
            Method::POST,
            path,
            Some(&token(&other)),
            Some(&body),
        )
        .await;
    answer.problem(StatusCode::FORBIDDEN, "rotation is disabled");
    s.record(&Method::POST, path, StatusCode::FORBIDDEN);
}
