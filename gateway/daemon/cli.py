# -*- test-case-name: tests.gateway.test_cli_ops,tests.gateway.test_reports -*-
"""The ``interlend`` command line: serve, check-config, import, demo.

Every subcommand takes ``-c/--config FILE`` and ``--database PATH``. Exit status: 0 on success,
1 when the work failed, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gateway import __version__
from gateway.config import Config, ConfigErrors, load_config
from gateway.daemon.logs import LOG_FORMATS, LOG_LEVELS

if TYPE_CHECKING:  # the commands import what they use when they run
    from twisted.logger import Logger

    from gateway.storage.audit_log import AuditFilter
    from gateway.storage.store import Connection

DEFAULT_CONFIG_PATHS = (Path("/etc/interlend/interlend.toml"),)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", type=Path,
                        help="configuration file (default: $INTERLEND_CONFIG, then "
                             "$CREDENTIALS_DIRECTORY/interlend.toml, then "
                             "/etc/interlend/interlend.toml, then built-in defaults)")
    common.add_argument("--database", metavar="PATH",
                        help="SQLite database file, overriding [gateway] database")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="interlend", description="Interlend resource-sharing gateway (Z39.50 + NCIP).")
    parser.add_argument("--version", action="version", version=f"interlend {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", parents=[common],
                                help="run the daemon in the foreground")
    serve.add_argument("--z3950-listen", action="append", metavar="ENDPOINT",
                       help="Z39.50 endpoint string, e.g. tcp:2100 (repeatable; replaces the "
                            "file's [z3950] listen for this run)")
    serve.add_argument("--ncip-listen", action="append", metavar="ENDPOINT",
                       help="NCIP endpoint string, e.g. tcp:8080 (repeatable)")
    serve.add_argument("--sru-listen", action="append", metavar="ENDPOINT",
                       help="SRU endpoint string, e.g. tcp:8082 (repeatable)")
    serve.add_argument("--admin-listen", action="append", metavar="ENDPOINT",
                       help="admin endpoint string for /stats, /metrics and the dashboard "
                            "(repeatable)")
    serve.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                       help="plain text (default) or JSON lines for journald")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info")

    commands.add_parser("check-config", parents=[common],
                        help="validate the configuration and report every error")

    importer = commands.add_parser("import", help="load MARC records or patrons")
    kinds = importer.add_subparsers(dest="kind", metavar="KIND", required=True)
    marc = kinds.add_parser("marc", parents=[common],
                            help="import MARC records (ISO 2709 or MARCXML) with 852/952 items")
    marc.add_argument("files", nargs="+", type=Path, metavar="FILE")
    marc.add_argument("--workers", type=int, metavar="N",
                      help="processes reading a large ISO 2709 file while this one writes "
                           "(default: one fewer than the cores, for files of 4 MiB or more; "
                           "0: none)")
    patrons = kinds.add_parser("patrons", parents=[common], help="import patrons from CSV")
    patrons.add_argument("file", type=Path, metavar="FILE.csv")

    audit = commands.add_parser("audit", parents=[common],
                                help="list, export or tail the audit log; 'audit purge' applies "
                                     "retention")
    _audit_filters(audit)
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    audit_commands.add_parser("purge", parents=[common],
                              help="clear bodies and delete rows past their retention")

    requests = commands.add_parser("requests", parents=[common],
                                   help="resource-sharing requests and their step times")
    requests.add_argument("--peer")
    requests.add_argument("--role", choices=("borrower", "lender"))
    requests.add_argument("--state")
    requests.add_argument("--limit", type=int, default=100)
    requests.add_argument("--format", choices=FORMATS, default="table")
    requests.add_argument("--overdue", action="store_true",
                          help="only open loans past their due date")
    requests.add_argument("--wide", action="store_true",
                          help="every identifier and step time (the table is then wider "
                               "than 120 columns)")
    request_commands = requests.add_subparsers(dest="requests_command", metavar="ACTION")
    show = request_commands.add_parser("show", parents=[common],
                                       help="one request's whole history")
    show.add_argument("id", help="our request id, the broker's request id, or the row id")
    show.add_argument("--format", choices=("table", "json"), default="table")

    stats = commands.add_parser("stats", parents=[common], help="per-partner statistics")
    stats.add_argument("--since", metavar="DATE", help="count requests from this date (ISO)")
    stats.add_argument("--peer")
    stats.add_argument("--format", choices=("table", "json"), default="table")

    sweep = commands.add_parser("sweep", parents=[common],
                                help="list (or remove) orphaned temporary items")
    sweep.add_argument("--days", type=int, default=30,
                       help="request ended more than this many days ago (default 30)")
    sweep.add_argument("--remove", action="store_true", help="delete them, with their holds "
                       "and brief records")

    demo = commands.add_parser("demo", parents=[common],
                               help="write the deterministic demo catalogue and patrons")
    demo.add_argument("--records", type=int, default=2000, metavar="N",
                      help="catalogue size (default 2000, at most 1000000)")
    demo.add_argument("--if-absent", action="store_true",
                      help="do nothing when the database already holds records")

    reload = commands.add_parser("reload", help="reload a running daemon and report the outcome "
                                                "(the systemd unit's ExecReload)")
    reload.add_argument("--pid", type=int, required=True, help="the daemon's process id "
                        "($MAINPID in the unit)")
    reload.add_argument("-c", "--config", metavar="FILE", type=Path,
                        help="check this file first and hand it to the daemon (a refused "
                             "file is never signalled)")
    reload.add_argument("--runtime-directory", metavar="DIR",
                        help="where the daemon writes its reload outcome (default: "
                             "$RUNTIME_DIRECTORY, /run/interlend under systemd)")
    from gateway.daemon.cli_docs import document
    from gateway.daemon.cli_ops import RELOAD_TIMEOUT

    reload.add_argument("--timeout", type=float, default=RELOAD_TIMEOUT, metavar="SECONDS",
                        help="how long to wait for the outcome (default %(default)g)")
    commands.add_parser("manpage", help="print the interlend(1) manual page (roff), generated "
                                        "from these definitions")

    document(parser)
    return parser


FORMATS = ("table", "csv", "json")


def _audit_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peer")
    parser.add_argument("--protocol", choices=("ncip", "z3950"))
    parser.add_argument("--service", help="NCIP service or Z39.50 operation")
    parser.add_argument("--request-id", help="broker's or our request id")
    parser.add_argument("--item", help="item barcode")
    parser.add_argument("--outcome", help='"success", a Problem type or a diagnostic')
    parser.add_argument("--since", metavar="TIME",
                        help="ISO date or time (UTC unless it carries an offset)")
    parser.add_argument("--until", metavar="TIME",
                        help="ISO date or time, exclusive (UTC unless it carries an offset)")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--bodies", action="store_true", help="include the stored bodies")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--follow", action="store_true", help="keep printing new rows")


def resolve_config_path(given: Path | None, environ: dict[str, str]) -> Path | None:
    """The file to read: -c, then $INTERLEND_CONFIG, then the system path if present."""
    if given is not None:
        return given
    if environ.get("INTERLEND_CONFIG"):
        return Path(environ["INTERLEND_CONFIG"])
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / "interlend.toml").exists():
        return Path(credentials) / "interlend.toml"   # LoadCredential=interlend.toml:...
    return next((p for p in DEFAULT_CONFIG_PATHS if p.exists()), None)


def main(argv: Sequence[str] | None = None, *, stdout: IO[str] | None = None,
         stderr: IO[str] | None = None) -> int:
    """Entry point of the ``interlend`` console script."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("reload", "manpage"):
        from gateway.daemon import cli_ops

        return cli_ops.run(args, parser, out, err)
    try:
        return _main(args, parser, out, err)
    except BrokenPipeError:
        # `interlend requests show ID | head`: the reader has gone; end quietly, and keep
        # Python from complaining again when it flushes stdout at exit
        _quiet_stdout()
        return EXIT_OK


