"""Aggregation (min/median/max over repeats, ratios from the same repeat), target verdicts and
the Markdown + JSON report."""

from __future__ import annotations

import json
import statistics
import tomllib
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PERFORMANCE_PASS = Path(__file__).with_name("performance_pass.toml")


def mmm(values: Iterable[float]) -> dict[str, float] | None:
    """min / median / max of the values (None when empty)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "n": len(vals)}


def fmt_mmm(stat: dict[str, float] | None, digits: int = 0, suffix: str = "") -> str:
    if not stat:
        return "–"
    f = f"{{:,.{digits}f}}"
    if stat["n"] == 1 or stat["min"] == stat["max"]:
        return f.format(stat["median"]) + suffix
    return (f"{f.format(stat['median'])}{suffix} ({f.format(stat['min'])}–"
            f"{f.format(stat['max'])})")


def group(runs: list[dict[str, Any]], *keys: str) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        out[tuple(run.get(k) for k in keys)].append(run)
    return out


def ratios(runs: list[dict[str, Any]], *, numerator: str, denominator: str, keys: tuple[str, ...],
           value: str = "rate") -> dict[tuple, dict[str, float] | None]:
    """Per ``keys`` group: min/median/max of numerator/denominator, paired by repeat."""
    by: dict[tuple, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        if run.get("errors_fatal"):
            continue
        by[tuple(run.get(k) for k in keys)][run["repeat"]][run["target"]] = run.get(value, 0)
    out: dict[tuple, dict[str, float] | None] = {}
    for key, repeats in by.items():
        vals = [r[numerator] / r[denominator] for r in repeats.values()
                if numerator in r and denominator in r and r[denominator]]
        out[key] = mmm(vals)
    return out


def verdict(met: bool | str | None) -> str:
    """A target's verdict; ``"figure"`` marks a measured figure that has no threshold."""
    return {True: "**met**", False: "**not met**", None: "not measured",
            "figure": "figure"}[met]


