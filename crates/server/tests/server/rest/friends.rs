//! Friends, stored per user.

use super::*;

pub(super) async fn friends_are_stored_per_user(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bob = server.connect("bob-1").await;
    let bearer = token(&alice);
    let friends = |answer: &Answer| answer.decode::<deployed::FriendsEnvelope>().friends;
    let friend =
        |user_id: &str, handle: Option<&str>, alias: Option<&str>| deployed::FriendEntryPayload {
            user_id: user_id.to_owned(),
            handle: handle.map(str::to_owned),
            alias: alias.map(str::to_owned),
        };

    assert_eq!(friends(&rest.get("/api/friends", &bearer).await), []);

    // As the deployed client pushes: `handle` and `alias` always present, possibly null.
    let push = json!({"friends": [
        {"user_id": "u-bob", "handle": "bob", "alias": null},
        {"user_id": "u-carol", "handle": null, "alias": "Carol"},
    ]});
    let stored = rest
        .call(Method::PUT, "/api/friends", Some(&bearer), Some(&push))
        .await;
    let want = vec![
        friend("u-bob", Some("bob"), None),
        friend("u-carol", None, Some("Carol")),
    ];
    assert_eq!(friends(&stored), want);
    assert_eq!(
        stored.body,
        json!({"friends": [
            {"user_id": "u-bob", "handle": "bob"},
            {"user_id": "u-carol", "alias": "Carol"},
        ]})
    );
    for transport in Transport::ALL {
        let list = rest
            .call_on(transport, Method::GET, "/api/friends", Some(&bearer), None)
            .await;
        assert_eq!(friends(&list), want);
    }
    // Another user's list is separate.
    assert_eq!(friends(&rest.get("/api/friends", &token(&bob)).await), []);
    // Errors.
    rest.call(Method::PUT, "/api/friends", None, Some(&push))
        .await
        .problem(StatusCode::UNAUTHORIZED, "missing Authorization");
    rest.call(
        Method::PUT,
        "/api/friends",
        Some(&bearer),
        Some(&json!({"friends": [{"handle": "x"}]})),
    )
    .await
    .problem(StatusCode::BAD_REQUEST, "user_id");
    rest.call(
        Method::PUT,
        "/api/friends",
        Some(&bearer),
        Some(&json!({"friends": [{"user_id": ""}]})),
    )
    .await
    .problem(StatusCode::BAD_REQUEST, "user_id must be 1..=256 bytes");
    // Refusals changed nothing; replacing with an empty list clears it.
    assert_eq!(friends(&rest.get("/api/friends", &bearer).await), want);
    rest.call(
        Method::PUT,
        "/api/friends",
        Some(&bearer),
        Some(&json!({"friends": []})),
    )
    .await
    .decode::<deployed::FriendsEnvelope>();
    assert_eq!(friends(&rest.get("/api/friends", &bearer).await), []);
}
