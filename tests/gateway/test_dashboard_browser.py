"""The staff dashboard in a real browser: Debian's headless ``chromium`` loads ``/`` from a
running daemon that has answered the broker scenario, driven over the DevTools protocol
(``--remote-debugging-pipe``), so console messages, uncaught exceptions and failed loads are
seen as events rather than guessed from log text.

The test skips (with the reason) when ``chromium`` is not on PATH. The screenshot it takes is
kept as ``test-artifacts/dashboard.png`` in the repository (git-ignored) for people to look at.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests import audit_fixtures as af
from tests.daemon import start_daemon

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
WIDTH, HEIGHT = 1280, 1000


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
             "--remote-debugging-pipe", f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
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


def test_dashboard_renders_in_chromium(tmp_path: Path) -> None:
    """Chromium loads the dashboard with the scenario's data and:

    * reports no console message of level warning or error, no uncaught exception and no
      failed load (the page has no script and no external asset: nothing may go wrong);
    * shows each partner's bars (two SVG bars per partner in the balance chart), the requests
      in flight and the recent Problem;
    * lays out at 1280×1000 without horizontal scrolling, on the page or inside any section;
    * leaves a full-page screenshot in test-artifacts/dashboard.png.
    """
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not on PATH (Debian package 'chromium'; see .ci/run)")
    af.seed_database(tmp_path / "interlend.sqlite3")
    daemon = start_daemon(tmp_path, af.config_text())
    browser = None
    try:
        af.run_scenario(daemon)
        browser = DevTools(chromium, tmp_path / "profile")
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target,
                                                         "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
            session=session)
        navigation = browser.send("Page.navigate", {"url": daemon.admin_url + "/"},
                                  session=session)
        assert "errorText" not in navigation, navigation
        browser.wait_event("Page.loadEventFired")

        def evaluate(expression: str) -> Any:
            result = browser.send("Runtime.evaluate", {"expression": expression,
                                                       "returnByValue": True}, session=session)
            assert "exceptionDetails" not in result, result
            return result["result"]["value"]

        facts = evaluate("""({
            title: document.title,
            bars: document.querySelectorAll('#balance svg rect').length,
            inFlight: [...document.querySelectorAll('#in-flight tbody tr')]
                .map(tr => tr.cells[3].textContent),
            problems: [...document.querySelectorAll('#problems tbody tr')]
                .map(tr => tr.cells[4].textContent),
            partners: [...document.querySelectorAll('#partners tbody tr')]
                .map(tr => tr.cells[0].textContent),
            pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
            sectionOverflow: [...document.querySelectorAll('section')]
                .filter(s => s.scrollWidth > s.clientWidth).map(s => s.id),
            scripts: document.scripts.length,
            height: document.documentElement.scrollHeight,
        })""")
        shot = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": WIDTH,
                     "height": max(HEIGHT, facts["height"]), "scale": 1}}, session=session)
        ARTIFACTS.mkdir(exist_ok=True)
        png = base64.b64decode(shot["data"])
        (ARTIFACTS / "dashboard.png").write_bytes(png)
        (ARTIFACTS / "dashboard.html").write_bytes(af.admin_get(daemon, "/")[2])
    finally:
        if browser is not None:
            browser.close()
        daemon.stop()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert facts["title"] == "Audit test library · Interlend"
    assert facts["partners"] == ["reshare", "tipasa"]
    assert facts["bars"] == 2 * 2
    assert sorted(facts["inFlight"]) == ["RS-L-3", "TIP-1"]
    assert facts["problems"] == ["Unknown Item"]
    assert facts["scripts"] == 0
    assert facts["pageOverflow"] <= 0 and facts["sectionOverflow"] == [], facts
    complaints = [e for e in browser.events if e.get("method") in (
        "Runtime.exceptionThrown", "Network.loadingFailed")
        or (e.get("method") == "Runtime.consoleAPICalled")
        or (e.get("method") == "Log.entryAdded"
            and e["params"]["entry"]["level"] in ("warning", "error"))]
    assert complaints == []