def write(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    md_path = out_dir / "report.md"
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    md_path.write_text(render_markdown(results))
    return md_path, json_path


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _performance_pass(path: Path = PERFORMANCE_PASS) -> list[str]:
    """The "what each change bought" section, from the curated ``performance_pass.toml``."""
    if not path.exists():
        return []
    changes = tomllib.loads(path.read_text(encoding="utf-8")).get("change", [])
    out = ["## Performance pass: what each change bought", "",
           "Targeted same-run A/B measurements made while changing (from "
           "`bench/performance_pass.toml`); this report's own tables show where the whole "
           "stands now.", ""]
    return out + _table(["commit", "change", "measure", "before", "after", "command"],
                        [[f"`{c['commit']}`", c["change"], c["measure"], c["before"], c["after"],
                          f"`{c['command']}`"] for c in changes])


def _sru(section: dict[str, Any] | None) -> list[str]:
    """The SRU searchRetrieve section: rates per server and client count, then the ratios."""
    if not section:
        return []
    out = ["## SRU searchRetrieve", "", section.get("description", ""), ""]
    if section.get("hits"):
        out += ["Hits: " + ", ".join(f"{k} {v}" for k, v in section["hits"].items()), ""]
    rows = [[*key.split("|"), fmt_mmm(st.get("rate"), 0), fmt_mmm(st.get("p50_ms"), 2),
             fmt_mmm(st.get("p99_ms"), 2), str(st.get("errors", 0))]
            for key, st in sorted(section.get("aggregate", {}).items())]
    if rows:
        out += _table(["clients", "server", "req/s", "p50 ms", "p99 ms", "errors"], rows)
    if section.get("ratios"):
        out += ["Ratios gateway / zebrasrv (same repeat):", ""]
        out += _table(["clients", "ratio"], [[k.strip(), fmt_mmm(v, 2, "×")]
                                             for k, v in sorted(section["ratios"].items())])
    return out


def _oai(section: dict[str, Any] | None) -> list[str]:
    """The OAI-PMH ListRecords section: one row per metadata format, baseline and memory."""
    if not section:
        return []
    out = ["## OAI-PMH ListRecords", "", section.get("description", ""), ""]
    out += _table(["metadataPrefix", "records", "s", "records/s", "pages", "first 10 pages ms",
                   "last 10 pages ms", "MB"],
                  [[h["prefix"], f"{h['records']:,}", h["seconds"],
                    f"{h['records_per_second']:,.0f}", h["pages"], h["first_pages_ms"],
                    h["last_pages_ms"], h["megabytes"]] for h in section.get("harvests", [])])
    base = section.get("baseline_in_process_marcxml", {})
    ratio = section.get("ratio_listrecords_marc21_holdings_to_baseline")
    out += _table(["measure", "value"], [
        ["in-process baseline (MARCXML), records/s",
         f"{base.get('records_per_second', 0):,.0f} ({base.get('records', 0):,} records)"],
        ["ratio ListRecords marc21_holdings / baseline", f"{ratio:.2f}×" if ratio else "–"],
        ["daemon RSS before / after, KiB", f"{section.get('daemon_rss_kib_before', 0):,} / "
                                           f"{section.get('daemon_rss_kib_after', 0):,}"],
        ["daemon RSS growth, KiB", f"{section.get('daemon_rss_growth_kib', 0):,}"]])
    return out


def _upstream(section: dict[str, Any] | None) -> list[str]:
    """The upstream section: the gateway in front of each upstream against it directly."""
    if not section:
        return []
    out = ["## Upstream: through the gateway vs the upstream directly", "",
           section.get("description", ""), ""]
    rows = []
    for service, f in (section.get("ncip") or {}).items():
        rows.append(["NCIP " + service, "4 concurrent", f"{f['direct']['rps']:,.1f}",
                     f"{f['through']['rps']:,.1f}", f"{f['ratio']:.2f}×",
                     f"{f['direct']['p50_ms']:.1f} / {f['through']['p50_ms']:.1f}"])
    for row in section.get("z3950") or []:
        rows.append([f"Z39.50 {row['mode']} (Koha's Zebra)", str(row["clients"]),
                     f"{row['zebra_rate']:,.1f}", f"{row['gateway_rate']:,.1f}",
                     f"{row['ratio']:.2f}×" if row.get("ratio") is not None else "–",
                     f"{row.get('zebra_p50_ms') or 0:.1f} / {row.get('gateway_p50_ms') or 0:.1f}"])
    for row in (section.get("sru") or {}).get("rows", []):
        rows.append(["Z39.50 cycle via SRU upstream (Koha's Zebra)", str(row["clients"]),
                     f"{row['zebra_rate']:,.1f}", f"{row['gateway_rate']:,.1f}",
                     f"{row['ratio']:.2f}×", "–"])
    if rows:
        out += _table(["path", "clients", "direct /s", "through /s", "ratio",
                       "p50 ms direct / through"], rows)
    cpu = [f"{service} gateway {f['gateway_cpu_ms']:.2f} ms, upstream "
           f"{f['upstream_cpu_ms']:.2f} ms" for service, f in (section.get("ncip") or {}).items()
           if "gateway_cpu_ms" in f]
    if cpu:
        out += ["CPU per NCIP request on the through path (/proc): " + "; ".join(cpu) + ".", ""]
    for name, error in (section.get("errors") or {}).items():
        out.append(f"* {name}: {error}")
    if section.get("errors"):
        out.append("")
    return out


def render_markdown(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    out: list[str] = [f"# Interlend benchmark report ({meta.get('mode', '?')} mode)", ""]
    out.append(f"Run {meta.get('started', '?')} UTC, {meta.get('runtime_s', 0):.0f} s, "
               f"{meta.get('repeats', 1)} repeat(s); figures are median (min–max) over repeats; "
               "ratios are computed per repeat from runs made in the same repeat, then "
               "summarised. All traffic on 127.0.0.1; client and servers share the machine.")
    out.append("")
    out.append("## Machine")
    out.append("")
    for key in ("machine", "cpu", "cores", "load_before", "load_average", "python", "twisted",
                "pyasn1", "lxml", "sqlite", "yaz", "zebra", "wrk", "git_commit", "command"):
        if key in meta:
            out.append(f"* {key}: {meta[key]}")
    out.append("")

    targets = results.get("targets", [])
    if targets:
        out.append("## Targets")
        out.append("")
        out += _table(["target", "measured", "verdict", "note"],
                      [[t["description"], t.get("measured", "–"), verdict(t.get("met")),
                        t.get("note", "")] for t in targets])

    z = results.get("z3950")
    if z:
        out.append("## Z39.50 cycles")
        out.append("")
        out.append(z.get("description", ""))
        out.append("")
        if z.get("checks"):
            out.append("Pre-flight checks (yaz-client: hits > 0 and a record back; then one "
                       "cycle fully decoded with pyasn1):")
            out.append("")
            out += _table(["server", "yaz-client", "decoded cycle"],
                          [[name, c.get("yaz_client", {}).get("summary", "–"),
                            c.get("decoded", {}).get("summary", "–")]
                           for name, c in z["checks"].items()])
        rows = []
        for key, stats in sorted(z.get("aggregate", {}).items()):
            rows.append([*key.split("|"), fmt_mmm(stats.get("rate"), 0),
                         fmt_mmm(stats.get("p50_ms"), 2), fmt_mmm(stats.get("p95_ms"), 2),
                         fmt_mmm(stats.get("p99_ms"), 2), str(stats.get("errors", 0))])
        if rows:
            out += _table(["mode", "concurrency", "server", "cycles/s", "p50 ms", "p95 ms",
                           "p99 ms", "errors"], rows)
        if z.get("ratios"):
            out.append("Ratios gateway / peer (same repeat):")
            out.append("")
            out += _table(["mode", "concurrency", "peer", "ratio"],
                          [[*k.split("|"), fmt_mmm(v, 2, "×")]
                           for k, v in sorted(z["ratios"].items())])
    n = results.get("ncip")
    if n:
        out.append("## NCIP (wrk, keep-alive)")
        out.append("")
        out.append(n.get("description", ""))
        out.append("")
        if n.get("samples"):
            out += _table(["target", "service", "curl sample"],
                          [[*k.split("|"), f"HTTP {v.get('status')}, {v.get('bytes')} bytes, "
                            f"{'Problem!' if v.get('problem') else 'no Problem'}"]
                           for k, v in n["samples"].items()])
        rows = []
        for key, stats in sorted(n.get("aggregate", {}).items()):
            rows.append([*key.split("|"), fmt_mmm(stats.get("rate"), 0),
                         fmt_mmm(stats.get("p50_ms"), 2), fmt_mmm(stats.get("p95_ms"), 2),
                         fmt_mmm(stats.get("p99_ms"), 2), str(stats.get("non200", 0)),
                         str(stats.get("problems", 0)), str(stats.get("socket_errors", 0))])
        if rows:
            out += _table(["service", "connections", "server", "req/s", "p50 ms", "p95 ms",
                           "p99 ms", "non-200", "Problems", "socket errors"], rows)
        if n.get("ratios"):
            out.append("Ratios gateway / ceiling (same repeat):")
            out.append("")
            out += _table(["service", "connections", "ratio"],
                          [[*k.split("|"), fmt_mmm(v, 2, "×")]
                           for k, v in sorted(n["ratios"].items())])
        if n.get("accept_item_rows"):
            out.append(f"AcceptItem created {n['accept_item_rows']:,} temporary items "
                       "(counted in the database after the runs).")
            out.append("")
    s = results.get("scale")
    if s:
        out.append("## Catalogue scale")
        out.append("")
        out.append(s.get("description", ""))
        out.append("")
        if s.get("imports"):
            out += _table(["records", "import s", "records/s (end to end)", "CLI reported",
                           "every repeat, records/s", "MARC bytes", "database bytes"],
                          [[f"{i['records']:,}", i["import_s"], f"{i['import_rate']:,.0f}",
                            f"{i['cli_reported_rate'] or 0:,.0f}",
                            ", ".join(f"{r:,.0f}" for r in i.get("import_rates",
                                                                   [i["import_rate"]])),
                            f"{i['marc_bytes']:,}", f"{i['db_bytes']:,}"]
                           for i in s["imports"]])
        if s.get("search"):
            rows = []
            for entry in s["search"]:
                for kind, v in entry.items():
                    if isinstance(v, dict):
                        rows.append([f"{entry['records']:,}", kind, v["n"], v["p50_ms"],
                                     v["p95_ms"], v["p99_ms"], v["max_ms"], v["mean_hits"]])
            out.append(f"Search latency ({s['search'][0].get('method', '')}):")
            out.append("")
            out += _table(["records", "query", "n", "p50 ms", "p95 ms", "p99 ms", "max ms",
                           "mean hits"], rows)
        if s.get("cycles"):
            out.append("Gateway Z39.50 cycle rate by catalogue size:")
            out.append("")
            out += _table(["records", "concurrency", "cycles/s", "p50 ms", "p99 ms", "errors",
                           "note"],
                          [[f"{c['records']:,}", c.get("concurrency", "–"),
                            c.get("rate", "–"), c.get("p50_ms", "–"), c.get("p99_ms", "–"),
                            c.get("errors", "–"), c.get("note", "")] for c in s["cycles"]])
    out += _sru(results.get("sru"))
    out += _oai(results.get("oai"))
    out += _upstream(results.get("upstream"))
    m = results.get("memory")
    if m:
        out.append("## Memory and start-up")
        out.append("")
        out.append("Memory of the primary and its workers, three ways: *unique* counts each "
                   "resident page once however many of the tree's processes map it "
                   "(/proc/PID/pagemap: the figure the target is judged on); *PSS* divides a "
                   "shared page between every process on the machine mapping it (lower while "
                   "other Python processes run); *RSS* summed counts a shared page once per "
                   "process.")
        out.append("")
        rows = [[k, f"{v:,}" if isinstance(v, int) else v] for k, v in m.items()
                if k not in ("database", "pid", "processes_idle", "processes_loaded")]
        out += _table(["measure", "value"], rows)
        per = m.get("processes_loaded")
        if per:
            out.append("With the connections held, per process (KiB; the primary first):")
            out.append("")
            out += _table(["pid", "RSS", "PSS", "USS (private)"],
                          [[p["pid"], f"{p['rss']:,}", f"{p['pss']:,}", f"{p['uss']:,}"]
                           for p in per])
    out += _performance_pass()
    p = results.get("profiles")
    if p:
        out.append("## Profiles (py-spy on the gateway process under load)")
        out.append("")
        out.append("Two views per load: *GIL holder* samples only the thread running Python "
                   "(where the interpreter's CPU goes: the view to optimise from); *all threads* "
                   "samples every non-idle thread (wall time). In the wall view a thread that "
                   "finished a C call (SQLite, lxml) and waits to re-take the GIL is counted at "
                   "its call site, so C-library shares there include GIL contention.")
        out.append("")
        for name, prof in p.items():
            out.append(f"### {name}")
            out.append("")
            if prof.get("error"):
                out.append(f"not profiled: {prof['error']}")
                out.append("")
                continue
            out.append(f"{prof.get('samples', 0):,} samples ({prof.get('idle_samples', 0):,} in "
                       f"waits, excluded from the shares), {prof.get('load', '')}"
                       + (f"; {prof['startup_share']:.1%} of the samples in module imports"
                          if "startup_share" in prof else ""))
            out.append("")
            out.append("Where the leaf samples fall (C calls attributed by the calling line):")
            out.append("")
            out += _table(["category", "share"],
                          [[k, f"{v:.1%}"] for k, v in prof.get("categories", {}).items()])
            out.append("Top functions by self samples:")
            out.append("")
            out += _table(["function", "self", "inclusive"],
                          [[f"`{f['function']}`", f"{f['self']:.1%}", f"{f['inclusive']:.1%}"]
                           for f in prof.get("top_self", [])])
            out.append("Top functions by inclusive samples:")
            out.append("")
            out += _table(["function", "inclusive"],
                          [[f"`{f['function']}`", f"{f['inclusive']:.1%}"]
                           for f in prof.get("top_inclusive", [])])
    notes = results.get("notes", [])
    if notes:
        out.append("## Notes")
        out.append("")
        out += [f"* {note}" for note in notes]
        out.append("")
    return "\n".join(out) + "\n"
