"""Test peers for the upstream NCIP backend: the NCIPServer (Koha) peer run in place from
``../shared/lms/ncipserver`` and its fixture database, and daemons configured for it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import workflow_fixtures as wf
from tests.daemon import Daemon, start_daemon

PEER_DIR = Path(os.environ.get("INTERLEND_SHARED", Path(__file__).resolve().parents[4]
                               / "shared")) / "lms" / "ncipserver"
KOHA_AGENCY = "CPomAG:interlend"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ncipserver_missing() -> str | None:
    """Why the NCIPServer peer cannot run here (None: it can)."""
    if not (PEER_DIR / "run.sh").is_file():
        return f"NCIPServer peer not found at {PEER_DIR}"
    if shutil.which("plackup") is None:
        return "plackup not installed (apt-get install libplack-perl; see .ci/run)"
    for module in ("Dancer", "Template", "XML::LibXML", "XML::Simple", "Config::Merge",
                   "Modern::Perl", "Log::Log4perl", "Object::Tiny"):
        if subprocess.run(["perl", f"-M{module}", "-e1"], capture_output=True).returncode:
            return f"Perl module {module} missing (see .ci/run)"
    return None


@dataclass
class KohaPeer:
    """A running NCIPServer with its fixture ILS (a Koha-like JSON database)."""

    workdir: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def db(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.workdir / "fixture.json").read_text())
        return data

    def counts(self) -> dict[str, int]:
        """Items, holds and loans in the LMS."""
        d = self.db()
        return {"items": len(d["items"]), "holds": len(d["reserves"]),
                "loans": len(d["issues"])}

    def stop(self) -> None:
        subprocess.run(["sh", str(PEER_DIR / "stop.sh"), str(self.workdir)],
                       capture_output=True, check=False)


def start_koha(workdir: Path) -> KohaPeer:
    port = free_port()
    subprocess.run(["sh", str(PEER_DIR / "run.sh"), str(workdir), str(port)], check=True,
                   capture_output=True)
    peer = KohaPeer(workdir, port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return peer
        except OSError:
            time.sleep(0.1)
    peer.stop()
    raise RuntimeError("NCIPServer did not start")


@pytest.fixture
def koha(tmp_path: Path) -> Iterator[KohaPeer]:
    why = ncipserver_missing()
    if why:
        pytest.skip(why)
    peer = start_koha(tmp_path / "koha")
    yield peer
    peer.stop()


def backend_config(url: str, profile: str, from_agency: str, to_agency: str,
                   extra: str = "") -> str:
    """The workflow test configuration with circulation on an upstream NCIP responder."""
    return wf.CONFIG + f"""
[backend]
kind = "embedded"
circulation = "ncip"

