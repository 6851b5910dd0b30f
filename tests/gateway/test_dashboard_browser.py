"""The staff dashboard in a real browser: Debian's headless ``chromium`` loads the work screen
from a running daemon that has answered the broker scenario and holds a long work list, driven
over the DevTools protocol (``--remote-debugging-pipe``), so console messages, uncaught
exceptions and failed loads are seen as events rather than guessed from log text.

The test skips (with the reason) when ``chromium`` is not on PATH. Its screenshots (desktop
1280 px and phone 390 px wide, the work screen and a request's page) are kept in
:data:`ARTIFACTS`, whose path the test prints (``pytest -s`` shows it), for people to look at.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import AuditEntry, audit_time, insert_entry
from gateway.storage.store import open_database
from tests import audit_fixtures as af
from tests import worklist_fixtures as wl
from tests.daemon import start_daemon

pytestmark = pytest.mark.slow

DESKTOP = (1280, 1000, False)
PHONE = (390, 844, True)
ZONE = "America/New_York"
ARTIFACTS = Path(os.environ.get("INTERLEND_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[2] / "test-artifacts") / "dashboard"
"""Where the screenshots are kept: ``test-artifacts/dashboard`` in the repository (git-ignored),
or under ``$INTERLEND_TEST_ARTIFACTS``; not pytest's temporary directory, which later runs
prune."""


class DevTools:
    """A minimal Chrome DevTools Protocol client over the pipe (fd 3 in, fd 4 out)."""

    def __init__(self, chromium: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def child_fds() -> None:
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "--window-size=1280,1000", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            # The pipe ends must be fds 3 and 4 in chromium: made by dup2 in the child, so the
            # child must not close descriptors after preexec_fn.
            preexec_fn=child_fds, close_fds=False)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float = 20.0) -> dict[str, Any]:
        """Send one command and return its result (events met on the way are kept)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 20.0) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no answer from chromium in time")
            ready, _, _ = select.select([self._from_browser], [], [], remaining)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise AssertionError("chromium closed the DevTools pipe")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (AssertionError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


class Tab:
    """One page in the browser: navigate, evaluate, screenshot, press keys."""

    def __init__(self, browser: DevTools, size: tuple[int, int, bool]) -> None:
        self.browser = browser
        self.width, self.height, mobile = size
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target,
                                                              "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=self.session)
        browser.send("Emulation.setDeviceMetricsOverride", {
            "width": self.width, "height": self.height, "deviceScaleFactor": 1,
            "mobile": mobile}, session=self.session)

    def open(self, url: str) -> None:
        self.browser.events = [e for e in self.browser.events
                               if e.get("method") != "Page.loadEventFired"]
        navigation = self.browser.send("Page.navigate", {"url": url}, session=self.session)
        assert "errorText" not in navigation, navigation
        self.browser.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.browser.send("Runtime.evaluate", {"expression": expression,
                                                        "returnByValue": True},
                                   session=self.session)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def follow(self, selector: str) -> None:
        """Click the first element matching ``selector`` and wait for the page it loads."""
        self.browser.events = [e for e in self.browser.events
                               if e.get("method") != "Page.loadEventFired"]
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
        self.browser.wait_event("Page.loadEventFired")

    def key(self, key: str, code: str, key_code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.browser.send("Input.dispatchKeyEvent", {
                "type": kind, "key": key, "code": code, "windowsVirtualKeyCode": key_code},
                session=self.session)

    def screenshot(self, path: Path) -> bytes:
        height = self.evaluate("document.documentElement.scrollHeight")
        shot = self.browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": self.width,
                     "height": max(self.height, height), "scale": 1}}, session=self.session)
        png = base64.b64decode(shot["data"])
        path.write_bytes(png)
        return png


LAYOUT = """({
    pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
    wider: [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
        .map(e => e.tagName + (e.id ? '#' + e.id : '')).slice(0, 10),
    scrolled: [...document.querySelectorAll('section, .scroll, pre')]
        .filter(e => e.scrollWidth > e.clientWidth + 1)
        .map(e => `${e.parentElement.closest('[id]')?.id} ${e.tagName} by `
                  + (e.scrollWidth - e.clientWidth) + ': ' + [...e.querySelectorAll('*')]
                  .filter(d => d.getBoundingClientRect().right > e.getBoundingClientRect().right)
                  .map(d => d.tagName + '.' + d.className).slice(0, 5).join(' ')),
    scripts: document.scripts.length,
})"""