def _quiet_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _main(args: argparse.Namespace, parser: argparse.ArgumentParser, out: IO[str],
          err: IO[str]) -> int:
    from gateway.daemon import cli_ops

    config_path = resolve_config_path(args.config, dict(os.environ))
    try:
        config = load_config(config_path).with_overrides(
            database=args.database,
            z3950_listen=getattr(args, "z3950_listen", None),
            ncip_listen=getattr(args, "ncip_listen", None),
            admin_listen=getattr(args, "admin_listen", None),
            sru_listen=getattr(args, "sru_listen", None))
    except ConfigErrors as e:
        print(str(e), file=err)
        return EXIT_USAGE
    problem = cli_ops.preflight(args, config)
    if problem is not None:
        status, message = problem
        print(message, file=err)
        return status
    handler: Callable[..., int] = {
        "serve": _serve, "check-config": _check_config, "import": _import, "demo": _demo,
        "audit": _audit, "requests": _requests, "stats": _stats, "sweep": _sweep,
    }[args.command]
    try:
        return handler(args, config, config_path, out, err)
    except cli_ops.DATABASE_BUSY as e:
        print(cli_ops.busy_message(config, e), file=err)
        return EXIT_FAILED


def _check_config(args: argparse.Namespace, config: Config, path: Path | None,
                  out: IO[str], err: IO[str]) -> int:
    from gateway.config import deployment_problems

    source = str(path) if path else "built-in defaults"
    problems = deployment_problems(config)
    if problems:
        print(str(ConfigErrors(source, problems)), file=err)
        return EXIT_USAGE
    print(f"{source}: OK ({len(config.peers)} peer(s); database {config.gateway.database})",
          file=out)
    return EXIT_OK


