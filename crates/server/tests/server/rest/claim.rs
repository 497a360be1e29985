//! The public-key claim registering a device's own key.

use super::*;

#[tokio::test]
async fn public_key_claim_registers_the_devices_own_key() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let own = DeviceKeyPair::generate();
    let issue = || async {
        rest.ok(
            Method::POST,
            "/api/pairing",
            Some(&token(&alice)),
            &json!({"ttl": null}),
        )
        .await["pair_code"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Bad keys: 400, and the code stays usable.
    let code = issue().await;
    for bad in ["xyz", &"00".repeat(32), &hex::encode([1u8; 31])] {
        rest.post(
            "/api/pairing/claim",
            None,
            &json!({"pair_code": code, "public_key": bad}),
        )
        .await
        .problem(StatusCode::BAD_REQUEST, "public_key");
    }

    // Over HTTP/2, the seed's alias path.
    let answer = rest
        .call_on(
            Transport::Http2,
            Method::POST,
            "/api/pairing/claim",
            None,
            Some(&json!({"pair_code": code, "public_key": own.public_key_hex(), "device_name": "phone"})),
        )
        .await;
    let claimed: contract::PublicKeyClaim = answer.decode();
    assert!(claimed.private_key.is_none(), "{}", answer.body);
    assert!(claimed.seed.is_none(), "{}", answer.body);
    assert_eq!(claimed.public_key, own.public_key_hex());
    assert_eq!(claimed.device_certificate.data.public_key, own.public_key());
    let certificate: DeviceCertificate =
        serde_json::from_value(answer.body["device_certificate"].clone()).unwrap();

    // The device connects with its own key and the certificate.
    let phone = server
        .connect_as(DeviceIdentity {
            device_id: claimed.device_id.clone(),
            keys: own,
            certificate: Some(certificate),
            user: None,
            pq: None,
        })
        .await;
    assert_eq!(phone.session.info().user_id, alice.session.info().user_id);
    let list: deployed::DevicesEnvelope = rest.get("/api/devices", &token(&phone)).await.decode();
    assert_eq!(list.devices.len(), 2);

    // Another device cannot take over the claimed id with a different key.
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect")
        .await
        .unwrap();
    let impostor = Session::handshake(
        stream,
        &DeviceIdentity {
            device_id: claimed.device_id.clone(),
            keys: DeviceKeyPair::generate(),
            certificate: None,
            user: None,
            pq: None,
        },
        &server.params,
        &HandshakeOptions::default(),
    )
    .await;
    assert!(impostor.is_err());
}
