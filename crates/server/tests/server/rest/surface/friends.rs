//! The surface of friends and P2P assist.

use super::*;

/// Friends as the deployed client reads and pushes them, and P2P assist.
pub(super) async fn friends_and_assist(world: &World, s: &mut Surface<'_>) {
    let a = token(&world.alice);
    let push = json!({"friends": [
        {"user_id": "u-bob", "handle": "bob", "alias": null},
        {"user_id": "u-carol", "handle": null, "alias": "Carol"},
    ]});
    let stored: deployed::FriendsEnvelope = s
        .ok(Method::PUT, "/api/friends", Some(&a), Some(&push))
        .await
        .decode();
    let listed: deployed::FriendsEnvelope = s
        .ok(Method::GET, "/api/friends", Some(&a), None)
        .await
        .decode();
    assert_eq!(stored.friends, listed.friends);
    let ids: Vec<&str> = listed.friends.iter().map(|f| f.user_id.as_str()).collect();
    assert_eq!(ids, ["u-bob", "u-carol"]);
    assert_eq!(listed.friends[0].handle.as_deref(), Some("bob"));
    assert_eq!(listed.friends[1].alias.as_deref(), Some("Carol"));
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"user_id": format!("u{i}")}))
        .collect();
    for (bad, detail) in [
        (
            json!({"friends": [{"handle": "x"}]}),
            "missing field `user_id`",
        ),
        (
            json!({"friends": [{"user_id": ""}]}),
            "user_id must be 1..=256 bytes",
        ),
        (json!({ "friends": too_many }), "at most 1000 friends"),
    ] {
        s.err(
            Method::PUT,
            "/api/friends",
            Some(&a),
            Some(&bad),
            StatusCode::BAD_REQUEST,
            detail,
        )
        .await;
    }
    // An alias longer than bounds.display_name_bytes: the protocol's own problem title.
    let long_alias = json!({"friends": [{"user_id": "u", "alias": "a".repeat(257)}]});
    let body = serde_json::to_vec(&long_alias).unwrap();
    let answer = s
        .send(&Method::PUT, "/api/friends", Some(&a), Some(&body))
        .await;
    answer.expect(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.content_type, "application/problem+json");
    let problem = answer.json();
    assert_eq!(problem["title"], "Profile Field Too Long", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("alias of u is 257 bytes")
    );
    let shown: deployed::ProblemDetails = serde_json::from_slice(&answer.bytes).unwrap();
    assert!(shown.detail.is_some());
    s.record(&Method::PUT, "/api/friends", StatusCode::PAYLOAD_TOO_LARGE);
    s.err(
        Method::GET,
        "/api/friends",
        None,
        None,
        StatusCode::UNAUTHORIZED,
        "missing Authorization",
    )
    .await;
    s.err(
        Method::PUT,
        "/api/friends",
        None,
        Some(&push),
        StatusCode::UNAUTHORIZED,
        "missing Authorization",
    )
    .await;
    // The refusals left the list as it was.
    let after: deployed::FriendsEnvelope = world
        .rest
        .call_on(s.transport, Method::GET, "/api/friends", Some(&a), None)
        .await
        .decode();
    assert_eq!(after.friends, listed.friends);

    // ---- /api/p2p/assist: the TUI's request, and a GET without a body.
    let path = "/api/p2p/assist";
    let request = json!({
        "peer_hint": "bob",
        "paths": [{"address": "127.0.0.1", "id": "hint-1", "port": 3478,
                   "server_name": "https://chat.test/", "priority": 1,
                   "reality_fingerprint": null, "reality_pem": null}],
        "prefer_reality": true,
        "fec": {"mtu": 1200, "repair_overhead": 0.18},
        "min_paths": 1
    });
    let assist: deployed::P2pAssistResponse = s
        .ok(Method::POST, path, Some(&a), Some(&request))
        .await
        .decode();
    let ids: Vec<&str> = assist
        .transports
        .iter()
        .map(|t| t.path_id.as_str())
        .collect();
    assert_eq!(ids, ["hint-1", "relay"]);
    assert_eq!(assist.noise.pattern, "XK");
    assert_eq!(assist.multipath.fec_mtu, 1200);
    assert_eq!(
        assist.pq.signed_prekey_public_hex,
        hex::encode(world.server.params.server_static)
    );
    let defaults: deployed::P2pAssistResponse =
        s.ok(Method::GET, path, Some(&a), None).await.decode();
    assert_eq!(defaults.transports.len(), 1);
    assert_eq!(defaults.multipath.primary_path.as_deref(), Some("relay"));
    for method in [Method::GET, Method::POST] {
        s.err_raw(
            method.clone(),
            path,
            Some(&a),
            Some(b"{not json"),
            StatusCode::BAD_REQUEST,
            "request body is not the expected JSON",
        )
        .await;
        s.err(
            method.clone(),
            path,
            Some(&a),
            Some(&json!({"fec": {"mtu": 10}})),
            StatusCode::BAD_REQUEST,
            "fec.mtu must be at least 256",
        )
        .await;
        s.err(
            method,
            path,
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "missing Authorization",
        )
        .await;
    }
}
