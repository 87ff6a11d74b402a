//! The monitoring stack, live: a real Prometheus (started here, on a free
//! port, with the shipped scrape config and rules) scrapes a running ping-host,
//! the component's `/metrics` and prometheus-redis-exporter while traffic
//! flows. Then every recording rule and every dashboard query must return
//! data through the HTTP API, and stopping Redis must fire `PingRedisDown`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ping_e2e::{Host, HostConfig, Redis, client, free_port, get, request, root, wait_until};
use serde_json::Value;

/// Kills the child when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, what: &str) -> Result<Process> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    Ok(Process(cmd.spawn().with_context(|| {
        format!("cannot start {what}: is it installed? (`make deps`)")
    })?))
}

/// Metric families only a cluster provides (kube-state-metrics, the kubelet,
/// cAdvisor, ingress-nginx). Dashboard queries made only of these may be
/// empty locally.
const CLUSTER_ONLY: [&str; 4] = ["kube_", "kubelet_", "container_", "nginx_ingress_"];

/// What the shipped `prometheus.yml` becomes for this test: the test's ports,
/// a 1 s scrape and evaluation interval, and rules whose Redis alert waits 5 s.
fn test_config(dir: &Path, host: &Host, metrics_port: u16, exporter_port: u16) -> Result<()> {
    let shipped = std::fs::read_to_string(root().join("monitoring/prometheus/prometheus.yml"))?;
    let mut config = shipped.clone();
    for (from, to) in [
        ("127.0.0.1:9464", format!("127.0.0.1:{metrics_port}")),
        ("127.0.0.1:3000", format!("127.0.0.1:{}", host.port)),
        ("127.0.0.1:9121", format!("127.0.0.1:{exporter_port}")),
        ("scrape_interval: 5s", "scrape_interval: 1s".into()),
        ("evaluation_interval: 5s", "evaluation_interval: 1s".into()),
        ("../rules/ping.rules.yml", "ping.rules.yml".into()),
    ] {
        ensure!(
            config.contains(from),
            "prometheus.yml no longer has `{from}`"
        );
        config = config.replace(from, &to);
    }
    std::fs::write(dir.join("prometheus.yml"), config)?;
    let rules = std::fs::read_to_string(root().join("monitoring/rules/ping.rules.yml"))?;
    let redis_alert = "      - alert: PingRedisDown";
    let (before, after) = rules
        .split_once(redis_alert)
        .context("rules lost PingRedisDown")?;
    ensure!(after.contains("for: 1m"), "PingRedisDown lost its `for`");
    let shortened = format!(
        "{before}{redis_alert}{}",
        after.replacen("for: 1m", "for: 5s", 1)
    );
    std::fs::write(dir.join("ping.rules.yml"), shortened)?;
    Ok(())
}

struct Prometheus {
    url: String,
    http: reqwest::blocking::Client,
}

impl Prometheus {
    /// `GET /api/v1/<path>` with `params`; the `data` of a successful answer.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value> {
        let body = self
            .http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(params)
            .send()?
            .text()?;
        let reply: Value = serde_json::from_str(&body)?;
        ensure!(reply["status"] == "success", "{path} {params:?}: {}", reply);
        Ok(reply["data"].clone())
    }

    /// An instant query's result vector.
    fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let data = self.api("query", &[("query", expr)])?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    fn alert_state(&self, name: &str) -> Result<Option<String>> {
        let data = self.api("alerts", &[])?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["labels"]["alertname"] == name)
            .and_then(|a| a["state"].as_str().map(str::to_owned)))
    }
}

/// `name{` occurrences: the metric names a PromQL expression selects.
fn selected_metrics(expr: &str) -> Vec<&str> {
    let bytes = expr.as_bytes();
    let mut names = Vec::new();
    for (i, _) in expr.match_indices('{') {
        let start = expr[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |p| p + 1);
        if start < i && !bytes[start].is_ascii_digit() {
            names.push(&expr[start..i]);
        }
    }
    names
}

