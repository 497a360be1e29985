//! `GET /admin/federation`: whether federation is on, this domain's federation key, the peers
//! (domain, endpoint, pinned key, status, where the entry comes from) and the outbox per peer
//! (depth, oldest event, last delivery error, this node's next retry) — what
//! `commucat federation peers|outbox` print, read from the running server and the store.
//! Read-only: a peer's status is configuration (`[[federation.peers]]`), changed by editing
//! it and restarting.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::Response;
use commucat_store::OutboxStats;

use super::ConsoleState;
use super::auth::Operator;
use super::html::{ConsoleError, esc, page, table, time};
use crate::api::auth::store_problem;
use crate::clock::unix_now;

fn code(text: &str) -> String {
    format!("<code>{}</code>", esc(text))
}

/// The pinned key as hex in groups of eight digits (for reading aloud against the peer's
/// `commucat federation key`).
fn fingerprint(key: &[u8; 32]) -> String {
    let hex = hex::encode(key);
    let groups: Vec<&str> = (0..hex.len())
        .step_by(8)
        .filter_map(|i| hex.get(i..i + 8))
        .collect();
    code(&groups.join(" "))
}

/// One outbox row: peer, depth, oldest, last error (with its time), next retry.
fn outbox_row(stats: &OutboxStats, next_attempt: Option<i64>, configured: bool) -> Vec<String> {
    let peer = if configured {
        code(&stats.peer)
    } else {
        format!("{} (no longer a peer)", code(&stats.peer))
    };
    vec![
        peer,
        stats.depth.to_string(),
        stats.oldest_enqueued_at.map(time).unwrap_or_default(),
        match (&stats.last_error, stats.last_attempt_at) {
            (Some(error), Some(at)) => format!("{}<br>{}", esc(error), time(at)),
            (Some(error), None) => esc(error),
            _ => "—".to_owned(),
        },
        next_attempt.map_or_else(|| "—".to_owned(), time),
    ]
}

/// `GET /admin/federation`.
///
/// # Errors
/// 503/500 when the store cannot report the outbox.
pub(crate) async fn page_handler(
    State(state): State<ConsoleState>,
    op: Operator,
) -> Result<Response, ConsoleError> {
    let node = state.node();
    let messaging = state.app.sessions.messaging();
    let Some(federation) = messaging.federation.clone() else {
        let body = "<p id=\"federation-state\">This server runs without federation state \
                    (an embedded server).</p>";
        return Ok(page(
            "Federation",
            "/admin/federation",
            Some(&op.csrf),
            &node,
            body,
        ));
    };
    let stats = state
        .app
        .store()
        .outbox_stats(unix_now())
        .await
        .map_err(|e| ConsoleError::from(store_problem(&e)))?;
    let by_peer: HashMap<&str, &OutboxStats> = stats.iter().map(|s| (s.peer.as_str(), s)).collect();

    let peers: Vec<Vec<String>> = federation
        .peers()
        .map(|peer| {
            let c = &peer.config;
            let status = c.status.name();
            vec![
                code(&c.domain),
                code(&c.endpoint),
                c.public_key
                    .as_ref()
                    .map_or_else(|| "none pinned".to_owned(), fingerprint),
                format!("<span class=\"peer-{status}\">{status}</span>"),
                "configuration or registry".to_owned(),
                by_peer
                    .get(c.domain.as_str())
                    .map_or(0, |s| s.depth)
                    .to_string(),
            ]
        })
        .collect();
    let outbox: Vec<Vec<String>> = stats
        .iter()
        .map(|s| {
            outbox_row(
                s,
                federation.next_attempt(&s.peer),
                federation.peer(&s.peer).is_some(),
            )
        })
        .collect();

    let body = format!(
        "<p id=\"federation-state\">Federation is <strong>{}</strong> for <code>{}</code> \
         (<code>federation.enabled</code>). This domain's federation key, which peers pin: {}</p>\
         <h2>Peers</h2>{}\
         <p class=\"note\">Peers come from <code>[[federation.peers]]</code>; a status is changed \
         by editing the configuration and restarting. Active peers are contacted, pending ones \
         get their events queued and held, blocked ones are refused.</p>\
         <h2>Outbox</h2>{}\
         <p class=\"note\">Unexpired events waiting per peer. The last error is the most recent \
         failed delivery among them; the next retry is this node's delivery worker's.</p>",
        if federation.enabled() { "on" } else { "off" },
        esc(federation.domain()),
        fingerprint(&federation.key().public_key()),
        table(
            "peers",
            &[
                "Domain",
                "Endpoint",
                "Pinned key",
                "Status",
                "Source",
                "Outbox"
            ],
            &peers,
            "No peer is configured.",
        ),
        table(
            "outbox",
            &[
                "Peer",
                "Events waiting",
                "Oldest",
                "Last error",
                "Next retry"
            ],
            &outbox,
            "No event is waiting for any peer.",
        ),
    );
    Ok(page(
        "Federation",
        "/admin/federation",
        Some(&op.csrf),
        &node,
        &body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shown_in_groups_of_eight_digits() {
        let mut key = [0_u8; 32];
        key[0] = 0xab;
        key[31] = 0x01;
        let shown = fingerprint(&key);
        assert!(shown.starts_with("<code>ab000000 00000000 "), "{shown}");
        assert!(shown.ends_with(" 00000001</code>"), "{shown}");
        assert_eq!(shown.matches(' ').count(), 7);
    }

    #[test]
    fn outbox_rows_escape_the_peer_s_error_text() {
        let stats = OutboxStats {
            peer: "b.test".into(),
            depth: 3,
            oldest_enqueued_at: Some(0),
            last_error: Some("503 <b>busy</b>".into()),
            last_attempt_at: Some(60),
        };
        let row = outbox_row(&stats, None, false);
        assert!(row[0].contains("no longer a peer"));
        assert_eq!(row[1], "3");
        assert!(
            row[3].starts_with("503 &lt;b&gt;busy&lt;/b&gt;<br>"),
            "{}",
            row[3]
        );
        assert_eq!(row[4], "—");
    }
}
