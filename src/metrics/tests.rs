use super::*;

#[test]
fn counters_keep_their_names_and_labels() {
    let m = Metrics::new();
    m.outbox_delivery("sent");
    m.outbox_delivery("sent");
    m.slack_request("commands", "mismatch");
    m.diagnostic("orphans", "ok");
    for format in [Format::Text, Format::OpenMetrics] {
        let text = m.render(format);
        for line in [
            "runbook_bot_outbox_total{outcome=\"sent\"} 2\n",
            "runbook_bot_outbox_total{outcome=\"failed\"} 0\n",
            "runbook_bot_slack_requests_total{route=\"commands\",outcome=\"mismatch\"} 1\n",
            "runbook_bot_diagnostics_total{name=\"orphans\",verdict=\"ok\"} 1\n",
        ] {
            assert!(text.contains(line), "{format:?} lacks {line}{text}");
        }
    }
    let text = m.render(Format::Text);
    assert!(text.contains("# TYPE runbook_bot_outbox_total counter\n"), "{text}");
    assert!(!text.contains("# EOF"));
    assert!(m.render(Format::OpenMetrics).ends_with("# EOF\n"));
}

#[test]
fn histograms_count_by_their_labels_and_buckets_bracket_the_ack_budget() {
    let m = Metrics::new();
    m.http_request("/slack/commands", 200, Duration::from_millis(2_700));
    m.command("incident.declare", "ok", Duration::from_millis(4));
    m.diagnostic_step("orphans", "production", "ok", Some(Duration::from_millis(30)));
    m.diagnostic_step("orphans", "production", "ok", None);
    let text = m.render(Format::Text);
    for line in [
        "runbook_bot_http_request_duration_seconds_count{route=\"/slack/commands\",status=\"2xx\"} 1\n",
        "runbook_bot_http_request_duration_seconds_bucket{le=\"2.5\",route=\"/slack/commands\",status=\"2xx\"} 0\n",
        "runbook_bot_http_request_duration_seconds_bucket{le=\"3.0\",route=\"/slack/commands\",status=\"2xx\"} 1\n",
        "runbook_bot_command_duration_seconds_count{command=\"incident.declare\",outcome=\"ok\"} 1\n",
        "runbook_bot_commands_total{command=\"incident.declare\",outcome=\"ok\"} 1\n",
        "runbook_bot_diagnostic_step_duration_seconds_count{target=\"production\"} 1\n",
        "runbook_bot_diagnostic_steps_total{name=\"orphans\",verdict=\"ok\"} 2\n",
    ] {
        assert!(text.contains(line), "lacks {line}{text}");
    }
}

#[test]
fn outbox_gauges_say_when_the_store_could_not_be_read() {
    let m = Metrics::new();
    m.set_outbox_backlog(Some(OutboxBacklog {
        pending: 5,
        lanes: 2,
        fullest_lane: 4,
        oldest_age_ms: 1_500,
    }));
    let text = m.render(Format::Text);
    for line in [
        "runbook_bot_outbox_pending 5\n",
        "runbook_bot_outbox_lanes_waiting 2\n",
        "runbook_bot_outbox_lane_backlog_max 4\n",
        "runbook_bot_outbox_oldest_pending_seconds 1.5\n",
    ] {
        assert!(text.contains(line), "lacks {line}{text}");
    }
    m.set_outbox_backlog(None);
    assert!(m.render(Format::Text).contains("runbook_bot_outbox_pending -1\n"));
}

#[test]
fn two_instances_keep_their_own_numbers() {
    let (a, b) = (Metrics::new(), Metrics::new());
    a.escalation("p1");
    assert!(
        a.render(Format::Text)
            .contains("runbook_bot_escalations_total{severity=\"p1\"} 1")
    );
    assert!(!b.render(Format::Text).contains("runbook_bot_escalations_total{"));
}

#[test]
fn the_counters_of_grouping_limits_and_socket_mode_keep_their_names_and_labels() {
    let m = Metrics::new();
    m.alert("alertmanager", "posted");
    m.alerts_grouped("alertmanager", 40);
    m.alerts_grouped("alertmanager", 0);
    m.alerts_grouped("grafana", 0);
    m.alert_storm("routes[1]");
    m.alert_storm("routes[1]");
    m.auto_diagnose("orphans", "started");
    m.auto_diagnose("orphans", "deduplicated");
    m.http_connection("accepted");
    m.http_connection("idle_closed");
    m.throttled("refused_click");
    m.throttled("mention");
    m.socket("connected");
    m.socket("invalid_frame");
    for format in [Format::Text, Format::OpenMetrics] {
        let text = m.render(format);
        for line in [
            "runbook_bot_alerts_total{source=\"alertmanager\",outcome=\"posted\"} 1\n",
            "runbook_bot_alerts_total{source=\"alertmanager\",outcome=\"grouped\"} 40\n",
            "runbook_bot_alerts_total{source=\"grafana\",outcome=\"grouped\"} 0\n",
            "runbook_bot_alert_storm_total{route=\"routes[1]\"} 2\n",
            "runbook_bot_auto_diagnose_total{name=\"orphans\",outcome=\"started\"} 1\n",
            "runbook_bot_auto_diagnose_total{name=\"orphans\",outcome=\"deduplicated\"} 1\n",
            "runbook_bot_http_connections_total{event=\"accepted\"} 1\n",
            "runbook_bot_http_connections_total{event=\"idle_closed\"} 1\n",
            "runbook_bot_throttled_total{what=\"refused_click\"} 1\n",
            "runbook_bot_throttled_total{what=\"mention\"} 1\n",
            "runbook_bot_socket_total{event=\"connected\"} 1\n",
            "runbook_bot_socket_total{event=\"invalid_frame\"} 1\n",
        ] {
            assert!(text.contains(line), "{format:?} lacks {line}{text}");
        }
    }
    let text = m.render(Format::Text);
    for family in [
        "runbook_bot_alert_storm_total",
        "runbook_bot_auto_diagnose_total",
        "runbook_bot_http_connections_total",
        "runbook_bot_throttled_total",
        "runbook_bot_socket_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP:\n{text}"
        );
        assert!(text.contains(&format!("# TYPE {family} counter\n")), "{text}");
    }
}
