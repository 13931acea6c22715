"""The Prometheus alerting rules, from the settings' thresholds.

Labels: `severity` (critical | error | warning | info) and, on every alert about one delegate, `host` (the
inventory host, which the remediation service takes runbook parameters from). Annotations: `summary`,
`description`, `runbook` (the remediation runbook's name, or "" when a person must act), and `runbook_url`
when `monitoring_alert_docs_url` is set.

Severities: critical = the network or its safety net is at risk (a person is paged even when a machine
acts); error = one delegate cannot do its duty; warning = degraded, worth a look before it becomes an
error; info = Watchdog only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iotex_ops.alerting.settings import Settings, fmt_duration

NODE_JOB = "iotex-node"
ALERTD_JOB = "alertd"
SEVERITIES = ("critical", "error", "warning", "info")
PAGE_SEVERITIES = ("critical", "error")

# Remediation runbooks (runbooks/) that alertd runs for an alert's annotation `runbook`.
RESTART_NODE = "restart-node"
REBUILD_NODE = "rebuild-node"
RESUME_DELEGATE = "resume-delegate"

# Scopes: "delegate" alerts carry host; "network" ones concern the whole chain; "alerting" ones the pipeline.
DELEGATE, NETWORK, PIPELINE = "delegate", "network", "alerting"

ALERTS = (
    "DelegateDown",
    "DelegateLagging",
    "DelegateMissingSlots",
    "PeersLow",
    "DelegatePausedUnexpectedly",
    "MempoolBacklog",
    "DiskSpaceLow",
    "ChainStalled",
    "VersionSkew",
    "Watchdog",
    "RemediationServiceDown",
    "AlertUnhandled",
)
# Alerts that go to PagerDuty and never to alertd: they exist because alertd cannot act.
FALLBACK_ALERTS = ("RemediationServiceDown", "AlertUnhandled")

_J = f'job="{NODE_JOB}"'
HOST = "{{ $labels.host }}"
INSTANCE = "{{ $labels.instance }}"
ADDRESS = "{{ $labels.address }}"
VALUE0 = '{{ printf "%.0f" $value }}'
VALUE1 = '{{ printf "%.1f" $value }}'


@dataclass(frozen=True)
class AlertSpec:
    name: str
    expr: str
    for_s: float
    severity: str  # one of SEVERITIES, or a label template (AlertUnhandled keeps the original's)
    summary: str
    description: str
    runbook: str
    scope: str
    group: str

    def rule(self, docs_url: str = "") -> dict[str, Any]:
        """The rule as Prometheus reads it."""
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_s:
            rule["for"] = fmt_duration(self.for_s)
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = self.annotations(docs_url)
        return rule

    def annotations(self, docs_url: str = "") -> dict[str, str]:
        out = {"summary": self.summary, "description": self.description, "runbook": self.runbook}
        if docs_url:
            out["runbook_url"] = f"{docs_url}#{self.name.lower()}"
        return out


def stall_samples(s: Settings) -> int:
    """Scrapes of a delegate that ChainStalled needs in its window: all of them but one (a missed scrape)."""
    return max(2, int(s.chain_stalled_for // s.interval_s) - 1)


def alert_specs(s: Settings) -> tuple[AlertSpec, ...]:
    """Every alert for these settings: PeersLow only when monitoring_alert_peers_min > 0, the fallbacks only with alertd."""
    w = fmt_duration(s.chain_stalled_for)
    specs = [
        AlertSpec(
            "DelegateDown",
            f"up{{{_J}}} == 0",
            s.delegate_down_for,
            "error",
            f"delegate {HOST} is not answering /metrics",
            f"Prometheus could not scrape {INSTANCE} for {fmt_duration(s.delegate_down_for)}: "
            "the node is down or its host is unreachable.",
            RESTART_NODE,
            DELEGATE,
            "iotex-delegates",
        ),
        AlertSpec(
            "DelegateLagging",
            f"scalar(max(iotex_finalized_height{{{_J}}})) - iotex_finalized_height{{{_J}}} > {s.lag_blocks}",
            s.lag_for,
            "error",
            f"delegate {HOST} is {VALUE0} blocks behind the network",
            f"Its finalized height has been more than {s.lag_blocks} blocks behind the highest for "
            f"{fmt_duration(s.lag_for)}; rebuilding its chain database from a peer brings it back.",
            REBUILD_NODE,
            DELEGATE,
            "iotex-delegates",
        ),
        AlertSpec(
            "DelegateMissingSlots",
            # Every node counts every proposer's missed slots, by operator address (`delegate` on the node,
            # renamed `exported_delegate` because the target label `delegate` wins); the address of each
            # host comes from its iotex_node_info. group_right: a standby sharing the key is named too.
            f"max by (address) (\n"
            f"  label_replace(increase(iotex_missed_slots_total{{{_J}}}[{fmt_duration(s.missed_slots_window)}]),"
            f' "address", "$1", "exported_delegate", "(.+)")\n'
            f")\n"
            f"* on (address) group_right\n"
            f"max by (address, host, delegate) (last_over_time(iotex_node_info{{{_J}}}[{fmt_duration(s.missed_slots_window)}]))\n"
            f"> {s.missed_slots}",
            0,
            "error",
            f"delegate {HOST} misses its proposer slots",
            f"More than {s.missed_slots} proposer slots of {ADDRESS} passed without its block in the last "
            f"{fmt_duration(s.missed_slots_window)} while its node answers and keeps up: check its clock, its key "
            "and whether it runs as a standby.",
            "",
            DELEGATE,
            "iotex-delegates",
        ),
        AlertSpec(
            "PeersLow",
            f"iotex_peers{{{_J}}} < {s.peers_min}",
            s.peers_for,
            "warning",
            f"delegate {HOST} has {VALUE0} peers (fewer than {s.peers_min})",
            f"For {fmt_duration(s.peers_for)}. With fewer than {s.peers_min} peers it cannot reach a quorum "
            "through its own connections: check its network and firewall.",
            "",
            DELEGATE,
            "iotex-delegates",
        ),
        AlertSpec(
            "DelegatePausedUnexpectedly",
            # A halted node is paused by its scheduled halt (an incompatible upgrade), not by a person.
            f"iotex_node_paused{{{_J}}} == 1 unless on (host) iotex_node_halted{{{_J}}} == 1",
            s.paused_for,
            "error",
            f"delegate {HOST} has been paused for more than {fmt_duration(s.paused_for)}",
            "Longer than a planned first-aid hold, and not halted for an upgrade: it neither proposes nor "
            "endorses. Resuming it brings it back.",
            RESUME_DELEGATE,
            DELEGATE,
            "iotex-delegates",
        ),
        AlertSpec(
            "MempoolBacklog",
            f"iotex_mempool_actions{{{_J}}} > {s.mempool_max}",
            s.mempool_for,
            "warning",
            f"delegate {HOST} holds {VALUE0} pending actions",
            f"More than {s.mempool_max} for {fmt_duration(s.mempool_for)}: blocks do not keep up with the actions submitted.",
            "",
            DELEGATE,
            "iotex-delegates",
        ),
        AlertSpec(
            "DiskSpaceLow",
            f"100 * iotex_disk_free_bytes{{{_J}}} / iotex_disk_size_bytes{{{_J}}} < {100 * s.disk_free_ratio:g}",
            s.disk_for,
            "error",
            f"delegate {HOST} has {VALUE1}% disk space free",
            f"Less than {100 * s.disk_free_ratio:g}% of the filesystem holding its data directory has been free "
            f"for {fmt_duration(s.disk_for)}: the node stops when it is full.",
            "",
            DELEGATE,
            "iotex-delegates",
        ),
        AlertSpec(
            "ChainStalled",
            # No delegate's finalized height moved within the window (the chain had started: height 0 is a
            # network still booting), or no delegate answered at all; only once Prometheus has watched for
            # (nearly) the whole window, so that a Prometheus that just started pages nobody; and not while a
            # third or more of the delegates are paused or halted on purpose, which stops a chain by design.
            f"(\n"
            f"  (max(changes(iotex_finalized_height{{{_J}}}[{w}])) == 0 and on () max(iotex_finalized_height{{{_J}}}) > 0)\n"
            f"  or absent(max_over_time(up{{{_J}}}[{w}]) == 1)\n"
            f")\n"
            f"and on () max(count_over_time(up{{{_J}}}[{w}])) >= {stall_samples(s)}\n"
            f"unless on ()\n"
            f"(count(iotex_node_paused{{{_J}}} == 1 or iotex_node_halted{{{_J}}} == 1) * 3 >= count(up{{{_J}}}))",
            0,
            "critical",
            f"no delegate finalized a block for {w}",
            "The highest finalized height did not move on any delegate (or no delegate answered), and the "
            "delegates are not paused or halted on purpose. Fewer than two thirds may be signing: a person must look.",
            "",
            NETWORK,
            "iotex-network",
        ),
        AlertSpec(
            "VersionSkew",
            f"count(count by (version) (iotex_node_info{{{_J}}})) > 1",
            s.version_skew_for,
            "warning",
            f"{VALUE0} node versions run among the delegates",
            f"For more than {fmt_duration(s.version_skew_for)}, longer than a rolling upgrade takes: finish the "
            "upgrade or roll it back.",
            "",
            NETWORK,
            "iotex-network",
        ),
        AlertSpec(
            "Watchdog",
            "vector(1)",
            0,
            "info",
            "the alerting pipeline is alive",
            f"Always firing. The remediation service expects it every {fmt_duration(s.watchdog_repeat)}; when it "
            "stops coming, Prometheus or Alertmanager is down.",
            "",
            PIPELINE,
            "iotex-alerting",
        ),
    ]
    if s.peers_min == 0:
        specs = [a for a in specs if a.name != "PeersLow"]  # one delegate has no peers to lose
    if s.alertd_base:
        down = f'(up{{job="{ALERTD_JOB}"}} == 0 or absent(up{{job="{ALERTD_JOB}"}}))'
        others = "|".join(("Watchdog", *FALLBACK_ALERTS))
        specs += [
            AlertSpec(
                "RemediationServiceDown",
                down,
                s.alertd_down_for,
                "critical",
                "the remediation service (alertd) is down",
                f"Prometheus could not scrape alertd at {s.alertd_base} for {fmt_duration(s.alertd_down_for)}: "
                "no alert is remediated, and page-worthy ones go to PagerDuty as AlertUnhandled until it is back.",
                "",
                PIPELINE,
                "iotex-alerting",
            ),
            AlertSpec(
                "AlertUnhandled",
                # Each firing page-worthy alert again, under its own name in original_alertname, while
                # alertd is down. The rule sets alertname, so the original's is copied first.
                f"max without (alertstate) (\n"
                f'  label_replace(ALERTS{{alertstate="firing", severity=~"{"|".join(PAGE_SEVERITIES)}", '
                f'alertname!~"{others}"}},'
                f' "original_alertname", "$1", "alertname", "(.+)")\n'
                f")\n"
                f"and on () {down}",
                s.alertd_down_for,
                "{{ $labels.severity }}",
                "{{ $labels.original_alertname }} is firing{{ with $labels.host }} on {{ . }}{{ end }} and alertd is down",
                "The remediation service cannot act on it: a person must. Its runbook is named in the original "
                "alert's annotations.",
                "",
                PIPELINE,
                "iotex-alerting",
            ),
        ]
    return tuple(specs)


def rule_groups(s: Settings) -> dict[str, Any]:
    """The rules file (rules.yml) for these settings."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for spec in alert_specs(s):
        groups.setdefault(spec.group, []).append(spec.rule(s.docs_url))
    return {"groups": [{"name": name, "rules": rules} for name, rules in groups.items()]}