def _open(config: Config, err: IO[str]) -> Connection | None:
    from gateway.storage.store import open_database

    try:
        return open_database(config.gateway.database, busy_timeout=config.gateway.busy_timeout)
    except Exception as e:  # any reason the file cannot be opened is reported the same way
        print(f"{config.gateway.database}: cannot open the database: {e}", file=err)
        return None


class _Progress:
    """A one-line progress counter on a terminal; silent otherwise."""

    def __init__(self, stream: IO[str], label: str) -> None:
        self._stream = stream
        self._label = label
        self._tty = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, count: int) -> None:
        if self._tty and count % 500 == 0:
            self._stream.write(f"\r  {count:,} {self._label}")
            self._stream.flush()

    def done(self) -> None:
        if self._tty:
            self._stream.write("\r\033[K")
            self._stream.flush()


def _import(args: argparse.Namespace, config: Config, path: Path | None,
            out: IO[str], err: IO[str]) -> int:
    from gateway.backends.embedded.importers import PatronImportError, import_marc, import_patrons

    conn = _open(config, err)
    if conn is None:
        return EXIT_FAILED

    def report(line: str) -> None:
        print(line, file=err)

    try:
        if args.kind == "marc":
            progress = _Progress(err, "records")
            summary = import_marc(conn, list(args.files), progress=progress, report=report,
                                  workers=args.workers)
            progress.done()
            print(summary, file=out)
            imported = summary.records_read > summary.records_skipped
            return EXIT_OK if imported and not summary.files_failed else EXIT_FAILED
        try:
            patrons = import_patrons(conn, args.file, report=report)
        except PatronImportError as e:
            print(str(e), file=err)
            return EXIT_FAILED
        print(patrons, file=out)
        return EXIT_OK
    finally:
        conn.close()


def _demo(args: argparse.Namespace, config: Config, path: Path | None,
          out: IO[str], err: IO[str]) -> int:
    from gateway.backends.embedded.demo import holds_records, write_demo

    if not 1 <= args.records <= 1_000_000:
        print("--records must be between 1 and 1000000", file=err)
        return EXIT_USAGE
    conn = _open(config, err)
    if conn is None:
        return EXIT_FAILED
    try:
        if args.if_absent and holds_records(conn):
            print(f"{config.gateway.database}: already holds records; demo data not written",
                  file=out)
            return EXIT_OK
        progress = _Progress(err, "records")
        summary = write_demo(conn, records=args.records, progress=progress)
        progress.done()
        print(summary, file=out)
        return EXIT_OK
    finally:
        conn.close()


