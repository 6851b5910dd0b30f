# -*- test-case-name: tests.test_source_headers -*-
"""Every ``test-case-name`` header in the shipped packages names test modules that exist.

The header (Twisted's convention, see docs/style.md) tells a reader and an editor which tests
to run after changing a module; one naming a file that is not there sends them nowhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "protocols")
HEADER = re.compile(r"-\*-\s*test-case-name:\s*(?P<names>[^-]*?)\s*-\*-")

def named_test_modules(source: Path) -> list[str]:
    """The test modules a source file's header names (its first two lines, as in Twisted)."""
    with source.open(encoding="utf-8") as f:
        head = [f.readline(), f.readline()]
    for line in head:
        found = HEADER.search(line)
        if found:
            return [name.strip() for name in found["names"].split(",") if name.strip()]
    return []


def headers() -> list[tuple[str, str]]:
    """(source file relative to the repository, test module named) for every header."""
    return [(source.relative_to(REPO).as_posix(), name)
            for package in PACKAGES
            for source in sorted((REPO / package).rglob("*.py"))
            for name in named_test_modules(source)]


def resolves(name: str) -> bool:
    """Whether a dotted test module name is a module or package under tests/."""
    parts = name.split(".")
    if parts[0] != "tests" or not all(part.isidentifier() for part in parts):
        return False
    path = REPO.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.mark.parametrize(("source", "name"),
                         [pytest.param(source, name, id=f"{source}:{name}")
                          for source, name in headers()])
def test_header_names_an_existing_test_module(source: str, name: str) -> None:
    """The module a header names is a file under tests/."""
    assert resolves(name), f"{source}: test-case-name {name} is not a module under tests/"


def test_headers_are_found() -> None:
    """The scan sees the headers (a broken pattern would pass every case vacuously)."""
    found = dict(headers())
    assert found["gateway/secrets.py"] == "tests.gateway.test_secrets"
    assert len(found) > 50


@pytest.mark.parametrize(("name", "expected"), [
    ("tests.gateway.test_secrets", True),
    ("tests.gateway", True),
    ("tests.gateway.test_no_such_module", False),
    ("gateway.secrets", False),
    ("tests/gateway/test_secrets.py", False),
])
def test_resolution(name: str, expected: bool) -> None:
    """Only dotted names of modules or packages under tests/ resolve."""
    assert resolves(name) is expected


def test_header_parsing(tmp_path: Path) -> None:
    """Comma-separated names are split; a header below the second line does not count."""
    source = tmp_path / "module.py"
    source.write_text("# -*- test-case-name: tests.a.test_b, tests.a.test_c -*-\n")
    assert named_test_modules(source) == ["tests.a.test_b", "tests.a.test_c"]
    source.write_text('"""Doc."""\n\n# -*- test-case-name: tests.a.test_b -*-\n')
    assert named_test_modules(source) == []
