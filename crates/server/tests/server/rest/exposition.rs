//! `/metrics` checked line by line against the text formats it claims: Prometheus text 0.0.4
//! by default and OpenMetrics 1.0 when the scraper asks for it, with every family the server
//! has always exported (federation's included).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::*;

/// Every family `/metrics` exports (Prometheus names: counters with `_total`). Dashboards and
/// alert rules (docs/monitoring/) may only reference these.
pub(crate) const FAMILIES: &[(&str, &str)] = &[
    ("commucat_handshakes_total", "counter"),
    ("commucat_sessions_opened_total", "counter"),
    ("commucat_sessions_active", "gauge"),
    ("commucat_frames_delivered_total", "counter"),
    ("commucat_connections_accepted_total", "counter"),
    ("commucat_connections_open", "gauge"),
    ("commucat_frames_received_total", "counter"),
    ("commucat_frames_sent_total", "counter"),
    ("commucat_mailbox_frames", "gauge"),
    ("commucat_online_devices", "gauge"),
    ("commucat_channels", "gauge"),
    ("commucat_rate_limited_total", "counter"),
    ("commucat_handshake_replays_refused_total", "counter"),
    ("commucat_ik_replay_evictions_total", "counter"),
    ("commucat_ledger_records_written_total", "counter"),
    ("commucat_ledger_records_dropped_total", "counter"),
    ("commucat_p2p_assists_total", "counter"),
    ("commucat_security_noise_handshakes_total", "counter"),
    ("commucat_security_pq_handshakes_total", "counter"),
    ("commucat_security_censorship_deflections_total", "counter"),
    ("commucat_security_fec_packets_total", "counter"),
    ("commucat_obf_sessions_total", "counter"),
    ("commucat_obf_integrity_failures_total", "counter"),
    ("commucat_bound_refusals_total", "counter"),
    ("commucat_requeue_lost_total", "counter"),
    ("commucat_sender_mismatches_total", "counter"),
    ("commucat_calls_unanswered_total", "counter"),
    ("commucat_handshake_duration_seconds", "histogram"),
    ("commucat_relay_latency_seconds", "histogram"),
];

/// Federation's families, registered with the others (both formats). The outbox depth has a
/// sample per peer with queued events, so it is absent while nothing is queued.
pub(crate) const FEDERATION_FAMILIES: &[(&str, &str)] = &[
    ("commucat_federation_events_sent_total", "counter"),
    ("commucat_federation_events_received_total", "counter"),
    ("commucat_federation_events_refused_total", "counter"),
    ("commucat_federation_events_duplicate_total", "counter"),
    ("commucat_federation_events_dropped_total", "counter"),
    ("commucat_federation_delivery_retries_total", "counter"),
    ("commucat_federation_delivery_latency_seconds", "histogram"),
];

/// The outbox depth per peer: exported only while events are queued.
pub(crate) const FEDERATION_OUTBOX_DEPTH: (&str, &str) =
    ("commucat_federation_outbox_depth", "gauge");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Prometheus,
    OpenMetrics,
}

/// One family as parsed: its type and its samples (`series name`, labels, value).
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: bool,
    unit: Option<String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `{a="x",b="y"}` (escapes `\\`, `\"`, `\n`), returning the labels and the rest.
fn labels(text: &str, line: &str) -> (BTreeMap<String, String>, String) {
    let mut map = BTreeMap::new();
    let Some(mut rest) = text.strip_prefix('{') else {
        return (map, text.to_owned());
    };
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (map, after.to_owned());
        }
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\" in {line:?}"));
        assert!(valid_name(name), "label name {name:?} in {line:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(
            map.insert(name.to_owned(), value).is_none(),
            "label {name} twice in {line:?}"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn value(text: &str, line: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => text
            .parse()
            .unwrap_or_else(|_| panic!("value {text:?} in {line:?}")),
    }
}

