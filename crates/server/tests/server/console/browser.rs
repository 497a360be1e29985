//! The operator flow in headless Chromium: a wrong token is refused, the right one logs in,
//! the live sessions page lists a connected SDK client, the devices page revokes it and the
//! SDK client is disconnected with `Device Revoked`; every page is rendered and photographed
//! (`COMMUCAT_CONSOLE_SCREENSHOTS=docs/console` keeps the PNGs for the documentation).

use commucat_ccp::FrameType;
use commucat_ccp::control::PresenceSnapshot;
use fantoccini::Locator;
use serde_json::json;

use super::driver::Browser;
use super::{ADMIN, console_server};
use crate::common::{Client, TestServer, WAIT, eventually, ledger_records};

/// The text of the element `css` once the page shows it.
async fn text_of(browser: &Browser, css: &str) -> String {
    browser
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Logs in through the form with `token`.
async fn log_in(browser: &Browser, base: &str, token: &str) {
    browser
        .client
        .goto(&format!("{base}/admin/login"))
        .await
        .unwrap();
    let field = browser
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("token"))
        .await
        .unwrap();
    field.send_keys(token).await.unwrap();
    browser
        .client
        .find(Locator::Id("login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits until `peer` has seen `id` go offline.
async fn seen_offline(peer: &mut Client, id: &str) {
    loop {
        let snapshot: PresenceSnapshot = peer
            .recv_on(FrameType::Presence, 0)
            .await
            .parse_control()
            .unwrap();
        if snapshot.entity == id && snapshot.state == "offline" {
            return;
        }
    }
}

/// Something on every page: bob connected with a pairing code and a group, carol offline with
/// a queued message, alice connected (the device the operator revokes).
async fn populate(server: &TestServer) -> (Client, Client, String) {
    let [mut bob, carol] = server.conversation(9, ["bob-b", "carol-b"]).await;
    carol.close();
    seen_offline(&mut bob, "carol-b").await;
    bob.say(9, "waiting for carol").await;
    let mut alice = server.connect("alice-b").await;
    alice.join(5, true).await;
    let seq = bob
        .control(
            FrameType::GroupCreate,
            20,
            &json!({"group_id": "ops-0001", "members": ["alice-b", "carol-b"], "name": "Operations"}),
        )
        .await;
    bob.ack(seq).await;
    let answer: serde_json::Value = server
        .http()
        .post(format!("https://localhost:{}/api/pair", server.addr.port()))
        .bearer_auth(&bob.session.info().session_id)
        .json(&json!({"ttl": 600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = answer["pair_code"].as_str().unwrap().to_owned();
    (alice, bob, code)
}

#[tokio::test]
#[cfg_attr(
    not(commucat_test_chromedriver),
    ignore = "needs COMMUCAT_TEST_CHROMEDRIVER"
)]
async fn an_operator_logs_in_and_revokes_a_connected_device_in_chromium() {
    let (server, ledger, _dir) = console_server(|_| {}).await;
    let (mut alice, _bob, code) = populate(&server).await;
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    let mut browser = Browser::start().await;

    // A wrong token is refused with a clear page.
    browser
        .client
        .goto(&format!("{base}/admin/login"))
        .await
        .unwrap();
    browser.screenshot("login").await;
    log_in(&browser, &base, "wrong-token").await;
    assert_eq!(text_of(&browser, "#error-status").await, "401 Unauthorized");
    assert_eq!(
        text_of(&browser, "#error-detail").await,
        "wrong admin token"
    );

    // The right one opens the live sessions page, listing the SDK clients.
    log_in(&browser, &base, ADMIN).await;
    let sessions = text_of(&browser, "#sessions").await;
    for device in ["alice-b", "bob-b"] {
        assert!(sessions.contains(device), "{sessions}");
    }
    assert!(!sessions.contains("carol-b"), "{sessions}");
    assert!(sessions.contains("binary"), "{sessions}");
    browser.screenshot("sessions").await;

    // Devices: revoke alice's; the SDK client is disconnected with `Device Revoked`.
    browser
        .client
        .goto(&format!("{base}/admin/devices"))
        .await
        .unwrap();
    let devices = text_of(&browser, "#devices").await;
    assert!(devices.contains("register"), "{devices}");
    browser.screenshot("devices").await;
    browser
        .client
        .find(Locator::Css("button[data-device=\"alice-b\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let result = text_of(&browser, "#result").await;
    assert_eq!(
        result,
        "Device alice-b revoked; its live session was ended."
    );
    crate::rest::expect_closed_as_revoked(&mut alice).await;
    ledger_records(&ledger, 1, |l| {
        l["scope"] == "device" && l["event"] == "revoke" && l["via"] == "console"
    })
    .await;
    browser
        .client
        .goto(&format!("{base}/admin/sessions"))
        .await
        .unwrap();
    assert!(!text_of(&browser, "#sessions").await.contains("alice-b"));

    // The other pages.
    for (page, table, expected) in [
        ("pairing", "#pairing", code.as_str()),
        ("groups", "#groups", "ops-0001"),
        ("queues", "#queues", "carol-b"),
    ] {
        browser
            .client
            .goto(&format!("{base}/admin/{page}"))
            .await
            .unwrap();
        let text = text_of(&browser, table).await;
        assert!(text.contains(expected), "{page}: {text}");
        browser.screenshot(page).await;
    }

    // Metrics: the script draws the charts from /admin/metrics.json.
    browser
        .client
        .goto(&format!("{base}/admin/metrics"))
        .await
        .unwrap();
    // Every chart, the per-second rates included, has a line of a few polls.
    let client = &browser.client;
    eventually("every chart drawn", WAIT, || async {
        for metric in ["commucat_online_devices", "commucat_frames_received_total"] {
            let css = format!(".chart[data-metric=\"{metric}\"] polyline");
            let line = client.find(Locator::Css(&css)).await.ok()?;
            let points = line.attr("points").await.ok()??;
            if points.split(' ').count() < 4 {
                return None;
            }
        }
        Some(())
    })
    .await;
    browser.screenshot("metrics").await;
    browser.close().await;
}

#[tokio::test]
#[cfg_attr(
    not(commucat_test_chromedriver),
    ignore = "needs COMMUCAT_TEST_CHROMEDRIVER"
)]
async fn the_federation_page_shows_peers_and_the_outbox_in_chromium() {
    let (server, _ledger, _dir) = super::federation::federating_console().await;
    let _alice = super::federation::queue_for_b(&server).await;
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    let mut browser = Browser::start().await;
    log_in(&browser, &base, ADMIN).await;
    text_of(&browser, "#session-count").await;
    // Reached from the navigation bar, as an operator would.
    browser
        .client
        .find(Locator::LinkText("Federation"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let state = text_of(&browser, "#federation-state").await;
    assert!(state.starts_with("Federation is on for a.test"), "{state}");
    let peers = text_of(&browser, "#peers").await;
    for expected in [
        "b.test",
        "https://127.0.0.1:9",
        "active",
        "p.test",
        "pending",
        "none pinned",
        "c.test",
        "blocked",
        "configuration or registry",
    ] {
        assert!(peers.contains(expected), "{expected}: {peers}");
    }
    // The worker's failures against port 9 show up on a reload.
    let client = &browser.client;
    let outbox = eventually("the delivery error in the outbox", WAIT, || async {
        client.refresh().await.ok()?;
        let row = client
            .find(Locator::Css("#outbox tbody tr"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (!row.contains('—')).then_some(row)
    })
    .await;
    assert!(outbox.contains("b.test"), "{outbox}");
    browser.screenshot("federation").await;
    browser.close().await;
}
