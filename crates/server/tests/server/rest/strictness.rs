//! What the deployed types require.

use super::*;

/// The mirrored types are neither laxer nor stricter than the deployed client: on the server's
/// real answers, removing any key wire-compat §8 lists as required makes the decode fail, and
/// removing an optional one does not.
#[tokio::test]
async fn the_deployed_types_are_exactly_as_strict_as_the_deployed_client() {
    use deployed::keys::*;

    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);

    let info = rest
        .call(Method::GET, "/api/server-info", None, None)
        .await
        .body;
    check_strictness::<deployed::ServerInfo>(&info, SERVER_INFO_REQUIRED, SERVER_INFO_OPTIONAL);
    // A defaulted list or flag may be missing, but not null (serde's default covers absence).
    for (pointer, value) in [
        ("/supported_patterns", Value::Null),
        ("/pairing/auto_approve", Value::Null),
        ("/noise_public", json!(7)),
    ] {
        assert!(
            serde_json::from_value::<deployed::ServerInfo>(with(&info, pointer, value)).is_err(),
            "{pointer}"
        );
    }

    let ticket = rest
        .post("/api/pair", Some(&bearer), &json!({"ttl": null}))
        .await
        .body;
    check_strictness::<deployed::PairingTicket>(&ticket, TICKET_REQUIRED, TICKET_OPTIONAL);

    let claim = rest
        .post(
            "/api/pair/claim",
            None,
            &json!({"pair_code": ticket["pair_code"], "device_name": "laptop"}),
        )
        .await
        .body;
    check_strictness::<deployed::PairingClaimResponse>(&claim, CLAIM_REQUIRED, CLAIM_OPTIONAL);
    // A certificate, if present, must be one: anything else fails the whole answer.
    assert!(
        serde_json::from_value::<deployed::PairingClaimResponse>(with(
            &claim,
            "/device_certificate",
            json!({})
        ))
        .is_err()
    );
    serde_json::from_value::<deployed::PairingClaimResponse>(with(
        &claim,
        "/device_certificate",
        Value::Null,
    ))
    .unwrap();
    assert!(
        serde_json::from_value::<deployed::PairingClaimResponse>(with(
            &claim,
            "/issuer_device_id",
            Value::Null
        ))
        .is_err(),
        "issuer_device_id may not be null"
    );

    let devices = rest.get("/api/devices", &bearer).await.body;
    check_strictness::<deployed::DevicesEnvelope>(&devices, DEVICES_REQUIRED, DEVICES_OPTIONAL);

    let friends = rest
        .call(
            Method::PUT,
            "/api/friends",
            Some(&bearer),
            Some(&json!({"friends": [{"user_id": "u-bob", "handle": "bob", "alias": "B"}]})),
        )
        .await
        .body;
    check_strictness::<deployed::FriendsEnvelope>(&friends, FRIENDS_REQUIRED, FRIENDS_OPTIONAL);
    let listed = rest.get("/api/friends", &bearer).await.body;
    assert_eq!(listed, friends);

    let assist = rest
        .post("/api/p2p/assist", Some(&bearer), &json!({}))
        .await
        .body;
    check_strictness::<deployed::P2pAssistResponse>(&assist, ASSIST_REQUIRED, ASSIST_OPTIONAL);
    // `sample_segments` is optional, but each entry needs both counts.
    let mut segments = assist.clone();
    segments["multipath"]["sample_segments"] = json!({"relay": {"total": 4, "repair": 1}});
    serde_json::from_value::<deployed::P2pAssistResponse>(segments.clone()).unwrap();
    segments["multipath"]["sample_segments"] = json!({"relay": {"total": 4}});
    assert!(serde_json::from_value::<deployed::P2pAssistResponse>(segments).is_err());
    assert!(
        serde_json::from_value::<deployed::P2pAssistResponse>(with(
            &assist,
            "/obfuscation/tor_bridge",
            Value::Null
        ))
        .is_err()
    );

    let stats = rest
        .call(Method::GET, "/api/security-stats", None, None)
        .await
        .body;
    check_strictness::<deployed::SecuritySnapshot>(&stats, SECURITY_REQUIRED, &[]);
}
