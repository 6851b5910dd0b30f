"""Catalogue scale: build catalogues of N demo records through the MARC importer, and time
searches on them.

* :func:`build_catalogue` writes ``N`` demo records as ISO 2709
  (``gateway.backends.embedded.demo.write_demo_marc``) and imports them with
  ``interlend import marc`` (a separate process, timed end to end; the CLI's own records/s
  figure is kept too). The demo patrons are added afterwards with
  ``write_demo(records=0)`` so NCIP lookups work on the same database.
* :func:`search_latency` measures searches **in-process through the gateway's search module**
  (``gateway.backends.embedded.search.plan_query`` + ``run_plan`` on a connection opened like
  the daemon's: plan, compile to SQL, count the hits exactly and read the first page of ids
  (``gateway.backends.embedded.search.FIRST_PAGE``), or every id where the statement cannot
  stream — what a Z39.50 Search does before the PDU is built). Kinds: identifier (1=12 local
  id, 1=7 ISBN-13) and word (1=4 title word, 1=1016 any word).
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.z3950_load import percentile

REPO = Path(__file__).resolve().parents[1]

TITLE_WORDS = ("river", "garden", "city", "island", "mountain", "harbour", "forest", "library",
               "machine", "kingdom", "silent", "hidden", "golden", "northern", "winter")
ANY_WORDS = ("astronomy", "birds", "poetry", "music", "geology", "smith", "garcia", "chen",
             "history", "scotland", "river", "lighthouse", "harbour", "sailing", "medicine")


def build_catalogue(workdir: Path, records: int, config: Path) -> dict[str, Any]:
    """Write ``records`` demo records to MARC and import them into a fresh database."""
    from gateway.backends.embedded.demo import write_demo_marc

    workdir.mkdir(parents=True, exist_ok=True)
    marc = workdir / f"demo-{records}.mrc"
    database = workdir / f"catalogue-{records}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    t0 = time.perf_counter()
    if not marc.exists():
        write_demo_marc(marc, records=records)
    marc_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gateway.daemon.cli", "import", "marc", "-c", str(config),
         "--database", str(database), str(marc)],
        cwd=REPO, capture_output=True, text=True, timeout=3 * 3600, check=False)
    import_seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"import failed ({done.returncode}): {done.stdout[-2000:]}"
                           f"{done.stderr[-2000:]}")
    output = done.stdout + done.stderr
    cli_rate = None
    match = re.search(r"\(([\d,]+) records/s\)", output)
    if match:
        cli_rate = float(match.group(1).replace(",", ""))
    add_patrons(database)
    return {"records": records, "database": str(database), "marc_bytes": marc.stat().st_size,
            "marc_write_s": round(marc_seconds, 2), "import_s": round(import_seconds, 2),
            "import_rate": round(records / import_seconds, 1), "cli_reported_rate": cli_rate,
            "db_bytes": database.stat().st_size, "import_output": output.strip()[-300:]}


def add_patrons(database: Path) -> None:
    """The ten demo patrons (``write_demo(records=0)``), for NCIP lookups."""
    from gateway.backends.embedded.demo import write_demo
    from gateway.storage.store import open_database

    conn = open_database(database)
    try:
        write_demo(conn, records=0)
    finally:
        conn.close()


def _isbn13(number: int) -> str:
    from gateway.backends.embedded.demo import demo_record

    fields = demo_record(number).get_fields("020")
    if not fields:
        return ""
    return str(fields[-1]["a"])


def _queries(records: int, count: int, rng: random.Random) -> dict[str, list[str]]:
    local = [f"@attr 1=12 demo-{rng.randint(1, records):06d}" for _ in range(count)]
    isbns: list[str] = []
    while len(isbns) < min(count, 300):
        isbn = _isbn13(rng.randint(1, records))
        if isbn:
            isbns.append(f"@attr 1=7 {isbn}")
    isbn_queries = [isbns[i % len(isbns)] for i in range(count)]
    titles = [f"@attr 1=4 {rng.choice(TITLE_WORDS)}" for _ in range(count)]
    anys = [f"@attr 1=1016 {rng.choice(ANY_WORDS)}" for _ in range(count)]
    return {"id_local_1=12": local, "id_isbn_1=7": isbn_queries, "word_title_1=4": titles,
            "word_any_1=1016": anys}


def search_latency(database: Path, records: int, *, samples: int = 300,
                   max_seconds: float = 20.0, seed: int = 7) -> dict[str, Any]:
    """Latency percentiles per query kind, in-process (see the module docstring)."""
    from gateway.backends.embedded.search import FIRST_PAGE, run_plan
    from gateway.storage.store import open_database
    from gateway.z3950.query import plan_query
    from protocols.z3950.pqf import parse_pqf

    conn = open_database(database)
    out: dict[str, Any] = {"records": records,
                           "method": "in-process gateway.backends.embedded.search "
                           f"(plan_query + run_plan: exact count + first {FIRST_PAGE} hit ids, "
                           "as a Z39.50 Search)"}
    try:
        rng = random.Random(seed)
        for kind, queries in _queries(records, samples, rng).items():
            for q in queries[:10]:  # warm-up: page cache, statement cache
                run_plan(conn, plan_query(parse_pqf(q), {}))
            times: list[float] = []
            hits: list[int] = []
            deadline = time.perf_counter() + max_seconds
            for q in queries:
                if time.perf_counter() > deadline:
                    break
                t0 = time.perf_counter()
                found = run_plan(conn, plan_query(parse_pqf(q), {}))
                times.append((time.perf_counter() - t0) * 1000)
                hits.append(found.count)
            out[kind] = {"n": len(times), "p50_ms": round(percentile(times, 50), 3),
                         "p95_ms": round(percentile(times, 95), 3),
                         "p99_ms": round(percentile(times, 99), 3),
                         "max_ms": round(max(times), 3) if times else 0.0,
                         "mean_hits": round(sum(hits) / len(hits), 1) if hits else 0,
                         "zero_hit_queries": sum(1 for h in hits if h == 0)}
    finally:
        conn.close()
    return out
