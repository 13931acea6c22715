"""The dashboard on the shared local lab (`lab up` starts it), in headless Chromium (Debian's `chromium`,
driven by Playwright: never `playwright install`), and over plain HTTP for the security checks.

The page loads; a runbook started from the command line shows its steps live; an approval from the page lets
a scheduled drill start, and the button is refused without a login; no action without a session, a forged
CSRF token refused, no secret in any page or asset; a killed node's row turns red within 5 s without a
reload. Each view's screenshot goes to the test's tmp dir (and to $IOTEX_OPS_DASHBOARD_SHOTS, when set, to
refresh docs/img: `IOTEX_OPS_DASHBOARD_SHOTS=docs/img pytest tests/ops/test_dashboard_lab.py`). The module
leaves the lab healthy: the killed node is brought back by alertd, as in every other lab test."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from iotex_ops.cli import main
from iotex_ops.dashboard.app import STATIC
from iotex_ops.lab import lab as lab_mod
from iotex_ops.lab.ops_services import IOTEX_OPS
from iotex_ops.runbook.events import Gate, StepStart
from iotex_ops.schedule.state import ScheduleState
from tests.ops.conftest import SharedLab
from tests.ops.lab_checks import secrets
from tests.ops.test_scheduler_lab import Lab

CHROMIUM = "/usr/bin/chromium"
FIXTURE = Path(__file__).parent / "dashboard_fixture"
RED_WITHIN_S = 5.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="the lab needs the Debian prometheus package"),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="the browser tests need Debian's chromium (make lab-deps)"),
]


class Dash(Lab):
    def __init__(self, state: lab_mod.LabState) -> None:
        super().__init__(state)
        assert state.dashboard_url, "lab up starts the dashboard"
        self.url = state.dashboard_url
        self.token_file = self.root / "dashboard" / "login.token"
        self.token = self.token_file.read_text().strip()

    def actions(self) -> list[dict[str, Any]]:
        path = self.state_dir / "dashboard" / "actions.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def dash(shared_lab: SharedLab) -> Dash:
    return Dash(shared_lab.get())


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    pw = sync_api.sync_playwright().start()
    try:
        # as root, Chromium runs only without its sandbox; the pages are the test's own dashboard's
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("IOTEX_OPS_DASHBOARD_SHOTS"):
        shutil.copy(path, Path(os.environ["IOTEX_OPS_DASHBOARD_SHOTS"]) / path.name)
    return path


def flash(page: Any, contains: str, timeout_ms: int = 10_000) -> str:
    loc = page.locator("#flash .msg", has_text=contains)
    loc.first.wait_for(timeout=timeout_ms)
    return str(loc.first.inner_text())


def login(page: Any, dash: Dash, user: str) -> None:
    page.goto(dash.url + "/login")
    page.fill("#login-user", user)
    page.fill("#login-token", dash.token)
    page.click("#login-submit")
    page.wait_for_selector("#user")


def test_the_lab_serves_the_dashboard_and_every_view_loads(dash: Dash, page: Any, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["lab", "status", "--json"], env={"IOTEX_OPS_LAB_DIR": str(dash.root)})
    assert res.exit_code == 0 and json.loads(res.output)["dashboard"] == dash.url, res.output
    t0 = time.monotonic()
    page.goto(dash.url + "/")
    page.wait_for_selector("#delegates tbody tr[data-delegate]")
    first_paint_s = time.monotonic() - t0
    assert page.locator("#delegates tbody tr").count() == 4
    assert first_paint_s < 5.0, f"first paint of the network view took {first_paint_s:.2f}s"
    page.wait_for_selector("#live.on")  # the live stream is open
    shot(page, tmp_path, "network")
    page.goto(dash.url + "/alerts")
    page.wait_for_selector("text=firing alerts")
    shot(page, tmp_path, "alerts")
    page.goto(dash.url + "/drills")
    page.wait_for_selector('#schedules tr[data-schedule="lab-first-aid"]')
    page.goto(dash.url + "/charts?window=5m")
    page.locator("#charts .uplot").nth(2).wait_for(timeout=15_000)  # (not wait_for_function: the page's CSP forbids eval)
    assert "a point every" in page.inner_text("#charts-status")
    shot(page, tmp_path, "charts")


def test_a_runbook_started_from_the_command_line_appears_with_live_steps(dash: Dash, page: Any, tmp_path: Path) -> None:
    page.goto(dash.url + "/runs")
    page.evaluate("window.__notReloaded = true")
    env = {**os.environ, "IOTEX_OPS_RUNBOOKS": str(FIXTURE), "IOTEX_OPS_STATE_DIR": str(dash.state_dir), "LC_ALL": "C.UTF-8"}
    argv = [IOTEX_OPS, "runbook", "run", "dashboard-watch", "-i", dash.state.inventory, "--yes", "-e", "pause_s=1.5"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        running = page.locator('#runs-running section.run[data-status="running"]')
        running.first.wait_for(timeout=30_000)
        run_id = running.first.get_attribute("data-run")
        seen: set[tuple[int, int]] = set()  # (steps passed, steps running) as the page showed them
        pictured = False
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            sec = page.locator(f'#runs-running section.run[data-run="{run_id}"]')
            if sec.count():
                passed = sec.locator("tr.row-ok[data-step=watch]").count()
                seen.add((passed, sec.locator("tr.row-info[data-step=watch]").count()))
                if passed == 1 and not pictured:
                    shot(page, tmp_path, "runs")
                    pictured = True
            time.sleep(0.2)
        out = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the steps came one by one (a host's step running, then passed, then the next), all without a reload
    assert {(0, 1), (1, 1)} <= seen, seen
    page.wait_for_selector(f'#runs-recent tr[data-run="{run_id}"].row-ok', timeout=10_000)
    assert page.evaluate("window.__notReloaded") is True
    page.goto(f"{dash.url}/runs/runs/{run_id}")
    assert page.locator("tr[data-step=watch].row-ok").count() == 4
    assert "finalized height grows=" in page.inner_text("main")


def test_an_approval_from_the_page_starts_a_scheduled_drill_and_without_a_login_it_is_refused(
    dash: Dash, page: Any, tmp_path: Path
) -> None:
    dash.wait_quiet()
    rid, _ = dash.schedule_now("dash-approve", approval=True)
    try:
        page.goto(dash.url + "/drills")
        button = page.locator(f'#pending tr[data-run="{rid}"] button.approve')
        button.wait_for(timeout=30_000)  # the scheduler claimed it: waiting for approval, live on the page
        shot(page, tmp_path, "drills")
        button.click()
        assert "refused: log in first" in flash(page, "refused")
        row = dash.run_row(rid)
        assert row is not None and row.status in ("due", "waiting") and "approval" in row.reason, row
        login(page, dash, "dash-tester")
        cookie = next(c for c in page.context.cookies() if c["name"] == "iotex_dashboard_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        page.goto(dash.url + "/drills")
        page.locator(f'#pending tr[data-run="{rid}"] button.approve').click()
        assert "approved by dash-tester" in flash(page, "approved")
        dash.wait_event(rid, lambda e: isinstance(e, StepStart), timeout=60)
        r = dash.wait_decided(rid, timeout=120)
        assert r.status == "ended" and r.result == "passed", r
        gate = next(e for e in dash.store.events(rid) if isinstance(e, Gate) and e.gate == "approval")
        assert gate.ok and "approved by dash-tester" in gate.detail
        acts = [a for a in dash.actions() if a.get("run_id") == rid]
        assert [(a["event"], a["by"], a["ok"]) for a in acts] == [("approve", "dash-tester", True)], acts
        page.goto(dash.url + "/drills")
        page.wait_for_selector(f'#scheduled-runs tr[data-run="{rid}"]')
        page.locator("#drill-plots .uplot").first.wait_for(timeout=10_000)
        shot(page, tmp_path, "drills-history")
    finally:
        dash.drills.write_text(lab_mod.lab_drills())
        dash.wait_quiet()


def test_no_action_without_a_session_and_a_forged_csrf_token_is_refused(dash: Dash) -> None:
    sus = ScheduleState(dash.state_dir, dash.network)
    s = requests.Session()
    r = s.post(dash.url + "/actions/suspend", data={"name": "lab-first-aid"}, timeout=10)
    assert r.status_code == 403 and "log in first" in r.json()["message"]
    r = s.post(dash.url + "/login", data={"token": "not-the-token", "user": "eve"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"].startswith("/login?error") and not s.cookies
    r = s.post(dash.url + "/login", data={"token": dash.token, "user": "ann"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Strict" in r.headers["Set-Cookie"]
    page = s.get(dash.url + "/drills", timeout=10).text
    csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    assert len(csrf) == 64
    for headers in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": csrf[:-1] + ("0" if csrf[-1] != "0" else "1")}):
        r = s.post(dash.url + "/actions/suspend", data={"name": "lab-first-aid"}, headers=headers, timeout=10)
        assert r.status_code == 403 and "CSRF" in r.json()["message"], (headers, r.text)
    r = s.post(dash.url + "/actions/suspend", data={"name": "lab-first-aid"},
               headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}, timeout=10)  # fmt: skip
    assert r.status_code == 403 and "another site" in r.json()["message"]
    # another session's token is no good either
    other = requests.Session()
    other.post(dash.url + "/login", data={"token": dash.token, "user": "bob"}, timeout=10)
    r = other.post(dash.url + "/actions/suspend", data={"name": "lab-first-aid"}, headers={"X-CSRF-Token": csrf}, timeout=10)
    assert r.status_code == 403
    assert not sus.is_suspended("lab-first-aid")
    # with its own session and token: done, and journaled with who did it
    r = s.post(dash.url + "/actions/suspend", data={"name": "lab-first-aid"}, headers={"X-CSRF-Token": csrf}, timeout=10)
    assert r.status_code == 200 and r.json()["message"] == "lab-first-aid suspended by ann"
    assert sus.suspended()["lab-first-aid"].by == "ann"
    r = s.post(dash.url + "/actions/resume", data={"name": "lab-first-aid"}, headers={"X-CSRF-Token": csrf}, timeout=10)
    assert r.status_code == 200 and not sus.is_suspended("lab-first-aid")
    assert [(a["event"], a["by"], a["name"]) for a in dash.actions()[-2:]] == [("suspend", "ann", "lab-first-aid"),
                                                                                ("resume", "ann", "lab-first-aid")]  # fmt: skip
    # refused by the scheduler, said clearly; nothing is a 5xx
    r = s.post(
        dash.url + "/actions/approve", data={"run_id": "20200101T000000Z-nope"}, headers={"X-CSRF-Token": csrf}, timeout=10
    )
    assert r.status_code == 409 and "approve refused" in r.json()["message"]
    for path in (
        "/runs/runs/..%2F..%2Fetc",
        "/runs/nope/x",
        "/api/nope",
        "/nothing",
        "/events?topics=nope",
        "/api/charts?window=1y",
    ):
        assert s.get(dash.url + path, timeout=10).status_code in (400, 404), path
    r = s.post(dash.url + "/logout", headers={"X-CSRF-Token": csrf}, allow_redirects=False, timeout=10)
    assert r.status_code == 303
    r = s.post(dash.url + "/actions/resume", data={"name": "lab-first-aid"}, headers={"X-CSRF-Token": csrf}, timeout=10)
    assert r.status_code == 403


def _sse_first(url: str, timeout: float = 15.0) -> str:
    got = ""
    with requests.get(url + "/events?topics=network,alerts,runs,drills", stream=True, timeout=timeout) as r:
        deadline = time.monotonic() + timeout
        for chunk in r.iter_content(chunk_size=None, decode_unicode=True):
            got += chunk
            if all(f"event: {t}" in got for t in ("network", "alerts", "runs", "drills")) or time.monotonic() > deadline:
                break
    return got


def test_no_secret_in_any_page_or_asset(dash: Dash) -> None:
    secret = [*secrets(dash.root), dash.token]
    s = requests.Session()
    s.post(dash.url + "/login", data={"token": dash.token, "user": "ann"}, timeout=10)
    bodies: dict[str, str] = {}
    for path in ("/", "/alerts", "/runs", "/drills", "/charts", "/login", "/api/network", "/api/alerts", "/api/runs",
                 "/api/drills", "/api/charts?window=5m"):  # fmt: skip
        for who, client in (("anonymous", requests), ("logged in", s)):
            r = client.get(dash.url + path, timeout=15)  # type: ignore[attr-defined]
            assert r.status_code == 200, (path, r.text[:200])
            assert "default-src 'none'" in r.headers["Content-Security-Policy"] and r.headers["X-Frame-Options"] == "DENY"
            bodies[f"{who} {path}"] = r.text
    for f in STATIC.rglob("*"):
        if f.is_file():
            r = requests.get(f"{dash.url}/static/{f.relative_to(STATIC).as_posix()}", timeout=10)
            assert r.status_code == 200, f
            bodies[f"/static/{f.name}"] = r.text
    bodies["/events"] = _sse_first(dash.url)
    assert all(f"event: {t}" in bodies["/events"] for t in ("network", "alerts", "runs", "drills"))
    leaked = [(where, x[:6]) for where, body in bodies.items() for x in secret if x in body]
    assert not leaked, f"secrets in pages or assets: {leaked}"
    logs = [dash.root / "dashboard" / "dashboard.log", dash.state_dir / "dashboard" / "actions.jsonl"]
    assert not [(p, x[:6]) for p in logs if p.exists() for x in secret if x in p.read_text()]


def test_a_page_is_acknowledged_from_the_page_after_a_login(dash: Dash, page: Any, tmp_path: Path) -> None:
    from iotex_ops.paging.receiver import LabClient

    key = f"iotex-ops/lab/dashboard-test/{time.time_ns()}"
    pager = ["pager", "send", "--dir", dash.state.pager_dir, "--dedup-key", key]
    res = CliRunner().invoke(main, [*pager[:2], "trigger", *pager[2:], "--summary", "a test page", "--severity", "error"])
    assert res.exit_code == 0, res.output
    try:
        login(page, dash, "dash-oncall")
        page.goto(dash.url + "/alerts")
        row = page.locator("#pages tr", has_text="a test page")
        row.locator("button", has_text="acknowledge").click(timeout=15_000)
        assert f"page {key} acknowledged by dash-oncall" in flash(page, "acknowledged")
        incident = next(i for i in LabClient.for_dir(dash.state.pager_dir).incidents() if i["dedup_key"] == key)
        assert incident["status"] == "acknowledged"
        assert [(a["event"], a["by"], a["ok"]) for a in dash.actions() if a.get("dedup_key") == key] == [
            ("acknowledge", "dash-oncall", True)
        ]
    finally:
        CliRunner().invoke(main, [*pager[:2], "resolve", *pager[2:]])


def test_a_killed_node_turns_red_within_5s_without_a_reload(dash: Dash, page: Any, tmp_path: Path) -> None:
    victim = dash.state.nodes[-1].name
    dash.wait_quiet()
    page.goto(dash.url + "/")
    row = f'#delegates tr[data-delegate="{victim}"]'
    page.wait_for_selector(f'{row}:not([data-level="bad"])')
    page.wait_for_selector("#live.on")
    page.evaluate("window.__notReloaded = true")
    pid = dash.state.node_pid(victim)
    assert pid
    try:
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        page.wait_for_selector(f'{row}[data-level="bad"]', timeout=RED_WITHIN_S * 1000)
        red_s = time.monotonic() - t0
        assert red_s < RED_WITHIN_S and page.evaluate("window.__notReloaded") is True
        assert "does not answer" in page.inner_text(row)
        shot(page, tmp_path, "network-node-down")
        page.goto(dash.url + "/alerts")
        with contextlib.suppress(Exception):  # the alert and alertd's remediation, for the picture only
            page.wait_for_selector("#remediations", timeout=20_000)
            shot(page, tmp_path, "alerts-incident")
    finally:
        dash.wait_quiet()  # alertd restarts the node (restart-node), as after every lab test that kills one
    page.goto(dash.url + "/")
    page.wait_for_selector(f'{row}:not([data-level="bad"])', timeout=30_000)