/// Checks `text` strictly against `flavour` and returns its families by (declared) name.
fn parse(text: &str, flavour: Flavour) -> BTreeMap<String, Family> {
    assert!(text.ends_with('\n'), "no final newline");
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut seen_series = HashSet::new();
    let mut eof = false;
    for line in text.lines() {
        assert!(!eof, "line after # EOF: {line:?}");
        assert!(!line.is_empty(), "blank line");
        if let Some(comment) = line.strip_prefix("# ") {
            if comment == "EOF" {
                assert_eq!(flavour, Flavour::OpenMetrics, "# EOF in Prometheus text");
                eof = true;
                continue;
            }
            let (keyword, rest) = comment.split_once(' ').unwrap();
            let (name, arg) = rest.split_once(' ').unwrap();
            assert!(valid_name(name), "family name {name:?}");
            if order.last().map(String::as_str) != Some(name) {
                assert!(!families.contains_key(name), "family {name} split up");
                order.push(name.to_owned());
            }
            let family = families.entry(name.to_owned()).or_default();
            assert!(family.samples.is_empty(), "{keyword} after samples: {line}");
            match keyword {
                "HELP" => {
                    assert!(!family.help, "second HELP: {line}");
                    assert!(!arg.is_empty(), "empty HELP: {line}");
                    family.help = true;
                }
                "TYPE" => {
                    assert!(family.kind.is_empty(), "second TYPE: {line}");
                    let allowed: &[&str] = match flavour {
                        Flavour::Prometheus => {
                            &["counter", "gauge", "histogram", "summary", "untyped"]
                        }
                        Flavour::OpenMetrics => &[
                            "counter",
                            "gauge",
                            "histogram",
                            "summary",
                            "unknown",
                            "info",
                            "stateset",
                            "gaugehistogram",
                        ],
                    };
                    assert!(allowed.contains(&arg), "type {arg}: {line}");
                    arg.clone_into(&mut family.kind);
                }
                "UNIT" => {
                    assert_eq!(flavour, Flavour::OpenMetrics, "UNIT in Prometheus text");
                    assert!(
                        name.ends_with(&format!("_{arg}")),
                        "unit {arg} not a suffix of {name}"
                    );
                    family.unit = Some(arg.to_owned());
                }
                other => panic!("unknown comment {other}: {line}"),
            }
            continue;
        }
        assert!(!line.starts_with('#'), "comment without a space: {line}");
        let split = line.find(['{', ' ']).unwrap();
        let (series, rest) = line.split_at(split);
        assert!(valid_name(series), "series name {series:?}");
        let (labels, rest) = labels(rest, line);
        let raw = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value: {line}"));
        assert!(
            !raw.contains(' '),
            "timestamp or junk after the value: {line}"
        );
        let value = value(raw, line);
        let family_name = order
            .last()
            .unwrap_or_else(|| panic!("sample before any metadata: {line}"));
        let family = families.get_mut(family_name).unwrap();
        assert!(
            family.help && !family.kind.is_empty(),
            "{family_name}: HELP and TYPE first"
        );
        let allowed_suffixes: &[&str] = match (flavour, family.kind.as_str()) {
            (_, "histogram") => &["_bucket", "_sum", "_count"],
            (Flavour::OpenMetrics, "counter") => &["_total", "_created"],
            _ => &[""],
        };
        assert!(
            allowed_suffixes
                .iter()
                .any(|s| series.strip_suffix(s) == Some(family_name.as_str())),
            "{series} is not a series of {} {family_name}",
            family.kind
        );
        if family.kind == "counter" {
            assert!(
                value >= 0.0 && value.fract() == 0.0,
                "counter value: {line}"
            );
        }
        assert!(
            seen_series.insert(format!("{series}{labels:?}")),
            "duplicate series: {line}"
        );
        family.samples.push((series.to_owned(), labels, value));
    }
    assert_eq!(eof, flavour == Flavour::OpenMetrics, "# EOF");
    for (name, family) in &families {
        assert!(!family.samples.is_empty(), "{name} has no sample");
        if family.kind == "histogram" {
            check_histogram(name, family);
        }
    }
    families
}