[backend.ncip]
url = "{url}"
profile = "{profile}"
from_agency = "{from_agency}"
to_agency = "{to_agency}"
timeout = 15
max_in_flight = 4
{extra}
"""


def start_gateway(tmp: Path, config: str, env: dict[str, str] | None = None,
                  database: Path | None = None) -> Daemon:
    if database is None:
        database = tmp / "interlend.sqlite3"
        wf.seed_database(database)
    return start_daemon(tmp, config, database=database, env=env)


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/xml"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class FaultProxy:
    """An HTTP proxy in front of an LMS that can misbehave on demand: ``mode`` is
    ``forward``, ``slow`` (forward, the LMS applies the change, then hold the answer past
    the gateway's time limit), ``500`` (an HTTP 500 with a text body, the LMS not called) or
    ``down`` (the connection closed unanswered)."""

    def __init__(self, target: str, slow_seconds: float = 3.0) -> None:
        import http.server
        import threading

        proxy = self
        self.target = target
        self.mode = "forward"
        self.slow_seconds = slow_seconds
        self.calls: list[bytes] = []
        self.only: bytes | None = None   # misbehave only for bodies containing this

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.calls.append(body)
                mode = proxy.mode
                if proxy.only is not None and proxy.only not in body:
                    mode = "forward"
                if mode == "down":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "500":
                    data, status, kind = b"Internal error: database is locked", 500, \
                        "text/plain"
                else:
                    status, data = post(proxy.target, body)
                    kind = "text/html; charset=utf-8"
                    if mode == "slow":
                        time.sleep(proxy.slow_seconds)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def count(database: Path, sql: str) -> int:
    """One ``SELECT COUNT(*) AS n`` from a daemon's database."""
    row = wf.one(database, sql)
    assert row is not None
    return int(row["n"])


def lms_counts(database: Path) -> dict[str, int]:
    """An upstream Interlend's temporary items, active holds and open loans."""
    return {"items": count(database, "SELECT COUNT(*) AS n FROM items WHERE temporary = 1"),
            "holds": count(database, "SELECT COUNT(*) AS n FROM holds WHERE status = 'active'"),
            "loans": count(database, "SELECT COUNT(*) AS n FROM loans"
                                     " WHERE returned_at IS NULL")}


# -- the upstream LMS as the broker-flow tests count it: Koha behind NCIPServer, or an Interlend

JANE = "23529000000011"


class Lms:
    """The upstream as the tests count it."""

    patron: str
    url: str
    profile: str           # the gateway's profile for it

    def counts(self) -> dict[str, int]:
        raise NotImplementedError

    def config(self) -> str:
        raise NotImplementedError


class KohaLms(Lms):
    profile = "koha-ncipserver"

    def __init__(self, workdir: Path) -> None:
        self.peer = start_koha(workdir)
        self.patron, self.url = JANE, self.peer.url

    def counts(self) -> dict[str, int]:
        return self.peer.counts()

    def config(self) -> str:
        return backend_config(self.url, "koha-ncipserver", KOHA_AGENCY, "KOHA")

    def close(self) -> None:
        self.peer.stop()


class InterlendLms(Lms):
    profile = "generic-ncip2"

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.patron, self.url = "P100", daemon.base_url + "/ncip"

    def counts(self) -> dict[str, int]:
        return lms_counts(self.daemon.database)

    def config(self) -> str:
        return backend_config(self.url, "generic-ncip2", "01XXX_INST", wf.AGENCY)


# An upstream Interlend answers each of its peers in that peer's dialect: our agency toward it
# picks the dialect. Name -> (profile[:namespace], our agency there).
DIALECTS = {"ns1": ("generic-ncip2", "01XXX_INST"), "default": ("xc-toolkit", "Relais"),
            "none": ("generic-ncip2:none", "zv010"), "ncip1": ("generic-ncip1", "zv247")}


class DialectLms(InterlendLms):
    """An upstream Interlend spoken to in one of :data:`DIALECTS`."""

    def __init__(self, daemon: Daemon, dialect: str) -> None:
        super().__init__(daemon)
        self.dialect = dialect
        self.profile = DIALECTS[dialect][0].partition(":")[0]

    def config(self) -> str:
        profile, agency = DIALECTS[self.dialect]
        profile, _, namespace = profile.partition(":")
        extra = f'namespace = "{namespace}"\n' if namespace else ""
        return backend_config(self.url, profile, agency, wf.AGENCY, extra)


def step(d: Daemon, lms: Lms, body: bytes, expect: dict[str, int],
         headers: dict[str, str] | None = None) -> bytes:
    """One broker call: no Problem, the LMS as expected; retried: same bytes, same LMS."""
    reply = wf.call(d, body, headers)
    assert wf.problem(reply) is None, reply
    assert lms.counts() == expect, (lms.counts(), expect)
    assert wf.call(d, body, headers) == reply, "a retried step got another reply"
    assert lms.counts() == expect, "a retried step changed the LMS"
    return reply


def plus(base: dict[str, int], **delta: int) -> dict[str, int]:
    """The LMS's counts ``base`` with ``delta`` added (items, holds, loans)."""
    return {k: v + delta.get(k, 0) for k, v in base.items()}



def lms_loan(lms: Lms, barcode: str) -> tuple[str, str] | None:
    """(patron barcode, due date) of the LMS's open loan of ``barcode``."""
    if isinstance(lms, KohaLms):
        db = lms.peer.db()
        item = next(i for i in db["items"] if i["barcode"] == barcode)
        issue = next((x for x in db["issues"] if x["itemnumber"] == item["itemnumber"]), None)
        if issue is None:
            return None
        patron = next(b["cardnumber"] for b in db["borrowers"]
                      if b["borrowernumber"] == issue["borrowernumber"])
        return str(patron), str(issue["date_due"])
    assert isinstance(lms, InterlendLms)
    row = wf.one(lms.daemon.database, "SELECT p.barcode, l.due_at FROM loans l JOIN items i"
                 " ON i.id = l.item_id JOIN patrons p ON p.id = l.patron_id"
                 " WHERE i.barcode = ? AND l.returned_at IS NULL", barcode)
    return (row["barcode"], row["due_at"]) if row else None


def lms_hold(lms: Lms, barcode: str) -> str | None:
    """The patron barcode of the LMS's active hold on ``barcode``."""
    if isinstance(lms, KohaLms):
        db = lms.peer.db()
        item = next(i for i in db["items"] if i["barcode"] == barcode)
        reserve = next((r for r in db["reserves"]
                        if r.get("itemnumber") == item["itemnumber"]
                        or r.get("biblionumber") == item["biblionumber"]), None)
        if reserve is None:
            return None
        return str(next(b["cardnumber"] for b in db["borrowers"]
                        if b["borrowernumber"] == reserve["borrowernumber"]))
    assert isinstance(lms, InterlendLms)
    row = wf.one(lms.daemon.database, "SELECT p.barcode FROM holds h JOIN items i"
                 " ON i.id = h.item_id JOIN patrons p ON p.id = h.patron_id"
                 " WHERE i.barcode = ? AND h.status = 'active'", barcode)
    return row["barcode"] if row else None


def each_lms(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lms]:
    """The upstream of ``kind`` ("koha": NCIPServer's fixture ILS; "interlend": a second
    Interlend on the embedded backend; one of :data:`DIALECTS`: such an Interlend spoken to
    in that dialect), stopped after its tests."""
    if kind in DIALECTS:
        for launch in wf.launched_daemons(tmp_path_factory):
            yield DialectLms(launch(f"lms-{kind}"), kind)
        return
    if kind == "koha":
        why = ncipserver_missing()
        if why:
            pytest.skip(why)
        koha = KohaLms(tmp_path_factory.mktemp("koha"))
        yield koha
        koha.close()
        return
    for launch in wf.launched_daemons(tmp_path_factory):
        yield InterlendLms(launch("lms"))


KILLPOINT = Path(__file__).resolve().parent / "killpoint"


def kill_after(service: str) -> dict[str, str]:
    """The environment of a daemon that kills itself (SIGKILL) once the LMS's answer to
    ``service`` is in the outbox, before its own commit: the test-only plugin in
    ``killpoint/sitecustomize.py``, put on the daemon's ``PYTHONPATH``."""
    path = os.pathsep.join(p for p in (str(KILLPOINT), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "INTERLEND_TEST_KILL_AFTER_UPSTREAM": service}
