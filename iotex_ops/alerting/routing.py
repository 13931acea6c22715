"""Alertmanager's configuration: routes, receivers and inhibitions, from the settings.

With alertd: every alert goes to alertd (it remediates and pages), except RemediationServiceDown and
AlertUnhandled, which exist because alertd cannot act and so go straight to PagerDuty. Watchdog reaches
alertd every `monitoring_alert_watchdog_repeat`: alertd treats its silence as a dead monitoring stack.
Without alertd: critical and error alerts go to PagerDuty, the rest nowhere.
Secrets are only ever referenced by file (credentials_file, routing_key_file), never inlined.
"""

from __future__ import annotations

from typing import Any

from iotex_ops.alerting.rules import DELEGATE, FALLBACK_ALERTS, PAGE_SEVERITIES, AlertSpec, alert_specs
from iotex_ops.alerting.settings import Settings, fmt_duration

ALERTD, PAGERDUTY, NULL = "alertd", "pagerduty", "null"

# ChainStalled explains these on every delegate: a stalled chain misses every slot, fills every mempool, and a
# partition shows as low peers. It does not inhibit DelegateDown or DelegatePausedUnexpectedly: a third of the
# delegates down or paused is what stalls a chain, and restarting or resuming them is what ends the stall.
# Nor DiskSpaceLow: a full disk does not come from a stall, it may cause one.
STALL_SYMPTOMS = ("DelegateLagging", "DelegateMissingSlots", "PeersLow", "MempoolBacklog")
# A delegate that lags or is paused cannot propose: its missed slots are a symptom with a remedy of its own.
SLOT_CAUSES = ("DelegateLagging", "DelegatePausedUnexpectedly")

PAGERDUTY_SEVERITY = "{{ if .CommonLabels.severity }}{{ .CommonLabels.severity | toLower }}{{ else }}critical{{ end }}"
PAGERDUTY_DESCRIPTION = (
    "{{ .CommonLabels.alertname }}{{ with .CommonLabels.original_alertname }} {{ . }}{{ end }}"
    "{{ with .CommonLabels.host }} on {{ . }}{{ end }}: {{ .CommonAnnotations.summary }}"
)


def _re(names: tuple[str, ...] | list[str]) -> str:
    return "|".join(names)


def inhibit_rules(specs: tuple[AlertSpec, ...]) -> list[dict[str, Any]]:
    """Inhibitions among the alerts that exist (never of the fallbacks: they are the last resort)."""
    names = {a.name for a in specs}
    per_delegate = [a.name for a in specs if a.scope == DELEGATE and a.name != "DelegateDown"]
    rules: list[dict[str, Any]] = []
    symptoms = [n for n in STALL_SYMPTOMS if n in names]
    if "ChainStalled" in names and symptoms:
        rules.append({"source_matchers": ['alertname="ChainStalled"'], "target_matchers": [f'alertname=~"{_re(symptoms)}"']})
    if "DelegateDown" in names and per_delegate:
        # Its other alerts come from metrics that stopped, or from its peers' view of it: one page, one remedy.
        rules.append(
            {
                "source_matchers": ['alertname="DelegateDown"'],
                "target_matchers": [f'alertname=~"{_re(per_delegate)}"'],
                "equal": ["host"],
            }
        )
    if "DelegateMissingSlots" in names:
        rules.append(
            {
                "source_matchers": [f'alertname=~"{_re(SLOT_CAUSES)}"'],
                "target_matchers": ['alertname="DelegateMissingSlots"'],
                "equal": ["host"],
            }
        )
    return rules


def receivers(s: Settings) -> dict[str, dict[str, Any]]:
    """Every receiver these settings can have, by name."""
    out: dict[str, dict[str, Any]] = {NULL: {"name": NULL}}
    if s.alertd_base:
        hook: dict[str, Any] = {"url": s.alertd_webhook, "send_resolved": True, "max_alerts": 0}
        if s.alertd_token_file:
            hook["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": s.alertd_token_file}}
        out[ALERTD] = {"name": ALERTD, "webhook_configs": [hook]}
    if s.pagerduty_routing_key_file:
        pd: dict[str, Any] = {
            "routing_key_file": s.pagerduty_routing_key_file,
            "url": s.pagerduty_url,
            "send_resolved": True,
            "severity": PAGERDUTY_SEVERITY,
            "description": PAGERDUTY_DESCRIPTION,
            "client": "iotex-ops Alertmanager",
        }
        if s.pagerduty_ca_file:
            pd["http_config"] = {"tls_config": {"ca_file": s.pagerduty_ca_file}}
        out[PAGERDUTY] = {"name": PAGERDUTY, "pagerduty_configs": [pd]}
    return out


def alertmanager_config(s: Settings) -> dict[str, Any]:
    """alertmanager.yml for these settings."""
    available = receivers(s)
    pagerduty = PAGERDUTY if PAGERDUTY in available else NULL
    watchdog_timing = {
        "group_wait": "0s",
        # a notification leaves only on a group_interval tick, so the repeat is exact only when they match
        "group_interval": fmt_duration(s.watchdog_repeat),
        "repeat_interval": fmt_duration(s.watchdog_repeat),
    }
    routes: list[dict[str, Any]]
    if s.alertd_base:
        default = ALERTD
        routes = [
            {
                "receiver": pagerduty,
                "matchers": [f'alertname=~"{_re(FALLBACK_ALERTS)}"'],
                "group_by": ["alertname", "original_alertname", "host"],
            },
            {"receiver": ALERTD, "matchers": ['alertname="Watchdog"'], **watchdog_timing},
        ]
    else:
        default = NULL
        routes = [
            {"receiver": NULL, "matchers": ['alertname="Watchdog"']},
            {"receiver": pagerduty, "matchers": [f'severity=~"{_re(PAGE_SEVERITIES)}"']},
        ]
    used = [default, *(r["receiver"] for r in routes)]
    return {
        "route": {
            "receiver": default,
            # network-wide alerts have no host: they group by alertname alone
            "group_by": ["alertname", "host"],
            "group_wait": fmt_duration(s.group_wait),
            "group_interval": fmt_duration(s.group_interval),
            "repeat_interval": fmt_duration(s.repeat_interval),
            "routes": routes,
        },
        "inhibit_rules": inhibit_rules(alert_specs(s)),
        "receivers": [available[name] for name in dict.fromkeys(used)],
    }


def warnings(s: Settings) -> list[str]:
    """What these settings leave unwatched (not errors: a lab may run without paging)."""
    out = []
    if not s.alertmanager:
        out.append("monitoring_alertmanager is empty: Prometheus sends no alert anywhere")
    if not s.pagerduty_routing_key_file:
        if s.alertd_base:
            out.append(
                "monitoring_pagerduty_routing_key_file is empty: "
                "RemediationServiceDown and AlertUnhandled reach nobody when alertd is down"
            )
        else:
            out.append("neither monitoring_alertd_url nor monitoring_pagerduty_routing_key_file is set: no alert reaches anyone")
    if s.alertd_base and not s.alertd_token_file:
        out.append("monitoring_alertd_token_file is empty: Alertmanager posts to alertd without a bearer token")
    return out
