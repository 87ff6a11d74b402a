"""Checks of the monitoring assets that need no running service.

- promtool checks the rules and runs their unit tests (every alert, firing and
  not firing);
- every alert carries severity, summary, description and a runbook_url whose
  anchor is a section of monitoring/runbook.md;
- the dashboards type-check against Grafana's published schema
  (@grafana/schema, with TypeScript), and a broken dashboard is shown to fail;
- every dashboard selector honours the namespace variable;
- the chart's copies of the rules and dashboards equal these files.

The live half (a real Prometheus scraping ping-host, every recording rule and
panel query returning data, the Redis alert firing) is tests/tests/monitoring.rs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MON = ROOT / "monitoring"
RULES = MON / "rules" / "ping.rules.yml"
DASHBOARDS = sorted((MON / "dashboards").glob("*.json"))
SCHEMA_TOOLS = ROOT / ".tools" / "schemas"
CHART_FILES = ROOT / "helm" / "ping" / "files"

SCHEMA_PKG = "@grafana/schema/dist/esm/raw"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run `make deps` (Debian package prometheus)")
    return path


def alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def recording_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "record" in r]


def test_promtool_accepts_the_rules():
    out = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts()) + len(recording_rules())} rules found" in out.stdout


def test_promtool_unit_tests_pass():
    out = subprocess.run(
        [promtool(), "test", "rules", "ping.rules.test.yml"],
        cwd=MON / "tests",
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_accepts_the_local_scrape_config():
    out = subprocess.run([promtool(), "check", "config", str(MON / "prometheus" / "prometheus.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_annotation_scrape_config_matches_the_chart():
    """The plain-Prometheus job keeps pods whose annotations the chart sets,
    and labels them with the namespace the rules aggregate by. (Debian's
    promtool is built without Kubernetes discovery, so it cannot check this
    file; its structure is checked here instead.)"""
    job = yaml.safe_load((MON / "prometheus" / "kubernetes-pods.yml").read_text())["scrape_configs"][0]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    relabel = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    assert relabel[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)]["action"] == "keep"
    assert relabel[("__meta_kubernetes_namespace",)]["target_label"] == "namespace"
    port = relabel[("__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port")]
    assert re.sub(port["regex"], port["replacement"].replace("$", "\\"), "10.0.0.7:8080;9121") == "10.0.0.7:9121"
    helpers = (ROOT / "helm" / "ping" / "templates" / "_helpers.tpl").read_text()
    for annotation in ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path"):
        assert annotation in helpers


def test_every_alert_is_unit_tested_firing_and_quiet():
    tests = yaml.safe_load((MON / "tests" / "ping.rules.test.yml").read_text())["tests"]
    firing, quiet = set(), set()
    for case in tests:
        for t in case.get("alert_rule_test", []):
            (firing if t["exp_alerts"] else quiet).add(t["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested quiet"


def test_recording_rules_follow_level_metric_operation():
    for rule in recording_rules():
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def test_alerts_carry_what_on_call_needs():
    runbook = (MON / "runbook.md").read_text()
    # GitHub's anchors: lower-cased heading text.
    anchors = {h.strip().lower() for h in re.findall(r"^## (.+)$", runbook, flags=re.M)}
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, name
        for key in ("summary", "description", "runbook_url"):
            assert alert["annotations"].get(key), f"{name}: no {key}"
        anchor = alert["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor == name.lower(), f"{name}: runbook_url anchor {anchor}"
        assert anchor in anchors, f"{name}: no '## {name}' section in monitoring/runbook.md"


def panel_list(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def targets(dashboard: dict) -> list[tuple[str, str]]:
    return [
        (p["title"], t["expr"])
        for p in panel_list(dashboard)
        for t in p.get("targets", [])
    ]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_selector_filters_by_namespace(path: Path):
    dashboard = json.loads(path.read_text())
    exprs = targets(dashboard)
    assert len(exprs) >= 10
    for title, expr in exprs:
        selectors = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*\{([^}]*)\}", expr)
        assert selectors, f"{title}: {expr}"
        for s in selectors:
            assert 'namespace=~"$namespace"' in s, f"{title}: selector {{{s}}} ignores $namespace"
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "instance"} <= names


def typescript_for(dashboard: dict) -> str:
    """A TypeScript module asserting, with `satisfies`, that the dashboard and
    each panel's options, field config and queries have the published types.
    `satisfies` on object literals rejects unknown keys as well as wrong types."""
    lines = [
        f'import type {{ Dashboard }} from "{SCHEMA_PKG}/dashboard/x/Dashboard_types.gen";',
        f'import type {{ Options as TimeSeriesOptions, FieldConfig as TimeSeriesFieldConfig }} from "{SCHEMA_PKG}/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";',
        f'import type {{ Options as StatOptions }} from "{SCHEMA_PKG}/composable/stat/panelcfg/x/StatPanelCfg_types.gen";',
        'import type { DataQuery } from "@grafana/schema";',
        "",
        "// JSON carries enum members as their string values: map every string",
        "// enum in the published types to the union of its values.",
        "type Json<T> = T extends string ? `${T}` : T extends number | boolean | null | undefined ? T",
        "  : T extends Array<infer U> ? Array<Json<U>> : T extends object ? { [K in keyof T]: Json<T[K]> } : T;",
        "",
        "// The query fields Grafana's Prometheus data source stores (its plugin",
        "// types are not in @grafana/schema): DataQuery's plus these.",
        "interface PrometheusQuery extends DataQuery {",
        "  expr: string;",
        "  legendFormat?: string;",
        "  range?: boolean;",
        "  instant?: boolean;",
        '  editorMode?: "code" | "builder";',
        "}",
        "",
        f"export const dashboard = {json.dumps(dashboard)} satisfies Json<Dashboard>;",
    ]
    options_type = {"timeseries": "TimeSeriesOptions", "stat": "StatOptions"}
    for panel in panel_list(dashboard):
        pid, kind = panel["id"], panel["type"]
        if kind == "row":
            continue
        assert kind in options_type, f"panel {pid}: no published options type checked for {kind}"
        lines.append(f"export const options{pid} = {json.dumps(panel['options'])} satisfies Json<{options_type[kind]}>;")
        custom = panel["fieldConfig"]["defaults"].get("custom")
        if kind == "timeseries" and custom is not None:
            lines.append(f"export const custom{pid} = {json.dumps(custom)} satisfies Json<TimeSeriesFieldConfig>;")
        lines.append(f"export const targets{pid} = {json.dumps(panel['targets'])} satisfies Json<PrometheusQuery>[];")
    return "\n".join(lines) + "\n"


def typecheck(dashboard: dict, name: str) -> subprocess.CompletedProcess:
    tsc = SCHEMA_TOOLS / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        pytest.fail("the schema check is not installed: run scripts/install-monitoring-tools.sh (make test does)")
    work = SCHEMA_TOOLS / "check"
    work.mkdir(exist_ok=True)
    source = work / f"{name}.ts"
    source.write_text(typescript_for(dashboard))
    return subprocess.run(
        [str(tsc), "--noEmit", "--strict", "--target", "es2022", "--module", "esnext",
         "--moduleResolution", "bundler", "--skipLibCheck", "false", str(source)],
        cwd=SCHEMA_TOOLS,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_matches_grafanas_published_schema(path: Path):
    out = typecheck(json.loads(path.read_text()), path.stem)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    "breakage",
    [
        ("a misspelt dashboard key", lambda d: d.update(titel="x")),
        ("a string schemaVersion", lambda d: d.update(schemaVersion="41")),
        ("an unknown timeseries option", lambda d: panel_list(d)[6]["options"].update(lgend={})),
        ("a query without expr", lambda d: panel_list(d)[6]["targets"][0].pop("expr")),
    ],
    ids=lambda b: b[0],
)
def test_the_schema_check_rejects_a_broken_dashboard(breakage):
    dashboard = json.loads(DASHBOARDS[0].read_text())
    assert panel_list(dashboard)[6]["type"] == "timeseries"
    breakage[1](dashboard)
    out = typecheck(dashboard, "broken")
    assert out.returncode != 0, f"{breakage[0]} passed the schema check"


def test_chart_copies_are_current():
    """The chart cannot read files outside itself, so it carries copies;
    `make sync-monitoring` refreshes them."""
    pairs = [(RULES, CHART_FILES / "rules" / RULES.name)] + [
        (d, CHART_FILES / "dashboards" / d.name) for d in DASHBOARDS
    ]
    for source, copy in pairs:
        assert copy.exists(), f"{copy} is missing: run make sync-monitoring"
        assert copy.read_bytes() == source.read_bytes(), f"{copy} differs from {source}: run make sync-monitoring"
