"""Alerting: Prometheus rules, scrape config and Alertmanager routing, all generated from the inventory.

One generator (pure functions over `Settings` and the delegates' `Target`s) feeds the CLI
(`iotex-ops monitoring render|check`), the monitoring role of the playbooks and the lab. The modules
`render` and `check` keep their names: `alerting.render.render(inv)`, `alerting.check.check(dir)`.
"""

from iotex_ops.alerting.check import CheckRun, run_checks
from iotex_ops.alerting.errors import AlertingError
from iotex_ops.alerting.render import Rendered, render_files, render_settings, write
from iotex_ops.alerting.rules import ALERTS, AlertSpec, alert_specs, rule_groups
from iotex_ops.alerting.settings import (
    LAB_VARS,
    Settings,
    Target,
    settings_from_inventory,
    targets_from_inventory,
    variables,
)

__all__ = [
    "ALERTS",
    "LAB_VARS",
    "AlertSpec",
    "AlertingError",
    "CheckRun",
    "Rendered",
    "Settings",
    "Target",
    "alert_specs",
    "render_files",
    "render_settings",
    "rule_groups",
    "run_checks",
    "settings_from_inventory",
    "targets_from_inventory",
    "variables",
    "write",
]
