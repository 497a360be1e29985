//! The metrics page: the current value of every metric family (summed over its labels) as a
//! plain table, and live charts drawn by the embedded `charts.js` from `/admin/metrics.json`
//! (polled every few seconds). Values are read from the same Prometheus exposition `/metrics`
//! serves, so the console shows exactly what a scraper sees.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::ConsoleState;
use super::auth::Operator;
use super::html::{esc, page, secure, table};

/// The chart script, served at `/admin/charts.js`.
const CHARTS_JS: &str = include_str!("charts.js");

/// The charts of the page: (metric family, title, whether it is a counter shown as a rate).
pub(crate) const CHARTS: &[(&str, &str, bool)] = &[
    ("commucat_online_devices", "Online devices", false),
    ("commucat_connections_open", "Open connections", false),
    (
        "commucat_mailbox_frames",
        "Frames waiting in mailboxes",
        false,
    ),
    (
        "commucat_frames_received_total",
        "Frames received per second",
        true,
    ),
    ("commucat_frames_sent_total", "Frames sent per second", true),
    ("commucat_handshakes_total", "Handshakes per second", true),
];

/// Every metric family of `exposition` with the sum of its samples. Histogram buckets are
/// left out (their `_count` and `_sum` stay).
#[must_use]
pub(crate) fn families(exposition: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in exposition.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if name.ends_with("_bucket") {
            continue;
        }
        let Some(value) = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        else {
            continue;
        };
        *out.entry(name.to_owned()).or_insert(0.0) += value;
    }
    out
}

fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.6}")
    }
}

/// `GET /admin/metrics`: charts (with JavaScript) and the table of every family (without).
pub(crate) async fn page_handler(State(state): State<ConsoleState>, op: Operator) -> Response {
    let values = families(
        &crate::api::metrics::exposition(&state.app, crate::metrics::Format::Prometheus)
            .await
            .unwrap_or_default(),
    );
    let mut charts = String::from("<div class=\"charts\" id=\"charts\">");
    for (metric, title, rate) in CHARTS {
        let now = values.get(*metric).copied().unwrap_or(0.0);
        let shown = if *rate {
            "–".to_owned()
        } else {
            format_value(now)
        };
        let _ = write!(
            charts,
            "<div class=\"chart\" data-metric=\"{metric}\" data-rate=\"{rate}\"><h3>{}</h3>\
             <div class=\"value\">{shown}</div><svg viewBox=\"0 0 300 90\" \
             preserveAspectRatio=\"none\"><polyline points=\"\"></polyline></svg></div>",
            esc(title)
        );
    }
    charts.push_str(
        "</div><p class=\"note\">Charts need JavaScript (updated every 2 s from \
                     <code>/admin/metrics.json</code>); the table below is the state when the \
                     page was loaded.</p>",
    );
    let rows: Vec<Vec<String>> = values
        .iter()
        .map(|(name, value)| vec![format!("<code>{}</code>", esc(name)), format_value(*value)])
        .collect();
    let body = format!(
        "{charts}<h2>Every metric (summed over labels)</h2>{}\
         <script src=\"/admin/charts.js\"></script>",
        table("metrics", &["Metric", "Value"], &rows, "No metric.")
    );
    page(
        "Metrics",
        "/admin/metrics",
        Some(&op.csrf),
        &state.node(),
        &body,
    )
}

/// `GET /admin/metrics.json`: `{"at": unix ms, "values": {family: sum}}`.
pub(crate) async fn json(State(state): State<ConsoleState>, _op: Operator) -> Response {
    let values = families(
        &crate::api::metrics::exposition(&state.app, crate::metrics::Format::Prometheus)
            .await
            .unwrap_or_default(),
    );
    let at = crate::clock::unix_micros_now() / 1000;
    let mut response = Json(serde_json::json!({"at": at, "values": values})).into_response();
    secure(response.headers_mut());
    response
}

/// `GET /admin/charts.js` (public: it holds no data).
pub(crate) async fn script() -> Response {
    let mut response = CHARTS_JS.into_response();
    let headers = response.headers_mut();
    secure(headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    response
}

/// `GET /admin/console.css` (public: it holds no data).
pub(crate) async fn stylesheet() -> Response {
    let mut response = super::html::STYLESHEET.into_response();
    let headers = response.headers_mut();
    secure(headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_sum_labels_and_skip_buckets() {
        let text = "# HELP x y\n# TYPE commucat_frames_sent_total counter\n\
                    commucat_frames_sent_total{type=\"MSG\"} 3\n\
                    commucat_frames_sent_total{type=\"ACK\"} 4\n\
                    commucat_online_devices 2\n\
                    commucat_relay_latency_seconds_bucket{le=\"0.1\"} 9\n\
                    commucat_relay_latency_seconds_count 9\n";
        let f = families(text);
        assert_eq!(f["commucat_frames_sent_total"], 7.0);
        assert_eq!(f["commucat_online_devices"], 2.0);
        assert_eq!(f["commucat_relay_latency_seconds_count"], 9.0);
        assert!(!f.contains_key("commucat_relay_latency_seconds_bucket"));
    }
}
