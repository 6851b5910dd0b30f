"""The command line documents itself: each subcommand's --help has a description and
examples, every option a help text naming the valid values of a choice, and the interlend(1)
page is generated from the same argparse definitions (and the shipped copy is up to date)."""

from __future__ import annotations

import argparse
import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.daemon.cli import build_parser
from gateway.daemon.cli_docs import manpage, subcommands

REPO = Path(__file__).resolve().parents[2]


def test_every_subcommand_has_a_description_and_examples() -> None:
    parser = build_parser()
    paths = [path for path, _ in subcommands(parser)]
    assert {"serve", "check-config", "import marc", "import patrons", "audit", "audit purge",
            "requests", "requests show", "stats", "sweep", "demo", "reload",
            "manpage"} <= set(paths)
    for path, sub in subcommands(parser):
        text = sub.format_help()
        assert sub.description and len(sub.description) > 40, path
        examples = text.split("examples:\n", 1)[1].splitlines()
        assert examples and all(line.strip().startswith(("interlend ", "alias "))
                                or "interlend " in line for line in examples), (path, examples)
        assert any(f"interlend {path}" in line for line in examples), (path, examples)


def test_every_option_has_help_and_choices_are_listed() -> None:
    for path, sub in subcommands(build_parser()):
        for action in sub._actions:
            if isinstance(action, (argparse._SubParsersAction, argparse._HelpAction)):
                continue
            assert action.help, (path, action.dest)
            if action.choices:
                listed = ", ".join(str(choice) for choice in action.choices)
                assert f"one of: {listed}" in action.help, (path, action.dest)
    state = next(a for a in dict(subcommands(build_parser()))["requests"]._actions
                 if a.dest == "state")
    assert "awaiting_pickup" in (state.help or "")


def test_manpage_is_generated_from_argparse() -> None:
    """Every subcommand and option of the parser appears in the page; an option added to the
    parser appears in the page without anything else changing."""
    parser = build_parser()
    page = manpage(parser)
    for path, sub in subcommands(parser):
        assert f'.SS "interlend {path}"' in page
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                assert flag.replace("-", "\\-") in page, (path, flag)
    stats = dict(subcommands(parser))["stats"]
    stats.add_argument("--brand-new-option", help="appears by itself")
    assert "\\-\\-brand\\-new\\-option" in manpage(parser)
    assert "appears by itself" in manpage(parser)


def test_shipped_manpage_is_current_and_installed_with_the_package() -> None:
    """man/interlend.1 is exactly what `interlend manpage` prints now (regenerate it with
    `interlend manpage > man/interlend.1`), and setup.cfg installs it."""
    shipped = (REPO / "man" / "interlend.1").read_text()
    assert shipped == manpage(build_parser())
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert setup["options.data_files"]["share/man/man1"].strip() == "man/interlend.1"


@pytest.mark.skipif(shutil.which("man") is None, reason="man (man-db) not installed")
def test_manpage_renders(tmp_path: Path) -> None:
    page = tmp_path / "interlend.1"
    page.write_text(manpage(build_parser()))
    done = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, timeout=60,
                          env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin", "MAN_KEEP_STDERR": "1"})
    assert done.returncode == 0, done.stderr
    assert "interlend requests show" in done.stdout and "EXIT STATUS" in done.stdout
    assert "warning" not in done.stderr.lower()
