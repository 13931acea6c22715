"""The monitoring configuration generated from the inventory: pure generators, the real promtool and amtool, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from iotex_ops import inventory as inv_mod
from iotex_ops.alerting import AlertingError, Settings, Target, check, render
from iotex_ops.alerting.cases import cases
from iotex_ops.alerting.routing import alertmanager_config
from iotex_ops.alerting.rules import ALERTS, FALLBACK_ALERTS, SEVERITIES, alert_specs, rule_groups
from iotex_ops.alerting.scrape import prometheus_config
from iotex_ops.alerting.settings import ALERTD_WEBHOOK_PATH, LAB_VARS, VARS, fmt_duration, parse_duration, settings_from_inventory
from iotex_ops.cli.monitoring import monitoring_group

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PROD = REPO / "inventories" / "example-prod"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed"
)
needs_amtool = pytest.mark.skipif(
    shutil.which("amtool") is None, reason="amtool (Debian package prometheus-alertmanager) is not installed"
)

TOKEN = "alertd-token-value-0123456789abcdef"
ROUTING_KEY = "R0UT1NGKEYVALUE0123456789abcdef0"


def _secrets(d: Path) -> dict[str, str]:
    """Token, routing key and CA files as a lab has them; the generator may name them, never read them."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "webhook.token").write_text(TOKEN + "\n")
    (d / "routing.key").write_text(ROUTING_KEY + "\n")
    (d / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nnot read by the generator\n-----END CERTIFICATE-----\n")
    return {
        "monitoring_alertd_url": "http://127.0.0.1:9095",
        "monitoring_alertd_token_file": str(d / "webhook.token"),
        "monitoring_pagerduty_url": "https://127.0.0.1:8443/v2/enqueue",
        "monitoring_pagerduty_routing_key_file": str(d / "routing.key"),
        "monitoring_pagerduty_ca_file": str(d / "ca.pem"),
    }


def lab_inventory(tmp_path: Path, delegates: int = 4, **monitoring_vars: Any) -> Path:
    """A lab-like inventory: loopback delegates with their own API ports and a controller running the monitoring."""
    hosts = {
        f"node{i}": {
            "ansible_host": "127.0.0.1",
            "ansible_connection": "local",
            "ansible_user": "iotex",
            "ansible_port": 22,
            "delegate_name": f"node{i}",
            "node_p2p_port": 20000 + i,
            "node_api_port": 21000 + i,
            "node_key_file": str(tmp_path / f"node{i}.keystore.json"),
            "node_data_dir": str(tmp_path / f"node{i}"),
            "node_service_manager": "supervisord",
        }
        for i in range(delegates)
    }
    doc = {
        "all": {
            "vars": dict(LAB_VARS),
            "children": {
                "delegates": {"hosts": hosts},
                "monitoring": {
                    "hosts": {
                        "controller": {
                            "ansible_connection": "local",
                            "monitoring_dir": str(tmp_path / "monitoring"),
                            "monitoring_alertmanager": "127.0.0.1:9093",
                            **monitoring_vars,
                        }
                    }
                },
            },
        }
    }
    path = tmp_path / "inventory" / "hosts.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def lab_settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings.from_vars({**LAB_VARS, **_secrets(tmp_path / "secrets"), **extra}, delegates=4)


def _by_name(s: Settings) -> dict[str, Any]:
    return {a.name: a for a in alert_specs(s)}


# --- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds", "back"),
    [("2s", 2, "2s"), ("1m30s", 90, "1m30s"), ("500ms", 0.5, "500ms"), ("2h", 7200, "2h"), (15, 15, "15s"), ("1d", 86400, "24h")],
)
def test_durations_read_and_write_as_prometheus_spells_them(text: Any, seconds: float, back: str) -> None:
    assert parse_duration(text) == seconds
    assert fmt_duration(seconds) == back


def test_production_defaults_and_the_labs_shorter_thresholds() -> None:
    prod = Settings.from_vars({}, delegates=4)
    assert (prod.interval_s, prod.delegate_down_for, prod.peers_min, prod.watchdog_repeat) == (15, 60, 2, 60)
    assert (prod.group_wait, prod.group_interval) == (15, 75)
    lab = Settings.from_vars(dict(LAB_VARS), delegates=4)
    assert (lab.interval_s, lab.delegate_down_for, lab.group_wait, lab.watchdog_repeat) == (0.5, 1.5, 0.5, 4)


