"""Two source trees side by side, alternated: gateway CPU per operation and rates, same run.

``python -m bench.compare_trees BEFORE AFTER [--rounds N]``: each tree (a checkout, e.g. a
``git worktree`` of the commit before a change) serves a copy of one demo database built by the
BEFORE tree (the AFTER tree migrates its copy at start-up); Z39.50 cycles (connect, Init,
Search, Present OPAC, Close) at 1 and 8 clients and kept-open Search+Present at 8, then NCIP
LookupUser and AcceptItem (durable) at 16 keep-alive connections (wrk), the two trees in
alternating order each round. On a shared machine the CPU each gateway process spends per
completed operation (``/proc/PID/stat``) is the figure that compares; rates are printed too.
A tree before the package moved by role (issue 16) is started as ``gateway.cli``.
``--before-workers N`` / ``--after-workers N`` set ``[gateway] workers`` for one side (the same
tree may then be given twice); the CPU counted is then the gateway's and its workers'.
"""
import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ncip_load, servers
from bench.z3950_load import build_requests, run_load, verify_cycle


def cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def tree_cpu(pid: int) -> float:
    """CPU seconds of the process and of its children (the worker processes)."""
    total = cpu(pid)
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                total += cpu(int(child))
            except (OSError, ValueError):
                pass  # gone meanwhile
    return total