ACCESSIBILITY = """({
    tablesWithoutCaption: [...document.querySelectorAll('table')]
        .filter(t => !(t.caption && t.caption.textContent.trim())).length,
    headersWithoutScope: [...document.querySelectorAll('th')]
        .filter(th => !['col', 'row'].includes(th.getAttribute('scope'))).length,
    charts: [...document.querySelectorAll('svg')].map(svg => ({
        clipped: [...svg.querySelectorAll('text')].filter(t => {
            const box = t.getBBox();
            return box.x < 0 || box.x + box.width > svg.viewBox.baseVal.width;
        }).map(t => t.textContent),
        role: svg.getAttribute('role'),
        name: (svg.getAttribute('aria-labelledby') || '').split(' ')
            .map(id => document.getElementById(id)?.textContent || '').join(' | ')})),
    unlabelledControls: [...document.querySelectorAll('input, select')]
        .filter(c => !c.closest('label')).length,
})"""


def _complaints(browser: DevTools) -> list[dict[str, Any]]:
    return [e for e in browser.events if e.get("method") in (
        "Runtime.exceptionThrown", "Network.loadingFailed", "Runtime.consoleAPICalled")
        or (e.get("method") == "Log.entryAdded"
            and e["params"]["entry"]["level"] in ("warning", "error"))]


def _due(request: wl.Seeded) -> datetime:
    """The due date of an overdue seeded request (an overdue one always has one)."""
    assert request.due is not None, request
    return request.due