def test_every_bad_setting_is_named_at_once() -> None:
    with pytest.raises(AlertingError) as exc:
        Settings.from_vars(
            {
                "monitoring_alert_lag_blocks": "many",
                "monitoring_alert_disk_free_ratio": 10,
                "monitoring_alertd_url": "ftp://x",
                "monitoring_pagerduty_ca_file": "ca.pem",
            },
            delegates=4,
        )
    msg = str(exc.value)
    for name in (
        "monitoring_alert_lag_blocks",
        "monitoring_alert_disk_free_ratio",
        "monitoring_alertd_url",
        "monitoring_pagerduty_ca_file",
    ):
        assert name in msg
    assert "absolute path" in msg and "between 0 and 1" in msg


def test_an_inline_secret_is_refused_with_the_file_setting_to_use() -> None:
    with pytest.raises(AlertingError, match=r"pagerduty_routing_key: .*set monitoring_pagerduty_routing_key_file"):
        Settings.from_vars({"pagerduty_routing_key": ROUTING_KEY}, delegates=4)


def test_windows_that_hold_fewer_than_two_samples_are_refused() -> None:
    with pytest.raises(AlertingError, match="monitoring_alert_chain_stalled_for: 15s holds fewer than 2 samples"):
        Settings.from_vars({"monitoring_interval": 10, "monitoring_alert_chain_stalled_for": "15s"}, delegates=4)
    with pytest.raises(AlertingError, match="monitoring_alert_delegate_down_for: 1s is shorter than monitoring_interval"):
        Settings.from_vars({"monitoring_interval": 5, "monitoring_alert_delegate_down_for": "1s"}, delegates=4)


def test_the_role_declares_every_generator_variable_with_the_same_default() -> None:
    defaults = yaml.safe_load((REPO / "playbooks/roles/monitoring/defaults/main.yml").read_text())
    assert {v.name: v.default for v in VARS} == {k: v for k, v in defaults.items() if k in {v.name for v in VARS}}
    assert all(v.name in inv_mod.KNOWN for v in VARS)  # so `inventory check` takes them for what they are


def test_every_variable_and_alert_is_documented() -> None:
    doc = (REPO / "docs" / "alerting.md").read_text()
    missing = [v.name for v in VARS if f"`{v.name}`" not in doc] + [a for a in ALERTS if f"### {a}" not in doc]
    assert not missing


# --- rules -------------------------------------------------------------------------------------------


def test_every_alert_has_a_severity_a_summary_and_a_runbook_or_none(tmp_path: Path) -> None:
    specs = _by_name(lab_settings(tmp_path))
    assert set(specs) == set(ALERTS)
    for a in specs.values():
        assert a.severity in SEVERITIES or a.name == "AlertUnhandled", a.name
        assert a.summary and a.description
    assert {n: a.runbook for n, a in specs.items() if a.runbook} == {
        "DelegateDown": "restart-node",
        "DelegateLagging": "rebuild-node",
        "DelegatePausedUnexpectedly": "resume-delegate",
    }
    assert (specs["Watchdog"].severity, specs["ChainStalled"].severity, specs["RemediationServiceDown"].severity) == (
        "info",
        "critical",
        "critical",
    )


def test_the_runbooks_alerts_name_exist() -> None:
    from iotex_ops.runbook.loader import discover

    named = {a.runbook for a in alert_specs(Settings.from_vars({}, delegates=4)) if a.runbook}
    assert named <= set(discover())


def test_missed_slots_are_mapped_from_the_operator_address_to_the_host() -> None:
    expr = _by_name(Settings.from_vars({}, delegates=4))["DelegateMissingSlots"].expr
    # the scrape's target label `delegate` renames the node's own label to exported_delegate
    assert '"address", "$1", "exported_delegate"' in expr and "iotex_node_info" in expr and "group_right" in expr


def test_a_single_delegate_has_no_peers_alert_and_no_alertd_means_no_fallbacks() -> None:
    names = {a.name for a in alert_specs(Settings.from_vars({}, delegates=1))}
    assert "PeersLow" not in names and not names & set(FALLBACK_ALERTS)


def test_runbook_url_comes_from_alert_docs_url(tmp_path: Path) -> None:
    s = lab_settings(tmp_path, monitoring_alert_docs_url="https://ops.example/alerting")
    rules = [r for g in rule_groups(s)["groups"] for r in g["rules"]]
    urls = {r["alert"]: r["annotations"]["runbook_url"] for r in rules}
    assert urls["DelegateDown"] == "https://ops.example/alerting#delegatedown"


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not(tmp_path: Path) -> None:
    s = lab_settings(tmp_path)
    fires = {alert for c in cases(s) for alert, _, firing in c.checks if firing}
    quiet = {alert for c in cases(s) for alert, _, firing in c.checks if not firing}
    assert fires == set(ALERTS)
    assert quiet == set(ALERTS) - {"Watchdog"}  # it fires always, by design


