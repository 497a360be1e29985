//! The Grafana dashboard and the Prometheus alert rules under docs/monitoring/ reference only
//! series `/metrics` exports ([`FAMILIES`]), and the dashboard charts every family.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::exposition::{FAMILIES, FEDERATION_FAMILIES, FEDERATION_OUTBOX_DEPTH};

/// Every family `/metrics` can export.
fn all_families() -> impl Iterator<Item = (&'static str, &'static str)> {
    FAMILIES
        .iter()
        .chain(FEDERATION_FAMILIES)
        .copied()
        .chain([FEDERATION_OUTBOX_DEPTH])
}

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/monitoring")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `commucat_*` identifier in `text`.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("commucat_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The exported family `series` belongs to, if any.
fn family_of(series: &str) -> Option<&'static str> {
    all_families().find_map(|(name, kind)| {
        let matches = series == name
            || (kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| series.strip_suffix(suffix) == Some(name)));
        matches.then_some(name)
    })
}

fn check_all_exported(what: &str, names: &BTreeSet<String>) -> BTreeSet<&'static str> {
    assert!(!names.is_empty(), "{what} references no metric");
    names
        .iter()
        .map(|name| {
            family_of(name).unwrap_or_else(|| panic!("{what} references {name}, not exported"))
        })
        .collect()
}

#[test]
fn dashboard_and_alerts_reference_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&doc("grafana-dashboard.json")).unwrap();
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push_str(target["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let charted = check_all_exported("the dashboard", &referenced(&exprs));
    let all: BTreeSet<&str> = all_families().map(|(name, _)| name).collect();
    assert_eq!(charted, all, "families the dashboard does not chart");

    let alerts = doc("alerts.yml");
    assert!(alerts.contains("expr:"));
    check_all_exported("the alert rules", &referenced(&alerts));
    // The checker itself: a made-up or misspelt series is refused.
    for bad in [
        "commucat_handshake_total",
        "commucat_sessions_active_bucket",
    ] {
        assert!(family_of(bad).is_none(), "{bad}");
    }
}