def _print_rows(rows: list[dict[str, Any]], fmt: str, out: IO[str],
                columns: Sequence[str] | None = None) -> None:
    """Rows as an aligned table, CSV or JSON lines."""
    from gateway.daemon.formatting import write_rows

    write_rows(rows, fmt, out, columns)


def _audit(args: argparse.Namespace, config: Config, path: Path | None,
           out: IO[str], err: IO[str]) -> int:
    from gateway.admin import reports
    from gateway.storage.retention import purge_audit
    from gateway.storage.store import write_transaction

    conn = _open(config, err)
    if conn is None:
        return EXIT_FAILED
    try:
        if args.audit_command == "purge":
            with write_transaction(conn):
                cleared, deleted = purge_audit(
                    conn, now=reports.now_utc(), body_days=config.audit.body_retention_days,
                    row_days=config.audit.row_retention_days)
            print(f"audit retention: {cleared} bodies cleared (older than "
                  f"{config.audit.body_retention_days} days), {deleted} rows deleted (older "
                  f"than {config.audit.row_retention_days} days)", file=out)
            return EXIT_OK
        try:
            since, until = _utc_bound(args.since), _utc_bound(args.until)
        except ValueError as e:
            print(f"--since/--until: {e}", file=err)
            return EXIT_USAGE
        where = reports.AuditFilter(
            peer=args.peer, protocol=args.protocol, service=args.service,
            request_id=args.request_id, item=args.item, outcome=args.outcome,
            since=since, until=until)
        rows = reports.audit_rows(conn, where, limit=args.limit, bodies=args.bodies)
        rows.reverse()
        _print_rows(rows, args.format, out, _audit_columns(args.bodies))
        out.flush()
        if args.follow:
            return _follow(conn, where, rows, args, out)
        return EXIT_OK
    finally:
        conn.close()


def _audit_columns(bodies: bool) -> list[str]:
    from gateway.admin import reports

    return [*reports.AUDIT_COLUMNS, *(("request_body", "response_body") if bodies else ())]


def _utc_bound(value: str | None) -> str | None:
    """An ``--since``/``--until`` value as audit times are stored (UTC, ISO 8601).

    A date stays a date (it sorts before every time of that day); a time with an offset is
    converted to UTC; a time without one is taken as UTC.
    """
    from datetime import date, datetime, timezone

    if value is None:
        return None
    text = value.strip()
    if len(text) == 10:
        return date.fromisoformat(text).isoformat()
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _follow(conn: Connection, where: AuditFilter, rows: list[dict[str, Any]],
            args: argparse.Namespace, out: IO[str]) -> int:
    """Print new audit rows as they are committed, until interrupted."""
    import dataclasses
    import time

    from gateway.admin import reports
    from gateway.daemon.formatting import write_rows
    from gateway.storage.audit_log import last_audit_id

    last = rows[-1]["id"] if rows else last_audit_id(conn)
    fmt = "json" if args.format == "json" else "csv" if args.format == "csv" else "lines"
    try:
        while True:
            new = reports.audit_rows(conn, dataclasses.replace(where, after_id=last),
                                     limit=None, bodies=args.bodies, newest_first=False)
            if new:
                # CSV continues the table printed above: no second header line.
                write_rows(new, fmt, out, _audit_columns(args.bodies), header=fmt != "csv")
                out.flush()
                last = new[-1]["id"]
            time.sleep(1.0)
    except KeyboardInterrupt:
        return EXIT_OK


def _requests(args: argparse.Namespace, config: Config, path: Path | None,
              out: IO[str], err: IO[str]) -> int:
    import json

    from gateway.admin import reports

    conn = _open(config, err)
    if conn is None:
        return EXIT_FAILED
    try:
        if args.requests_command == "show":
            history = reports.request_history(conn, args.id)
            if history is None:
                print(f"no request {args.id!r}", file=err)
                return EXIT_FAILED
            if args.format == "json":
                print(json.dumps(history, indent=2, default=str), file=out)
                return EXIT_OK
            request = history["request"]
            print(f"{request['our_request_id']}  {request['role']} for {request['peer']}  "
                  f"broker id {request['broker_request_id'] or '-'}  item "
                  f"{request['item_barcode'] or '-'}  state {request['state']}", file=out)
            for step, when in history["steps"]:
                print(f"  {when}  {step}", file=out)
            print("exchanges:", file=out)
            _print_rows(history["exchanges"], "table", out,
                        ["time", "protocol", "operation", "outcome", "duration_us"])
            return EXIT_OK
        _list_requests(conn, args, config, out, err)
        return EXIT_OK
    finally:
        conn.close()


