# -*- test-case-name: tests.gateway.test_admin,tests.gateway.test_dashboard_browser -*-
"""The staff dashboard: server-rendered pages, inline CSS and SVG, no external asset, no script.

The main page is ILL staff's work screen: what needs action first, every request with search,
filters and paging (and its CSV), the partners with their balance and turnaround charts, recent
Problems and health. A request's own page shows its whole history and its exchanges. Times are
shown in the configured zone; every value is escaped; the layout works from phone width up and
with the keyboard alone (skip link, focus outlines, captions and header scopes on every table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from html import escape
from typing import Any
from urllib.parse import urlencode

from gateway.admin import worklist
from gateway.daemon.formatting import age, local_time, shorten

PAGE_SIZE = 50
"""Requests per page of the work list."""

ORDER_NAMES = {"newest": "newest first", "oldest": "oldest first",
               "due": "the earliest due date first"}

_STYLE = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2733;background:#f5f7fa}
a{color:#1d4f91} a:hover{text-decoration-thickness:2px}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,summary:focus-visible
{outline:3px solid #c2410c;outline-offset:2px}
.skip{position:absolute;left:-9999px;top:0;background:#fff;padding:8px 12px;z-index:2}
.skip:focus{left:8px;top:8px}
header{background:#1d3557;color:#fff;padding:12px 24px}
header a{color:#fff}
header h1{margin:0;font-size:20px} header p{margin:2px 0 0;opacity:.9}
nav.top ul{list-style:none;margin:6px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:4px 16px}
main{padding:16px 24px;display:grid;gap:16px;
grid-template-columns:repeat(auto-fit,minmax(min(100%,440px),1fr))}
section{background:#fff;border-radius:6px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08);
min-width:0}
.wide{grid-column:1/-1}
h2{font-size:17px;margin:0 0 8px} h3{font-size:15px;margin:12px 0 6px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%}
caption{text-align:left;font-weight:600;padding:2px 0 6px;color:#33475b}
th,td{text-align:left;padding:5px 6px;border-bottom:1px solid #e3e8ee;vertical-align:top}
thead th{font-weight:600;color:#3b4b5b;vertical-align:bottom}
tbody th{font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.t{min-width:14em;overflow-wrap:anywhere}
.nw{white-space:nowrap}
.ok{color:#1b7f3b;font-weight:600} .bad{color:#b3261e;font-weight:600}
.tag{display:inline-block;border-radius:3px;padding:0 5px;font-size:13px;font-weight:600;
background:#fde8e6;color:#8c1d18;margin-left:4px}
.legend span{display:inline-block;margin-right:12px} .sw{display:inline-block;width:10px;height:10px;margin-right:4px}
svg{display:block;width:100%;max-width:560px;height:auto}
svg text{font:12px system-ui,sans-serif;fill:#1d2733}
.empty{color:#5b6a7a;font-style:italic}
.sub{display:block;font-size:13px;font-weight:400;color:#4a5a6a;overflow-wrap:anywhere}
.actions{display:grid;gap:12px;grid-template-columns:repeat(auto-fit,minmax(min(100%,560px),1fr))}
.actions table{font-size:14px} .actions td.t{min-width:7em}
.actions>div{border:1px solid #e3e8ee;border-radius:6px;padding:8px 12px;min-width:0}
.count{font-variant-numeric:tabular-nums}
form.filters{display:flex;flex-wrap:wrap;gap:8px 12px;align-items:flex-end;margin:0 0 10px}
form.filters label{display:flex;flex-direction:column;font-size:13px;color:#3b4b5b}
form.filters label.grow{flex:1 1 16em} form.filters label.grow input{width:100%}
form.filters label.check{flex-direction:row;align-items:center;gap:6px;min-height:34px}
input,select,button{font:inherit;padding:5px 8px;border:1px solid #8a99a8;border-radius:4px;
background:#fff;color:#1d2733;max-width:100%}
button{background:#1d3557;color:#fff;border-color:#1d3557;cursor:pointer}
.pager{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center;margin-top:8px}
dl.facts{display:grid;grid-template-columns:fit-content(45%) minmax(0,1fr);gap:4px 16px;margin:0}
dl.facts dt{font-weight:600;color:#3b4b5b} dl.facts dd{margin:0;overflow-wrap:anywhere}
details{margin:2px 0} pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px;
background:#f5f7fa;padding:6px;margin:4px 0}
@media (max-width:700px){
header{padding:10px 12px} main{padding:10px 8px;gap:10px} section{padding:10px}
table.cards thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
table.cards tr{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:4px 12px;
border-bottom:2px solid #d5dde6;padding:6px 0}
table.cards th,table.cards td{display:block;border:0;padding:0 2px;text-align:left;min-width:0;
overflow-wrap:anywhere}
table.cards th::before,table.cards td::before{content:attr(data-label);display:block;
font-size:12px;font-weight:600;color:#4a5a6a}
table.cards th,table.cards td.t{grid-column:1/-1}
table.cards th::before{display:none}
table.cards th .sub{display:inline;margin-left:10px}
table.cards td.t::before{display:inline;margin-right:6px}
table.cards td.t{min-width:0}
}
"""