fn check_histogram(name: &str, family: &Family) {
    let bucket = format!("{name}_bucket");
    let mut previous: Option<(f64, f64)> = None;
    for (series, labels, count) in family.samples.iter().filter(|s| s.0 == bucket) {
        let bound = value(&labels["le"], series);
        if let Some((last_bound, last_count)) = previous {
            assert!(bound > last_bound, "{name}: le {bound} after {last_bound}");
            assert!(*count >= last_count, "{name}: buckets not cumulative");
        }
        previous = Some((bound, *count));
    }
    let (last_bound, inf) = previous.unwrap_or_else(|| panic!("{name}: no bucket"));
    assert_eq!(last_bound, f64::INFINITY, "{name}: last bucket is not +Inf");
    let total = |suffix: &str| {
        family
            .samples
            .iter()
            .find(|s| s.0 == format!("{name}{suffix}"))
            .unwrap_or_else(|| panic!("{name}{suffix} missing"))
            .2
    };
    assert_eq!(
        total("_count"),
        inf,
        "{name}: +Inf bucket differs from _count"
    );
    assert!(total("_sum") >= 0.0);
}

async fn scrape(server: &TestServer, accept: Option<&str>) -> (String, String) {
    let mut request = server
        .http()
        .get(format!("https://localhost:{}/metrics", server.addr.port()));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_parse_strictly_in_both_text_formats() {
    let server = TestServer::start(|_| {}).await;
    // Give every family real samples: a session, a relayed message, a handshake latency.
    let mut alice = server.connect("alice-1").await;
    let mut bob = server.connect("bob-1").await;
    alice.join(7, true).await;
    bob.join_with(7, &json!({"members": ["alice-1", "bob-1"], "relay": true}))
        .await;
    alice.say(7, "hi").await;
    bob.recv_on(FrameType::Msg, 7).await;

    let (content_type, text) = scrape(&server, None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let families = parse(&text, Flavour::Prometheus);
    let exported: BTreeSet<(&str, &str)> = families
        .iter()
        .map(|(name, f)| (name.as_str(), f.kind.as_str()))
        .collect();
    let expected: BTreeSet<(&str, &str)> = FAMILIES
        .iter()
        .chain(FEDERATION_FAMILIES)
        .copied()
        .collect();
    assert_eq!(exported, expected, "\n{text}");
    let relayed = &families["commucat_relay_latency_seconds"];
    assert!(
        relayed
            .samples
            .iter()
            .any(|(series, _, v)| series.ends_with("_count") && *v >= 1.0)
    );

    // What Prometheus sends: OpenMetrics first.
    let (content_type, om) = scrape(
        &server,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    )
    .await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om_families = parse(&om, Flavour::OpenMetrics);
    // The same families under OpenMetrics names (counters without `_total`), with units.
    let om_names: BTreeSet<String> = om_families.keys().cloned().collect();
    let expected: BTreeSet<String> = FAMILIES
        .iter()
        .chain(FEDERATION_FAMILIES)
        .map(|(name, _)| name.strip_suffix("_total").unwrap_or(name).to_owned())
        .collect();
    assert_eq!(om_names, expected, "\n{om}");
    assert_eq!(
        om_families["commucat_handshake_duration_seconds"]
            .unit
            .as_deref(),
        Some("seconds")
    );
}

#[test]
fn the_checker_refuses_malformed_text() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
    assert_eq!(parse(good, Flavour::Prometheus).len(), 1);
    for bad in [
        // sample before metadata
        "a_total 1\n",
        // missing TYPE
        "# HELP a_total A.\na_total 1\n",
        // series of another family
        "# HELP a_total A.\n# TYPE a_total counter\nb_total 1\n",
        // duplicate series
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 1\n",
        // bad label quoting
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 1\n",
        // negative counter
        "# HELP a_total A.\n# TYPE a_total counter\na_total -1\n",
        // EOF in Prometheus text
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# EOF\n",
        // histogram +Inf differs from count
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
    ] {
        let result = std::panic::catch_unwind(|| parse(bad, Flavour::Prometheus));
        assert!(result.is_err(), "accepted:\n{bad}");
    }
    // OpenMetrics needs its # EOF.
    let open = "# HELP a A.\n# TYPE a counter\na_total 1\n";
    assert!(std::panic::catch_unwind(|| parse(open, Flavour::OpenMetrics)).is_err());
    assert_eq!(
        parse(&format!("{open}# EOF\n"), Flavour::OpenMetrics).len(),
        1
    );
}