REQUEST_TABLE = ("request", "title", "patron", "partner", "role", "state", "due", "age")
"""The ``interlend requests`` table: fits 120 columns (the title gives way)."""


def _list_requests(conn: Connection, args: argparse.Namespace, config: Config, out: IO[str],
                   err: IO[str]) -> None:
    """``interlend requests``: newest first; times in the configured zone in tables, stored
    (UTC ISO 8601) in CSV and JSON. When ``--limit`` leaves requests out, stderr says so."""
    from zoneinfo import ZoneInfo

    from gateway.admin import reports, worklist
    from gateway.daemon.formatting import age, fit_columns, local_time, shorten

    now = reports.now_utc()
    query = worklist.RequestQuery(peer=args.peer, role=args.role, state=args.state,
                                  overdue=args.overdue, limit=args.limit)
    patrons = worklist.patron_policy(conn, config.audit, config.gateway.key_file)
    page = worklist.request_page(conn, query, now=now, patrons=patrons)
    rows = page.rows
    if page.total > len(rows):
        print(f"{len(rows)} of {page.total} requests shown (newest first); --limit N for more",
              file=err)
    if args.format != "table":
        _print_rows(rows, args.format, out, [
            "id", "our_request_id", "broker_request_id", "peer", "role", "state", "overdue",
            "title", "patron", "item_barcode", "due_at", "lender_due_at", "age_seconds",
            "renewable", *reports.REQUEST_STEPS])
        return
    zone = ZoneInfo(config.gateway.timezone)
    table = [{"request": row["our_request_id"], "broker id": row["broker_request_id"],
              "item": row["item_barcode"], "title": row["title"], "patron": row["patron"],
              "partner": row["peer"], "role": row["role"],
              "state": row["state"] + (" OVERDUE" if row["overdue"] else ""),
              "due": local_time(row["due_at"], zone) if args.wide
              else local_time(row["due_at"], zone)[:10],
              "age": age(row["age_seconds"]),
              **{step[:-3]: local_time(row[step], zone) for step in reports.REQUEST_STEPS}}
             for row in rows]
    if args.wide:
        _print_rows(table, "table", out, [
            "request", "broker id", "item", "title", "patron", "partner", "role", "state", "due",
            "age", *(step[:-3] for step in reports.REQUEST_STEPS)])
    else:
        for line in table:  # long partner names and patron labels give way too
            line["partner"] = shorten(line["partner"], 14)
            line["patron"] = shorten(line["patron"], 14)
        _print_rows(fit_columns(table, REQUEST_TABLE, 120, "title"), "table", out,
                    REQUEST_TABLE)


def _stats(args: argparse.Namespace, config: Config, path: Path | None,
           out: IO[str], err: IO[str]) -> int:
    import json

    from gateway.admin import reports

    conn = _open(config, err)
    if conn is None:
        return EXIT_FAILED
    try:
        stats = reports.partner_stats(conn, now=reports.now_utc(), since=args.since,
                                      peer=args.peer,
                                      cost_per_request=config.stats.document_supply_cost)
    finally:
        conn.close()
    if args.format == "json":
        print(json.dumps(stats, indent=2), file=out)
        return EXIT_OK
    rows = []
    for p in stats["partners"]:
        t = p["turnaround"]
        rows.append({
            "peer": p["peer"], "lent": p["lent"], "borrowed": p["borrowed"],
            "active loans": p["active_loans"], "active borrows": p["active_borrows"],
            "balance": p["net_balance"], "ratio": p["lending_borrowing_ratio"],
            "fill rate": p["fill_rate"], "overdue": p["overdue"],
            "fill h (med/p90)": _pair(t["request_to_filled"]),
            "ship h": _pair(t["filled_to_shipped"]),
            "receive h": _pair(t["shipped_to_received"]),
            "loan h": _pair(t["loan_length"]),
            "saving": f"{p['estimated_saving']:.2f} {config.stats.currency}".strip()})
    _print_rows(rows, "table", out)
    totals = stats["totals"]
    print(f"total: lent {totals['lent']}, borrowed {totals['borrowed']}, net balance "
          f"{totals['net_balance']}, estimated saving {totals['estimated_saving']:.2f} "
          f"{config.stats.currency}".rstrip(), file=out)
    return EXIT_OK