# --- routing -----------------------------------------------------------------------------------------


def test_alerts_go_to_alertd_and_the_fallbacks_straight_to_pagerduty(tmp_path: Path) -> None:
    s = lab_settings(tmp_path)
    am = alertmanager_config(s)
    route = am["route"]
    assert route["receiver"] == "alertd" and route["group_by"] == ["alertname", "host"]
    assert (route["group_wait"], route["group_interval"]) == ("500ms", "5s")
    fallback, watchdog = route["routes"]
    assert fallback == {
        "receiver": "pagerduty",
        "matchers": ['alertname=~"RemediationServiceDown|AlertUnhandled"'],
        "group_by": ["alertname", "original_alertname", "host"],
    }
    assert watchdog["receiver"] == "alertd" and watchdog["matchers"] == ['alertname="Watchdog"']
    assert watchdog["repeat_interval"] == watchdog["group_interval"] == "4s"
    receivers = {r["name"]: r for r in am["receivers"]}
    hook = receivers["alertd"]["webhook_configs"][0]
    assert hook["url"] == "http://127.0.0.1:9095" + ALERTD_WEBHOOK_PATH and hook["send_resolved"] is True
    assert hook["http_config"]["authorization"] == {"type": "Bearer", "credentials_file": str(tmp_path / "secrets/webhook.token")}
    pd = receivers["pagerduty"]["pagerduty_configs"][0]
    assert pd["routing_key_file"] == str(tmp_path / "secrets/routing.key")
    assert pd["url"] == "https://127.0.0.1:8443/v2/enqueue"
    assert pd["http_config"] == {"tls_config": {"ca_file": str(tmp_path / "secrets/ca.pem")}}
    assert ".CommonLabels.severity" in pd["severity"]


def test_without_alertd_page_worthy_alerts_go_to_pagerduty_or_nowhere(tmp_path: Path) -> None:
    secrets = _secrets(tmp_path)
    with_key = alertmanager_config(
        Settings.from_vars({"monitoring_pagerduty_routing_key_file": secrets["monitoring_pagerduty_routing_key_file"]}, 4)
    )
    assert with_key["route"]["receiver"] == "null"
    assert with_key["route"]["routes"] == [
        {"receiver": "null", "matchers": ['alertname="Watchdog"']},
        {"receiver": "pagerduty", "matchers": ['severity=~"critical|error"']},
    ]
    bare = alertmanager_config(Settings.from_vars({}, delegates=4))
    assert [r["name"] for r in bare["receivers"]] == ["null"]
    assert {r["receiver"] for r in bare["route"]["routes"]} == {"null"}


def test_inhibitions_stall_over_symptoms_and_a_down_delegate_over_its_own_alerts(tmp_path: Path) -> None:
    rules = alertmanager_config(lab_settings(tmp_path))["inhibit_rules"]
    stall, down, slots = rules
    assert stall["source_matchers"] == ['alertname="ChainStalled"'] and "equal" not in stall
    assert stall["target_matchers"] == ['alertname=~"DelegateLagging|DelegateMissingSlots|PeersLow|MempoolBacklog"']
    assert down["source_matchers"] == ['alertname="DelegateDown"'] and down["equal"] == ["host"]
    targets = down["target_matchers"][0]
    assert "DelegateLagging" in targets and "DiskSpaceLow" in targets
    for never in ("DelegateDown", *FALLBACK_ALERTS, "Watchdog", "ChainStalled"):
        assert never not in stall["target_matchers"][0] and f"|{never}" not in targets and f'"{never}' not in targets
    assert slots["target_matchers"] == ['alertname="DelegateMissingSlots"'] and slots["equal"] == ["host"]


def test_no_secret_value_is_ever_written_only_the_paths_of_their_files(tmp_path: Path) -> None:
    inventory = lab_inventory(tmp_path, **_secrets(tmp_path / "secrets"))
    files = render.render_files(inv_mod.load(inventory))
    text = "\n".join(files.values())
    assert TOKEN not in text and ROUTING_KEY not in text
    assert str(tmp_path / "secrets" / "webhook.token") in files["alertmanager.yml"]
    assert str(tmp_path / "secrets" / "routing.key") in files["alertmanager.yml"]


# --- scrape ------------------------------------------------------------------------------------------


