//! Bearer authentication with a handshake's session id.

use super::*;

#[tokio::test]
async fn session_id_is_a_bearer_over_every_transport() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);
    for transport in Transport::ALL {
        let list: deployed::DevicesEnvelope = rest
            .call_on(transport, Method::GET, "/api/devices", Some(&bearer), None)
            .await
            .decode();
        assert_eq!(list.devices.len(), 1);
        let device = &list.devices[0];
        assert_eq!(device.device_id, "alice-1");
        assert_eq!(device.status, "active");
        assert!(device.current);
        assert_eq!(device.public_key, alice.identity.keys.public_key_hex());
        assert!(is_rfc3339_utc(&device.created_at), "{device:?}");

        // Missing, unknown, empty and non-bearer credentials: 401 problems.
        for (authorization, detail) in [
            (None, "missing Authorization"),
            (Some("Bearer not-a-session".to_owned()), "unknown session"),
            (Some("Bearer ".to_owned()), "must be Bearer"),
            (Some(format!("Basic {bearer}")), "must be Bearer"),
        ] {
            rest.clients
                .send_with(
                    transport,
                    Method::GET,
                    "/api/devices",
                    authorization.as_deref(),
                    None,
                )
                .await
                .problem(StatusCode::UNAUTHORIZED, detail);
        }
        // The scheme is case-insensitive.
        rest.clients
            .send_with(
                transport,
                Method::GET,
                "/api/devices",
                Some(&format!("bearer {bearer}")),
                None,
            )
            .await
            .decode::<deployed::DevicesEnvelope>();
    }
}

#[tokio::test]
async fn a_connected_session_stays_valid_and_expires_after_it_leaves() {
    // session.ttl 3 s, so the session task refreshes every second (a quarter of the TTL, at
    // least 1 s) and a refreshed expiry is always a full second ahead of the next refresh; with
    // 1 or 2 s the stored whole-second expiry could lapse between two refreshes.
    let server = TestServer::start(|c| c.session.ttl = Duration::from_secs(3)).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);
    let store = server.store().await;
    let key = commucat_server::registry::session_key(&bearer);
    let first = store.session(&key).await.unwrap().unwrap().expires_at;

    // The refresh moves the stored expiry forward while the device stays connected…
    let later = eventually("the session refresh", Duration::from_secs(10), || async {
        let expires_at = store.session(&key).await.unwrap().unwrap().expires_at;
        (expires_at > first).then_some(expires_at)
    })
    .await;
    assert!(later > first);
    // …so once the first expiry has passed (the one time passage this needs: the TTL), the
    // token is still accepted.
    eventually("the first expiry", Duration::from_secs(10), || async {
        (unix_now() >= first).then_some(())
    })
    .await;
    rest.get("/api/devices", &bearer)
        .await
        .decode::<deployed::DevicesEnvelope>();

    // After the device leaves, nothing refreshes it: the token expires (the stored session is
    // kept, and refused as expired).
    alice.close();
    let refused = eventually("the token's expiry", Duration::from_secs(15), || async {
        let answer = rest.get("/api/devices", &bearer).await;
        (answer.status != StatusCode::OK).then_some(answer)
    })
    .await;
    refused.problem(StatusCode::UNAUTHORIZED, "session expired");
    let stored = store.session(&key).await.unwrap().unwrap();
    assert!(stored.expires_at <= unix_now(), "{}", stored.expires_at);
}
