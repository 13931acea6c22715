"""Alerting: Prometheus rules, scrape config and Alertmanager routing, all generated from the inventory.

One generator (pure functions over `Settings` and the delegates' `Target`s) feeds the CLI
(`iotex-ops monitoring render|check`), the monitoring role of the playbooks and the lab. The modules
`render` and `check` keep their names: `alerting.render.render(inv)`, `alerting.check.check(dir)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iotex_ops import lazy

if TYPE_CHECKING:
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

# Each name is imported when first used (PEP 562): `alerting.settings` (what the lab and `iotex-ops status`
# need) comes without the rule cases, the renderer and the checks.
_WHERE = {
    "CheckRun": "check",
    "run_checks": "check",
    "AlertingError": "errors",
    "Rendered": "render",
    "render_files": "render",
    "render_settings": "render",
    "write": "render",
    "ALERTS": "rules",
    "AlertSpec": "rules",
    "alert_specs": "rules",
    "rule_groups": "rules",
    "LAB_VARS": "settings",
    "Settings": "settings",
    "Target": "settings",
    "settings_from_inventory": "settings",
    "targets_from_inventory": "settings",
    "variables": "settings",
}


__getattr__ = lazy.exports(__name__, _WHERE)


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
