"""`iotex-ops load run`: a load test of a network through its nodes' APIs (no SSH), with a report."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from iotex_ops.cli.common import OpsGroup
from iotex_ops.errors import OpsError


@click.group(cls=OpsGroup)
def load() -> None:
    """Load tests: a steady rate of signed actions, and what the chain made of it."""


def _targets(net: Any, nodes: str | None) -> list[Any]:
    from iotex_ops.traffic.load import LoadError, Target

    all_targets = [Target(d.name, d.api_url) for d in net.delegates]
    if not nodes:
        return all_targets
    chosen = []
    by_name = {t.name: t for t in all_targets}
    for item in (x.strip() for x in nodes.split(",")):
        if not item:
            continue
        if item.startswith(("http://", "https://")):
            chosen.append(Target(item.split("//", 1)[1].rstrip("/"), item.rstrip("/")))
        elif item in by_name:
            chosen.append(by_name[item])
        else:
            raise LoadError(
                f"--nodes: {item!r} is neither a delegate of the inventory ({', '.join(by_name) or 'none'}) nor a URL"
            )
    return chosen


def _funded(funded: Path | None, net: Any, lab_state: Any, inventory: Path) -> tuple[Path, str]:
    """Where the funded accounts are: --funded, else the inventory's `iotex_load_accounts_file`, else the lab's."""
    from iotex_ops.traffic.load import LoadError

    if funded is not None:
        return funded, "--funded"
    given = net.var("iotex_load_accounts_file")
    if given:
        return Path(str(given)).expanduser(), "the inventory's iotex_load_accounts_file"
    if lab_state is not None and Path(lab_state.inventory).resolve() == inventory.resolve() and lab_state.accounts_file:
        return Path(lab_state.accounts_file), "the lab's funded accounts"
    raise LoadError(
        f"no funded accounts for {inventory}: give --funded FILE (a JSON list of account secrets), or set "
        "iotex_load_accounts_file in the inventory"
    )


@load.command("run")
@click.option(
    "-i",
    "--inventory",
    type=click.Path(path_type=Path),
    help="The network's inventory (default: the lab that is up).",
)
@click.option("--tps", type=float, default=300.0, show_default=True, help="Actions offered per second (open loop).")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds of load.")
@click.option("--accounts", type=int, default=0, help="New accounts to fund and send from (default: one per TPS, 50 at least).")
@click.option("--use-funded", is_flag=True, help="Send from the funded accounts themselves (no new account).")
@click.option("--funded", type=click.Path(path_type=Path), help="Funded accounts (a JSON list of secrets) that pay.")
@click.option("--mix", "mix_text", default="transfer=100", show_default=True, help="Shares: transfer=90,stake=10.")
@click.option("--seed", type=int, default=None, help="Seed of accounts and choices (default: random).")
@click.option("--nodes", help="Only these delegates (names or API URLs, comma-separated); URLs alone need no inventory.")
@click.option("--batch", type=int, default=0, help="Actions per request (default: TPS/10 within 10..500).")
@click.option("--drain", type=float, default=30.0, show_default=True, help="Seconds to wait after the load for accepted actions.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), help="Where load.json and load.html go.")
@click.option("--json", "as_json", is_flag=True, help="Print the report's JSON (without its series).")
def run_cmd(
    inventory: Path | None,
    tps: float,
    duration: float,
    accounts: int,
    use_funded: bool,
    funded: Path | None,
    mix_text: str,
    seed: int | None,
    nodes: str | None,
    batch: int,
    drain: float,
    report_dir: Path | None,
    as_json: bool,
) -> None:
    """Fund accounts, offer a steady rate of actions for a while, and report: offered, accepted, refused by
    reason, finalized TPS (from the chain's blocks), drop rate, submit->final latency, block intervals, each
    node's CPU and RSS and version. Exit 1 when accepted actions were lost or the report is inconsistent."""
    from rich.console import Console
    from rich.markup import escape

    from iotex_ops import network as network_mod
    from iotex_ops.lab import lab as lab_mod
    from iotex_ops.runbook.store import default_state_dir
    from iotex_ops.traffic import AccountsError, read_accounts
    from iotex_ops.traffic import load as load_mod
    from iotex_ops.traffic import report as report_mod

    console = Console(file=sys.stderr if as_json else sys.stdout, highlight=False, soft_wrap=True)
    load_mod.check_numbers(tps, duration, accounts, drain)
    mix = load_mod.parse_mix(mix_text)
    if batch and not 1 <= batch <= 2000:
        raise load_mod.LoadError(f"--batch must be in [1, 2000], not {batch}")
    urls = [x.strip() for x in (nodes or "").split(",") if x.strip()]
    prometheus_url: str | None = None
    if inventory is None and urls and all(u.startswith(("http://", "https://")) for u in urls):
        # any network, by its nodes' API URLs alone (a localnet, a staging network): the funded accounts are given
        if funded is None:
            raise load_mod.LoadError("--nodes given as URLs without an inventory: give the funded accounts with --funded FILE")
        targets = [load_mod.Target(u.split("//", 1)[1].rstrip("/"), u.rstrip("/")) for u in urls]
        accounts_file, source = funded, "--funded"
    else:
        lab_state = lab_mod.load_state()
        if inventory is None:
            if lab_state is None or not lab_mod.is_up(lab_state):
                raise load_mod.LoadError("no inventory given (-i INV, or --nodes URL,... --funded FILE) and no lab is up")
            inventory = Path(lab_state.inventory)
        if not inventory.exists():
            raise load_mod.LoadError(f"inventory {inventory} does not exist")
        with network_mod.load(inventory) as net:
            targets = _targets(net, nodes)
            accounts_file, source = _funded(funded, net, lab_state, inventory)
            prometheus_url = net.prometheus_url
    try:
        keys = read_accounts(accounts_file, at_least=2 if use_funded else 1)
    except AccountsError as exc:
        raise load_mod.LoadError(f"{source}: {exc}") from None
    spec = load_mod.LoadSpec(
        targets=targets,
        tps=tps,
        duration_s=duration,
        funded=keys,
        accounts=accounts,
        use_funded=use_funded,
        mix=mix,
        seed=seed if seed is not None else int.from_bytes(os.urandom(4), "big"),
        batch=batch,
        drain_s=drain,
        prometheus_url=prometheus_url,
    )
    spec.check()
    say = (lambda s: None) if as_json else (lambda s: console.print(f"[bold]load:[/bold] {escape(s)}"))
    say(f"{tps:g} TPS for {duration:g} s on {len(targets)} node(s), seed {spec.seed}, mix {mix_text}")
    doc = _run_live(console, spec, say, as_json)
    out = report_dir or default_state_dir() / "loads" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        js, page = report_mod.write(out, doc)
    except OSError as exc:
        raise OpsError(f"cannot write the report in {out}: {exc.strerror or exc}") from None
    if as_json:
        click.echo(json.dumps({k: v for k, v in doc.items() if k != "series"} | {"report": str(page)}, indent=2, default=str))
    else:
        _print_summary(console, doc)
        console.print(f"report {page} ({js.name} beside it)")
    if doc["problems"] or doc["lost"]:
        sys.exit(1)


def _run_live(console: Any, spec: Any, say: Any, quiet: bool) -> dict[str, Any]:
    from rich.live import Live
    from rich.text import Text

    from iotex_ops.traffic import load as load_mod

    if quiet:
        return load_mod.run(spec, say=say)
    started = time.time()
    with Live(Text("starting"), console=console, refresh_per_second=4, transient=True) as live:

        def progress(p: Any) -> None:
            if p.phase == "funding":
                live.update(Text(f"funding accounts… {time.time() - started:.0f} s"))
                return
            live.update(
                Text(
                    f"{p.phase} {p.elapsed_s:5.0f}/{spec.duration_s:g} s  offered {p.offered:,}  accepted {p.accepted:,}  "
                    f"refused {p.refused:,}  finalized {p.finalized:,} ({p.finalized_tps_1s:,.0f}/s)  height {p.height}"
                )
            )

        return load_mod.run(spec, progress=progress, say=lambda s: live.console.print(f"[bold]load:[/bold] {s}"))


def _print_summary(console: Any, doc: dict[str, Any]) -> None:
    from rich.table import Table

    def f(v: Any, unit: str = "") -> str:
        if v is None:
            return "-"
        return f"{v:,}{unit}" if isinstance(v, int) else f"{v:,.3f}{unit}" if isinstance(v, float) and v < 100 else f"{v:,}{unit}"

    def g(v: Any) -> str:
        return "-" if v is None else f"{v:,.1f}"

    lat, bi, sample = doc["latency_s"], doc["block_interval_s"], doc.get("not_final_sample")
    t = Table(title=f"load: {doc['target_tps']:g} TPS offered for {doc['duration_s']:g} s, seed {doc['seed']}")
    t.add_column("figure")
    t.add_column("value")
    rows = [
        ("offered", f"{doc['offered']:,} ({doc['offered_tps']:,} /s)"),
        ("accepted", f(doc["accepted"])),
        ("refused", f(doc["refused"]) + (f"  {doc['refused_by_reason']}" if doc["refused_by_reason"] else "")),
        ("finalized", f(doc["finalized"])),
        ("lost (accepted, not final after the drain)", f(doc["lost"]) + (f"  sampled: {sample}" if sample else "")),
        ("finalized TPS (chain)", f(doc["finalized_tps"])),
        ("drop rate", f"{doc['drop_rate']:.2%}"),
        ("submit->final p50/p95/p99/max", " / ".join(f(lat[k], " s") for k in ("p50", "p95", "p99", "max"))),
        ("block interval p50/max", f"{f(bi['p50'], ' s')} / {f(bi['max'], ' s')}"),
        ("offered->answer p50/p99 (queue, admission)", " / ".join(f(doc["answer_s"][k], " s") for k in ("p50", "p99"))),
        ("observer lag p50/max (behind block time)", " / ".join(f(doc["observer_lag_s"][k], " s") for k in ("p50", "max"))),
        ("versions", ", ".join(doc["versions"])),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    nodes = Table(title=f"nodes (CPU and RSS from {doc.get('resources_from')})")
    for col in ("node", "version", "CPU % of one core", "RSS MiB (end)", "RSS MiB (peak)"):
        nodes.add_column(col)
    for name, n in doc["nodes"].items():
        nodes.add_row(name, str(n.get("version")), *(g(n.get(k)) for k in ("cpu_percent", "rss_mib", "rss_peak_mib")))
    console.print(nodes)
    for p in doc["problems"]:
        console.print(f"[red]inconsistent:[/red] {p}")
