"""An installed iotex-ops (a wheel, not a checkout) finds its playbooks, roles and runbooks.

The two wheels (iotex-ops and the node, a distribution of its own) are built from a copy of the checkout
without network access (`pip wheel --no-build-isolation --no-index`) and installed with `--no-deps` into a
fresh venv outside the checkout. Their dependencies are the ones this interpreter already has: a .pth line
puts its site-packages after the venv's own (a path line adds the directory only: the checkout's editable
finders there are not run), and each dependency's console scripts (ansible-playbook, supervisord...) get a
launcher in the venv's bin/, as `pip install` would have written. Then, from a directory outside the
checkout: `iotex-ops runbook list` and `iotex-ops playbook run site --check` on a playbook lab's inventory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from tests.ops.playbook_lab import make_lab

REPO = Path(__file__).resolve().parents[2]
OWN = {"iotex-ops", "iotex-node", "iotex_ops", "iotex_node"}


def _run(
    args: list[str | Path], timeout: float = 300, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=env)
    assert res.returncode == 0, f"{args}: exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _source_copy(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked and new, not ignored): no build/, egg-info or venv."""
    listed = _run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            (dest / rel).symlink_to(os.readlink(src))  # iotex_ops/_content's links stay links (relative)
        else:
            shutil.copy2(src, dest / rel)
    return dest


def _venv(root: Path, wheels: list[Path]) -> Path:
    _run([sys.executable, "-m", "venv", "--without-pip", root])
    py = root / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", *wheels])
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz_iotex_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for ep in entry_points(group="console_scripts"):
        script = root / "bin" / ep.name
        if ep.dist is None or ep.dist.name in OWN or script.exists():
            continue
        module, _, attr = ep.value.partition(":")
        script.write_text(f"#!{py}\nimport sys\nfrom {module} import {attr.split('.')[0]}\nsys.exit({attr}())\n")
        script.chmod(0o755)
    return root


@pytest.mark.slow
def test_an_installed_wheel_finds_its_playbooks_and_runbooks(tmp_path: Path) -> None:
    started = time.monotonic()
    src = _source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    for project in (src, src / "node"):
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, project])
    wheels = sorted(dist.glob("*.whl"))
    assert [w.name.split("-")[0] for w in wheels] == ["iotex_node", "iotex_ops"]
    built = time.monotonic()
    venv = _venv(tmp_path / "venv", wheels)
    installed = time.monotonic()
    shutil.rmtree(src)  # nothing may come from a checkout but the one this test runs in (its dependencies)
    work = tmp_path / "elsewhere"
    work.mkdir()
    path = [str(venv / "bin")] + [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not p.startswith(str(REPO))]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOTEX_OPS_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"PATH": os.pathsep.join(path), "HOME": str(tmp_path / "home"), "LC_ALL": "C.UTF-8"}

    def ops(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return _run([venv / "bin" / "iotex-ops", *args], timeout=timeout, cwd=work, env=env)

    probe = ("import json, iotex_ops, iotex_node; from iotex_ops import content as c; print(json.dumps([iotex_ops.__file__, "
             "iotex_node.__file__, str(c.home()), str(c.playbooks_dir()), str(c.runbooks_dir())]))")  # fmt: skip
    where = json.loads(_run([venv / "bin" / "python", "-c", probe], cwd=work, env=env).stdout)
    assert all(p.startswith(str(venv)) for p in where), where  # the installed copies, not the checkout's
    assert ops("--version").stdout.strip() == "iotex-ops, version 0.1.0"

    books = json.loads(ops("runbook", "list", "--json").stdout)
    drills = {"bootstrap", "first-aid", "hotfix-compatible", "hotfix-incompatible", "rollback-recovery"}
    assert drills <= {b["name"] for b in books}
    assert all(b["source"].startswith(str(venv)) for b in books), books
    playbooks = json.loads(ops("playbook", "list", "--json").stdout)
    assert playbooks["source"].startswith("the package") and "node_service" in playbooks["roles"], playbooks
    assert all(p.startswith(str(venv)) for p in playbooks["playbooks"].values()) and "site" in playbooks["playbooks"]

    # a playbook lab's inventory (hosts are directories, reached with ansible_connection: local), run by the
    # installed toolkit's own interpreter; site.yml also renders the monitoring configs with `python -m iotex_ops.cli`
    listed = time.monotonic()
    lab = make_lab(tmp_path / "lab", delegates=1)
    doc = yaml.safe_load(lab.inventory.read_text())
    doc["all"]["vars"]["ansible_python_interpreter"] = str(venv / "bin" / "python")
    doc["all"]["vars"]["iotex_python"] = str(venv / "bin" / "python")
    for hv in doc["all"]["children"]["delegates"]["hosts"].values():
        hv.pop("ansible_python_interpreter", None)  # the installed toolkit's interpreter for the modules too
    lab.inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    res = ops("playbook", "run", "site", "-i", lab.inventory, "--check", "--json", "--runs-dir", tmp_path / "runs", timeout=600)
    out = json.loads(res.stdout)
    assert out["status"] == "successful" and out["ok"], out
    assert set(out["changed"]) == {"node0", "mon"} and out["changed"]["node0"] > 0  # would install, changed nothing
    assert not (lab.hosts["node0"] / "opt").exists() and not lab.monitoring_dir.exists()
    events = [json.loads(e.read_text()) for e in (tmp_path / "runs").rglob("job_events/*.json")]
    render = [
        e for e in events if e.get("event") == "runner_on_ok" and e["event_data"].get("task") == "Render them from the inventory"
    ]
    assert render and str(venv / "bin" / "python") in json.dumps(render[0]["event_data"]["res"].get("cmd")), render
    print(f"wheels built in {built - started:.1f}s, installed in {installed - built:.1f}s, runbook list after "
          f"{listed - installed:.1f}s, site --check in {time.monotonic() - listed:.1f}s")  # fmt: skip
