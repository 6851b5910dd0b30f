"""Profile the running gateway with py-spy (``py-spy record --pid``, raw collapsed stacks) while a
load runs, and summarise: top functions by self and inclusive samples, and the share of leaf
samples per category (pyasn1, lxml, SQLite, Twisted, the project's own code...).

py-spy samples Python frames only, so time inside C libraries (SQLite, libxml2) shows as the
Python line that called them; the categoriser reads that source line and attributes it
(``.execute(``/``.commit(``/``fetch`` → SQLite, ``etree.``/``fromstring``/``tostring`` → lxml).
py-spy is optional (``pip install py-spy`` into the venv); without it profiles are skipped.
"""

from __future__ import annotations

import linecache
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_SQLITE_CALL = re.compile(r"\.(execute|executemany|executescript|commit|rollback|fetchone|"
                          r"fetchall|fetchmany)\(|\bconn\.execute|cursor\(")
_WAIT_CALL = re.compile(r"_queue\.get\(\)|queue\.get\(\)|\.wait\(|\.acquire\(|\.join\(")
_SYSCALL = re.compile(r"\.(send|sendall|recv|recv_into|accept|write|close|shutdown)\b|"
                      r"os\.write")
_LXML_CALL = re.compile(r"etree\.|fromstring\(|tostring\(|\.iter\(|\.xpath\(|\.find(all)?\(|"
                        r"\.findtext\(|SubElement\(|\.iterfind\(")


def py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    return shutil.which("py-spy")


def record(pid: int, seconds: float, output: Path, rate: int = 250,
           gil: bool = False) -> subprocess.Popen[bytes]:
    """Start py-spy on ``pid`` for ``seconds``; returns the py-spy process (wait for it).

    ``gil``: sample only the thread holding the GIL (CPU spent in Python), instead of every
    non-idle thread (wall time, including threads blocked in SQLite's fsync).
    """
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy not installed (pip install py-spy into the venv)")
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
         "--rate", str(rate), "--format", "raw", "--output", str(output),
         *(["--gil"] if gil else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def profile_during(pid: int, seconds: float, output: Path, load: Callable[[], Any],
                   gil: bool = False) -> Any:
    """Record ``pid`` while ``load()`` runs (load should last about ``seconds``)."""
    spy = record(pid, seconds, output, gil=gil)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(load()), daemon=True)
    thread.start()
    thread.join(seconds + 120)
    try:
        _out, err = spy.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        spy.kill()
        _out, err = spy.communicate()
    if spy.returncode != 0 and not output.exists():
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    return result[0] if result else None


class ProfileInvalid(RuntimeError):
    """A profile that does not show the serving process at work (too few samples, or mostly
    its start-up): reported as an error, never summarised as if it did."""


STARTUP_FRAMES = ("_find_and_load", "_bootstrap>", "_call_with_frames_removed", "exec_module")
"""Frames of module imports: a sample with one of them is start-up work, not serving."""


def cpu_ticks(pid: int) -> int:
    """User + system CPU ticks of ``pid`` so far (/proc/PID/stat), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def busiest(pids: list[int], seconds: float) -> tuple[int, dict[int, int]]:
    """The process among ``pids`` that used the most CPU over the next ``seconds`` (ticks
    each): the one to profile while a load runs."""
    before = {pid: cpu_ticks(pid) for pid in pids}
    time.sleep(seconds)
    used = {pid: cpu_ticks(pid) - before[pid] for pid in pids}
    return max(pids, key=lambda pid: used[pid]), used


def startup_share(raw: Path) -> float:
    """Share of the samples in ``raw`` taken inside a module import (start-up)."""
    total = startup = 0
    for text in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = text.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        total += int(count_text)
        if any(marker in stack for marker in STARTUP_FRAMES):
            startup += int(count_text)
    return startup / total if total else 0.0


def validate(summary: dict[str, Any], raw: Path, min_samples: int,
             max_startup: float = 0.05) -> None:
    """Raise :class:`ProfileInvalid` unless the profile has ``min_samples`` busy samples and
    at most ``max_startup`` of them in module imports."""
    busy = summary.get("samples", 0) - summary.get("idle_samples", 0)
    share = startup_share(raw)
    summary["busy_samples"] = busy
    summary["startup_share"] = round(share, 4)
    if busy < min_samples:
        raise ProfileInvalid(f"{busy} busy samples (at least {min_samples} wanted)")
    if share > max_startup:
        raise ProfileInvalid(f"{share:.0%} of the samples are module imports (start-up), "
                             f"at most {max_startup:.0%} allowed")


def _run_into(load: Callable[[float], Any], duration: float, result: list[Any]) -> None:
    result.append(load(duration))


def profile_serving(pids: Callable[[], list[int]], seconds: float, output: Path,
                    load: Callable[[float], Any], *, gil: bool = False, rate: int = 500,
                    warmup: float = 1.5, min_samples: int = 200, attempts: int = 2,
                    ) -> tuple[Any, dict[str, Any]]:
    """Profile the process that serves ``load`` for the whole of its steady window.

    ``load(duration)`` runs a load for about ``duration`` seconds. It is started first; after
    ``warmup`` seconds (during which the busiest of ``pids()`` is picked: a worker serving,
    after its start-up) py-spy records that process for ``seconds`` while the load goes on.
    The profile is validated (:func:`validate`) and taken again, up to ``attempts`` times;
    the last failure is raised (:class:`ProfileInvalid`).
    """
    failure: ProfileInvalid | None = None
    for _attempt in range(attempts):
        result: list[Any] = []
        duration = warmup + seconds + 1.5
        thread = threading.Thread(target=_run_into, args=(load, duration, result), daemon=True)
        thread.start()
        pid, used = busiest(pids(), warmup)
        output.unlink(missing_ok=True)
        spy = record(pid, seconds, output, rate=rate, gil=gil)
        try:
            _out, err = spy.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            spy.kill()
            _out, err = spy.communicate()
        thread.join(duration + 120)
        if not output.exists():
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
        summary = summarise(output)
        summary.update({"pid": pid, "warmup_cpu_ticks": used, "rate_hz": rate,
                        "seconds": seconds})
        try:
            validate(summary, output, min_samples)
        except ProfileInvalid as exc:
            failure = exc
            continue
        return (result[0] if result else None), summary
    assert failure is not None
    raise failure


def _parse_frame(frame: str) -> tuple[str, str, int | None]:
    match = _FRAME.match(frame)
    if not match:
        return frame, "", None
    line = match.group("line")
    return match.group("func"), match.group("file"), int(line) if line else None


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


_IDLE = {"Condition.wait", "Event.wait", "Queue.get", "_wait_for_tstate_lock", "select",
         "EPollReactor.doPoll", "sleep", "Thread.join"}
"""Leaf functions that mean "waiting", whatever py-spy's idle detection said."""