def _pair(summary: dict[str, Any]) -> str:
    if not summary["count"]:
        return "-"
    return f"{summary['median_hours']}/{summary['p90_hours']}"


def _sweep(args: argparse.Namespace, config: Config, path: Path | None,
           out: IO[str], err: IO[str]) -> int:
    import dataclasses

    from gateway.admin import reports
    from gateway.backends.embedded.operations import delete_temporary_item
    from gateway.storage.retention import orphan_items
    from gateway.storage.store import write_transaction

    conn = _open(config, err)
    if conn is None:
        return EXIT_FAILED
    try:
        now = reports.now_utc()
        with write_transaction(conn):
            orphans = orphan_items(conn, now=now, days=args.days)
            if args.remove:
                for orphan in orphans:
                    delete_temporary_item(conn, orphan.barcode, now)
        _print_rows([dataclasses.asdict(orphan) for orphan in orphans], "table", out)
        verb = "removed" if args.remove else "found (use --remove to delete them)"
        print(f"{len(orphans)} orphaned temporary item(s) {verb}", file=out)
        return EXIT_OK
    finally:
        conn.close()


def _raise_file_limit(log: Logger) -> None:
    """Raise the soft open-files limit to the hard one: every connection is a descriptor, and
    the connection caps (z3950/ncip ``max_connections``, 1000 each by default) need more than
    the common soft default of 1024."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.info("open files limit raised from {soft} to {hard}", soft=soft, hard=hard)
    except (ImportError, OSError, ValueError) as e:
        log.warn("could not raise the open files limit: {error}", error=str(e))


def _serve(args: argparse.Namespace, config: Config, path: Path | None,
           out: IO[str], err: IO[str]) -> int:
    from twisted.internet import reactor
    from twisted.logger import Logger
    from twisted.python.failure import Failure

    from gateway.backends.registry import BackendUnavailable
    from gateway.daemon.gateway import Gateway, Overrides
    from gateway.daemon.logs import start_logging

    overrides = Overrides(database=args.database, z3950_listen=args.z3950_listen,
                          ncip_listen=args.ncip_listen, admin_listen=args.admin_listen,
                          sru_listen=args.sru_listen)
    try:  # before logging starts: a backend that cannot be loaded is a configuration error
        gateway = Gateway(config, reactor=reactor, config_path=path, overrides=overrides)
    except BackendUnavailable as e:
        print(str(ConfigErrors(str(path) if path else "built-in defaults", [str(e)])), file=err)
        return EXIT_USAGE
    start_logging(out, log_format=args.log_format, level=args.log_level)
    gateway.log_options = (args.log_format, args.log_level)
    log = Logger(namespace="interlend")
    _raise_file_limit(log)
    # The reactor thread takes the interpreter lock back from busy reader threads within 1 ms
    # instead of Python's default 5 ms: it needs it several times per request it answers.
    sys.setswitchinterval(0.001)
    status = [EXIT_OK]

    def start() -> None:
        d = gateway.start()

        def failed(failure: Failure) -> None:
            log.error("start-up failed: {error}", error=failure.getErrorMessage())
            status[0] = EXIT_FAILED
            reactor.stop()

        d.addErrback(failed)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", gateway.stop)
    signal.signal(signal.SIGHUP,
                  lambda *_: reactor.callFromThread(gateway.reload))  # type: ignore[attr-defined]
    reactor.run()
    return status[0]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