def test_dashboard_renders_in_chromium(tmp_path: Path) -> None:
    """Chromium loads the work screen of a daemon that answered the broker scenario and holds
    a work list of 60 more requests (times shown in America/New_York), at desktop (1280 px)
    and phone (390 px) width, and:

    * reports no console message, uncaught exception or failed load (no script, no external
      asset: nothing may go wrong);
    * shows what needs action (every overdue loan counted, the Problem of the scenario, the
      partner whose every exchange failed in the last hour), the
      first 50 open requests with title, patron, partner, state, due date and age, and a pager
      whose next page holds the rest; the overdue filter keeps exactly the overdue ones;
    * lays out without horizontal overflow at both widths: no element reaches past the
      viewport, nothing scrolls sideways (the page, a section, a table, a message body);
    * names every chart (SVG role img with a title and a description) and draws no chart
      text outside it, gives every table a caption and every header a scope, labels every
      control;
    * answers the keyboard: the first Tab reaches the skip link, Enter follows it;
    * a request's page (followed from the list) shows its steps and its exchanges;
    * keeps a full-page screenshot of each view in the artifacts directory it prints.
    """
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not on PATH (Debian package 'chromium'; see .ci/run)")
    artifacts = ARTIFACTS
    artifacts.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {artifacts}")
    database = tmp_path / "interlend.sqlite3"
    af.seed_database(database)
    conn = open_database(database)
    now = datetime.now(timezone.utc)
    seeded = wl.seed_worklist(conn, now=now)
    conn.execute("BEGIN IMMEDIATE")
    for minutes in (30, 20, 10):   # a partner whose every exchange failed this last hour
        insert_entry(conn, AuditEntry(protocol="ncip", peer="illiad-consortium-east",
                                      operation="AcceptItem", outcome="Unknown User",
                                      broker_request_id=f"ILL-FAIL-{minutes}",
                                      time=audit_time(now - timedelta(minutes=minutes))))
    conn.execute("COMMIT")
    conn.close()
    daemon = start_daemon(tmp_path, af.config_text().replace(
        'timezone = "Europe/London"', f'timezone = "{ZONE}"'))
    browser = None
    shots: dict[str, bytes] = {}
    try:
        af.run_scenario(daemon)
        (artifacts / "dashboard.html").write_bytes(af.admin_get(daemon, "/")[2])
        browser = DevTools(chromium, tmp_path / "profile")
        views: dict[str, Any] = {}
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            tab = Tab(browser, size)
            tab.open(daemon.admin_url + "/")
            views[label] = tab.evaluate("""({
                title: document.title,
                zone: document.querySelector('header p').textContent,
                bars: document.querySelectorAll('#balance svg rect').length,
                overdueCount: document.querySelector('#overdue .count').textContent,
                recentProblems: [...document.querySelectorAll('#recent-problems tbody tr')]
                    .map(tr => tr.cells[3].textContent),
                failing: [...document.querySelectorAll('#failing tbody tr')]
                    .map(tr => [...tr.cells].map(c => c.textContent)),
                requests: [...document.querySelectorAll('#request-table tbody tr')]
                    .map(tr => [...tr.cells].map(c => c.textContent)),
                summary: document.querySelector('#listing-summary').textContent,
                next: document.querySelector('a[rel=next]')?.href,
                partners: [...document.querySelectorAll('#partners tbody tr')]
                    .map(tr => tr.cells[0].textContent),
            })""")
            views[label]["layout"] = tab.evaluate(LAYOUT)
            views[label]["a11y"] = tab.evaluate(ACCESSIBILITY)
            shots[f"dashboard-{label}"] = tab.screenshot(artifacts / f"dashboard-{label}.png")
            first = views[label]["requests"][0][0]
            tab.key("Tab", "Tab", 9)
            views[label]["focused"] = tab.evaluate("document.activeElement.textContent")
            tab.key("Enter", "Enter", 13)
            views[label]["hash"] = tab.evaluate("location.hash")
            tab.open(views[label]["next"])
            views[label]["page2"] = tab.evaluate(
                "[...document.querySelectorAll('#request-table tbody tr')].length")
            tab.open(daemon.admin_url + "/?overdue=1&state=all&sort=due")
            views[label]["overdueLayout"] = tab.evaluate(LAYOUT)
            views[label]["overdue"] = tab.evaluate(
                "[...document.querySelectorAll('#request-table tbody tr')]"
                ".map(tr => tr.cells[0].querySelector('a').textContent)")
            tab.open(daemon.admin_url + "/?q=TIP-1&state=all")
            tab.follow("#request-table tbody a")
            views[label]["detail"] = tab.evaluate("""({
                heading: document.querySelector('h1').textContent,
                steps: [...document.querySelectorAll('#steps tbody tr')]
                    .map(tr => tr.cells[0].textContent),
                exchanges: [...document.querySelectorAll('#exchanges tbody tr')]
                    .map(tr => tr.cells[2].textContent),
            })""")
            tab.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            views[label]["bodies"] = tab.evaluate(
                "[...document.querySelectorAll('#exchanges pre')].map(p => p.textContent)")
            views[label]["detailLayout"] = tab.evaluate(LAYOUT)
            views[label]["detailA11y"] = tab.evaluate(ACCESSIBILITY)
            shots[f"request-{label}"] = tab.screenshot(artifacts / f"request-{label}.png")
            views[label]["first"] = first
    finally:
        if browser is not None:
            browser.close()
        daemon.stop()
    assert all(png.startswith(b"\x89PNG") and len(png) > 10_000 for png in shots.values())
    open_rows = [s for s in seeded if s.state not in ("completed", "cancelled")]
    overdue = sorted(s.our_request_id for s in seeded if s.overdue)
    for label, view in views.items():
        assert view["title"] == "Audit test library · Interlend"
        assert "times in America/New_York (EST)" in view["zone"], view["zone"]
        assert view["partners"] == ["illiad-consortium-east", "reshare", "tipasa"]
        assert view["bars"] == 3 * 2
        assert view["overdueCount"] == f"({len(overdue)})"
        assert view["recentProblems"] == ["Unknown Item"] + ["Unknown User"] * 3
        assert [row[:2] for row in view["failing"]] == [["illiad-consortium-east", "3 of 3"]]
        assert view["failing"][0][3] == "none in 24 h"
        # the scenario leaves RS-L-3 and TIP-1 open: 2 more than the work list's open ones
        assert view["summary"].startswith(f"Showing 1–50 of {len(open_rows) + 2} open requests")
        assert len(view["requests"]) == 50 and view["page2"] == len(open_rows) + 2 - 50
        newest = view["requests"][0]
        assert newest[1] == "[ILL] Tipasa book" and newest[2].startswith("#")  # TIP-1, hashed
        assert view["overdue"] == [s.our_request_id for s in sorted(
            (s for s in seeded if s.overdue), key=_due)]   # due soonest first
        assert view["overdueLayout"]["wider"] == [] and view["overdueLayout"]["scrolled"] == []
        layout = view["layout"]
        assert layout["pageOverflow"] <= 0 and layout["wider"] == [] and layout[
            "scrolled"] == [] and layout["scripts"] == 0, (label, layout)
        assert view["detailLayout"]["wider"] == [] and view["detailLayout"]["scrolled"] == [], (
            label, view["detailLayout"])
        for a11y in (view["a11y"], view["detailA11y"]):
            assert a11y["tablesWithoutCaption"] == 0 and a11y["headersWithoutScope"] == 0
            assert a11y["unlabelledControls"] == 0
        assert [c["role"] for c in view["a11y"]["charts"]] == ["img", "img"]
        assert [c["clipped"] for c in view["a11y"]["charts"]] == [[], []]
        assert view["a11y"]["charts"][0]["name"].startswith(
            "Lent and borrowed by partner | illiad-consortium-east: lent")
        assert view["focused"] == "Skip to content" and view["hash"] == "#content"
        assert view["detail"]["heading"].startswith("B-") and view["detail"][
            "heading"].endswith("· [ILL] Tipasa book")
        assert view["detail"]["exchanges"] == ["AcceptItem"]
        # the AcceptItem and its response, as the audit log keeps them (patron redacted)
        assert len(view["bodies"]) == 2 and "AcceptItem" in view["bodies"][0]
        assert "PBAR-101" not in "".join(view["bodies"])
        assert view["detail"]["steps"] == ["requested", "accepted", "received"]
    assert _complaints(browser) == []
