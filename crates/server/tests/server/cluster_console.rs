//! The operator console of a three-node deployment (see [`crate::cluster`]): the live sessions
//! page of any node lists the sessions of every node, each with its node id, from the
//! snapshots the nodes keep in Redis; a session that ends leaves the list, and so does a node
//! that shuts down. With Redis away the page lists this node's sessions and says the others
//! are unavailable.
//!
//! Ignored (with the reason) unless PostgreSQL and Redis are configured.

use std::time::Duration;

use commucat_server::config::SecretString;
use reqwest::StatusCode;

use crate::cluster::Deployment;
use crate::common::WAIT;
use crate::console::ADMIN;
use crate::console::http::Browserless;
use crate::services::ThrowawayRedis;

/// Reloads `/admin/sessions` until `done` holds for the page; returns it.
async fn sessions_page_until(
    b: &mut Browserless,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _, html) = b.get("/admin/sessions").await;
        assert_eq!(status, StatusCode::OK);
        if done(&html) {
            return html;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}: {html}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The node cell of `device`'s row in the sessions table of `html`, if it is listed.
fn node_of(html: &str, device: &str) -> Option<String> {
    let table = html.split("<table id=\"sessions\">").nth(1)?;
    let row = table
        .split("<tr>")
        .find(|r| r.contains(&format!("<td><code>{device}</code></td>")))?;
    row.split("<td>")
        .nth(4)
        .and_then(|cell| cell.split("</td>").next())
        .map(str::to_owned)
}

/// The console on, no REST budget (the tests reload the page until it shows a change).
fn console_on(c: &mut commucat_server::Config) {
    c.metrics.admin_token = Some(SecretString(ADMIN.to_owned()));
    c.rate_limits.rest_per_minute = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn the_console_of_any_node_lists_every_node_s_sessions() {
    let mut cluster = Deployment::start_with(console_on).await;
    let alice = cluster.node(1).connect("alice-o").await;
    let bob = cluster.node(2).connect("bob-o").await;
    let carol = cluster.node(3).connect("carol-o").await;

    let mut on_one = Browserless::new(cluster.node(1));
    on_one.login(ADMIN).await;
    let html = sessions_page_until(&mut on_one, "three nodes' sessions on n1", |html| {
        node_of(html, "bob-o").is_some() && node_of(html, "carol-o").is_some()
    })
    .await;
    assert_eq!(node_of(&html, "alice-o").as_deref(), Some("n1"));
    assert_eq!(node_of(&html, "bob-o").as_deref(), Some("n2"));
    assert_eq!(node_of(&html, "carol-o").as_deref(), Some("n3"));
    assert!(html.contains("3 online on 3 nodes."), "{html}");
    for node in ["n1", "n2", "n3"] {
        assert!(
            html.contains(&format!("<li data-node=\"{node}\">")),
            "{html}"
        );
    }

    // The same from node 3.
    let mut on_three = Browserless::new(cluster.node(3));
    on_three.login(ADMIN).await;
    let html = sessions_page_until(&mut on_three, "n1's session on n3", |html| {
        node_of(html, "alice-o").is_some() && node_of(html, "bob-o").is_some()
    })
    .await;
    assert_eq!(node_of(&html, "alice-o").as_deref(), Some("n1"));
    assert_eq!(node_of(&html, "carol-o").as_deref(), Some("n3"));

    // A session that ends on node 3 leaves node 1's list.
    carol.close();
    sessions_page_until(&mut on_one, "carol's session gone from n1", |html| {
        node_of(html, "carol-o").is_none()
    })
    .await;

    // A node that shuts down leaves it with its sessions.
    drop(bob);
    cluster.nodes[1].stop().await;
    let html = sessions_page_until(&mut on_one, "n2 gone from n1's list", |html| {
        !html.contains("data-node=\"n2\"")
    })
    .await;
    assert_eq!(node_of(&html, "bob-o"), None);
    assert_eq!(node_of(&html, "alice-o").as_deref(), Some("n1"));
    drop(alice);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn with_redis_away_the_page_lists_this_node_and_says_the_others_are_unavailable() {
    let mut redis = tokio::task::spawn_blocking(ThrowawayRedis::start)
        .await
        .unwrap();
    let cluster = Deployment::start_on(redis.url(), console_on).await;
    let _alice = cluster.node(1).connect("alice-u").await;
    let _bob = cluster.node(2).connect("bob-u").await;
    let mut on_one = Browserless::new(cluster.node(1));
    on_one.login(ADMIN).await;
    sessions_page_until(&mut on_one, "n2's session on n1", |html| {
        node_of(html, "bob-u").is_some()
    })
    .await;

    tokio::task::block_in_place(|| redis.kill());
    let html = sessions_page_until(&mut on_one, "the unavailable note", |html| {
        html.contains("id=\"other-nodes-error\"")
    })
    .await;
    assert_eq!(node_of(&html, "alice-u").as_deref(), Some("n1"));
    assert_eq!(node_of(&html, "bob-u"), None);
    assert!(html.contains("1 online on 1 node."), "{html}");

    // Redis back (empty): node 2's next periodic snapshot lists bob again.
    tokio::task::block_in_place(|| redis.resume());
    let html = sessions_page_until(&mut on_one, "n2's session back on n1", |html| {
        node_of(html, "bob-u").is_some()
    })
    .await;
    assert_eq!(node_of(&html, "bob-u").as_deref(), Some("n2"));
    cluster.finish().await;
}
