"""What the generator reads from the inventory: the monitoring settings and the delegates' metrics targets.

Every setting is an inventory variable with a production default and its help in the monitoring role's
defaults/main.yml (`variables()`, also `VARS`: one source, iotex_ops.content); the lab sets shorter ones
(`LAB_VARS`). A setting is read as the monitoring role sees it, on the hosts of the `monitoring` group (on
the delegates when there is none): group_vars/all.yml or the monitoring hosts' vars, never only the
delegates'. Hosts that disagree are an error. Values are read as written: a Jinja expression cannot be
evaluated here and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from iotex_ops import content
from iotex_ops.alerting.errors import AlertingError
from iotex_ops.durations import fmt_duration, parse_duration
from iotex_ops.inventory import Inventory

MONITORING_GROUP = "monitoring"
ALERTD_WEBHOOK_PATH = "/v1/alerts"  # where alertd takes Alertmanager's webhook posts, beside its /metrics
# Variables that would put a secret's value into the inventory; only files are accepted.
INLINE_SECRETS = {
    "pagerduty_routing_key": "monitoring_pagerduty_routing_key_file",
    "pagerduty_service_key": "monitoring_pagerduty_routing_key_file",
    "alertd_token": "monitoring_alertd_token_file",
    "monitoring_pagerduty_routing_key": "monitoring_pagerduty_routing_key_file",
    "monitoring_alertd_token": "monitoring_alertd_token_file",
}


@dataclass(frozen=True)
class Var:
    """One inventory variable of the generator: its kind, production default, the lab's value, what it means."""

    name: str
    kind: str  # seconds | duration | int | ratio | url | hostport | path | list
    default: Any  # "" for a duration or number: derived (see help)
    help: str
    lab: Any = None  # None: the lab uses the default


MONITORING_ROLE = "monitoring"
# Each variable's kind and the lab's value (None: the default); its production default and its help are the
# monitoring role's defaults/main.yml (the value, and the comment right above it): see `variables()`.
_KINDS: dict[str, tuple[str, Any]] = {
    "monitoring_interval": ("seconds", 0.5),
    "monitoring_alertmanager": ("hostport", None),
    "monitoring_webhook_url": ("url", None),
    "monitoring_rule_files": ("list", None),
    "monitoring_alertd_url": ("url", None),
    "monitoring_alertd_token_file": ("path", None),
    "monitoring_pagerduty_url": ("url", None),
    "monitoring_pagerduty_routing_key_file": ("path", None),
    "monitoring_pagerduty_ca_file": ("path", None),
    "monitoring_alert_delegate_down_for": ("duration", "1s500ms"),
    "monitoring_alert_chain_stalled_for": ("duration", "5s"),
    "monitoring_alert_lag_blocks": ("int", 10),
    "monitoring_alert_lag_for": ("duration", "5s"),
    "monitoring_alert_missed_slots": ("int", None),
    "monitoring_alert_missed_slots_window": ("duration", "30s"),
    "monitoring_alert_peers_min": ("int", None),
    "monitoring_alert_peers_for": ("duration", "5s"),
    "monitoring_alert_paused_for": ("duration", "30s"),
    "monitoring_alert_version_skew_for": ("duration", "5m"),
    "monitoring_alert_mempool_max": ("int", None),
    "monitoring_alert_mempool_for": ("duration", "30s"),
    "monitoring_alert_disk_free_ratio": ("ratio", 0.02),
    "monitoring_alert_disk_for": ("duration", "10s"),
    "monitoring_alert_alertd_down_for": ("duration", "3s"),
    "monitoring_alert_group_wait": ("duration", None),
    "monitoring_alert_group_interval": ("duration", "5s"),
    "monitoring_alert_repeat_interval": ("duration", None),
    "monitoring_alert_watchdog_repeat": ("duration", "4s"),
    "monitoring_alert_docs_url": ("url", None),
}
VAR_NAMES = frozenset(_KINDS)
# What the lab's inventory sets (`all.vars`) so that a killed node alerts in seconds, not minutes.
LAB_VARS: Mapping[str, Any] = {name: lab for name, (_, lab) in _KINDS.items() if lab is not None}


def variables() -> tuple[Var, ...]:
    """The generator's variables, with the defaults and help of the monitoring role in use (iotex_ops.content)."""
    defaults = content.role_defaults(MONITORING_ROLE)
    helps = content.role_default_help(MONITORING_ROLE)
    missing = [name for name in _KINDS if name not in defaults]
    if missing:
        raise AlertingError(f"the monitoring role ({content.roles_dir()}) has no default for {', '.join(missing)}")
    return tuple(Var(name, kind, defaults[name], helps.get(name, ""), lab) for name, (kind, lab) in _KINDS.items())


def __getattr__(name: str) -> Any:
    if name == "VARS":  # read when asked, so that importing the generator reads no file
        return variables()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Target:
    """A delegate node's metrics endpoint: `host` is the inventory host (the `delegate` and `host` labels)."""

    host: str
    address: str  # host:port


