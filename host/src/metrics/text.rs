//! The classic Prometheus text format (0.0.4) from prometheus-client's
//! OpenMetrics output, for clients that do not ask for OpenMetrics (`curl`,
//! `promtool check metrics`): prometheus-client emits OpenMetrics only.

/// The two text formats differ, for what this registry emits, only in that
/// OpenMetrics names a counter family without its `_total` suffix in `# HELP`
/// and `# TYPE`, and ends with `# EOF`.
pub(super) fn openmetrics_to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 256);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::metrics::Metrics;

    #[test]
    fn classic_text_names_counters_with_their_suffix() {
        let metrics = Metrics::new(1);
        metrics
            .spin_request_counter("ping", &Arc::from("ping"))
            .inc();
        let text = metrics.encode_prometheus_text();
        assert!(
            text.contains("# TYPE spin_request_count_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP spin_request_count_total Requests"),
            "{text}"
        );
        assert!(text.contains("# TYPE ping_host_in"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(metrics.encode().ends_with("# EOF\n"));
    }
}