def test_prometheus_scrapes_each_delegate_by_its_host_and_alertd(tmp_path: Path) -> None:
    s = lab_settings(tmp_path, monitoring_rule_files=["/extra/more.yml", str(tmp_path / "monitoring" / "rules.yml")])
    cfg = prometheus_config(s, (Target("node0", "127.0.0.1:21000"),), monitoring_dir=str(tmp_path / "monitoring"))
    assert cfg["global"] == {"scrape_interval": "500ms", "evaluation_interval": "500ms", "scrape_timeout": "500ms"}
    assert cfg["rule_files"] == ["rules.yml", "/extra/more.yml"]  # the lab's own rules.yml is the generated one
    node, alertd = cfg["scrape_configs"]
    assert node["static_configs"] == [{"targets": ["127.0.0.1:21000"], "labels": {"delegate": "node0", "host": "node0"}}]
    assert alertd == {
        "job_name": "alertd",
        "scheme": "http",
        "metrics_path": "/metrics",
        "static_configs": [{"targets": ["127.0.0.1:9095"]}],
    }
    assert prometheus_config(Settings.from_vars({"monitoring_interval": 0.5}, 4), ())["global"]["scrape_interval"] == "500ms"


# --- from inventories --------------------------------------------------------------------------------


def test_render_the_example_production_inventory() -> None:
    rendered = render.render(inv_mod.load(EXAMPLE_PROD))
    assert [(t.host, t.address) for t in rendered.targets] == [
        ("delegate-fra1", "203.0.113.10:14014"),
        ("delegate-sgp1", "203.0.113.20:14014"),
        ("delegate-iad1", "198.51.100.30:14014"),
        ("delegate-sfo1", "198.51.100.40:14015"),
    ]
    # the example's ops host runs alertd and pages PagerDuty: the fallbacks exist, every alert reaches someone
    assert rendered.settings.interval_s == 15 and {"RemediationServiceDown", "AlertUnhandled"} <= set(rendered.alerts)
    assert not any("no alert reaches anyone" in w for w in rendered.warnings)
    am = rendered.files["alertmanager.yml"]
    assert "http://127.0.0.1:9095/v1/alerts" in am and "routing_key_file: /etc/iotex-ops/alertd/routing.key" in am
    assert set(rendered.files) == {"prometheus.yml", "rules.yml", "rules.test.yml", "alertmanager.yml"}


def test_render_a_lab_inventory_takes_the_monitoring_hosts_settings(tmp_path: Path) -> None:
    inventory = lab_inventory(tmp_path, **_secrets(tmp_path / "secrets"))
    written = render.write(inv_mod.load(inventory), tmp_path / "out")
    assert sorted(p.name for p in written) == ["alertmanager.yml", "prometheus.yml", "rules.test.yml", "rules.yml"]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in written)
    prom = yaml.safe_load((tmp_path / "out" / "prometheus.yml").read_text())
    assert [c["targets"][0] for c in prom["scrape_configs"][0]["static_configs"]] == [f"127.0.0.1:{21000 + i}" for i in range(4)]
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]


def test_the_monitoring_hosts_value_wins_as_in_ansible(tmp_path: Path) -> None:
    inventory = lab_inventory(tmp_path, monitoring_alert_lag_blocks=5)  # all: 10 (LAB_VARS), the monitoring host: 5
    assert settings_from_inventory(inv_mod.load(inventory)).lag_blocks == 5


def test_delegates_that_disagree_without_monitoring_hosts_are_an_error_naming_each(tmp_path: Path) -> None:
    doc = yaml.safe_load(lab_inventory(tmp_path).read_text())
    del doc["all"]["children"]["monitoring"]
    doc["all"]["children"]["delegates"]["hosts"]["node1"]["monitoring_alert_lag_blocks"] = 7
    (tmp_path / "flat.yml").write_text(yaml.safe_dump(doc))
    with pytest.raises(
        AlertingError, match=r"monitoring_alert_lag_blocks differs between hosts \(node0=10, node1=7, node2=10, node3=10\)"
    ):
        settings_from_inventory(inv_mod.load(tmp_path / "flat.yml"))


def test_a_jinja_value_is_refused_since_the_generator_cannot_evaluate_it(tmp_path: Path) -> None:
    inventory = lab_inventory(tmp_path, monitoring_alertd_url="http://{{ alertd_host }}:9095")
    with pytest.raises(AlertingError, match=r"monitoring_alertd_url: .*Jinja expression"):
        render.render(inv_mod.load(inventory))


# --- the real tools ----------------------------------------------------------------------------------


