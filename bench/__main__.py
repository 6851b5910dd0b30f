"""``python -m bench [--quick|--full] [--out bench/results]``: the Interlend benchmark suite.

Sections (``--only`` picks some): ``z3950`` (cycles and kept-open associations against the
gateway, yaz-ztest fork, yaz-ztest -T and zebrasrv), ``ncip`` (wrk LookupUser/AcceptItem against
the gateway and the twisted.web ceiling), ``scale`` (import rate, search latency, cycle rate by
catalogue size), ``memory`` (READY time, RSS with idle associations/connections), ``profile``
(py-spy on the gateway's Z39.50 cycle and NCIP LookupUser paths; default in full mode only),
``sru`` (SRU searchRetrieve against the gateway and zebrasrv's SRU, ``bench.sru_load``), ``oai``
(OAI-PMH ListRecords records per second, ``bench.oai_harvest``), ``upstream`` (the gateway in
front of an upstream NCIP responder, Koha's Zebra over Z39.50 and over SRU, each against the
upstream directly: ``bench.upstream``; default in full mode only).

Full mode takes about 30-35 minutes on a quiet 2-core machine (the three 1,000,000-record imports
about 6 of them, the upstream section under 3); quick mode about 4.

Everything runs on 127.0.0.1; scratch data goes to a temporary directory (``--scratch`` to choose
one and keep it); every server started is stopped, also on Ctrl-C and errors.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import memory as memory_mod
from bench import ncip_load, oai_harvest, profiling, report, scale, servers, sru_load, upstream
from bench.z3950_load import build_requests, run_load, verify_cycle, yaz_client_check

REPO = Path(__file__).resolve().parents[1]
TERM = "river"  # a title word: 16 hits on yaz-ztest, ~4% of the demo catalogue

MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "repeats": 1, "z_conc": [1, 8, 32], "z_cycles": 600, "z_seconds": 2.5,
        "ka_conc": [8], "ka_cycles": 2000, "ka_seconds": 2.5,
        "ncip_conc": [1, 16, 64], "ncip_seconds": 2,
        "demo_records": 2000, "sizes": [2000, 20000], "search_samples": 100,
        "search_seconds": 4, "scale_conc": 8, "scale_cycles": 600, "scale_seconds": 2.5,
        "memory_records": 20000, "memory_assoc": 1000, "memory_ncip": 100,
        "profile_seconds": 5, "sru_catalogue": 2000, "sru_clients": [1, 8], "sru_seconds": 2,
        "oai_records": 5000, "oai_baseline": 5000, "oai_page_size": 500,
        "import_repeats": 1, "up_ncip_requests": 100, "up_ncip_concurrency": 4,
        "up_seconds": 2, "up_clients": [1, 8],
        "sections": ["z3950", "ncip", "sru", "oai", "scale", "memory"],
    },
    "full": {
        "repeats": 3, "z_conc": [1, 8, 32], "z_cycles": 3000, "z_seconds": 30,
        "ka_conc": [1, 8], "ka_cycles": 10000, "ka_seconds": 30,
        "ncip_conc": [1, 16, 64], "ncip_seconds": 10,
        "demo_records": 2000, "sizes": [2000, 100000, 1000000], "search_samples": 1000,
        "search_seconds": 30, "scale_conc": 8, "scale_cycles": 3000, "scale_seconds": 20,
        "memory_records": 100000, "memory_assoc": 1000, "memory_ncip": 100,
        "profile_seconds": 15, "sru_catalogue": 2000, "sru_clients": [1, 8, 32],
        "sru_seconds": 20, "oai_records": 100000, "oai_baseline": 20000,
        "oai_page_size": 500,
        "import_repeats": 3, "up_ncip_requests": 400, "up_ncip_concurrency": 4,
        "up_seconds": 8, "up_clients": [1, 8],
        "sections": ["z3950", "ncip", "sru", "oai", "scale", "memory", "profile", "upstream"],
    },
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- metadata -------------------------------------------------------------------------------------

def _version(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "absent"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr) \
        else "?"


def _dpkg(package: str) -> str:
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                              capture_output=True, text=True, timeout=10, check=False)
        return done.stdout.strip() or "absent"
    except OSError:
        return "?"


def machine_meta(mode: str, argv: list[str]) -> dict[str, Any]:
    import lxml.etree
    import pyasn1
    import twisted

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit += " (uncommitted changes)" if dirty else ""
    except OSError:
        commit = "?"
    mem = ""
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":")[1].strip()
    except OSError:
        pass
    return {
        "mode": mode, "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}, RAM {mem}",
        "cpu": cpu, "cores": os.cpu_count(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(), "twisted": twisted.__version__,
        "pyasn1": pyasn1.__version__, "lxml": ".".join(map(str, lxml.etree.LXML_VERSION)),
        "sqlite": sqlite3.sqlite_version,
        "yaz": f"{_version(['yaz-client', '-V'])} (Debian {_dpkg('yaz')})",
        "zebra": f"idzebra-2.0 {_dpkg('idzebra-2.0')}", "wrk": _version(["wrk", "-v"]),
        "git_commit": commit, "command": "python -m bench " + " ".join(argv),
    }


# -- helpers --------------------------------------------------------------------------------------

def _load(results: dict[str, Any], section: str) -> None:
    results["meta"].setdefault("load_average", {})[section] = " ".join(
        f"{x:.2f}" for x in os.getloadavg())


def _rotate(items: list[str], n: int) -> list[str]:
    n %= max(1, len(items))
    return items[n:] + items[:n]


def build_demo_database(path: Path, records: int) -> dict[str, Any]:
    from gateway.backends.embedded.demo import write_demo
    from gateway.storage.store import open_database

    conn = open_database(path)
    try:
        summary = write_demo(conn, records=records)
    finally:
        conn.close()
    return {"records": summary.records, "items": summary.items, "seconds": summary.seconds}


def check_z3950(name: str, port: int) -> dict[str, Any]:
    """yaz-client session, then one cycle decoded with pyasn1."""
    check: dict[str, Any] = {"yaz_client": yaz_client_check(port, f"@attr 1=4 {TERM}")}
    try:
        decoded = verify_cycle(port, build_requests(TERM))
        ok = (decoded.get("present") == "presentResponse" and decoded.get("hits", 0) > 0
              and decoded.get("records", 0) >= 1
              and "SurrogateDiagnostic" not in decoded.get("record_types", []))
        decoded["summary"] = (f"{decoded.get('hits', 0)} hits, {decoded.get('records', 0)} record"
                              f" ({', '.join(decoded.get('record_types', []))}),"
                              f" {decoded.get('record_bytes', 0)} bytes"
                              if ok else f"failed: {decoded}")
        decoded["ok"] = ok
    except Exception as exc:  # noqa: BLE001 - a check failing is a finding
        decoded = {"ok": False, "summary": f"failed: {type(exc).__name__}: {exc}"}
    check["decoded"] = decoded
    check["ok"] = bool(check["yaz_client"].get("ok") and decoded.get("ok"))
    log(f"  check {name}: yaz-client {check['yaz_client']['summary']}; decoded "
        f"{decoded['summary'][:120]}")
    return check


# -- sections -------------------------------------------------------------------------------------

def z3950_section(cfg: dict[str, Any], scratch: Path, gateway: servers.Managed,
                  results: dict[str, Any]) -> bool:
    """Returns whether the gateway answered Search/Present (for the other sections)."""
    from gateway.backends.embedded.demo import write_demo_marc

    section: dict[str, Any] = {"description": (
        f"Cycle = connect + Init + Search `@attr 1=4 {TERM}` (no piggy-back) + Present 1 OPAC "
        "record + Close, on a fresh connection; kept-open = Search + Present pairs on one "
        "association per client. Workers share a budget of "
        f"{cfg['z_cycles']:,} cycles or {cfg['z_seconds']} s per run "
        f"({cfg['ka_cycles']:,} / {cfg['ka_seconds']} s kept-open). Gateway: "
        f"{cfg['demo_records']:,} demo records (`write_demo`); zebrasrv: the zebra-demo recipe "
        f"run in place with the same {cfg['demo_records']:,} demo records (`write_demo_marc`) "
        "added to its records directory (plus the recipe's 3 records; OPAC via its XSLT); "
        "yaz-ztest: built-in records (16 hits for the term).")}
    results["z3950"] = section
    ports: dict[str, int] = {"gateway": gateway.ports["z3950"]}
    started: list[servers.Managed] = []
    try:
        if servers.have("yaz-ztest"):
            z = servers.start_ztest(scratch / "ztest-fork")
            started.append(z)
            ports["yaz-ztest fork"] = z.port
            z = servers.start_ztest(scratch / "ztest-T", threaded=True)
            started.append(z)
            ports["yaz-ztest -T"] = z.port
        if servers.have("zebrasrv") and servers.ZEBRA_RECIPE.exists():
            marc = scratch / "zebra-demo.mrc"
            write_demo_marc(marc, records=cfg["demo_records"])
            t0 = time.perf_counter()
            try:
                z = servers.start_zebra(scratch / "zebra", marc_file=marc)
                started.append(z)
                ports["zebrasrv"] = z.port
                section["zebra_setup_s"] = round(time.perf_counter() - t0, 1)
            except Exception as exc:  # noqa: BLE001
                results["notes"].append(f"zebrasrv not started: {exc}")
        checks = {name: check_z3950(name, port) for name, port in ports.items()}
        section["checks"] = checks
        live = [name for name in ports if checks[name]["ok"]]
        for name in ports:
            if name not in live:
                results["notes"].append(
                    f"Z39.50 {name}: pre-flight check failed, not timed "
                    f"({checks[name]['yaz_client']['summary']}; "
                    f"{checks[name]['decoded']['summary'][:200]})")
        reqs = build_requests(TERM)
        runs: list[dict[str, Any]] = []
        section["runs"] = runs  # filled as we go: an interrupted run still reports
        section["live"] = live
        for rep in range(cfg["repeats"]):
            plan = [("cycle", c, cfg["z_cycles"], cfg["z_seconds"], False)
                    for c in cfg["z_conc"]]
            plan += [("kept-open", c, cfg["ka_cycles"], cfg["ka_seconds"], True)
                     for c in cfg["ka_conc"]]
            for mode, conc, cycles, seconds, keep in plan:
                for name in _rotate(live, rep):
                    res = run_load(ports[name], reqs, concurrency=conc, max_cycles=cycles,
                                   max_seconds=seconds, keepalive=keep)
                    row = {**res.summary(), "target": name, "repeat": rep, "mode": mode}
                    runs.append(row)
                    log(f"  z3950 r{rep} {mode:9} c={conc:<3} {name:15} {row['rate']:8.1f}/s "
                        f"p50 {row['p50_ms']:.2f} p99 {row['p99_ms']:.2f} ms "
                        f"errors {row['errors']}"
                        + (f" ({row['first_errors'][0]})" if row["first_errors"] else ""))
                    time.sleep(0.3)
        return "gateway" in live
    finally:
        for managed in started:
            managed.stop()


def finish_z3950(section: dict[str, Any]) -> None:
    """Aggregates and same-repeat ratios from whatever runs were made."""
    runs = section.get("runs", [])
    live = section.get("live", [])
    agg: dict[str, Any] = {}
    for (mode, conc, name), rows in report.group(runs, "mode", "concurrency", "target").items():
        agg[f"{mode}|{conc:>2}|{name}"] = {
            "rate": report.mmm(r["rate"] for r in rows),
            "p50_ms": report.mmm(r["p50_ms"] for r in rows),
            "p95_ms": report.mmm(r["p95_ms"] for r in rows),
            "p99_ms": report.mmm(r["p99_ms"] for r in rows),
            "errors": sum(r["errors"] for r in rows)}
    section["aggregate"] = agg
    ratio_table: dict[str, Any] = {}
    if "gateway" in live:
        for peer in live:
            if peer == "gateway":
                continue
            for (mode, conc), stat in report.ratios(
                    runs, numerator="gateway", denominator=peer,
                    keys=("mode", "concurrency")).items():
                ratio_table[f"{mode}|{conc:>2}|{peer}"] = stat
    section["ratios"] = ratio_table


def finish_ncip(section: dict[str, Any]) -> None:
    runs = section.get("runs", [])
    agg: dict[str, Any] = {}
    for (service, conc, name), rows in report.group(runs, "service", "concurrency",
                                                    "target").items():
        agg[f"{service}|{conc:>2}|{name}"] = {
            "rate": report.mmm(r["rate"] for r in rows),
            "p50_ms": report.mmm(r["p50_ms"] for r in rows),
            "p95_ms": report.mmm(r["p95_ms"] for r in rows),
            "p99_ms": report.mmm(r["p99_ms"] for r in rows),
            "non200": sum(r["non200"] for r in rows),
            "problems": sum(r["problems"] for r in rows),
            "socket_errors": sum(r["socket_errors"] for r in rows)}
    section["aggregate"] = agg
    section["ratios"] = {
        f"{service}|{conc:>2}": stat for (service, conc), stat in report.ratios(
            runs, numerator="gateway", denominator="ceiling",
            keys=("service", "concurrency")).items()}


def ncip_section(cfg: dict[str, Any], gateway: servers.Managed, database: Path,
                 results: dict[str, Any]) -> None:
    section: dict[str, Any] = {"description": (
        "wrk (1 thread, keep-alive, `--latency`, a generated Lua script) POSTing NCIP 2 "
        "(ReShare style, shared secret) for "
        f"{cfg['ncip_seconds']} s per run. LookupUser: user P0002 by UserId, constant body. "
        "AcceptItem: a unique RequestId per request (`wrk.format` + a per-thread counter), so "
        "each creates a temporary item (durable: WAL, synchronous=FULL). Ceiling: a bare "
        "twisted.web resource parsing the same body with a hardened lxml parser and returning "
        "a constant reply. Non-200 replies and replies containing `Problem` are counted by the "
        "script's response() hook.")}
    results["ncip"] = section
    ceiling = servers.start_ceiling()
    try:
        urls = {"gateway": f"http://127.0.0.1:{gateway.ports['ncip']}/ncip",
                "ceiling": f"http://127.0.0.1:{ceiling.port}/ncip"}
        stamp = f"BN{int(time.time()) % 1000000}"
        samples = {}
        for name, url in urls.items():
            samples[f"{name}|LookupUser"] = ncip_load.sample_with_curl(
                url, ncip_load.lookup_user_body())
            samples[f"{name}|AcceptItem"] = ncip_load.sample_with_curl(
                url, ncip_load.accept_item_body(f"{stamp}-sample-{name}"))
        section["samples"] = samples
        for key, sample in samples.items():
            log(f"  curl {key}: HTTP {sample['status']} {sample['bytes']} bytes"
                f" problem={sample['problem']}")
            if not sample["ok"]:
                results["notes"].append(f"NCIP sample {key} not OK: {sample['head'][:200]}")
        runs: list[dict[str, Any]] = []
        section["runs"] = runs
        bodies = {"LookupUser": ncip_load.lua_script(ncip_load.lookup_user_body())}
        for rep in range(cfg["repeats"]):
            for service in ("LookupUser", "AcceptItem"):
                for conc in cfg["ncip_conc"]:
                    for name in _rotate(list(urls), rep):
                        script = bodies.get(service) or ncip_load.lua_script(
                            ncip_load.accept_item_body(),
                            unique_tag=f"{stamp}-{rep}-{conc}-{name[0]}")
                        try:
                            res = ncip_load.run_wrk(urls[name], script, connections=conc,
                                                    seconds=cfg["ncip_seconds"],
                                                    service=service, target=name)
                        except RuntimeError as exc:
                            results["notes"].append(f"wrk {service} c={conc} {name}: {exc}")
                            continue
                        row = {**res.summary(), "repeat": rep, "concurrency": conc}
                        runs.append(row)
                        log(f"  ncip r{rep} {service:10} c={conc:<3} {name:8} "
                            f"{row['rate']:8.1f}/s p50 {row['p50_ms']:.2f} "
                            f"p99 {row['p99_ms']:.2f} ms non200 {row['non200']} "
                            f"problems {row['problems']}")
                        time.sleep(0.3)
        try:
            conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
            section["accept_item_rows"] = conn.execute(
                "SELECT count(*) FROM items WHERE barcode LIKE ?", (stamp + "-%",)).fetchone()[0]
            conn.close()
        except sqlite3.Error as exc:
            results["notes"].append(f"could not count AcceptItem rows: {exc}")
    finally:
        ceiling.stop()


def scale_section(cfg: dict[str, Any], scratch: Path, config: Path,
                  results: dict[str, Any], after_size: Any = None) -> dict[int, Path]:
    section: dict[str, Any] = {"description": (
        "Catalogues of N demo records written with `write_demo_marc` and loaded with "
        "`interlend import marc` (a separate process, timed end to end: start-up included); "
        "search latency measured in-process through `gateway.backends.embedded.search` "
        "(plan_query + run_plan on "
        "a connection opened like the daemon's: exact count and the first page of hit ids, "
        "i.e. the cost of a Z39.50 Search before the response PDU); the cycle rate through the "
        f"gateway over Z39.50 (concurrency {cfg['scale_conc']}, term `{TERM}`), one gateway per "
        "size, the sizes taken in turn within each repeat. The large sizes are imported "
        f"{cfg['import_repeats']} time(s), each into a fresh database (every rate is listed; "
        "the target holds for each)."),
        "imports": [], "search": [], "cycles": []}
    results["scale"] = section
    databases: dict[int, Path] = {}
    for size in cfg["sizes"]:
        log(f"  scale: building {size:,} records")
        repeats = cfg["import_repeats"] if size >= 100000 or size == cfg["sizes"][-1] else 1
        runs = []
        for rep in range(repeats):
            info = scale.build_catalogue(scratch / "scale", size, config)
            runs.append(info)
            log(f"  scale: {size:,} imported in {info['import_s']} s = "
                f"{info['import_rate']:,.0f} records/s (CLI says {info['cli_reported_rate']}; "
                f"repeat {rep + 1} of {repeats})")
        info["import_rates"] = [run["import_rate"] for run in runs]
        info["import_s_all"] = [run["import_s"] for run in runs]
        databases[size] = Path(info["database"])
        section["imports"].append(info)
        search = scale.search_latency(databases[size], size, samples=cfg["search_samples"],
                                      max_seconds=cfg["search_seconds"])
        section["search"].append(search)
        for kind, v in search.items():
            if isinstance(v, dict):
                log(f"  scale: {size:,} {kind:16} p50 {v['p50_ms']} p99 {v['p99_ms']} ms "
                    f"(n={v['n']}, mean hits {v['mean_hits']})")
        if after_size is not None:
            after_size(size, databases[size])
    section["cycles"] = scale_cycles(cfg, scratch, databases)
    return databases


def scale_cycles(cfg: dict[str, Any], scratch: Path,
                 databases: dict[int, Path]) -> list[dict[str, Any]]:
    """The cycle rate on each catalogue: one gateway per size, all checked first, then the
    sizes taken in turn within each repeat, so a disturbance of the machine falls on every
    size alike rather than on one."""
    gateways: dict[int, servers.Managed] = {}
    cycles: dict[int, dict[str, Any]] = {}
    rates: dict[int, list[float]] = {size: [] for size in databases}
    last: dict[int, dict[str, Any]] = {}
    try:
        for size, database in databases.items():
            gw = gateways[size] = servers.start_gateway(scratch / f"gw-{size}", database)
            check = check_z3950(f"gateway {size:,}", gw.ports["z3950"])
            if not check["ok"]:
                cycles[size] = {"records": size, "note": "check failed: "
                                + check["decoded"]["summary"][:100]}
                gw.stop()
                del gateways[size]
            else:
                cycles[size] = {"records": size, "hits": check["decoded"].get("hits")}
        reqs = build_requests(TERM)
        for _rep in range(cfg["repeats"]):
            for size, gw in gateways.items():
                last[size] = run_load(gw.ports["z3950"], reqs, concurrency=cfg["scale_conc"],
                                      max_cycles=cfg["scale_cycles"],
                                      max_seconds=cfg["scale_seconds"]).summary()
                rates[size].append(last[size]["rate"])
    finally:
        for gw in gateways.values():
            gw.stop()
    for size in gateways:
        stat = report.mmm(rates[size])
        cycles[size].update({"concurrency": cfg["scale_conc"], "rate": report.fmt_mmm(stat, 0),
                             "rate_median": stat["median"] if stat else 0,
                             "p50_ms": last[size]["p50_ms"], "p99_ms": last[size]["p99_ms"],
                             "errors": last[size]["errors"]})
        log(f"  scale: {size:,} gateway cycles {report.fmt_mmm(stat, 0)}/s")
    return [cycles[size] for size in databases]


def memory_section(cfg: dict[str, Any], scratch: Path, config: Path,
                   databases: dict[int, Path], results: dict[str, Any]) -> None:
    size = cfg["memory_records"]
    database = databases.get(size)
    if database is None:
        log(f"  memory: building {size:,} records")
        info = scale.build_catalogue(scratch / "scale", size, config)
        database = Path(info["database"])
    readies = []
    loaded = []
    figures: dict[str, list[int]] = {"unique": [], "pss": [], "uss": []}
    data: dict[str, Any] = {}
    for rep in range(cfg["repeats"]):
        data = memory_mod.measure(scratch / f"mem-{rep}", database,
                                  associations=cfg["memory_assoc"], ncip=cfg["memory_ncip"])
        readies.append(data["ready_s"])
        loaded.append(data["rss_loaded_kib"])
        for kind, values in figures.items():
            if data.get(f"{kind}_loaded_kib") is not None:
                values.append(data[f"{kind}_loaded_kib"])
        log(f"  memory r{rep}: READY {data['ready_s']} s, RSS idle {data['rss_idle_kib']:,} "
            f"KiB, loaded {data['rss_loaded_kib']:,} KiB (unique pages "
            f"{data.get('unique_loaded_kib')} KiB, PSS {data['pss_loaded_kib']:,} KiB), "
            f"{len(data['processes_loaded'])} processes, assoc open "
            f"{data['associations_open']}/{data['associations_requested']}, ncip open "
            f"{data['ncip_open']}/{data['ncip_requested']}")
    data["records"] = size
    data["ready_s_all"] = readies
    data["rss_loaded_kib_all"] = loaded
    for kind, values in figures.items():
        if values:
            data[f"{kind}_loaded_kib_all"] = values
    results["memory"] = data


def serving_pid(pid: int) -> int:
    """The process that serves the load: a worker (the first child) when the gateway runs
    workers, else the gateway itself. With N workers the load is shared out, so one worker's
    profile stands for all."""
    for children in sorted(Path(f"/proc/{pid}/task").glob("*/children")):
        kids = children.read_text().split()
        if kids:
            return int(kids[0])
    return pid


def serving_pids(pid: int) -> list[int]:
    """The processes that may serve the load: the workers when the gateway runs them (the
    primary leaves the listeners to ready workers), else the gateway itself."""
    return servers.tree_pids(pid)[1:] or [pid]


def profile_section(cfg: dict[str, Any], gateway: servers.Managed, gateway_ok: bool,
                    scratch: Path, results: dict[str, Any]) -> bool:
    """py-spy on the gateway under load: once with --gil (CPU in Python: which code keeps the
    interpreter busy) and once over all non-idle threads (wall time, SQLite fsync included).

    The process sampled is the one serving: every worker is ready first, the load is started,
    and after a warm-up the busiest worker is recorded for ``profile_seconds`` while the load
    runs on. A profile with too few samples or mostly start-up (imports) is taken again, then
    reported as an error (and the run's status is failed), never summarised."""
    profiles: dict[str, Any] = {}
    results["profiles"] = profiles
    seconds = cfg["profile_seconds"]
    if profiling.py_spy() is None:
        profiles["all"] = {"error": "py-spy not installed (pip install py-spy into the venv)"}
        return True
    memory_mod.wait_workers_ready(gateway)
    ok = True
    url = f"http://127.0.0.1:{gateway.ports['ncip']}/ncip"
    script = ncip_load.lua_script(ncip_load.lookup_user_body())
    reqs = build_requests(TERM)
    loads: list[tuple[str, Any, str]] = [(
        "NCIP LookupUser",
        lambda duration: ncip_load.run_wrk(url, script, connections=16, seconds=duration,
                                           service="LookupUser", target="gateway"),
        "wrk LookupUser, 16 connections")]
    if gateway_ok:
        loads.append((
            "Z39.50 cycle",
            lambda duration: run_load(gateway.ports["z3950"], reqs, concurrency=8,
                                      max_cycles=10**6, max_seconds=duration),
            "Z39.50 cycles, 8 clients"))
    else:
        profiles["Z39.50 cycle"] = {"error": "gateway Z39.50 not answering Search/Present"}
    for name, load, label in loads:
        for gil in (True, False):
            title = f"{name} ({'GIL holder: CPU in Python' if gil else 'all threads: wall'})"
            raw = scratch / f"profile-{name.split()[0]}-{'gil' if gil else 'wall'}.txt"
            try:
                res, summary = profiling.profile_serving(
                    lambda: serving_pids(gateway.pid), seconds, raw, load, gil=gil,
                    min_samples=max(100, int(seconds * 20)))
                role = "worker" if summary["pid"] != gateway.pid else "gateway"
                summary["load"] = (f"{label}, {seconds} s sampled at {summary['rate_hz']} Hz "
                                   f"in the {role} serving it (pid {summary['pid']}), after a "
                                   "warm-up" + (f" ({res.rate:.0f}/s over the whole load)"
                                                if res else ""))
                profiles[title] = summary
                log(f"  profiled {title}: {summary.get('samples', 0)} samples "
                    f"({summary['busy_samples']} busy, {summary['startup_share']:.1%} start-up) "
                    f"in pid {summary['pid']}")
            except Exception as exc:  # noqa: BLE001
                profiles[title] = {"error": f"{type(exc).__name__}: {exc}"}
                results["notes"].append(f"profile {title} invalid: {type(exc).__name__}: {exc}")
                log(f"  PROFILE FAILED {title}: {type(exc).__name__}: {exc}")
                ok = False
    return ok


def sru_section(cfg: dict[str, Any], scratch: Path, results: dict[str, Any]) -> None:
    """SRU searchRetrieve, gateway and zebrasrv, per client count (``bench.sru_load``)."""
    missing = sru_load.missing_tools()
    if missing:
        results["notes"].append(f"SRU not measured: {', '.join(missing)} not installed "
                                "(Debian packages idzebra-2.0, yaz)")
        return
    results["sru"] = sru_load.measure(
        scratch / "sru", catalogue=cfg["sru_catalogue"], clients=cfg["sru_clients"],
        seconds=cfg["sru_seconds"], repeats=cfg["repeats"], log=log)


def oai_section(cfg: dict[str, Any], scratch: Path, results: dict[str, Any]) -> None:
    """OAI-PMH ListRecords rate, baseline ratio and RSS growth (``bench.oai_harvest``)."""
    results["oai"] = oai_harvest.measure(
        scratch / "oai", records=cfg["oai_records"], baseline_records=cfg["oai_baseline"],
        page_size=cfg["oai_page_size"], log=log)


# -- targets --------------------------------------------------------------------------------------

IMPORT_TARGET = 6000  # records/s, issue 20: at 100,000 and 1,000,000 records, every repeat
FIRST_REPORTS = Path(__file__).with_name("first_reports.toml")


def _by_concurrency(ratio_table: dict[str, Any], prefix: str, suffix: str = ""
                    ) -> dict[int, dict[str, float]]:
    """``{concurrency: stat}`` of the ``prefix|c|...suffix`` rows of a ratio table."""
    return {int(k.split("|")[1]): v for k, v in ratio_table.items()
            if k.startswith(prefix + "|") and k.endswith(suffix) and v}


def _at_every(add: Any, description: str, vals: dict[int, dict[str, float]], bound: float,
              wanted: list[int], mode: str) -> None:
    """A ratio target that must hold at each of ``wanted`` concurrencies (median of the
    per-repeat ratios); a concurrency this mode does not measure is named in the note."""
    if not vals:
        add(description, None, note="gateway or peer not measured")
        return
    measured = ", ".join(f"c={c}: {report.fmt_mmm(v, 2, '×')}" for c, v in sorted(vals.items()))
    missing = [c for c in wanted if c not in vals]
    note = "median of per-repeat ratios (min–max)"
    if missing:
        note += f"; {mode} mode: c={','.join(map(str, missing))} not measured"
    add(description, all(v["median"] >= bound for v in vals.values()) and not missing,
        measured, note)


def evaluate_targets(results: dict[str, Any], cfg: dict[str, Any], mode: str) -> list[dict]:
    """Issue 20's targets, then the first pass's that still matter, then the figures of issues
    17-19 against their first reports (``bench/first_reports.toml``). Each met or not met."""
    targets: list[dict[str, Any]] = []

    def add(description: str, met: bool | str | None, measured: str = "–",
            note: str = "") -> None:
        targets.append({"description": description, "met": met, "measured": measured,
                        "note": note})

    zr = results.get("z3950", {}).get("ratios", {})
    _at_every(add, "Z39.50 cycles ≥ 1.2× yaz-ztest fork at 1, 8 and 32 clients",
              _by_concurrency(zr, "cycle", "|yaz-ztest fork"), 1.2, [1, 8, 32], mode)
    _at_every(add, "Z39.50 cycles ≥ 0.6× yaz-ztest -T at 1, 8 and 32 clients",
              _by_concurrency(zr, "cycle", "|yaz-ztest -T"), 0.6, [1, 8, 32], mode)
    _at_every(add, "Z39.50 kept-open Search+Present ≥ 0.5× yaz-ztest fork at every kept-open "
              "concurrency", _by_concurrency(zr, "kept-open", "|yaz-ztest fork"), 0.5,
              list(cfg["ka_conc"]), mode)
    nr = results.get("ncip", {}).get("ratios", {})
    _at_every(add, "NCIP LookupUser ≥ 0.6× the bare twisted.web ceiling at 1, 16 and 64 "
              "connections", _by_concurrency(nr, "LookupUser"), 0.6, [1, 16, 64], mode)
    lk = results.get("ncip", {}).get("aggregate", {}).get("LookupUser|16|gateway")
    if lk and lk.get("p99_ms"):
        p99 = lk["p99_ms"]
        add("NCIP LookupUser p99 < 10 ms at 16 connections", p99["median"] < 10,
            report.fmt_mmm(p99, 1, " ms"), "median (min–max) over repeats")
    else:
        add("NCIP LookupUser p99 < 10 ms at 16 connections", None)
    _at_every(add, "NCIP AcceptItem (durable: WAL, synchronous=FULL) ≥ 0.35× the ceiling",
              _by_concurrency(nr, "AcceptItem"), 0.35, [1, 16, 64], mode)
    _import_target(results.get("scale", {}), mode, add)
    _first_pass_targets(results, mode, add)
    figure_targets(results, mode, add)
    return targets


def _import_target(s: dict[str, Any], mode: str, add: Any) -> None:
    """Import ≥ 6,000 records/s at 100,000 and 1,000,000 records, in every repeat."""
    description = (f"import ≥ {IMPORT_TARGET:,} records/s at 100,000 and at 1,000,000 records, "
                   "in each of three repeats")
    imports = s.get("imports", [])
    big = [i for i in imports if i["records"] >= 100000] or imports[-1:]
    if not big:
        add(description, None)
        return
    measured = "; ".join(f"{i['records']:,}: " + ", ".join(
        f"{r:,.0f}" for r in i.get("import_rates", [i["import_rate"]])) + "/s" for i in big)
    sizes = {i["records"] for i in big}
    repeats = min(len(i.get("import_rates", [i["import_rate"]])) for i in big)
    notes = ["end to end (process start-up included); every repeat counts, not the median"]
    if not {100000, 1000000} <= sizes:
        notes.append(f"{mode} mode: measured at {', '.join(f'{n:,}' for n in sorted(sizes))}"
                     " records only")
    if repeats < 3:
        notes.append(f"{repeats} repeat(s)")
    met = all(r >= IMPORT_TARGET for i in big for r in i.get("import_rates",
                                                              [i["import_rate"]]))
    add(description, met and {100000, 1000000} <= sizes and repeats >= 3, measured,
        "; ".join(notes))


def _first_pass_targets(results: dict[str, Any], mode: str, add: Any) -> None:
    """The first performance pass's targets that still matter, each its own row."""
    zr = results.get("z3950", {}).get("ratios", {})
    vals = _by_concurrency(zr, "cycle", "|zebrasrv")
    if vals:
        add("Z39.50 cycles ≥ 1.5× zebrasrv at every concurrency (first pass)",
            all(v["median"] >= 1.5 for v in vals.values()),
            ", ".join(f"c={c}: {v['median']:.2f}×" for c, v in sorted(vals.items())),
            "median of per-repeat ratios")
    else:
        add("Z39.50 cycles ≥ 1.5× zebrasrv at every concurrency (first pass)", None)
    s = results.get("scale", {})
    searches = s.get("search", [])
    if searches:
        largest = searches[-1]
        note = "" if largest["records"] >= 1000000 else \
            f"{mode} mode: at {largest['records']:,} records, not 1,000,000"
        ids = [largest[k]["p99_ms"] for k in largest if k.startswith("id_")]
        words = [largest[k]["p99_ms"] for k in largest if k.startswith("word_")]
        add("identifier search p99 < 2 ms at 1,000,000 records", max(ids) < 2,
            f"{max(ids):.2f} ms (worst of 1=12, 1=7)", note)
        add("word search p99 < 20 ms at 1,000,000 records", max(words) < 20,
            f"{max(words):.2f} ms (worst of 1=4, 1=1016)", note)
    else:
        add("identifier search p99 < 2 ms at 1,000,000 records", None)
        add("word search p99 < 20 ms at 1,000,000 records", None)
    cycles = [c for c in s.get("cycles", []) if c.get("rate_median")]
    small = next((c for c in cycles if c["records"] == 2000), None)
    large = cycles[-1] if cycles else None
    if small and large and large is not small:
        ratio = large["rate_median"] / small["rate_median"]
        note = "" if large["records"] >= 1000000 else \
            f"{mode} mode: {large['records']:,} vs 2,000 records"
        add("Z39.50 cycle rate at 1,000,000 within 20% of the rate at 2,000", ratio >= 0.8,
            f"{ratio:.2f}× ({large['rate_median']:.0f} vs {small['rate_median']:.0f}/s)", note)
    else:
        add("Z39.50 cycle rate at 1,000,000 within 20% of the rate at 2,000", None,
            note="gateway Z39.50 cycles not measured")
    m = results.get("memory")
    if m:
        note = "" if m["associations_open"] >= m["associations_requested"] else (
            f"only {m['associations_open']} of {m['associations_requested']} associations "
            "stayed open after Init")
        if m["records"] < 100000:
            note = (note + "; " if note else "") + f"{mode} mode: {m['records']:,} records"
        # judged on the tree's unique resident pages (each page once, however many of the
        # primary and its workers map it), else PSS; summed RSS counts shared pages once per
        # process and stays beside it
        kind = next((k for k in ("unique", "pss") if m.get(f"{k}_loaded_kib_all")), "rss")
        judged = report.mmm(m.get(f"{kind}_loaded_kib_all") or [m["rss_loaded_kib"]])
        rss = report.mmm(m.get("rss_loaded_kib_all") or [m["rss_loaded_kib"]])
        assert judged is not None and rss is not None

        def mib(stat: dict[str, Any]) -> str:
            return report.fmt_mmm({k: v / 1024 if k != "n" else v for k, v in stat.items()}, 1,
                                  " MiB")

        label = {"unique": "unique pages of the primary and its workers",
                 "pss": "PSS summed", "rss": "RSS summed"}[kind]
        pss = report.mmm(m.get("pss_loaded_kib_all", []))
        extra = f"; RSS summed {mib(rss)}" + (f", PSS summed {mib(pss)}" if pss else "")
        add("memory < 150 MB (1,000 idle associations + 100 NCIP keep-alive, 100,000 records)",
            judged["median"] * 1024 < 150e6, f"{mib(judged)} ({label}{extra})", note)
        rmm = report.mmm(m.get("ready_s_all", []))
        add("READY < 1 s with 100,000 records",
            (rmm["median"] < 1.0) if rmm else None,
            report.fmt_mmm(rmm, 3, " s") if rmm else "–",
            "" if m["records"] >= 100000 else f"{mode} mode: {m['records']:,} records")
    else:
        add("memory < 150 MB", None)
        add("READY < 1 s with 100,000 records", None)


def first_reports(path: Path = FIRST_REPORTS) -> list[dict[str, Any]]:
    """The first reported figures of issues 17-19 (``bench/first_reports.toml``)."""
    if not path.exists():
        return []
    return list(tomllib.loads(path.read_text(encoding="utf-8")).get("figure", []))


def current_figures(results: dict[str, Any]) -> dict[str, float]:
    """This run's figures under the keys of ``bench/first_reports.toml`` (ratios as medians
    of the per-repeat ratios)."""
    out = upstream.ratios(results.get("upstream") or {})
    for key, stat in (results.get("sru") or {}).get("ratios", {}).items():
        if stat:
            out[f"sru|{int(key)}"] = stat["median"]
    for harvest in (results.get("oai") or {}).get("harvests", []):
        out[f"oai|{harvest['prefix']}"] = harvest["records_per_second"]
    return out


def figure_targets(results: dict[str, Any], mode: str, add: Any) -> None:
    """Issue 20: what issues 17-19 added keeps its own figures, each better than in its first
    report. One row per figure of ``bench/first_reports.toml``."""
    now = current_figures(results)
    oai = results.get("oai") or {}
    for figure in first_reports():
        key, first = figure["key"], float(figure["value"])
        rate = figure.get("unit") == "records_per_second"
        shown = (lambda v: f"{v:,.0f}/s") if rate else (lambda v: f"{v:.2f}×")
        description = f"{figure['label']}: better than first report ({shown(first)})"
        note = f"first: {figure['source']}"
        if key.startswith("oai|") and oai and oai.get("catalogue_records", 0) < 100000:
            note = f"{mode} mode: {oai['catalogue_records']:,} records, not 100,000; " + note
        if key not in now:
            add(description, None, "–", note)
            continue
        add(description, now[key] > first, shown(now[key]), note)


# -- main -----------------------------------------------------------------------------------------

def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_const", dest="mode", const="quick",
                       help="small sizes, 1 repeat, under 3 minutes (default)")
    speed.add_argument("--full", action="store_const", dest="mode", const="full",
                       help="100,000 and 1,000,000 records, 3 repeats (the committed report)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--only", help="comma-separated sections: z3950,ncip,sru,oai,scale,"
                                       "memory,profile,upstream")
    parser.add_argument("--profile", action="store_true", help="add the profile section")
    parser.add_argument("--repeats", type=int, help="override the mode's repeat count")
    parser.add_argument("--scratch", type=Path, help="scratch directory (kept afterwards)")
    args = parser.parse_args(argv)
    mode = args.mode or "quick"
    cfg = dict(MODES[mode])
    if args.repeats:
        cfg["repeats"] = args.repeats
    sections = args.only.split(",") if args.only else list(cfg["sections"])
    if args.profile and "profile" not in sections:
        sections.append("profile")
    signal.signal(signal.SIGTERM, _terminate)
    servers.raise_fd_limit(8192)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="interlend-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": machine_meta(mode, argv), "notes": []}
    results["meta"]["repeats"] = cfg["repeats"]
    results["meta"]["sections"] = sections
    status = 0
    gateway: servers.Managed | None = None
    try:
        log(f"bench {mode}: sections {', '.join(sections)}; scratch {scratch}")
        config = scratch / "bench-interlend.toml"
        config.write_text(servers.bench_config())
        gateway_ok = False
        demo_db = scratch / "demo.sqlite3"
        if {"z3950", "ncip", "profile"} & set(sections):
            info = build_demo_database(demo_db, cfg["demo_records"])
            log(f"demo database: {info['records']:,} records, {info['items']:,} items in "
                f"{info['seconds']:.1f} s")
            gateway = servers.start_gateway(scratch / "gw-demo", demo_db)
            log(f"gateway pid {gateway.pid}: z3950 {gateway.ports.get('z3950')}, ncip "
                f"{gateway.ports.get('ncip')}")
        if "z3950" in sections and gateway is not None:
            log("Z39.50 cycles")
            gateway_ok = z3950_section(cfg, scratch, gateway, results)
            _load(results, "after z3950")
        elif gateway is not None:
            gateway_ok = check_z3950("gateway", gateway.ports["z3950"])["ok"]
        if gateway is not None and not gateway_ok:
            results["notes"].append("The gateway did not pass the Z39.50 pre-flight check "
                                    "(Search/Present): gateway Z39.50 figures are missing.")
        if "ncip" in sections and gateway is not None:
            log("NCIP")
            ncip_section(cfg, gateway, demo_db, results)
            _load(results, "after ncip")
        if "profile" in sections and gateway is not None:
            log("profiles")
            if not profile_section(cfg, gateway, gateway_ok, scratch, results):
                status = 1  # a profile that does not show the serving process fails the run
            _load(results, "after profile")
        if gateway is not None:
            gateway.stop()
            gateway = None
        if "sru" in sections:
            log("SRU searchRetrieve")
            sru_section(cfg, scratch, results)
            _load(results, "after sru")
        if "oai" in sections:
            log("OAI-PMH ListRecords")
            oai_section(cfg, scratch, results)
            _load(results, "after oai")
        if "upstream" in sections:
            log("upstream (NCIP, Z39.50 and SRU through the gateway vs direct)")
            results["upstream"] = upstream.measure(cfg, log)
            _load(results, "after upstream")
        databases: dict[int, Path] = {}
        def memory_now(size: int, database: Path) -> None:
            if "memory" in sections and size == cfg["memory_records"] \
                    and "memory" not in results:
                log("memory and READY")
                memory_section(cfg, scratch, config, {size: database}, results)
                _load(results, "after memory")

        if "scale" in sections:
            log("catalogue scale")
            databases = scale_section(cfg, scratch, config, results,
                                      after_size=memory_now)
            _load(results, "after scale")
        if "memory" in sections and "memory" not in results:
            log("memory and READY")
            memory_section(cfg, scratch, config, databases, results)
            _load(results, "after memory")
    except KeyboardInterrupt:
        log("interrupted: stopping servers")
        results["notes"].append("run interrupted")
        status = 130
    except Exception as exc:  # noqa: BLE001 - report what we have
        traceback.print_exc()
        results["notes"].append(f"run failed: {type(exc).__name__}: {exc}")
        status = 1
    finally:
        if gateway is not None:
            gateway.stop()
        servers.stop_all()
        results["meta"]["runtime_s"] = time.perf_counter() - started
        if "z3950" in results:
            finish_z3950(results["z3950"])
        if "ncip" in results:
            finish_ncip(results["ncip"])
        results["targets"] = evaluate_targets(results, cfg, mode)
        md, js = report.write(results, args.out)
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print_summary(results)
    log(f"report: {md} and {js} ({results['meta']['runtime_s']:.0f} s)")
    return status


def print_summary(results: dict[str, Any]) -> None:
    print()
    for section, label in (("z3950", "Z39.50"), ("ncip", "NCIP")):
        ratio_table = results.get(section, {}).get("ratios", {})
        for key, stat in sorted(ratio_table.items()):
            print(f"{label:6} ratio {key:40} {report.fmt_mmm(stat, 2, 'x')}")
    for key, stat in sorted(results.get("sru", {}).get("ratios", {}).items()):
        print(f"SRU    ratio c={key.strip():38} {report.fmt_mmm(stat, 2, 'x')} "
              "(gateway / zebrasrv)")
    for t in results.get("targets", []):
        print(f"{report.verdict(t['met']).strip('*'):13} {t['description']}: {t['measured']}"
              + (f" [{t['note']}]" if t.get("note") else ""))


if __name__ == "__main__":
    raise SystemExit(main())
