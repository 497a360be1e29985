//! The federation page over plain HTTPS: the configured peers with their endpoint, pinned key
//! and status, and the outbox of a peer that never answers (depth, last error, next retry).

use std::path::PathBuf;

use commucat_server::config::PeerStatus;
use reqwest::StatusCode;
use serde_json::json;

use super::http::Browserless;
use super::{ADMIN, console_server};
use crate::common::{Client, TestServer, WAIT};
use crate::federation::{federating, peer};

/// The pinned key of the test peers.
pub(super) fn peer_key() -> [u8; 32] {
    commucat_keys::DeviceKeyPair::from_seed(&[4; 32]).public_key()
}

/// `a.test` with the console on and three peers: `b.test` active but never answering
/// (nothing listens on port 9), `p.test` pending without a pinned key, `c.test` blocked.
pub(super) async fn federating_console() -> (TestServer, PathBuf, tempfile::TempDir) {
    console_server(|c| {
        federating("a.test")(c);
        // The tests reload the page until the worker's error shows; no REST budget.
        c.rate_limits.rest_per_minute = 0;
        let key = peer_key();
        let mut pending = peer("p.test", "https://p.test:8443", key, None);
        pending.status = PeerStatus::Pending;
        pending.public_key = None;
        let mut blocked = peer("c.test", "https://127.0.0.1:9", key, None);
        blocked.status = PeerStatus::Blocked;
        c.federation.peers = vec![
            peer("b.test", "https://127.0.0.1:9", key, None),
            pending,
            blocked,
        ];
    })
    .await
}

/// Queues one event for `bob@b.test`: `alice` (returned, still connected) talks to him.
pub(super) async fn queue_for_b(server: &TestServer) -> Client {
    let mut alice = server.connect("alice-f").await;
    alice
        .join_with(
            3,
            &json!({"members": ["alice-f", "bob@b.test"], "relay": true}),
        )
        .await;
    alice.say(3, "hello from a.test").await;
    alice
}

/// The cells (text between `<td>` and `</td>`) of the row of table `id` whose first cell
/// contains `first`.
pub(super) fn row_of(html: &str, id: &str, first: &str) -> Vec<String> {
    let table = html
        .split(&format!("<table id=\"{id}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no table {id}: {html}"));
    let table = table.split("</table>").next().unwrap();
    let row = table
        .split("<tr>")
        .find(|r| {
            r.split("<td>")
                .nth(1)
                .is_some_and(|cell| cell.contains(first))
        })
        .unwrap_or_else(|| panic!("no row {first} in {id}: {table}"));
    row.split("<td>")
        .skip(1)
        .map(|cell| cell.split("</td>").next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_federation_page_lists_peers_and_the_outbox_of_an_unreachable_peer() {
    let (server, _ledger, _dir) = federating_console().await;
    let _alice = queue_for_b(&server).await;
    let mut b = Browserless::new(&server);
    b.login(ADMIN).await;

    let (status, _, html) = b.get("/admin/federation").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Federation is <strong>on</strong> for <code>a.test</code>"));
    let own = hex::encode(crate::federation::federation_key(&server).await);
    assert!(html.contains(&own[..8]), "{html}");

    let key = hex::encode(peer_key());
    let active = row_of(&html, "peers", "b.test");
    assert_eq!(active[1], "<code>https://127.0.0.1:9</code>");
    assert!(
        active[2].starts_with(&format!("<code>{} ", &key[..8])),
        "{active:?}"
    );
    assert!(active[3].contains(">active<"), "{active:?}");
    assert_eq!(active[4], "configuration or registry");
    let pending = row_of(&html, "peers", "p.test");
    assert_eq!(pending[2], "none pinned");
    assert!(pending[3].contains(">pending<"), "{pending:?}");
    let blocked = row_of(&html, "peers", "c.test");
    assert!(blocked[3].contains(">blocked<"), "{blocked:?}");
    assert_eq!(blocked[5], "0");

    // The delivery worker fails against port 9: the outbox shows the event, the error and
    // when this node tries again.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (html, outbox) = loop {
        let (_, _, html) = b.get("/admin/federation").await;
        let row = row_of(&html, "outbox", "b.test");
        if row[3] != "—" && row[4] != "—" {
            break (html, row);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery error on the page within {WAIT:?}: {row:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(outbox[1], "1");
    assert!(!outbox[2].is_empty(), "{outbox:?}");
    assert!(
        outbox[3].contains("<br>20"),
        "an error and its time: {outbox:?}"
    );
    assert!(outbox[4].starts_with("20"), "a next retry time: {outbox:?}");
    assert_eq!(row_of(&html, "peers", "b.test")[5], "1");
}

#[tokio::test]
async fn without_peers_the_federation_page_says_so() {
    let (server, _ledger, _dir) = console_server(|_| {}).await;
    let mut b = Browserless::new(&server);
    b.login(ADMIN).await;
    let (status, _, html) = b.get("/admin/federation").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Federation is <strong>off</strong>"),
        "{html}"
    );
    assert!(html.contains("id=\"peers-empty\""), "{html}");
    assert!(html.contains("id=\"outbox-empty\""), "{html}");
}