fn dashboard_queries() -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("monitoring/dashboards"))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let mut panels: Vec<&Value> = Vec::new();
        for p in dashboard["panels"].as_array().context("panels")? {
            panels.push(p);
            panels.extend(p["panels"].as_array().into_iter().flatten());
        }
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().context("target without expr")?;
                out.push((
                    format!("{}: {}", path.display(), panel["title"]),
                    expr.to_owned(),
                ));
            }
        }
    }
    Ok(out)
}

/// Grafana's variables as a user would have them: this namespace, all
/// instances, and the rate interval Grafana derives from a 1 s scrape.
fn expand_variables(expr: &str) -> String {
    expr.replace("$namespace", "local")
        .replace("$instance", ".*")
        .replace("$__rate_interval", "1m")
}

/// Sends `n` requests spread over routes, so every series the dashboard
/// draws exists.
fn drive_traffic(host: &Host, n: usize) -> Result<()> {
    let http = client();
    for i in 0..n {
        let path = match i % 10 {
            0 => "/",
            1 => "/count",
            2 => "/nope",
            3 => "/test",
            _ => "/ping",
        };
        request(&http, "GET", &host.url(path), &[])?;
    }
    Ok(())
}

#[test]
fn prometheus_scrapes_everything_and_every_rule_and_panel_has_data() -> Result<()> {
    let mut redis = Redis::start()?;
    let metrics_port = free_port();
    let host = Host::start(
        &HostConfig::for_redis(&redis)
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}")),
    )?;
    let exporter_port = free_port();
    let _exporter = spawn(
        Command::new("prometheus-redis-exporter").args([
            "-redis.addr",
            &format!("redis://127.0.0.1:{}", redis.port),
            "-web.listen-address",
            &format!("127.0.0.1:{exporter_port}"),
        ]),
        "prometheus-redis-exporter",
    )?;

    // Both /metrics outputs pass promtool's linter.
    for url in [
        host.url("/metrics"),
        format!("http://127.0.0.1:{metrics_port}/metrics"),
    ] {
        drive_traffic(&host, 20)?;
        let text = get(&url)?.body;
        let mut lint = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("promtool (make deps)")?;
        {
            use std::io::Write;
            lint.stdin
                .take()
                .context("stdin")?
                .write_all(text.as_bytes())?;
        }
        let out = lint.wait_with_output()?;
        ensure!(
            out.status.success(),
            "promtool check metrics {url}:\n{}{}\n---\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let dir = tempfile::tempdir()?;
    test_config(dir.path(), &host, metrics_port, exporter_port)?;
    let port = free_port();
    let _prometheus = spawn(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        "prometheus",
    )?;
    let prom = Prometheus {
        url: format!("http://127.0.0.1:{port}"),
        http: client(),
    };
    wait_until(Duration::from_secs(60), "prometheus to be ready", || {
        get(&format!("{}/-/ready", prom.url))
            .ok()
            .filter(|r| r.status == 200)
    })?;

    // Traffic across several scrapes, so rates have at least two samples.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        drive_traffic(&host, 50)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let targets = prom.api("targets", &[])?;
    let active = targets["activeTargets"].as_array().context("targets")?;
    ensure!(active.len() == 3, "expected 3 scrape targets: {targets}");
    wait_until(Duration::from_secs(20), "every target up", || {
        let t = prom.api("targets", &[]).ok()?;
        t["activeTargets"]
            .as_array()?
            .iter()
            .all(|a| a["health"] == "up")
            .then_some(())
    })
    .with_context(|| format!("{}", prom.api("targets", &[]).unwrap_or_default()))?;

    // Redis goes away: the alert must go pending, then firing (for: 5s here).
    redis.kill();
    let outage = Instant::now();
    let mut pending_seen = false;
    let firing = loop {
        // Traffic during the outage: 503s and Redis errors, as in a real one.
        drive_traffic(&host, 10)?;
        match prom.alert_state("PingRedisDown")?.as_deref() {
            Some("pending") => pending_seen = true,
            Some("firing") => break outage.elapsed(),
            _ => {}
        }
        if outage.elapsed() > Duration::from_secs(40) {
            bail!("PingRedisDown did not fire within 40 s of Redis stopping");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    ensure!(
        pending_seen,
        "PingRedisDown never showed as pending before firing"
    );
    eprintln!("PingRedisDown firing {firing:?} after Redis was killed");
    redis.restart()?;
    wait_until(Duration::from_secs(30), "the alert to resolve", || {
        drive_traffic(&host, 10).ok()?;
        (prom.alert_state("PingRedisDown").ok()? != Some("firing".into())).then_some(())
    })?;
    // A few more scrapes of a healthy service.
    let resumed = Instant::now();
    while resumed.elapsed() < Duration::from_secs(3) {
        drive_traffic(&host, 30)?;
        std::thread::sleep(Duration::from_millis(200));
    }

    // Every recording rule has data.
    let rules = prom.api("rules", &[("type", "record")])?;
    let mut records = Vec::new();
    for group in rules["groups"].as_array().context("groups")? {
        for rule in group["rules"].as_array().context("rules")? {
            ensure!(rule["health"] == "ok", "rule unhealthy: {rule}");
            records.push(rule["name"].as_str().context("name")?.to_owned());
        }
    }
    records.dedup();
    let shipped = std::fs::read_to_string(root().join("monitoring/rules/ping.rules.yml"))?;
    let mut expected: Vec<String> = shipped
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(str::to_owned)
        .collect();
    expected.dedup();
    ensure!(
        records == expected,
        "Prometheus loaded {records:?}, the file has {expected:?}"
    );
    for record in &records {
        let result = prom.query(record)?;
        ensure!(!result.is_empty(), "recording rule {record} has no data");
        ensure!(
            result.iter().all(|s| s["metric"]["namespace"] == "local"),
            "{record} lost its namespace: {result:?}"
        );
    }
    let pings = prom.query("namespace:ping_pings:max")?;
    eprintln!("namespace:ping_pings:max = {}", pings[0]["value"]);
    let counted = redis.counter("ping")?;
    let scraped: f64 = pings[0]["value"][1].as_str().context("value")?.parse()?;
    ensure!(
        scraped > 0.0 && scraped <= counted as f64,
        "Prometheus saw {scraped} pings; Redis holds {counted}"
    );

    // Every dashboard query runs; each has data unless it selects only
    // metrics a Kubernetes cluster provides.
    let queries = dashboard_queries()?;
    ensure!(queries.len() >= 20, "dashboard queries: {}", queries.len());
    let mut cluster_only = Vec::new();
    for (panel, expr) in &queries {
        let expr = expand_variables(expr);
        let result = prom
            .query(&expr)
            .with_context(|| format!("{panel}: {expr}"))?;
        if result.is_empty() {
            let names = selected_metrics(&expr);
            ensure!(
                !names.is_empty()
                    && names
                        .iter()
                        .all(|n| CLUSTER_ONLY.iter().any(|p| n.starts_with(p))),
                "{panel}: no data for {expr}"
            );
            cluster_only.push(panel.clone());
        }
    }
    eprintln!(
        "{} dashboard queries ran; {} cluster-only ones were empty",
        queries.len(),
        cluster_only.len()
    );
    ensure!(
        cluster_only.len() <= 7,
        "too many empty panels: {cluster_only:?}"
    );

    // The dashboard's namespace variable finds this namespace.
    let values = prom.api("label/namespace/values", &[("match[]", "ping_redis_up")])?;
    ensure!(values == serde_json::json!(["local"]), "{values}");
    Ok(())
}

#[test]
fn selected_metrics_finds_selectors() {
    assert_eq!(
        selected_metrics(r#"sum(rate(a_b_total{x="1"}[1m])) / c:d:e{y=~"$z"}"#),
        vec!["a_b_total", "c:d:e"]
    );
}
