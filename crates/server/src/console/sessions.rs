//! `GET /admin/sessions`: the live sessions of every node. This node's come from its hub (exact
//! at the moment of the request); in a cluster, the other nodes' come from the snapshots they
//! keep in Redis (`cluster::sessions`: rewritten within a second of a session starting or
//! ending, frame counts at most 10 s old, gone 30 s after a node stops writing), with the
//! time each was taken. If Redis does not answer, the page says so and lists this node's.

use axum::extract::State;
use axum::response::Response;

use super::ConsoleState;
use super::auth::Operator;
use super::html::{esc, page, table, time};
use super::pages::code;
use crate::cluster::sessions::{MAX_LISTED, NodeSession, Snapshot};

/// The cells of one session row.
fn row(s: &NodeSession, node: &str) -> Vec<String> {
    vec![
        code(&s.device),
        format!("{}<br>{}", esc(&s.handle), code(&s.user)),
        esc(&s.mode),
        esc(node),
        time(s.since),
        s.remote.as_deref().map(code).unwrap_or_default(),
        s.frames_in.to_string(),
        s.frames_out.to_string(),
        s.mailbox.to_string(),
    ]
}

/// One line per node: how many sessions it has, and how old its figures are.
fn node_line(snapshot: &Snapshot, local: bool) -> String {
    let cut = if snapshot.total > snapshot.sessions.len() {
        format!(" (the first {} are listed)", snapshot.sessions.len())
    } else {
        String::new()
    };
    let when = if local {
        "this node, now".to_owned()
    } else {
        format!("as of {}", time(snapshot.at))
    };
    format!(
        "<li data-node=\"{node}\"><code>{node}</code>: {} online{cut} — {when}</li>",
        snapshot.total,
        node = esc(&snapshot.node),
    )
}

/// `GET /admin/sessions`.
pub(crate) async fn sessions(State(state): State<ConsoleState>, op: Operator) -> Response {
    let node = state.node();
    let live = state.app.sessions.hub().live_sessions();
    let mut snapshots = vec![Snapshot::of(&node, crate::clock::unix_now(), &live)];
    let mut note = String::new();
    if let Some(cluster) = state.app.sessions.messaging().cluster.clone() {
        match cluster.other_nodes_sessions().await {
            Ok(others) => snapshots.extend(others),
            Err(e) => {
                tracing::warn!(error = %e, "console: other nodes' sessions unavailable");
                note = format!(
                    "<p class=\"note\" id=\"other-nodes-error\">Other nodes' sessions are \
                     unavailable: {}</p>",
                    esc(&e.to_string())
                );
            }
        }
    }
    let total: usize = snapshots.iter().map(|s| s.total).sum();
    let mut rows = Vec::new();
    let mut lines = String::from("<ul id=\"nodes\">");
    for (i, snapshot) in snapshots.iter().enumerate() {
        lines.push_str(&node_line(snapshot, i == 0));
        rows.extend(snapshot.sessions.iter().map(|s| row(s, &snapshot.node)));
    }
    lines.push_str("</ul>");
    let body = format!(
        "<p id=\"session-count\">{total} online on {} node{}.</p>{lines}{note}{}\
         <p class=\"note\">Each node lists at most {MAX_LISTED} of its sessions.</p>",
        snapshots.len(),
        if snapshots.len() == 1 { "" } else { "s" },
        table(
            "sessions",
            &[
                "Device",
                "User",
                "Connect mode",
                "Node",
                "Since",
                "Address",
                "Frames in",
                "Frames out",
                "Mailbox",
            ],
            &rows,
            "No device is connected.",
        )
    );
    page(
        "Live sessions",
        "/admin/sessions",
        Some(&op.csrf),
        &node,
        &body,
    )
}
