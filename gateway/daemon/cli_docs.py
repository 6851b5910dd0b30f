# -*- test-case-name: tests.gateway.test_cli_docs -*-
"""The command line's own documentation: a description and examples for each subcommand, help
for every option (with the valid values of each choice), and the ``interlend(1)`` manual page
generated from the same argparse definitions, so ``--help`` and ``man interlend`` never drift.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterator

from gateway.config import GatewaySettings
from gateway.daemon.cli_ops import REQUEST_STATES

SYSTEMD_DATABASE = f"/var/lib/interlend/{GatewaySettings.database.name}"
"""Where the database lives under systemd (the unit's StateDirectory, the default file name)."""

DOCS: dict[str, tuple[str, tuple[str, ...]]] = {
    "serve": (
        "Run the gateway in the foreground: the Z39.50 server, the NCIP responder and the admin "
        "listener (dashboard, /metrics, /healthz). SIGTERM stops it gracefully; SIGHUP reloads "
        "peers and limits. Under systemd it is started by interlend.service with the sockets "
        "of interlend.socket and interlend-ncip.socket. With [gateway] workers = N (or "
        "\"auto\": one per CPU) N worker processes serve Z39.50 and NCIP on its listening "
        "sockets; it alone writes the database (NCIP state changes are forwarded to it), and "
        "a reload or a stop reaches every worker.",
        ("interlend serve -c config/interlend.toml",
         "interlend serve --z3950-listen tcp:2100:interface=127.0.0.1 --log-format json")),
    "check-config": (
        "Validate the configuration file and report every error at once, with its path. Also "
        "checks what would fail at start: two listeners on one port, a database directory "
        "that is missing or not writable, placeholder secrets (change-me) left in. Exit 2 on "
        "any problem.",
        ("interlend check-config -c /etc/interlend/interlend.toml",)),
    "import": (
        "Load MARC records or patrons into the embedded circulation system.",
        ("interlend import marc catalogue.mrc", "interlend import patrons patrons.csv")),
    "import marc": (
        "Import ISO 2709 or MARCXML records (MARC-8 or UTF-8) with their items from 852 or "
        "952; a re-import updates records by their 001. A bad record is skipped with a line "
        "naming it. Exit 1 when a file could not be read or nothing was imported.",
        (f"interlend import marc --database {SYSTEMD_DATABASE} books.mrc",)),
    "import patrons": (
        "Import patrons from CSV with the columns barcode, username, pin, given_name, "
        "family_name, email, status, patron_group, expires: all rows or none.",
        ("interlend import patrons patrons.csv",)),
    "audit": (
        "List, export or follow the audit log, newest last. Filters combine. Refuses a "
        "database file that does not exist.",
        ("interlend audit --peer reshare --since 2026-01-01 --format csv > audit.csv",
         "interlend audit --outcome 'Unknown User' --limit 20",
         "interlend audit --follow")),
    "audit purge": (
        "Apply the audit retention now: clear bodies older than body_retention_days and delete "
        "rows older than row_retention_days (the daemon also does this daily).",
        ("interlend audit purge",)),
    "requests": (
        "List resource-sharing requests with their step times, newest first. Refuses a "
        "database file that does not exist; an unknown --peer or --state lists the valid "
        "values.",
        ("interlend requests --peer reshare --state checked_out",
         "interlend requests --role lender --format csv")),
    "requests show": (
        "Show one request's whole history: its steps and every NCIP exchange about it.",
        ("interlend requests show B-1042", "interlend requests show B-1042 --format json")),
    "stats": (
        "Per-partner statistics: lent, borrowed, active loans and borrows, balance, ratio, fill "
        "rate, turnaround (median/90th percentile), overdue, estimated saving.",
        ("interlend stats --since 2026-01-01", "interlend stats --peer reshare --format json")),
    "sweep": (
        "List temporary items whose request ended more than N days ago; --remove deletes them "
        "with their holds and brief records.",
        ("interlend sweep --days 60", "interlend sweep --days 60 --remove")),
    "demo": (
        "Write the deterministic demo catalogue and patrons (for make run and the tests).",
        ("interlend demo --records 2000 --if-absent",)),
    "reload": (
        "Reload a running daemon and wait for its answer: check the file first (a refused "
        "file is never signalled), hand it to the daemon, send SIGHUP and print what changed or "
        "why it was refused. Exit 0 when applied, 1 when refused. The systemd unit's "
        "ExecReload, so `systemctl reload interlend` fails visibly on a bad file.",
        ("interlend reload --pid \"$(systemctl show -p MainPID --value interlend)\" "
         "-c /etc/interlend/interlend.toml",)),
    "manpage": (
        "Print the interlend(1) manual page, generated from the command line's definitions.",
        ("interlend manpage > /usr/local/share/man/man1/interlend.1",)),
}

OPTION_HELP = {
    "peer": "only this peer (a configured or recorded peer name; an unknown one is a usage "
            "error that lists the valid names)",
    "role": "only requests where we are the borrower or the lender",
    "state": f"only requests in this state (one of: {', '.join(REQUEST_STATES)})",
    "limit": "at most this many rows (default %(default)s)",
    "format": "output format",
    "log_level": "lowest level logged",
    "files": "MARC files: ISO 2709 (.mrc) or MARCXML, MARC-8 or UTF-8 (several allowed)",
    "file": "the CSV file, with a header line naming the columns",
}


def subcommands(parser: argparse.ArgumentParser,
                path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command's parser with its path (``"import marc"``), depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{path} {name}".strip()
                yield full, sub
                yield from subcommands(sub, full)


def _subcommand_help(parser: argparse.ArgumentParser, path: str) -> str:
    """The ``help=`` a subcommand was added with (its line in ``interlend --help``)."""
    *parents, name = path.split()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            if parents:
                sub = action.choices.get(parents[0])
                return _subcommand_help(sub, " ".join([*parents[1:], name])) if sub else ""
            for choice in action._choices_actions:
                if choice.dest == name:
                    return choice.help or ""
    return ""


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions
            if not isinstance(action, (argparse._SubParsersAction, argparse._HelpAction,
                                       argparse._VersionAction))]


def document(parser: argparse.ArgumentParser) -> None:
    """Give each subcommand its description and examples, and every option a help text that
    names the valid values of a choice."""
    for path, sub in subcommands(parser):
        # a subcommand added without an entry here keeps its one-line help (and
        # tests/gateway/test_cli_docs.py asks for the entry)
        description, examples = DOCS.get(path, (_subcommand_help(parser, path), ()))
        sub.description = textwrap.fill(description, width=78)
        sub.epilog = ("examples:\n" + "\n".join(f"  {line}" for line in examples)
                      if examples else None)
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        for action in _options(sub):
            if not action.help:
                action.help = OPTION_HELP.get(action.dest, "")
            if action.choices and "one of" not in action.help:
                default = (f"; default {action.default}" if action.default is not None
                           and not isinstance(action.default, bool) else "")
                values = ", ".join(str(c) for c in action.choices)
                action.help = f"{action.help} (one of: {values}{default})".lstrip()


def _roff(text: str) -> str:
    """Text escaped for roff: backslashes, hyphens, and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = [("\\&" + line) if line.startswith((".", "'")) else line
             for line in text.split("\n")]
    return "\n".join(lines)


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().replace("usage:", "").split())


def _option_text(action: argparse.Action, parser: argparse.ArgumentParser) -> tuple[str, str]:
    formatter = parser._get_formatter()
    invocation = formatter._format_action_invocation(action)
    help_text = formatter._expand_help(action) if action.help else ""
    return invocation, help_text


def manpage(parser: argparse.ArgumentParser) -> str:
    """The ``interlend(1)`` page in roff (man macros), from ``parser``'s definitions."""
    lines = ['.TH INTERLEND 1 "" "Interlend" "User Commands"', ".SH NAME",
             "interlend \\- " + _roff(parser.description or ""), ".SH SYNOPSIS",
             ".B interlend", "COMMAND [OPTIONS]", ".SH DESCRIPTION",
             _roff("Interlend is a resource-sharing gateway: a Z39.50 server and an NCIP "
                   "responder in front of a circulation system, with a SQLite audit log. "
                   "Every command takes -c/--config FILE (default $INTERLEND_CONFIG, then "
                   "$CREDENTIALS_DIRECTORY/interlend.toml, then /etc/interlend/interlend.toml, "
                   "then built-in defaults) and --database PATH."),
             ".SH COMMANDS"]
    for path, sub in subcommands(parser):
        lines += [f'.SS "interlend {path}"', _roff(_usage(sub)), ".PP",
                  _roff(sub.description or "")]
        for action in _options(sub):
            invocation, help_text = _option_text(action, sub)
            lines += [".TP", f".B {_roff(invocation)}", _roff(help_text)]
        examples = (sub.epilog or "").splitlines()[1:]
        if examples:
            lines += [".PP", "Examples:", ".RS", ".nf"]
            lines += [_roff(line.strip()) for line in examples]
            lines += [".fi", ".RE"]
    lines += [
        ".SH EXIT STATUS",
        _roff("0 success; 1 the work failed (including a refused reload and a missing "
              "database); 2 a usage or configuration error."),
        ".SH FILES",
        ".TP", _roff("/etc/interlend/interlend.toml"),
        _roff("the configuration (root-only; the service reads it as a systemd credential)"),
        ".TP", _roff(SYSTEMD_DATABASE),
        _roff("the database under systemd (StateDirectory; /var/lib/private/interlend with "
              "DynamicUser)"),
        ".SH ENVIRONMENT",
        ".TP", "INTERLEND_CONFIG", _roff("the configuration file when -c is not given"),
        ".TP", "CREDENTIALS_DIRECTORY",
        _roff("set by systemd's LoadCredential=; interlend.toml in it is the configuration"),
        ".TP", "RUNTIME_DIRECTORY",
        _roff("set by systemd's RuntimeDirectory=; where reload outcomes are exchanged"),
        ".SH SEE ALSO",
        _roff("systemctl(1), journalctl(1), sqlite3(1); the README of the interlend package"),
    ]
    return "\n".join(lines) + "\n"