@dataclass(frozen=True)
class Settings:
    """The validated settings; durations in seconds. Build it with `Settings.from_vars`."""

    interval_s: float
    alertmanager: str
    webhook_url: str
    rule_files: tuple[str, ...]
    alertd_url: str
    alertd_token_file: str
    pagerduty_url: str
    pagerduty_routing_key_file: str
    pagerduty_ca_file: str
    delegate_down_for: float
    chain_stalled_for: float
    lag_blocks: int
    lag_for: float
    missed_slots: int
    missed_slots_window: float
    peers_min: int
    peers_for: float
    paused_for: float
    version_skew_for: float
    mempool_max: int
    mempool_for: float
    disk_free_ratio: float
    disk_for: float
    alertd_down_for: float
    group_wait: float
    group_interval: float
    repeat_interval: float
    watchdog_repeat: float
    docs_url: str

    @property
    def alertd_base(self) -> str:
        """alertd's base URL ("" without one): alertd_url, else the scheme and address of monitoring_webhook_url."""
        if self.alertd_url:
            return self.alertd_url.rstrip("/")
        if self.webhook_url:
            parts = urlsplit(self.webhook_url)
            return f"{parts.scheme}://{parts.netloc}"
        return ""

    @property
    def alertd_webhook(self) -> str:
        if self.webhook_url:
            return self.webhook_url
        return self.alertd_base + ALERTD_WEBHOOK_PATH if self.alertd_base else ""

    @classmethod
    def from_vars(cls, values: Mapping[str, Any], delegates: int) -> Settings:
        """Settings from inventory variables (missing ones take their defaults); every bad one is named at once."""
        problems: list[str] = []
        for inline, use in INLINE_SECRETS.items():
            if inline in values:
                problems.append(f"{inline}: a secret's value does not belong in the inventory; put it in a file and set {use}")
        v: dict[str, Any] = {}
        for var in variables():
            raw = values.get(var.name, var.default)
            try:
                v[var.name] = _convert(var, raw)
            except ValueError as exc:
                problems.append(f"{var.name}: {exc}")
        if problems:
            raise AlertingError("bad monitoring settings:\n  " + "\n  ".join(problems))
        interval = v["monitoring_interval"]
        derived = {
            "monitoring_alert_group_wait": interval,
            "monitoring_alert_group_interval": 5 * interval,
            "monitoring_alert_watchdog_repeat": 4 * interval,
            "monitoring_alert_peers_min": delegates * 2 // 3,  # below it a node cannot reach a quorum through its own peers
        }
        for name, value in derived.items():
            if v[name] is None:
                v[name] = value
        problems += _relations(v)
        if problems:
            raise AlertingError("bad monitoring settings:\n  " + "\n  ".join(problems))
        return cls(
            interval_s=interval,
            alertmanager=v["monitoring_alertmanager"],
            webhook_url=v["monitoring_webhook_url"],
            rule_files=tuple(v["monitoring_rule_files"]),
            alertd_url=v["monitoring_alertd_url"],
            alertd_token_file=v["monitoring_alertd_token_file"],
            pagerduty_url=v["monitoring_pagerduty_url"],
            pagerduty_routing_key_file=v["monitoring_pagerduty_routing_key_file"],
            pagerduty_ca_file=v["monitoring_pagerduty_ca_file"],
            delegate_down_for=v["monitoring_alert_delegate_down_for"],
            chain_stalled_for=v["monitoring_alert_chain_stalled_for"],
            lag_blocks=v["monitoring_alert_lag_blocks"],
            lag_for=v["monitoring_alert_lag_for"],
            missed_slots=v["monitoring_alert_missed_slots"],
            missed_slots_window=v["monitoring_alert_missed_slots_window"],
            peers_min=v["monitoring_alert_peers_min"],
            peers_for=v["monitoring_alert_peers_for"],
            paused_for=v["monitoring_alert_paused_for"],
            version_skew_for=v["monitoring_alert_version_skew_for"],
            mempool_max=v["monitoring_alert_mempool_max"],
            mempool_for=v["monitoring_alert_mempool_for"],
            disk_free_ratio=v["monitoring_alert_disk_free_ratio"],
            disk_for=v["monitoring_alert_disk_for"],
            alertd_down_for=v["monitoring_alert_alertd_down_for"],
            group_wait=v["monitoring_alert_group_wait"],
            group_interval=v["monitoring_alert_group_interval"],
            repeat_interval=v["monitoring_alert_repeat_interval"],
            watchdog_repeat=v["monitoring_alert_watchdog_repeat"],
            docs_url=v["monitoring_alert_docs_url"],
        )


_MINIMUM = {
    "monitoring_alert_lag_blocks": 1,
    "monitoring_alert_missed_slots": 1,
    "monitoring_alert_peers_min": 0,
    "monitoring_alert_mempool_max": 1,
}