@pytest.mark.slow  # runs promtool and amtool
@needs_promtool
@needs_amtool
@pytest.mark.parametrize("flavour", ["lab", "production"])
def test_promtool_and_amtool_accept_the_config_and_every_rule_test_passes(tmp_path: Path, flavour: str) -> None:
    secrets = _secrets(tmp_path / "secrets")
    s = lab_settings(tmp_path) if flavour == "lab" else Settings.from_vars(secrets, delegates=4)
    out = render.write_rendered(render.render_settings(s, (Target("d1", "127.0.0.1:1"),)), tmp_path / "out")
    runs = check.run_checks(out[0].parent)
    assert [r.name for r in runs] == [
        "promtool check config",
        "promtool check rules",
        "promtool test rules",
        "amtool check-config",
        "referenced files",
    ]
    assert all(r.ok for r in runs), "\n".join(str(r) for r in runs if not r.ok)


@pytest.mark.slow  # runs promtool and amtool
@needs_promtool
@needs_amtool
def test_a_rule_that_breaks_its_test_is_reported_with_promtools_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render.write_rendered(render.render_settings(lab_settings(tmp_path), (Target("d1", "127.0.0.1:1"),)), out)
    rules = out / "rules.yml"
    rules.write_text(rules.read_text().replace("== 1 unless on (host) iotex_node_halted", "== 1 or on (host) iotex_node_halted"))
    (tmp_path / "secrets" / "routing.key").unlink()
    problems = check.check(out)
    assert [p.name for p in problems] == ["promtool test rules", "referenced files"]
    assert "DelegatePausedUnexpectedly stays quiet on a node halted for an upgrade" in problems[0].output
    assert "routing.key does not exist" in problems[1].output


def test_a_missing_tool_names_the_packages_to_install(tmp_path: Path, monkeypatch) -> None:
    render.write_rendered(render.render_settings(Settings.from_vars({}, 4), ()), tmp_path)
    monkeypatch.setattr(check.shutil, "which", lambda name: None)
    with pytest.raises(AlertingError, match=r"promtool is not installed .*apt-get install prometheus prometheus-alertmanager"):
        check.run_checks(tmp_path)


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.slow  # runs promtool and amtool
def test_cli_render_json_then_check_json(tmp_path: Path) -> None:
    inventory = lab_inventory(tmp_path, **_secrets(tmp_path / "secrets"))
    runner = CliRunner()
    r = runner.invoke(monitoring_group, ["render", "-i", str(inventory), "--out", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["alertd"] == "http://127.0.0.1:9095" and doc["pagerduty"] is True and doc["interval"] == "500ms"
    assert set(doc["alerts"]) == set(ALERTS) and doc["warnings"] == []
    assert len(doc["targets"]) == 4
    if shutil.which("promtool") and shutil.which("amtool"):
        r = runner.invoke(monitoring_group, ["check", str(tmp_path / "out"), "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["ok"] is True


def test_cli_render_for_people_prints_tables_and_warnings(tmp_path: Path) -> None:
    r = CliRunner().invoke(monitoring_group, ["render", "-i", str(EXAMPLE_PROD), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "delegate-sfo1" in r.output and "198.51.100.40:14015" in r.output and "alertd: http://127.0.0.1:9095" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["render", "-i", "/nonexistent/inventory", "--out", "out"], "inventory /nonexistent/inventory does not exist"),
        (["check", "/nonexistent/dir"], "/nonexistent/dir has no prometheus.yml"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    r = CliRunner().invoke(monitoring_group, args)
    assert r.exit_code == 2 and f"error: {message}" in r.output and "Traceback" not in r.output


def test_cli_bad_inventory_settings_exit_2(tmp_path: Path) -> None:
    inventory = lab_inventory(tmp_path, monitoring_alert_disk_free_ratio=5)
    r = CliRunner().invoke(monitoring_group, ["render", "-i", str(inventory), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "monitoring_alert_disk_free_ratio: 5 must be between 0 and 1" in r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # runs promtool and amtool
@needs_promtool
@needs_amtool
def test_cli_check_exits_1_and_shows_the_tools_output(tmp_path: Path) -> None:
    render.write_rendered(render.render_settings(Settings.from_vars({}, 4), ()), tmp_path)
    (tmp_path / "alertmanager.yml").write_text("route: {receiver: nowhere}\nreceivers: []\n")
    r = CliRunner().invoke(monitoring_group, ["check", str(tmp_path)])
    assert r.exit_code == 1 and "amtool check-config" in r.output and "nowhere" in r.output
