# -*- test-case-name: tests.gateway.test_cli -*-
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
from typing import IO, Any

from gateway import __version__
from gateway.config import Config, ConfigErrors, load_config
from gateway.logs import LOG_FORMATS, LOG_LEVELS

DEFAULT_CONFIG_PATHS = (Path("/etc/interlend/interlend.toml"),)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", type=Path,
                        help="configuration file (default: $INTERLEND_CONFIG, then "
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
    patrons = kinds.add_parser("patrons", parents=[common], help="import patrons from CSV")
    patrons.add_argument("file", type=Path, metavar="FILE.csv")

    demo = commands.add_parser("demo", parents=[common],
                               help="write the deterministic demo catalogue and patrons")
    demo.add_argument("--records", type=int, default=2000, metavar="N",
                      help="catalogue size (default 2000, at most 1000000)")
    demo.add_argument("--if-absent", action="store_true",
                      help="do nothing when the database already holds records")
    return parser


def resolve_config_path(given: Path | None, environ: dict[str, str]) -> Path | None:
    """The file to read: -c, then $INTERLEND_CONFIG, then the system path if present."""
    if given is not None:
        return given
    if environ.get("INTERLEND_CONFIG"):
        return Path(environ["INTERLEND_CONFIG"])
    return next((p for p in DEFAULT_CONFIG_PATHS if p.exists()), None)


def main(argv: Sequence[str] | None = None, *, stdout: IO[str] | None = None,
         stderr: IO[str] | None = None) -> int:
    """Entry point of the ``interlend`` console script."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = build_parser().parse_args(argv)
    config_path = resolve_config_path(args.config, dict(os.environ))
    try:
        config = load_config(config_path).with_overrides(
            database=args.database,
            z3950_listen=getattr(args, "z3950_listen", None),
            ncip_listen=getattr(args, "ncip_listen", None))
    except ConfigErrors as e:
        print(str(e), file=err)
        return EXIT_USAGE
    handler: Callable[..., int] = {
        "serve": _serve, "check-config": _check_config, "import": _import, "demo": _demo,
    }[args.command]
    return handler(args, config, config_path, out, err)


def _check_config(args: argparse.Namespace, config: Config, path: Path | None,
                  out: IO[str], err: IO[str]) -> int:
    source = str(path) if path else "built-in defaults"
    print(f"{source}: OK ({len(config.peers)} peer(s); database {config.gateway.database})",
          file=out)
    return EXIT_OK


def _open(config: Config, err: IO[str]) -> Any:
    from gateway.store import open_database

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
    from gateway.importers import PatronImportError, import_marc, import_patrons

    conn = _open(config, err)
    if conn is None:
        return EXIT_FAILED

    def report(line: str) -> None:
        print(line, file=err)

    try:
        if args.kind == "marc":
            progress = _Progress(err, "records")
            summary = import_marc(conn, list(args.files), progress=progress, report=report)
            progress.done()
            print(summary, file=out)
            return EXIT_OK if summary.records_read > summary.records_skipped else EXIT_FAILED
        try:
            patrons = import_patrons(conn, args.file, report=report)
        except PatronImportError as e:
            print(f"{args.file}: nothing imported: {e}", file=err)
            return EXIT_FAILED
        print(patrons, file=out)
        return EXIT_OK
    finally:
        conn.close()


def _demo(args: argparse.Namespace, config: Config, path: Path | None,
          out: IO[str], err: IO[str]) -> int:
    from gateway.demo import write_demo

    if not 1 <= args.records <= 1_000_000:
        print("--records must be between 1 and 1000000", file=err)
        return EXIT_USAGE
    conn = _open(config, err)
    if conn is None:
        return EXIT_FAILED
    try:
        if args.if_absent and conn.execute("SELECT 1 FROM records LIMIT 1").fetchone():
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


def _serve(args: argparse.Namespace, config: Config, path: Path | None,
           out: IO[str], err: IO[str]) -> int:
    from twisted.internet import reactor
    from twisted.logger import Logger

    from gateway.logs import start_logging
    from gateway.service import Gateway, Overrides

    start_logging(out, log_format=args.log_format, level=args.log_level)
    log = Logger(namespace="interlend")
    overrides = Overrides(database=args.database, z3950_listen=args.z3950_listen,
                          ncip_listen=args.ncip_listen)
    gateway = Gateway(config, reactor=reactor, config_path=path, overrides=overrides)
    status = [EXIT_OK]

    def start() -> None:
        d = gateway.start()

        def failed(failure: Any) -> None:
            log.error("start-up failed: {error}", error=failure.getErrorMessage())
            status[0] = EXIT_FAILED
            reactor.stop()  # type: ignore[attr-defined]

        d.addErrback(failed)

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger("before", "shutdown", gateway.stop)  # type: ignore
    signal.signal(signal.SIGHUP,
                  lambda *_: reactor.callFromThread(gateway.reload))  # type: ignore
    reactor.run()  # type: ignore[attr-defined]
    return status[0]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
