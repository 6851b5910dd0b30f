# -*- test-case-name: tests.gateway.test_admin -*-
"""The staff dashboard: one server-rendered page, inline CSS and SVG, no external asset, no JS.

Per-partner balance (lent vs borrowed) and turnaround as bar charts, requests in flight, recent
Problems and diagnostics, and health. Every value is escaped.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from typing import Any

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2733;background:#f5f7fa}
header{background:#1d3557;color:#fff;padding:12px 24px}
header h1{margin:0;font-size:20px} header p{margin:2px 0 0;opacity:.8}
main{padding:16px 24px;display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(420px,1fr))}
section{background:#fff;border-radius:6px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
section{min-width:0;overflow-x:auto}
h2{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #e3e8ee}
th{font-weight:600;color:#4a5a6a;vertical-align:bottom} th,td{white-space:nowrap}
th.n,td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1b7f3b;font-weight:600} .bad{color:#b3261e;font-weight:600}
.legend span{display:inline-block;margin-right:12px} .sw{display:inline-block;width:10px;height:10px;margin-right:4px}
svg text{font:12px system-ui,sans-serif;fill:#1d2733}
.empty{color:#6b7a8a;font-style:italic}
.wide{grid-column:1/-1}
"""

LENT, BORROWED = "#457b9d", "#e76f51"


def _bars(rows: list[tuple[str, list[float]]], colours: list[str], unit: str = "") -> str:
    """A horizontal grouped bar chart as inline SVG."""
    if not rows:
        return '<p class="empty">No data yet.</p>'
    peak = max((v for _, values in rows for v in values), default=0) or 1
    bar, gap, label_width, width = 14, 10, 110, 300
    height = len(rows) * (bar * len(colours) + gap) + gap
    parts = [f'<svg role="img" width="{label_width + width + 60}" height="{height}" '
             f'viewBox="0 0 {label_width + width + 60} {height}">']
    y = gap
    for label, values in rows:
        parts.append(f'<text x="0" y="{y + bar}">{escape(label)}</text>')
        for index, value in enumerate(values):
            length = max(1.0, value / peak * width) if value else 0
            top = y + index * bar
            parts.append(f'<rect x="{label_width}" y="{top}" width="{length:.1f}" '
                         f'height="{bar - 2}" fill="{colours[index]}"/>')
            parts.append(f'<text x="{label_width + length + 4:.1f}" y="{top + bar - 3}">'
                         f'{value:g}{escape(unit)}</text>')
        y += bar * len(colours) + gap
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    if not rows:
        return '<p class="empty">None.</p>'
    numeric = numeric or set()
    head = "".join(f'<th class="n">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>"
                   for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(
            f'<td class="n">{escape(str(v))}</td>' if i in numeric
            else f"<td>{escape('' if v is None else str(v))}</td>"
            for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _when(value: str | None) -> str:
    """A stored UTC timestamp, short: ``2026-11-29 03:06:49`` (the page says it is UTC)."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def render_dashboard(*, name: str, now: datetime, stats: dict[str, Any],
                     in_flight: list[dict[str, Any]], problems: list[dict[str, Any]],
                     health: dict[str, Any], currency: str = "") -> bytes:
    """The dashboard page as UTF-8 HTML."""
    partners = stats["partners"]
    totals = stats["totals"]
    balance = _bars([(p["peer"], [p["lent"], p["borrowed"]]) for p in partners],
                    [LENT, BORROWED])
    turnaround = _bars(
        [(p["peer"], [p["turnaround"]["request_to_filled"]["median_hours"] or 0,
                      p["turnaround"]["shipped_to_received"]["median_hours"] or 0])
         for p in partners], [LENT, BORROWED], " h")
    partner_rows = [[p["peer"], p["lent"], p["borrowed"], p["net_balance"],
                     "" if p["lending_borrowing_ratio"] is None else p["lending_borrowing_ratio"],
                     "" if p["fill_rate"] is None else f"{p['fill_rate']:.0%}",
                     p["active_loans"], p["active_borrows"], p["overdue"],
                     f"{p['estimated_saving']:.2f} {currency}".strip()] for p in partners]
    flight_rows = [[r["our_request_id"], r["peer"], r["role"], r["broker_request_id"] or "",
                    r["item_barcode"] or "", r["state"], _when(r["requested_at"])]
                   for r in in_flight]
    problem_rows = [[_when(r["time"]), r["protocol"], r["peer"] or "", r["operation"], r["outcome"],
                     r["broker_request_id"] or r["item_barcode"] or ""] for r in problems]
    ok = health.get("status") == "ok"
    listeners = [[entry["protocol"], entry["address"] or entry["endpoint"], entry["state"]]
                 for entry in health.get("listeners", [])]
    database = health.get("database", {})
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(name)} · Interlend</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>{_STYLE}</style></head>
<body><header><h1>{escape(name)}</h1><p>Interlend resource sharing · as at {escape(_when(now.isoformat()))} UTC</p></header>
<main>
<section id="balance"><h2>Lending and borrowing by partner</h2>
<p class="legend"><span><i class="sw" style="background:{LENT}"></i>lent</span><span><i class="sw" style="background:{BORROWED}"></i>borrowed</span></p>
{balance}
<p>Total lent {totals['lent']}, borrowed {totals['borrowed']}, net balance {totals['net_balance']}.</p></section>
<section id="turnaround"><h2>Median turnaround (hours)</h2>
<p class="legend"><span><i class="sw" style="background:{LENT}"></i>request → filled</span><span><i class="sw" style="background:{BORROWED}"></i>shipped → received</span></p>
{turnaround}</section>
<section id="partners" class="wide"><h2>Partners</h2>
{_table(["partner", "lent", "borrowed", "net", "ratio", "fill rate", "active loans", "active borrows", "overdue", "estimated saving"], partner_rows, {1, 2, 3, 4, 5, 6, 7, 8})}</section>
<section id="in-flight" class="wide"><h2>Requests in flight</h2>
{_table(["request", "partner", "role", "broker id", "item", "state", "requested (UTC)"], flight_rows)}</section>
<section id="problems" class="wide"><h2>Recent Problems and diagnostics</h2>
{_table(["time (UTC)", "protocol", "partner", "operation", "outcome", "request / item"], problem_rows)}</section>
<section id="health"><h2>Health: <span class="{'ok' if ok else 'bad'}">{escape(str(health.get('status', '?')))}</span></h2>
<p>Database: writer {escape(str(database.get('writer', '?')))}, {escape(str(database.get('pending_writes', 0)))} writes queued{', last error: ' + escape(str(database['last_error'])) if database.get('last_error') else ''}.</p>
{_table(["listener", "address", "state"], listeners)}</section>
</main></body></html>
"""
    return page.encode("utf-8")