def _convert(var: Var, raw: Any) -> Any:
    if isinstance(raw, str) and ("{{" in raw or "{%" in raw):
        raise ValueError(f"{raw!r} is a Jinja expression; the generator reads the inventory as written: give the value")
    kind = var.kind
    if kind in ("duration", "int") and raw in ("", None):
        if var.default != "":
            raise ValueError("is empty")
        return None  # derived once the interval is known
    if kind in ("seconds", "duration"):
        seconds = parse_duration(raw)
        if abs(seconds * 1000 - round(seconds * 1000)) > 1e-6:
            raise ValueError(f"{raw!r} is finer than a millisecond")
        if kind == "seconds" and seconds <= 0:
            raise ValueError(f"{raw!r} must be more than 0")
        return round(seconds * 1000) / 1000
    if kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).strip().isdigit():
            raise ValueError(f"{raw!r} is not a whole number")
        n = int(str(raw).strip())
        if n < _MINIMUM.get(var.name, 0):
            raise ValueError(f"{n} is less than {_MINIMUM[var.name]}")
        return n
    if kind == "ratio":
        try:
            r = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{raw!r} is not a number") from None
        if isinstance(raw, bool) or not 0 < r < 1:
            raise ValueError(f"{raw!r} must be between 0 and 1 (0.1 is 10 %)")
        return r
    if kind == "list":
        if not isinstance(raw, list | tuple) or not all(isinstance(x, str) and x for x in raw):
            raise ValueError(f"{raw!r} must be a list of file paths")
        return list(raw)
    if not isinstance(raw, str):
        raise ValueError(f"{raw!r} must be a string")
    raw = raw.strip()
    if not raw:
        return ""
    if kind == "url":
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{raw!r} is not an http(s) URL")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials (use the *_file settings)")
        return raw
    if kind == "hostport":
        host, sep, port = raw.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{raw!r} is not host:port")
        return raw
    if kind == "path":
        if not raw.startswith("/"):
            raise ValueError(f"{raw!r} must be an absolute path on the monitoring host")
        return raw
    raise AssertionError(kind)


def _relations(v: Mapping[str, Any]) -> list[str]:
    """Durations that make no sense against the interval: a window needs two samples, a `for` one interval."""
    interval = v["monitoring_interval"]
    problems = []
    for name in ("monitoring_alert_chain_stalled_for", "monitoring_alert_missed_slots_window"):
        if v[name] < 2 * interval:
            problems.append(f"{name}: {fmt_duration(v[name])} holds fewer than 2 samples at monitoring_interval {interval:g}s")
    for short in (
        "delegate_down_for", "lag_for", "peers_for", "paused_for", "version_skew_for", "mempool_for", "disk_for",
        "alertd_down_for", "group_interval", "repeat_interval", "watchdog_repeat",
    ):  # fmt: skip
        name = f"monitoring_alert_{short}"
        if v[name] < interval:
            problems.append(f"{name}: {fmt_duration(v[name])} is shorter than monitoring_interval {interval:g}s")
    return problems


# -- from an inventory ----------------------------------------------------------------------------------


def settings_from_inventory(inv: Inventory) -> Settings:
    """The settings as the monitoring role sees them: the monitoring hosts' variables (the delegates' when
    there is no `monitoring` group). Hosts that disagree are an error naming each value."""
    delegates = inv.delegates
    if not delegates:
        raise AlertingError(f"{inv.path}: no group 'delegates' (or it has no hosts): nothing to monitor")
    names = list(inv.groups.get(MONITORING_GROUP, ())) or [h.name for h in delegates]
    chosen: dict[str, Any] = {}
    problems: list[str] = []
    for name in sorted(VAR_NAMES | set(INLINE_SECRETS)):
        seen = {h: inv.raw_vars[h][name] for h in names if name in inv.raw_vars.get(h, {})}
        if len({repr(x) for x in seen.values()}) > 1 or (seen and len(seen) < len(names)):
            where = ", ".join(f"{h}={seen[h]!r}" if h in seen else f"{h} unset" for h in names)
            problems.append(f"{name} differs between hosts ({where}): set it once, in group_vars/all.yml")
        elif seen:
            chosen[name] = next(iter(seen.values()))
    if problems:
        raise AlertingError(f"{inv.path}:\n  " + "\n  ".join(problems))
    try:
        return Settings.from_vars(chosen, delegates=len(delegates))
    except AlertingError as exc:
        raise AlertingError(f"{inv.path}: {exc}") from None


def targets_from_inventory(inv: Inventory) -> tuple[Target, ...]:
    """Each delegate's /metrics address: node_advertise_host (else ansible_host) and node_api_port."""
    out = []
    default_port = content.role_defaults("node")["node_api_port"]
    for h in inv.delegates:
        v = inv.raw_vars[h.name]
        address = str(v.get("node_advertise_host") or h.ansible_host)
        port = v.get("node_api_port", default_port)
        for name, value in (("node_advertise_host", address), ("node_api_port", port)):
            if isinstance(value, str) and "{{" in value:
                raise AlertingError(
                    f"{h.name}: {name} {value!r} is a Jinja expression; the generator reads the inventory as written"
                )
        if h.node_api_port is None and "node_api_port" in v:
            raise AlertingError(f"{h.name}: node_api_port {port!r} is not a port number")
        if ":" in address and not address.startswith("["):
            address = f"[{address}]"  # an IPv6 address
        out.append(Target(h.name, f"{address}:{h.node_api_port or default_port}"))
    return tuple(out)
