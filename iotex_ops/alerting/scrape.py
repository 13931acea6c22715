"""Prometheus's configuration: what it scrapes, how often, its rules and its Alertmanager."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from iotex_ops.alerting.rules import ALERTD_JOB, NODE_JOB
from iotex_ops.alerting.settings import Settings, Target, fmt_duration

RULES_FILE = "rules.yml"  # beside prometheus.yml; Prometheus resolves it against the config's directory


def prometheus_config(s: Settings, targets: tuple[Target, ...], monitoring_dir: str = "") -> dict[str, Any]:
    """prometheus.yml: every delegate's /metrics (labels `delegate` and `host`: its inventory host) and alertd's.

    `monitoring_dir`, when known, drops an extra rule file that is the generated rules.yml itself."""
    interval = fmt_duration(s.interval_s)
    generated = {RULES_FILE, str(PurePosixPath(monitoring_dir) / RULES_FILE)} if monitoring_dir else {RULES_FILE}
    rule_files = [RULES_FILE, *(f for f in dict.fromkeys(s.rule_files) if f not in generated)]
    cfg: dict[str, Any] = {
        # scrape_timeout may not exceed scrape_interval; equal, a slow node is seen as down within one interval
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": rule_files,
    }
    if s.alertmanager:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [s.alertmanager]}]}]}
    jobs: list[dict[str, Any]] = [
        {
            "job_name": NODE_JOB,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [t.address], "labels": {"delegate": t.host, "host": t.host}} for t in targets],
        }
    ]
    if s.alertd_base:
        url = urlsplit(s.alertd_base)
        jobs.append(
            {
                "job_name": ALERTD_JOB,
                "scheme": url.scheme,
                "metrics_path": (url.path.rstrip("/") or "") + "/metrics",
                "static_configs": [{"targets": [url.netloc]}],
            }
        )
    cfg["scrape_configs"] = jobs
    return cfg