_ROOTS: list[Path] = []


def _resolve(path: str) -> Path | None:
    """py-spy prints short paths (``gateway/storage/store.py``, ``twisted/web/http.py``,
    ``threading.py``): find the file for reading the sampled line."""
    if not _ROOTS:
        import sysconfig

        _ROOTS.extend(Path(p) for p in {str(Path(__file__).resolve().parents[1]),
                                        sysconfig.get_paths()["purelib"],
                                        sysconfig.get_paths()["platlib"],
                                        sysconfig.get_paths()["stdlib"]})
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate if candidate.exists() else None
    for root in _ROOTS:
        if (root / path).exists():
            return root / path
    return None


def _under(p: str, package: str) -> bool:
    return p.startswith(package + "/") or f"/{package}/" in p


def category(func: str, path: str, line: int | None) -> str:
    p = path.replace("\\", "/")
    if func in _IDLE:
        return "waiting (idle threads, excluded from shares)"
    if line is not None and p.endswith(".py"):
        resolved = _resolve(p)
        source = linecache.getline(str(resolved), line) if resolved else ""
        if _WAIT_CALL.search(source):
            return "waiting (idle threads, excluded from shares)"
        if _SQLITE_CALL.search(source) or _under(p, "sqlite3"):
            return "SQLite (C, by calling line)"
        if _LXML_CALL.search(source):
            return "lxml/libxml2 (C, by calling line)"
        if (_under(p, "twisted") or p.endswith("socket.py")) and _SYSCALL.search(source):
            return "socket/pipe syscalls"
    if _under(p, "pyasn1"):
        return "pyasn1"
    if _under(p, "lxml"):
        return "lxml"
    if _under(p, "twisted"):
        return "Twisted"
    if _under(p, "pymarc"):
        return "pymarc"
    if _under(p, "protocols/z3950"):
        return "project: protocols/z3950"
    if _under(p, "protocols/ncip"):
        return "project: protocols/ncip"
    if _under(p, "gateway"):
        return "project: gateway"
    if _under(p, "bench"):
        return "project: bench"
    return "Python stdlib / other"


def summarise(raw: Path, top: int = 25) -> dict[str, Any]:
    """Self/inclusive tops and leaf categories from py-spy's raw (collapsed) output."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = 0
    for text in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = text.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        # drop the thread name frame py-spy may prepend ("thread (0x...)")
        if frames[0].startswith("thread ") or frames[0].startswith("process "):
            frames = frames[1:] or frames
        total += count
        parsed = [_parse_frame(f) for f in frames]
        func, path, line = parsed[-1]
        if func == "untilConcludes" and len(parsed) > 1:  # Twisted's EINTR retry: see caller
            cat = category(*parsed[-2])
        else:
            cat = category(func, path, line)
        categories[cat] += count
        if cat.startswith("waiting"):
            continue
        self_counts[f"{func} ({_short(path)})"] += count
        for name in {f"{f} ({_short(p)})" for f, p, _l in parsed}:
            incl_counts[name] += count
    if not total:
        return {"samples": 0, "error": "no samples"}
    idle = sum(v for k, v in categories.items() if k.startswith("waiting"))
    busy = max(1, total - idle)
    return {
        "samples": total, "idle_samples": idle,
        "categories": {k: v / busy for k, v in categories.most_common()
                       if not k.startswith("waiting")},
        "top_self": [{"function": k, "self": v / busy, "inclusive": incl_counts[k] / busy}
                     for k, v in self_counts.most_common(top)],
        "top_inclusive": [{"function": k, "inclusive": v / busy}
                          for k, v in incl_counts.most_common(top * 2)
                          if not _boring(k)][:top],
    }


def _boring(name: str) -> bool:
    """Frames every sample shares (runpy, reactor loop, thread bootstrap)."""
    func = name.split(" (")[0]
    return (func in _IDLE or func.startswith(("_run_", "Thread._bootstrap", "Thread.run",
                                              "ReactorBase.", "<module>", "main", "_serve"))
            or "context.py" in name or "log.py)" in name)
