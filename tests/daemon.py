"""A real ``interlend serve`` process on ephemeral loopback ports, for end-to-end tests."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(r"(z3950|ncip|sru|admin) listening on ([\d.:a-f]+):(\d+)")


@dataclass
class Daemon:
    """A running daemon: its ports, its output lines, and ways to signal and stop it."""

    process: subprocess.Popen[str]
    config_path: Path
    database: Path
    ports: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @property
    def ncip_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ncip']}/ncip"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ncip']}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['admin']}"

    def wait_for(self, pattern: str, timeout: float = 20.0) -> str:
        """Block until an output line matches ``pattern``; return it (fail on timeout/exit)."""
        regex = re.compile(pattern)
        for line in self.lines:
            if regex.search(line):
                return line
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r}; output:\n"
                                     + "\n".join(self.lines[-40:]))
            try:
                received = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if received is None:
                raise AssertionError(f"daemon exited before {pattern!r}; output:\n"
                                     + "\n".join(self.lines[-40:]))
            if regex.search(received):
                return received

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def health(self) -> dict:
        status, body = self.get("/healthz")
        return json.loads(body)

    def admin_health(self, timeout: float = 10.0) -> dict:
        """The admin listener's detailed ``/healthz`` (database, listeners, version)."""
        with urllib.request.urlopen(self.admin_url + "/healthz", timeout=timeout) as response:
            return json.loads(response.read())

    def post(self, body: bytes, path: str = "/ncip", headers: dict[str, str] | None = None,
             timeout: float = 30.0) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base_url + path, data=body, method="POST",
                                         headers={"Content-Type": "application/xml",
                                                  **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def sru_listen(config_text: str) -> list[str]:
    """``--sru-listen`` on an ephemeral port when the configuration turns SRU on (the demo's
    fixed port would clash between daemons running side by side); nothing otherwise."""
    try:
        sru = tomllib.loads(config_text).get("sru", {})
    except tomllib.TOMLDecodeError:
        return []
    return ["--sru-listen", "tcp:0:interface=127.0.0.1"] if sru.get("listen") else []


def start_daemon(tmp_path: Path, config_text: str | None = None, *,
                 database: Path | None = None, env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None, wait: bool = True) -> Daemon:
    """Start ``interlend serve`` on ephemeral loopback ports and wait until it is ready."""
    config_path = tmp_path / "interlend.toml"
    if config_text is None:
        config_text = (REPO / "config" / "interlend.toml").read_text()
    config_path.write_text(config_text)
    database = database or tmp_path / "interlend.sqlite3"
    args = [sys.executable, "-m", "gateway.daemon.cli", "serve", "-c", str(config_path),
            "--database", str(database),
            "--z3950-listen", "tcp:0:interface=127.0.0.1",
            "--ncip-listen", "tcp:0:interface=127.0.0.1",
            *sru_listen(config_text),
            "--admin-listen", "tcp:0:interface=127.0.0.1", *(extra_args or [])]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=REPO, env=environment)
    daemon = Daemon(process, config_path, database)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            daemon.lines.append(line)
            match = _LISTENING.search(line)
            if match:
                daemon.ports[match.group(1)] = int(match.group(3))
            daemon._queue.put(line)
        daemon._queue.put(None)

    threading.Thread(target=pump, daemon=True).start()
    if wait:
        daemon.wait_for(r"ready: agency")
    return daemon