LENT, BORROWED = "#2f6690", "#c8553d"


@dataclass(frozen=True)
class Column:
    """A table column: its heading, and how its cells are aligned and wrapped."""

    heading: str
    kind: str = ""   # "" | "n" (numbers, right) | "t" (text that wraps) | "nw" (never wraps)


def _cell_class(kind: str) -> str:
    return f' class="{kind}"' if kind else ""


def _table(caption: str, columns: Sequence[Column], rows: Sequence[Sequence[Any]], *,
           row_headers: bool = True, empty: str = "None.", table_id: str = "") -> str:
    """An accessible table: caption, column headers with scope, the first cell of each row
    a row header; each cell names its column (``data-label``) for the phone layout.

    Cells are escaped, except values wrapped in :class:`Markup`.
    """
    if not rows:
        return f'<p class="empty">{escape(caption)}: {escape(empty)}</p>'
    head = "".join(f'<th scope="col"{_cell_class(c.kind)}>{escape(c.heading)}</th>'
                   for c in columns)
    body = []
    for row in rows:
        cells = []
        for index, (column, value) in enumerate(zip(columns, row)):
            tag = "th" if row_headers and index == 0 else "td"
            scope = ' scope="row"' if tag == "th" else ""
            cells.append(f'<{tag}{scope}{_cell_class(column.kind)} data-label="'
                         f'{escape(column.heading)}">{_html(value)}</{tag}>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return (f'<div class="scroll"><table class="cards"{ident}><caption>{escape(caption)}'
            f'</caption><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            f"</div>")


class Markup(str):
    """Text that is already HTML (built here from escaped parts)."""


def _html(value: Any) -> str:
    if isinstance(value, Markup):
        return str(value)
    return escape("" if value is None else str(value))


def _bars(title: str, rows: list[tuple[str, list[float]]], colours: list[str],
          series: list[str], unit: str = "") -> str:
    """A horizontal grouped bar chart as inline SVG, named for assistive technology (its
    ``title`` and a description listing every value) and scaling to its container."""
    if not rows:
        return '<p class="empty">No data yet.</p>'
    peak = max((v for _, values in rows for v in values), default=0) or 1
    longest = max(len(label) for label, _ in rows)
    label_chars = min(longest, 18)
    bar, gap, width = 14, 10, 240
    # Room for 12px text at 8px a character (wider than most: capitals and digits fit).
    label_width = 8 + 8 * label_chars
    value_width = 8 + 8 * max(len(f"{v:g}{unit}") for _, values in rows for v in values)
    total = label_width + width + value_width
    height = len(rows) * (bar * len(colours) + gap) + gap
    ident = "chart-" + "".join(ch if ch.isalnum() else "-" for ch in title.lower())
    described = "; ".join(
        f"{label}: " + ", ".join(f"{name} {value:g}{unit}" for name, value in zip(series, values))
        for label, values in rows)
    parts = [f'<svg role="img" aria-labelledby="{ident}-t {ident}-d" width="{total}" '
             f'height="{height}" viewBox="0 0 {total} {height}">'
             f'<title id="{ident}-t">{escape(title)}</title>'
             f'<desc id="{ident}-d">{escape(described)}</desc>']
    y = gap
    for label, values in rows:
        shown = shorten(label, label_chars)
        parts.append(f'<text x="0" y="{y + bar}"><title>{escape(label)}</title>'
                     f'{escape(shown)}</text>')
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


# -- the work list's query, from and to the page's address ----------------------------------------


@dataclass(frozen=True)
class Listing:
    """The work list as the page's form and address give it."""

    search: str = ""
    peer: str = ""
    role: str = ""
    state: str = ""          # "" = every open request, "all" = every request, else one state
    overdue: bool = False
    order: str = "newest"
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Listing:
        """Read the address's parameters; a value out of range is the default."""
        role = params.get("role", "")
        order = params.get("sort", "newest")
        try:
            page = max(1, int(params.get("page", "1")))
        except ValueError:
            page = 1
        return cls(search=params.get("q", "").strip()[:200], peer=params.get("peer", ""),
                   role=role if role in worklist.ROLES else "",
                   state=params.get("state", ""), overdue=params.get("overdue") == "1",
                   order=order if order in worklist.ORDERS else "newest", page=page)

    def query(self, *, paged: bool = True) -> worklist.RequestQuery:
        return worklist.RequestQuery(
            peer=self.peer or None, role=self.role or None,
            state=None if self.state in ("", "all") else self.state, overdue=self.overdue,
            search=self.search, open_only=self.state == "", order=self.order,
            offset=(self.page - 1) * PAGE_SIZE, limit=PAGE_SIZE if paged else None)

    def params(self, **changes: Any) -> str:
        """The address's query string for this listing with ``changes`` (empty values left
        out)."""
        values = {"q": self.search, "peer": self.peer, "role": self.role, "state": self.state,
                  "overdue": "1" if self.overdue else "",
                  "sort": "" if self.order == "newest" else self.order, "page": str(self.page)}
        values.update({k: str(v) for k, v in changes.items()})
        if values["page"] == "1":
            values["page"] = ""
        return urlencode({k: v for k, v in values.items() if v})


# -- pieces ---------------------------------------------------------------------------------------


def _request_link(row: Mapping[str, Any]) -> Markup:
    """Our id, linking to the request's page, over the broker's id (the one partners use)."""
    broker = row.get("broker_request_id")
    return Markup(f'<a href="/requests/{int(row["id"])}">{escape(row["our_request_id"])}</a>'
                  + (f'<span class="sub">{escape(broker)}</span>' if broker else ""))


def _state(row: Mapping[str, Any]) -> Markup:
    text = escape(row["state"].replace("_", " "))
    if row.get("overdue"):
        text += '<span class="tag">overdue</span>'
    return Markup(f'<span class="nw">{text}</span>')


def _page_head(title: str, heading: str, subtitle: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>{_STYLE}</style></head>
<body><a class="skip" href="#content">Skip to content</a>
<header><h1>{heading}</h1><p>{subtitle}</p>"""


def _zone_note(now: datetime, zone: tzinfo) -> str:
    local = now.astimezone(zone)
    return (f"as at {escape(local.strftime('%Y-%m-%d %H:%M'))} · times in "
            f"{escape(str(zone))} ({escape(local.strftime('%Z'))})")


def _actions(actions: worklist.ActionItems, zone: tzinfo, now: datetime) -> str:
    overdue = actions.overdue
    overdue_rows = [[_request_link(r), shorten(r["title"], 60), r["patron"], r["peer"],
                     Markup(f'<span class="nw">{escape(local_time(r["due_at"], zone))}</span> '
                            f'<span class="tag">{escape(age(_since(r["due_at"], now)))} late</span>')]
                    for r in overdue.rows]
    more = (f'<p><a href="/?{escape(Listing(overdue=True).params())}#requests">All '
            f'{overdue.total} overdue</a></p>' if overdue.total > len(overdue.rows) else "")
    pickup_rows = [[_request_link(r), shorten(r["title"], 60), r["patron"], r["peer"],
                    Markup(f'<span class="nw">{escape(local_time(r["pickup_deadline"], zone))}'
                           f'</span> <span class="tag">'
                           f'{escape(age(_since(r["pickup_deadline"], now)))} late</span>')]
                   for r in actions.pickup_overdue.rows]
    more_pickup = (f'<p><a href="/?{escape(Listing(state="awaiting_pickup", role="borrower").params())}'
                   f'#requests">Every item awaiting pickup</a></p>'
                   if actions.pickup_overdue.total > len(pickup_rows) else "")
    problem_rows = [[local_time(r["time"], zone), r["peer"] or "", r["operation"],
                     r["outcome"], r["broker_request_id"] or r["item_barcode"] or ""]
                    for r in actions.problems]
    failing_rows = [[p["peer"], f'{p["failures"]} of {p["exchanges"]}',
                     local_time(p["last_failure"], zone),
                     local_time(p["last_success"], zone) or "none in 24 h"]
                    for p in actions.failing_partners]
    nothing = not (overdue.rows or pickup_rows or problem_rows or failing_rows)
    return f"""<section id="action" class="wide" aria-labelledby="action-h">
<h2 id="action-h">Needs action{'' if not nothing else ': nothing now'}</h2>
<div class="actions">
<div id="overdue"><h3>Overdue loans <span class="count">({overdue.total})</span></h3>
{_table("Open loans past their due date, the longest overdue first",
        [Column("request"), Column("title", "t"), Column("patron"), Column("partner"),
         Column("due")], overdue_rows)}{more}</div>
<div id="pickup"><h3>Waiting too long for pickup <span class="count">({actions.pickup_overdue.total})</span></h3>
{_table("Borrowed items on the hold shelf past their pickup date",
        [Column("request"), Column("title", "t"), Column("patron"), Column("partner"),
         Column("pick up by")], pickup_rows)}{more_pickup}</div>
<div id="recent-problems"><h3>Problems in the last day <span class="count">({actions.problem_count})</span></h3>
{_table("Exchanges answered with a Problem or diagnostic in the last 24 hours, newest first",
        [Column("time", "nw"), Column("partner"), Column("operation"), Column("outcome"),
         Column("request / item", "t")], problem_rows)}</div>
<div id="failing"><h3>Partners failing <span class="count">({len(failing_rows)})</span></h3>
{_table("Partners whose last exchange, or half of their exchanges, failed in the last 24 hours",
        [Column("partner"), Column("failed", "n"), Column("last failure", "nw"),
         Column("last success", "nw")], failing_rows)}</div>
</div></section>"""


def _since(value: str, now: datetime) -> float:
    return (now - datetime.fromisoformat(value)).total_seconds()


def _options(name: str, current: str, choices: Sequence[tuple[str, str]]) -> str:
    return "".join(
        f'<option value="{escape(value)}"{" selected" if value == current else ""}>'
        f'{escape(text)}</option>' for value, text in choices)


def _listing(listing: Listing, page: worklist.Page, zone: tzinfo, peers: list[str],
             states: list[str]) -> str:
    rows = [[_request_link(r), Markup(escape(r["title"]) or '<span class="empty">—</span>'),
             r["patron"], r["peer"], r["role"], _state(r),
             Markup(f'<span class="nw">{escape(local_time(r["due_at"], zone) or "—")}</span>'),
             age(r["age_seconds"])] for r in page.rows]
    first = (listing.page - 1) * PAGE_SIZE + 1
    last = first + len(page.rows) - 1
    pages = max(1, -(-page.total // PAGE_SIZE))
    which = ("open requests" if listing.state == "" else "requests" if listing.state == "all"
             else f"requests in state {listing.state.replace('_', ' ')}")
    if listing.overdue:
        which = "overdue " + which
    summary = (f"Showing {first}–{last} of {page.total} {which}" if page.rows
               else f"No {which} match")
    nav = []
    if listing.page > 1:
        nav.append(f'<a href="/?{escape(listing.params(page=listing.page - 1))}#requests" '
                   f'rel="prev">← Previous</a>')
    nav.append(f"<span>Page {listing.page} of {pages}</span>")
    if listing.page < pages:
        nav.append(f'<a href="/?{escape(listing.params(page=listing.page + 1))}#requests" '
                   f'rel="next">Next →</a>')
    peer_choices = [("", "every partner")] + [(p, p) for p in peers]
    if listing.peer and listing.peer not in peers:
        peer_choices.append((listing.peer, listing.peer))
    state_choices = [("", "every open state"), ("all", "every state, closed too")] + [
        (s, s.replace("_", " ")) for s in states]
    csv_query = listing.params(page=1)
    return f"""<section id="requests" class="wide" aria-labelledby="requests-h">
<h2 id="requests-h">Requests</h2>
<form class="filters" method="get" action="/#requests" role="search" aria-label="Find requests">
<label class="grow">Search <input type="search" name="q" value="{escape(listing.search)}" placeholder="id, title, item or patron barcode"></label>
<label>Partner <select name="peer">{_options("peer", listing.peer, peer_choices)}</select></label>
<label>Role <select name="role">{_options("role", listing.role, [("", "both"), ("borrower", "we borrow"), ("lender", "we lend")])}</select></label>
<label>State <select name="state">{_options("state", listing.state, state_choices)}</select></label>
<label>Order <select name="sort">{_options("sort", listing.order, [("newest", "newest first"), ("oldest", "oldest first"), ("due", "due soonest")])}</select></label>
<label class="check"><input type="checkbox" name="overdue" value="1"{" checked" if listing.overdue else ""}> overdue only</label>
<button type="submit">Show</button> <a href="/#requests">Clear</a>
</form>
<p id="listing-summary">{escape(summary)} · <a href="/requests.csv{'?' + escape(csv_query) if csv_query else ''}" download>CSV of this view</a></p>
{_table(f"Requests, {ORDER_NAMES.get(listing.order, 'newest first')}", [Column("request"), Column("title", "t"), Column("patron"), Column("partner"), Column("role"), Column("state"), Column("due"), Column("age", "nw")], rows, empty="nothing to show", table_id="request-table")}
<nav class="pager" aria-label="Pages of requests">{" ".join(nav)}</nav>
</section>"""


def render_dashboard(*, name: str, now: datetime, zone: tzinfo, stats: dict[str, Any],
                     actions: worklist.ActionItems, listing: Listing, page: worklist.Page,
                     peers: list[str], states: list[str], problems: list[dict[str, Any]],
                     health: dict[str, Any], currency: str = "") -> bytes:
    """The work screen as UTF-8 HTML."""
    partners = stats["partners"]
    totals = stats["totals"]
    balance = _bars("Lent and borrowed by partner",
                    [(p["peer"], [p["lent"], p["borrowed"]]) for p in partners],
                    [LENT, BORROWED], ["lent", "borrowed"])
    turnaround = _bars(
        "Median turnaround by partner, in hours",
        [(p["peer"], [p["turnaround"]["request_to_filled"]["median_hours"] or 0,
                      p["turnaround"]["shipped_to_received"]["median_hours"] or 0])
         for p in partners], [LENT, BORROWED], ["request to filled", "shipped to received"],
        " h")
    partner_rows = [[p["peer"], p["lent"], p["borrowed"], p["net_balance"],
                     "" if p["lending_borrowing_ratio"] is None else p["lending_borrowing_ratio"],
                     "" if p["fill_rate"] is None else f"{p['fill_rate']:.0%}",
                     p["active_loans"], p["active_borrows"], p["overdue"],
                     f"{p['estimated_saving']:.2f} {currency}".strip()] for p in partners]
    problem_rows = [[local_time(r["time"], zone), r["protocol"], r["peer"] or "", r["operation"],
                     r["outcome"], r["broker_request_id"] or r["item_barcode"] or ""]
                    for r in problems]
    ok = health.get("status") == "ok"
    listeners = [[entry["protocol"], entry["address"] or entry["endpoint"], entry["state"]]
                 for entry in health.get("listeners", [])]
    upstreams = _catalogue_targets(health.get("upstream", {}).get("catalogue"))
    database = health.get("database", {})
    upstream = _upstream(health.get("upstream", {}).get("circulation"))
    numbers = [Column("partner")] + [Column(h, "n") for h in (
        "lent", "borrowed", "net", "ratio", "fill rate", "active loans", "active borrows",
        "overdue", "estimated saving")]
    page_html = _page_head(f"{name} · Interlend", escape(name),
                           f"Interlend resource sharing · {_zone_note(now, zone)}") + f"""
<nav class="top" aria-label="Sections"><ul><li><a href="#action">Needs action</a></li>
<li><a href="#requests">Requests</a></li><li><a href="#partners">Partners</a></li>
<li><a href="#problems">Problems</a></li><li><a href="#health">Health</a></li></ul></nav>
</header>
<main id="content" tabindex="-1">
{_actions(actions, zone, now)}
{_listing(listing, page, zone, peers, states)}
<section id="partners" class="wide" aria-labelledby="partners-h"><h2 id="partners-h">Partners</h2>
{_table("Lending, borrowing and balance per partner", numbers, partner_rows)}</section>
<section id="balance" aria-labelledby="balance-h"><h2 id="balance-h">Lending and borrowing by partner</h2>
<p class="legend" aria-hidden="true"><span><i class="sw" style="background:{LENT}"></i>lent</span><span><i class="sw" style="background:{BORROWED}"></i>borrowed</span></p>
{balance}
<p>Total lent {totals['lent']}, borrowed {totals['borrowed']}, net balance {totals['net_balance']}.</p></section>
<section id="turnaround" aria-labelledby="turnaround-h"><h2 id="turnaround-h">Median turnaround (hours)</h2>
<p class="legend" aria-hidden="true"><span><i class="sw" style="background:{LENT}"></i>request → filled</span><span><i class="sw" style="background:{BORROWED}"></i>shipped → received</span></p>
{turnaround}</section>
<section id="problems" class="wide" aria-labelledby="problems-h"><h2 id="problems-h">Recent Problems and diagnostics</h2>
{_table("The latest exchanges answered with a Problem or diagnostic, newest first", [Column("time", "nw"), Column("protocol"), Column("partner"), Column("operation"), Column("outcome"), Column("request / item", "t")], problem_rows)}</section>
<section id="health" aria-labelledby="health-h"><h2 id="health-h">Health: <span class="{'ok' if ok else 'bad'}">{escape(str(health.get('status', '?')))}</span></h2>
<p>Database: writer {escape(str(database.get('writer', '?')))}, {escape(str(database.get('pending_writes', 0)))} writes queued{', last error: ' + escape(str(database['last_error'])) if database.get('last_error') else ''}.</p>
{upstream}{_table("Listeners", [Column("listener"), Column("address", "t"), Column("state")], listeners)}
{_table("Upstream catalogues", [Column("target", "t"), Column("state"), Column("busy", "n"),
        Column("idle", "n"), Column("last error", "t")], upstreams) if upstreams else ""}</section>
</main></body></html>
"""
    return page_html.encode("utf-8")


def _catalogue_targets(state: dict[str, Any] | None) -> list[list[Any]]:
    """Rows for the upstream catalogue's targets: a pool reports each target (a mapping of
    target to state), a single client reports itself."""
    if not state:
        return []
    targets = state if all(isinstance(v, dict) for v in state.values()) else {
        str(state.get("target", state.get("kind", "catalogue"))): {
            "up": state.get("status") == "up", "last_error": state.get("last_error")}}
    return [[target, "up" if entry.get("up") else "down", entry.get("busy", ""),
             entry.get("idle", ""), entry.get("last_error") or ""]
            for target, entry in targets.items()]


def _upstream(state: dict[str, Any] | None) -> str:
    """The library system behind an upstream circulation backend, when there is one."""
    if not state:
        return ""
    up = state.get("state") == "up"
    error = state.get("last_error")
    return (f"<p>Library system (NCIP, {escape(str(state.get('profile', '?')))}): "
            f"<span class=\"{'ok' if up else 'bad'}\">{escape(str(state.get('state')))}</span>, "
            f"{escape(str(state.get('calls', 0)))} calls, {escape(str(state.get('errors', 0)))}"
            f" errors, {escape(str(state.get('timeouts', 0)))} time-outs, mean "
            f"{escape(str(state.get('mean_latency_ms', 0)))} ms; "
            f"{escape(str(state.get('outbox_open', 0)))} changes not settled"
            + (f"; last error: {escape(str(error))}" if error else "") + ".</p>\n")


def render_request(*, name: str, now: datetime, zone: tzinfo, request: dict[str, Any],
                   history: dict[str, Any], bodies: Mapping[int, tuple[str | None, str | None]]
                   ) -> bytes:
    """One request's page: what it is, every step, every exchange (bodies as the audit log
    keeps them, folded)."""
    title = request["title"] or ("(temporary record removed)" if request["role"] == "borrower"
                                 and request["item_id"] is None else "(no title)")
    facts = [("our request id", request["our_request_id"]),
             ("broker's request id", request["broker_request_id"] or "—"),
             ("partner", request["peer"]),
             ("role", "we borrow" if request["role"] == "borrower" else "we lend"),
             ("state", _state(request)), ("title", title), ("patron (keyed hash, as in the audit log)" if request["patron"].startswith("#")
              else "patron", request["patron"] or "—"),
             ("item", request["item_barcode"] or "—"),
             ("due", local_time(request["due_at"], zone) or "—")]
    if request["role"] == "borrower":
        facts.append(("lender's due date", local_time(request["lender_due_at"], zone) or "—"))
    facts += [("renewable", "yes" if request["renewable"] else "no"),
              ("age", age(request["age_seconds"]))]
    fact_html = "".join(f"<dt>{escape(label)}</dt><dd>{_html(value)}</dd>"
                        for label, value in facts)
    step_rows = [[step.replace("_", " "), local_time(when, zone, seconds=True)]
                 for step, when in history["steps"]]
    exchange_rows = []
    for row in history["exchanges"]:
        request_body, response_body = bodies.get(row["id"], (None, None))
        folded = "".join(
            f"<details><summary>{label}</summary><pre>{escape(body)}</pre></details>"
            for label, body in (("request", request_body), ("response", response_body))
            if body)
        exchange_rows.append([
            local_time(row["time"], zone, seconds=True), row["protocol"], row["operation"],
            Markup('<span class="ok">success</span>' if row["outcome"] == "success"
                    else f'<span class="bad">{escape(row["outcome"])}</span>'),
            "" if row["duration_us"] is None else f"{row['duration_us'] / 1000:.1f}",
            Markup(folded or '<span class="empty">not kept</span>')])
    heading = f"{escape(request['our_request_id'])} · {escape(shorten(title, 90))}"
    page_html = _page_head(f"{request['our_request_id']} · {name} · Interlend", heading,
                           f'<a href="/">{escape(name)}</a> · {_zone_note(now, zone)}') + f"""
