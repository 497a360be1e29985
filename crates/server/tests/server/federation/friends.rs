//! Cross-domain friend requests (wire-compat §13), signed the reference way with the deployed
//! `commucat-crypto` `EventSigner` over `request_id|from|to|message|timestamp`: delivered to
//! every device of the named user as a GROUP_EVENT on channel 0, once; forged or misdirected
//! ones refused.

use commucat_ccp::FrameType;
use serde_json::{Value, json};

use super::{federating, peer, reference_keys};
use crate::common::{self, TestServer};

fn request(id: &str, from: &str, to: &str, message: Option<&str>) -> Value {
    let timestamp = "2026-01-02T03:04:05.123456789Z";
    let signed = format!("{id}|{from}|{to}|{}|{timestamp}", message.unwrap_or(""));
    let signature = commucat_crypto::EventSigner::new(&reference_keys()).sign(signed.as_bytes());
    json!({
        "type": "friend_request",
        "request_id": id,
        "from": from,
        "to": to,
        "message": message,
        "timestamp": timestamp,
        "signature": hex::encode(signature),
    })
}

async fn post(server: &TestServer, body: &Value) -> (u16, Value) {
    let response = server
        .http()
        .post(format!(
            "https://localhost:{}/federation/friend-request",
            server.addr.port()
        ))
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_friend_request_reaches_the_user_once() {
    let server = TestServer::start(|c| {
        federating("b.test")(c);
        c.federation.peers = vec![peer(
            "ref.test",
            "https://127.0.0.1:9",
            reference_keys().public,
            None,
        )];
    })
    .await;
    let mut bob = server.connect("bob").await;
    let body = request(
        "fr-1",
        "rita@ref.test",
        "bob@b.test",
        Some("hello from ref"),
    );
    let (status, answer) = post(&server, &body).await;
    assert_eq!((status, answer), (202, json!({"status": "accepted"})));
    let notice = common::json_of(&bob.recv_on(FrameType::GroupEvent, 0).await);
    assert_eq!(notice["type"], "friend_request");
    assert_eq!(notice["from"], "rita@ref.test");
    assert_eq!(notice["federated"], true);
    assert_eq!(notice["message"], "hello from ref");
    assert_eq!(notice["request_id"], "fr-1");

    let (status, answer) = post(&server, &body).await;
    assert_eq!((status, answer), (200, json!({"status": "duplicate"})));
    bob.expect_quiet(std::time::Duration::from_millis(300))
        .await;

    let mut forged = request("fr-2", "rita@ref.test", "bob@b.test", None);
    forged["message"] = "added later".into();
    for (body, status, title) in [
        (forged, 403, "InvalidSignature"),
        (
            request("fr-3", "rita@ref.test", "nobody@b.test", None),
            404,
            "UnknownUser",
        ),
        (
            request("fr-4", "rita@ref.test", "bob@c.test", None),
            400,
            "InvalidTarget",
        ),
        (
            request("fr-5", "rita@x.test", "bob@b.test", None),
            403,
            "UnknownPeer",
        ),
    ] {
        let (got, answer) = post(&server, &body).await;
        assert_eq!(
            (got, answer["title"].as_str()),
            (status, Some(title)),
            "{answer}"
        );
    }
    bob.expect_quiet(std::time::Duration::from_millis(300))
        .await;
}

/// `POST /api/friends/requests` on `server` as `bearer` (none: unauthenticated).
async fn send_request(server: &TestServer, bearer: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = server
        .http()
        .post(format!(
            "https://localhost:{}/api/friends/requests",
            server.addr.port()
        ))
        .json(body);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_local_user_sends_a_friend_request_to_a_peer_domain() {
    let d = super::Domains::start(
        common::StoreBackend::Sqlite,
        common::StoreBackend::Sqlite,
        |_| {},
        |_| {},
    )
    .await;
    let alice = d.a.connect("alice").await;
    let mut bob = d.b.connect("bob").await;
    let bearer = crate::rest::token(&alice);
    let (status, answer) = send_request(
        &d.a,
        Some(&bearer),
        &json!({"to": "bob@b.test", "message": "hello from a.test"}),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "accepted");
    assert_eq!(answer["from"], "alice@a.test");
    // Signed with a.test's key, checked by b.test, shown to bob as the deployed client expects.
    let notice = common::json_of(&bob.recv_on(FrameType::GroupEvent, 0).await);
    assert_eq!(notice["type"], "friend_request");
    assert_eq!(notice["from"], "alice@a.test");
    assert_eq!(notice["federated"], true);
    assert_eq!(notice["message"], "hello from a.test");
    assert_eq!(notice["request_id"], answer["request_id"]);

    for (to, status, detail) in [
        ("nobody@b.test", 502, "UnknownUser"),
        ("carol@x.test", 404, "x.test is not a peer"),
        ("bob@a.test", 400, "handle@domain of a peer domain"),
        ("bob", 400, "handle@domain of a peer domain"),
    ] {
        let (got, answer) = send_request(&d.a, Some(&bearer), &json!({"to": to})).await;
        assert_eq!(got, status, "{to}: {answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(detail),
            "{to}: {answer}"
        );
    }
    let (got, _) = send_request(&d.a, None, &json!({"to": "bob@b.test"})).await;
    assert_eq!(got, 401);
    bob.expect_quiet(std::time::Duration::from_millis(300))
        .await;
}
