use std::time::Duration;

use commucat_ccp::FrameType;

use super::*;

fn sample() -> Metrics {
    let m = Metrics::default();
    m.handshake(true, Duration::from_millis(3));
    m.handshake(true, Duration::from_secs(10));
    m.handshake(false, Duration::from_millis(1));
    m.pq_handshake();
    m.frames_in.count(FrameType::Msg);
    m.frames_out.count(FrameType::Ack);
    m.frames_out.count(FrameType::Ack);
    m.p2p_assist();
    m.p2p_assist();
    m.bound_refusals.count(Bound::ChannelMembers);
    m.sender_mismatches.count(FrameType::CallOffer);
    m.calls_unanswered.inc();
    m.fec_packets.inc_by(27);
    {
        let _a = m.session_started();
        let _b = m.session_started();
        let _c = m.connection_accepted();
        m.delivered(3);
        assert_eq!(m.sessions_active.get(), 2);
    }
    m
}

const GAUGES: Gauges = Gauges {
    mailbox_frames: 4,
    online_devices: 1,
    channels: 3,
};
const LEDGER: LedgerCounts = LedgerCounts {
    written: 7,
    dropped: 2,
};
const CHECKED: [FrameType; 2] = [FrameType::CallOffer, FrameType::Typing];

#[test]
fn counts_and_renders() {
    let m = sample();
    let text = m.render(GAUGES, LEDGER, &CHECKED).unwrap();
    for line in [
        "# HELP commucat_handshakes_total Device handshakes by result.",
        "# TYPE commucat_handshakes_total counter",
        "commucat_handshakes_total{result=\"ok\"} 2",
        "commucat_handshakes_total{result=\"failed\"} 1",
        "# HELP commucat_sessions_opened_total Established sessions started.",
        "commucat_sessions_opened_total 2",
        "# TYPE commucat_sessions_active gauge",
        "commucat_sessions_active 0",
        "commucat_frames_delivered_total 3",
        "commucat_connections_accepted_total 1",
        "commucat_connections_open 0",
        "commucat_frames_received_total{type=\"msg\"} 1",
        "commucat_frames_sent_total{type=\"ack\"} 2",
        "commucat_frames_sent_total{type=\"msg\"} 0",
        "commucat_mailbox_frames 4",
        "commucat_channels 3",
        "# TYPE commucat_ledger_records_written_total counter",
        "commucat_ledger_records_written_total 7",
        "commucat_ledger_records_dropped_total 2",
        "commucat_security_noise_handshakes_total 2",
        "commucat_security_pq_handshakes_total 1",
        "commucat_security_fec_packets_total 27",
        "commucat_p2p_assists_total 2",
        "# TYPE commucat_handshake_duration_seconds histogram",
        "commucat_handshake_duration_seconds_bucket{le=\"0.0025\"} 0",
        "commucat_handshake_duration_seconds_bucket{le=\"0.005\"} 1",
        "commucat_handshake_duration_seconds_bucket{le=\"2.5\"} 1",
        "commucat_handshake_duration_seconds_bucket{le=\"+Inf\"} 2",
        "commucat_handshake_duration_seconds_sum 10.003",
        "commucat_handshake_duration_seconds_count 2",
        "commucat_relay_latency_seconds_count 0",
        "commucat_bound_refusals_total{bound=\"channel_members\"} 1",
        "commucat_bound_refusals_total{bound=\"calls_per_session\"} 0",
        "commucat_sender_mismatches_total{type=\"call_offer\"} 1",
        "commucat_sender_mismatches_total{type=\"typing\"} 0",
        "commucat_calls_unanswered_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    // Only the checked frame types are sender-mismatch series.
    assert!(!text.contains("commucat_sender_mismatches_total{type=\"msg\"}"));
    assert!(
        text.lines()
            .any(|l| l == "commucat_security_censorship_deflections_total 0")
    );
    for unmeasured in ["multipath", "average_paths"] {
        assert!(!text.contains(unmeasured), "{unmeasured} exported:\n{text}");
    }
    assert!(!text.contains("# EOF"));
    let security = m.security();
    assert_eq!(
        (
            security.noise_handshakes,
            security.pq_handshakes,
            security.fec_packets,
            security.multipath_sessions,
            security.average_paths
        ),
        (2, 1, 27, 0, 1.0)
    );
}

#[test]
fn openmetrics_names_families_and_ends_with_eof() {
    let m = sample();
    let text = m
        .encode(Format::OpenMetrics, GAUGES, LEDGER, &CHECKED)
        .unwrap();
    for line in [
        "# TYPE commucat_handshakes counter",
        "commucat_handshakes_total{result=\"ok\"} 2",
        "# TYPE commucat_handshake_duration_seconds histogram",
        "# UNIT commucat_handshake_duration_seconds seconds",
        "commucat_handshake_duration_seconds_count 2",
        "commucat_mailbox_frames 4",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    assert_eq!(text.lines().last(), Some("# EOF"));
    // The same samples as the Prometheus text, only the metadata differs (and the encoder
    // writes a whole-number bucket bound as `1.0` in OpenMetrics, `1` in Prometheus text).
    let samples = |t: &str| -> Vec<String> {
        let mut lines: Vec<String> = t
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.replace("le=\"1.0\"", "le=\"1\""))
            .collect();
        lines.sort();
        lines
    };
    let prometheus = m.render(GAUGES, LEDGER, &CHECKED).unwrap();
    assert_eq!(samples(&text), samples(&prometheus));
}

#[test]
fn accept_header_picks_the_format() {
    assert_eq!(Format::negotiate(None), Format::Prometheus);
    assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
    assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
    // What Prometheus 2.x/3.x sends.
    assert_eq!(
        Format::negotiate(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::negotiate(Some("Application/OpenMetrics-Text; q=0")),
        Format::Prometheus
    );
    assert_eq!(
        Format::OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        Format::Prometheus.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
}