def main_thread_cpu(pid: int) -> float:
    """CPU seconds of the process's main (reactor) thread only."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def cli_module(tree: Path) -> str:
    """The command-line module of a tree (it moved to gateway.daemon in issue 16)."""
    return "gateway.daemon.cli" if (tree / "gateway" / "daemon" / "cli.py").exists() \
        else "gateway.cli"


def start(tree: Path, workdir: Path, database: Path,
          workers: int | None = None) -> servers.Managed:
    """``interlend serve`` from ``tree`` on loopback ports, with the bench configuration less
    the sections an older tree does not know (``workers``: that many serving processes)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "bench-interlend.toml"
    text = servers.bench_config()
    if workers is not None:
        text = re.sub(r"(?m)^workers = \d+\n", "", text)
        text = text.replace("[gateway]\n", f"[gateway]\nworkers = {workers}\n", 1)
    if not (tree / "gateway" / "sru").exists():
        text = re.sub(r"(?ms)^\[(sru|oai)\][^\n]*\n.*?(?=^\[)", "", text)
    config.write_text(text)
    args = [sys.executable, "-m", cli_module(tree), "serve", "-c", str(config),
            "--database", str(database),
            "--z3950-listen", "tcp:0:interface=127.0.0.1",
            "--ncip-listen", "tcp:0:interface=127.0.0.1",
            "--admin-listen", "tcp:0:interface=127.0.0.1", "--log-level", "info"]
    if (tree / "gateway" / "sru").exists():  # two trees side by side: no fixed SRU port
        args[-2:-2] = ["--sru-listen", "tcp:0:interface=127.0.0.1"]
    managed = servers._spawn("gateway", args, cwd=tree,
                             env={"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree)}, pump=True)
    managed.wait_for(r"ncip listening on", timeout=120)
    managed.wait_for(r"z3950 listening on", timeout=5)
    managed.wait_for(r"ready: agency", timeout=120)
    managed.port = managed.ports.get("z3950", 0)
    if workers is not None and workers > 1:
        managed.wait_for(rf"worker {workers - 1} \(pid \d+\) ready", timeout=60)
    return managed


def demo_database(tree: Path, path: Path, records: int) -> None:
    """A demo database written by ``tree``'s own code (so its schema is that tree's)."""
    moved = (tree / "gateway" / "daemon").exists()
    demo = "gateway.backends.embedded.demo" if moved else "gateway.demo"
    store = "gateway.storage.store" if moved else "gateway.store"
    code = (f"import sys; from pathlib import Path; from {demo} import write_demo; "
            f"from {store} import open_database; c = open_database(Path(sys.argv[1])); "
            f"write_demo(c, records={records}); c.close()")
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=tree,
                   env={"PYTHONPATH": str(tree)}, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--before-workers", type=int, default=None)
    parser.add_argument("--after-workers", type=int, default=None)
    parser.add_argument("--only", choices=("z3950", "ncip"),
                        help="one protocol's modes only (default: both)")
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    scratch = Path(tempfile.mkdtemp(prefix="interlend-compare-"))
    db = scratch / "demo.sqlite3"
    demo_database(trees["before"], db, args.records)
    servers.raise_fd_limit()
    gateways: dict[str, servers.Managed] = {}
    try:
        for name, tree in trees.items():
            copy = scratch / f"{name}.sqlite3"
            shutil.copy(db, copy)
            gateways[name] = start(tree, scratch / name, copy,
                                   workers=getattr(args, f"{name}_workers"))
        reqs = build_requests("river")
        for name, gw in gateways.items():
            print(name, verify_cycle(gw.port, reqs), flush=True)
        z_modes = [("cycle", 1, 600, 2.5, False), ("cycle", 8, 600, 2.5, False),
                   ("kept-open", 8, 2000, 2.5, True)]
        n_modes = [("LookupUser", 16), ("AcceptItem", 16)]
        if args.only == "ncip":
            z_modes = []
        elif args.only == "z3950":
            n_modes = []
        keys = ([f"z3950 {m} c={c}" for m, c, *_ in z_modes]
                + [f"ncip {s} c={c}" for s, c in n_modes])
        rates: dict[tuple[str, str], list[float]] = {(k, n): [] for k in keys for n in trees}
        cpus: dict[tuple[str, str], list[float]] = {(k, n): [] for k in keys for n in trees}
        mains: dict[tuple[str, str], list[float]] = {(k, n): [] for k in keys for n in trees}
        for rnd in range(args.rounds):
            order = list(trees) if rnd % 2 == 0 else list(reversed(trees))
            for mode, conc, cycles, seconds, keep in z_modes:
                for name in order:
                    c0 = tree_cpu(gateways[name].pid)
                    res = run_load(gateways[name].port, reqs, concurrency=conc,
                                   max_cycles=cycles, max_seconds=seconds,
                                   keepalive=keep).summary()
                    per = (tree_cpu(gateways[name].pid) - c0) / max(1, res["completed"]) * 1000
                    key = f"z3950 {mode} c={conc}"
                    rates[(key, name)].append(res["rate"])
                    cpus[(key, name)].append(per)
                    print(f"r{rnd} {key:22} {name:6} {res['rate']:8.1f}/s cpu {per:.3f} ms/op "
                          f"errors {res['errors']}", flush=True)
                    time.sleep(0.3)
            for service, conc in n_modes:
                for name in order:
                    url = f"http://127.0.0.1:{gateways[name].ports['ncip']}/ncip"
                    body = (ncip_load.lookup_user_body() if service == "LookupUser"
                            else ncip_load.accept_item_body())
                    script = ncip_load.lua_script(
                        body, unique_tag=None if service == "LookupUser" else f"ab-{rnd}-{name}")
                    pid = gateways[name].pid
                    c0, m0 = tree_cpu(pid), main_thread_cpu(pid)
                    wrk = ncip_load.run_wrk(url, script, connections=conc, seconds=3,
                                            service=service, target=name)
                    done = max(1, wrk.data.get("requests", 0))
                    per = (tree_cpu(pid) - c0) / done * 1000
                    main_per = (main_thread_cpu(pid) - m0) / done * 1000
                    key = f"ncip {service} c={conc}"
                    rates[(key, name)].append(wrk.rate)
                    cpus[(key, name)].append(per)
                    mains[(key, name)].append(main_per)
                    print(f"r{rnd} {key:22} {name:6} {wrk.rate:8.1f}/s cpu {per:.3f} ms/op "
                          f"(reactor thread {main_per:.3f}) failures {wrk.failures}", flush=True)
                    time.sleep(0.3)
        print("\nmedians over rounds:")
        for key in keys:
            a = statistics.median(rates[(key, "before")])
            b = statistics.median(rates[(key, "after")])
            ca = statistics.median(cpus[(key, "before")])
            cb = statistics.median(cpus[(key, "after")])
            pairs = statistics.median(
                y / x for x, y in zip(cpus[(key, "before")], cpus[(key, "after")]))
            print(f"{key:22} rate before {a:8.1f} after {b:8.1f} ({b / a:.3f}x) | "
                  f"CPU ms/op before {ca:.3f} after {cb:.3f} (after/before {cb / ca:.3f}; "
                  f"median of per-round ratios {pairs:.3f})")
            if mains[(key, "before")]:
                ma = statistics.median(mains[(key, "before")])
                mb = statistics.median(mains[(key, "after")])
                print(f"{'':22} reactor thread CPU ms/op before {ma:.3f} after {mb:.3f}; other "
                      f"threads {ca - ma:.3f} -> {cb - mb:.3f}")
    finally:
        for gw in gateways.values():
            gw.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
