//! Profile field lengths: a display name or avatar URL over `bounds.display_name_bytes` /
//! `bounds.avatar_url_bytes` is refused where it is set (a new account's HELLO: ERROR "Profile
//! Field Too Long"; a friend entry over REST: 413 problem+json), an over-long hint for an
//! existing account is not stored, and an account that already holds an over-long value still
//! connects: message 2 stays under the Noise message limit.

use crate::common::{Client, TestServer};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session, transport};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The ERROR title of a handshake the server refused.
async fn refused_title(server: &TestServer, identity: &DeviceIdentity) -> String {
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect")
        .await
        .unwrap();
    match Session::handshake(
        stream,
        identity,
        &server.params,
        &HandshakeOptions::default(),
    )
    .await
    {
        Ok(_) => panic!("{}: handshake accepted", identity.device_id),
        Err(e) => e.title().unwrap_or_default().to_owned(),
    }
}

fn with_profile(
    identity: &DeviceIdentity,
    display_name: Option<&str>,
    avatar_url: Option<&str>,
) -> DeviceIdentity {
    let mut identity = identity.clone();
    let mut user = identity.user.take().unwrap_or_default();
    user.display_name = display_name.map(str::to_owned);
    user.avatar_url = avatar_url.map(str::to_owned);
    identity.user = Some(user);
    identity
}

/// A counter's value; a labelled counter is absent until it first counts, so absent is 0.
async fn metric(server: &TestServer, prefix: &str) -> u64 {
    server.metric(prefix).await.unwrap_or(0)
}

/// Connects, then checks the session works by joining a channel.
async fn connects(server: &TestServer, identity: DeviceIdentity) -> Client {
    let mut client = server.connect_as(identity).await;
    client.join(9, true).await;
    client
}

#[tokio::test]
async fn an_account_holding_a_70_kb_display_name_still_connects() {
    // A larger bound stands for a value stored before the bound existed.
    let server = TestServer::start(|c| {
        c.bounds.display_name_bytes = 100_000;
        c.bounds.avatar_url_bytes = 100_000;
    })
    .await;
    let identity = DeviceIdentity::generate("long-1").with_handle("long_1");
    connects(&server, identity.clone()).await.close();
    let name = "N".repeat(70_000);
    let avatar = format!("https://img.test/{}", "a".repeat(20_000));
    connects(&server, with_profile(&identity, Some(&name), Some(&avatar)))
        .await
        .close();

    // Message 2 would carry 90 KB of profile: the server sends a bounded profile instead.
    let client = connects(&server, identity.clone()).await;
    let user = client.session.info().user.clone().unwrap();
    let shown = user.display_name.unwrap();
    assert!(
        !shown.is_empty() && shown.len() < 16 * 1024,
        "{}",
        shown.len()
    );
    assert!(name.starts_with(&shown));
    assert_eq!(user.avatar_url, None);
    client.close();
    // Control characters escape to six bytes each in JSON; still under the limit.
    let escaped = "\u{1}".repeat(30_000);
    connects(&server, with_profile(&identity, Some(&escaped), None))
        .await
        .close();
    connects(&server, identity).await.close();
}

#[tokio::test]
async fn over_long_profile_fields_are_refused_where_they_are_set() {
    let server = TestServer::start(|_| {}).await;
    let long_name = "N".repeat(257);
    let long_avatar = format!("https://img.test/{}", "a".repeat(2048));

    // A new account with an over-long field is refused; nothing is registered.
    let fresh = DeviceIdentity::generate("fresh-1").with_handle("fresh_1");
    assert_eq!(
        refused_title(&server, &with_profile(&fresh, Some(&long_name), None)).await,
        "Profile Field Too Long"
    );
    assert_eq!(
        refused_title(&server, &with_profile(&fresh, None, Some(&long_avatar))).await,
        "Profile Field Too Long"
    );
    // At the bound it is accepted.
    let exact = "é".repeat(128);
    let client = connects(&server, with_profile(&fresh, Some(&exact), None)).await;
    assert_eq!(
        client.session.info().user.clone().unwrap().display_name,
        Some(exact.clone())
    );
    client.close();

    // An existing account's over-long hint is not stored, and does not lock the device out.
    let client = connects(&server, with_profile(&fresh, Some(&long_name), None)).await;
    client.close();
    let client = connects(&server, fresh.clone()).await;
    assert_eq!(
        client.session.info().user.clone().unwrap().display_name,
        Some(exact)
    );
    assert_eq!(
        metric(
            &server,
            "commucat_bound_refusals_total{bound=\"display_name_bytes\"} "
        )
        .await,
        2
    );
    assert_eq!(
        metric(
            &server,
            "commucat_bound_refusals_total{bound=\"avatar_url_bytes\"} "
        )
        .await,
        1
    );

    // Over REST: a friend entry's alias or handle.
    let url = format!("https://localhost:{}/api/friends", server.addr.port());
    let bearer = client.session.info().session_id.clone();
    for entry in [
        json!({"user_id": "u-1", "handle": null, "alias": long_name}),
        json!({"user_id": "u-1", "handle": "h".repeat(257), "alias": null}),
    ] {
        let answer = server
            .http()
            .put(&url)
            .bearer_auth(&bearer)
            .json(&json!({"friends": [entry]}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(answer.headers()["content-type"], "application/problem+json");
        let problem: Value = answer.json().await.unwrap();
        assert_eq!(problem["title"], "Profile Field Too Long", "{problem}");
        assert_eq!(problem["status"], 413);
    }
    let ok = server
        .http()
        .put(&url)
        .bearer_auth(&bearer)
        .json(&json!({"friends": [{"user_id": "u-1", "handle": "h", "alias": "N".repeat(256)}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}