<nav class="top" aria-label="Back"><ul><li><a href="/#requests">← All requests</a></li></ul></nav>
</header>
<main id="content" tabindex="-1">
<section id="request" aria-labelledby="request-h"><h2 id="request-h">Request</h2>
<dl class="facts">{fact_html}</dl></section>
<section id="steps" aria-labelledby="steps-h"><h2 id="steps-h">History</h2>
{_table("Each step and when it happened", [Column("step"), Column("time", "nw")], step_rows)}</section>
<section id="exchanges" class="wide" aria-labelledby="exchanges-h"><h2 id="exchanges-h">Exchanges</h2>
{_table("Every exchange about this request, oldest first", [Column("time", "nw"), Column("protocol"), Column("operation"), Column("outcome"), Column("ms", "n"), Column("messages", "t")], exchange_rows)}</section>
</main></body></html>
"""
    return page_html.encode("utf-8")


def render_missing(*, name: str, identifier: str) -> bytes:
    """The page for a request that does not exist."""
    return (_page_head(f"Not found · {name} · Interlend", "No such request",
                       f'<a href="/">{escape(name)}</a>') + f"""
</header><main id="content"><section><p>There is no request {escape(identifier)}.</p>
<p><a href="/#requests">All requests</a></p></section></main></body></html>
""").encode("utf-8")
