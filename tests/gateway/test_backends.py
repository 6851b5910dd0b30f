"""The backend registry: ``[backend] kind`` selects a backend registered as an entry point.

Backends are registered here the way a third party's package registers one: a distribution on
``sys.path`` (a ``.dist-info`` directory in a temporary directory) whose ``entry_points.txt``
names an object under ``interlend.backends``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from gateway.backends.embedded.backend import EmbeddedBackend
from gateway.backends.registry import (
    ENTRY_POINT_GROUP,
    BackendUnavailable,
    IBackend,
    registered_kinds,
    select_backend,
)
from gateway.config import ConfigErrors, deployment_problems, parse_config
from gateway.daemon.cli import main
from gateway.daemon.gateway import Gateway

FAKE_BACKEND = '''
from zope.interface import implementer

from gateway.backends.registry import IBackend
from gateway.domain.catalogue import ICatalogue
from gateway.domain.circulation import ICirculation


@implementer(ICatalogue)
class Catalogue:
    def __init__(self, context):
        self.context = context


@implementer(ICirculation)
class Circulation:
    def __init__(self, context):
        self.context = context


@implementer(IBackend)
class Backend:
    kind = "{kind}"

    def catalogue(self, context):
        return Catalogue(context)

    def circulation(self, context):
        return Circulation(context)


backend = Backend()
not_a_backend = object()
'''


def register(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package: str,
             entries: dict[str, str], source: str = "") -> None:
    """Install ``package`` (with ``source`` as its ``__init__``) as a distribution whose
    ``interlend.backends`` entry points are ``entries`` (kind -> object reference)."""
    root = tmp_path / "site"
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text(source)
    info = root / f"{package}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, package, raising=False)


def _config(kind: str, tmp_path: Path) -> str:
    return textwrap.dedent(f"""
        [gateway]
        database = "{tmp_path / 'db.sqlite3'}"
        [backend]
        kind = "{kind}"
        """)


def test_embedded_backend_is_registered_and_provides_the_interface() -> None:
    """``embedded`` is registered by Interlend's own package (setup.cfg), and what it
    registers provides IBackend under its kind."""
    assert "embedded" in registered_kinds()
    backend = select_backend("embedded")
    assert isinstance(backend, EmbeddedBackend)
    assert verifyObject(IBackend, backend)
    assert backend.kind == "embedded"


def test_a_third_party_backend_is_selected_by_kind(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A package registering ``lms`` makes ``[backend] kind = "lms"`` valid and selects its
    backend; the catalogue and circulation it builds get the gateway's context: its store,
    its clock, the configuration in force (a reload's, not the start-up one) and whether the
    gateway is stopping."""
    register(tmp_path, monkeypatch, "lms_backend", {"lms": "lms_backend:backend"},
             FAKE_BACKEND.format(kind="lms"))
    assert "lms" in registered_kinds()
    config = parse_config(__import__("tomllib").loads(_config("lms", tmp_path)))
    assert config.backend.kind == "lms"
    clock = Clock()
    gateway = Gateway(config, reactor=clock, environ={})
    backend = gateway.catalogue_backend
    assert gateway.circulation_backend is backend
    assert type(backend).__module__ == "lms_backend" and backend.kind == "lms"
    # the fakes keep the context they were built with (their own attribute, not the interface's)
    catalogue: Any = backend.catalogue(gateway.catalogue_context)
    circulation: Any = backend.circulation(gateway.circulation_context)
    context = catalogue.context
    assert circulation.context.store is context.store
    assert context.store is gateway.store and context.clock is clock
    assert context.audit is gateway.audit and context.metrics is gateway.metrics
    assert context.config() is config
    gateway.config = reloaded = config.with_overrides(z3950_listen=["tcp:0"])
    assert context.config() is reloaded
    assert not context.stopping()
    gateway.state = "stopping"
    assert context.stopping()


def test_an_unknown_kind_is_a_configuration_error_listing_the_kinds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown kind is reported with its path, and names every registered kind, in the
    file check and in ``interlend check-config``."""
    register(tmp_path, monkeypatch, "lms_backend", {"lms": "lms_backend:backend"},
             FAKE_BACKEND.format(kind="lms"))
    path = tmp_path / "interlend.toml"
    path.write_text(_config("koha", tmp_path))
    with pytest.raises(ConfigErrors) as caught:
        parse_config(__import__("tomllib").loads(path.read_text()))
    kinds = ", ".join(registered_kinds())   # embedded, lms and the upstreams installed
    assert "embedded, lms" in kinds
    assert caught.value.errors == [
        f"backend.kind: no backend of kind 'koha' is installed; registered kinds: {kinds}"]
    out, err = io.StringIO(), io.StringIO()
    assert main(["check-config", "-c", str(path)], stdout=out, stderr=err) == 2
    assert "backend.kind: no backend of kind 'koha' is installed" in err.getvalue()
    with pytest.raises(BackendUnavailable) as unavailable:
        select_backend("koha")
    assert str(unavailable.value).startswith("backend.kind: no backend of kind 'koha'")


def test_a_backend_that_cannot_be_loaded_is_reported(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered backend whose package fails to import, or which registers something that
    is not a backend (or under another kind), is a configuration problem naming
    ``backend.kind``: check-config reports it, and the daemon refuses to start (exit 2)."""
    register(tmp_path, monkeypatch, "odd_backends",
             {"broken": "odd_backends.missing:backend",
              "plain": "odd_backends:not_a_backend",
              "renamed": "odd_backends:backend"},
             FAKE_BACKEND.format(kind="other"))
    for kind, reason in (("broken", "could not be loaded: ModuleNotFoundError"),
                         ("plain", "is not an Interlend backend"),
                         ("renamed", "calls itself 'other', registered as 'renamed'")):
        with pytest.raises(BackendUnavailable) as caught:
            select_backend(kind)
        assert reason in str(caught.value), kind
        config = parse_config(__import__("tomllib").loads(_config(kind, tmp_path)))
        [problem] = [p for p in deployment_problems(config) if p.startswith("backend.kind")]
        assert reason in problem
    path = tmp_path / "interlend.toml"
    path.write_text(_config("broken", tmp_path))
    out, err = io.StringIO(), io.StringIO()
    assert main(["check-config", "-c", str(path)], stdout=out, stderr=err) == 2
    assert "backend.kind: backend 'broken' (odd_backends.missing:backend) could not be " \
           "loaded" in err.getvalue()
    assert main(["serve", "-c", str(path)], stdout=out, stderr=err) == 2
    assert err.getvalue().count("could not be loaded") == 2


def test_reading_a_configuration_loads_no_backend() -> None:
    """``gateway.config`` (which every service imports) loads neither the registry, nor any
    backend, nor the store: the registry is consulted only when a file is checked, and then
    reads the names of the registered kinds without importing them."""
    code = ("import sys, tomllib, gateway.config as c;"
            "before = sorted(m for m in sys.modules if m == 'sqlite3'"
            " or m.startswith(('gateway.backends', 'gateway.storage')));"
            "c.parse_config(tomllib.loads('[backend]\\nkind = \"embedded\"'));"
            "after = sorted(m for m in sys.modules if m.startswith('gateway.backends'));"
            "print(before, after)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[] ['gateway.backends', 'gateway.backends.registry']"


SETTINGS = """

def _settings_problems(table, path):
    return [f"{path}.{key}: unknown key" for key in table if key != "host"] + (
        [] if isinstance(table.get("host", ""), str) else [f"{path}.host: must be a string"])


backend.settings_problems = _settings_problems
"""


def test_catalogue_and_circulation_are_chosen_separately(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``[backend] catalogue`` names another kind for the catalogue while circulation stays on
    ``kind``; each backend gets its own ``[backend.<kind>]`` table in its context."""
    register(tmp_path, monkeypatch, "lms_backend", {"lms": "lms_backend:backend"},
             FAKE_BACKEND.format(kind="lms") + SETTINGS)
    config = parse_config(tomllib.loads(_config("embedded", tmp_path) + textwrap.dedent("""
        catalogue = "lms"
        [backend.lms]
        host = "opac.example.org"
        """)))
    assert config.backend.catalogue_kind == "lms"
    assert config.backend.circulation_kind == "embedded"
    assert config.backend.tables == {"lms": {"host": "opac.example.org"}}
    assert not [p for p in deployment_problems(config) if p.startswith("backend")]
    gateway = Gateway(config, reactor=Clock(), environ={})
    assert gateway.catalogue_backend.kind == "lms"
    assert gateway.circulation_backend.kind == "embedded"
    assert gateway.catalogue_context.settings == {"host": "opac.example.org"}
    assert gateway.catalogue_context.settings_path == "backend.lms"
    assert gateway.circulation_context.settings == {}


def test_backend_tables_are_checked_with_their_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A table for a kind nobody installed, a key the backend does not know, a key given to
    the embedded backend (which has no settings), and an unknown kind for ``circulation``
    are each reported at their path; the daemon refuses to start on a bad table."""
    register(tmp_path, monkeypatch, "lms_backend", {"lms": "lms_backend:backend"},
             FAKE_BACKEND.format(kind="lms") + SETTINGS)
    with pytest.raises(ConfigErrors) as caught:
        parse_config(tomllib.loads(_config("embedded", tmp_path) + textwrap.dedent("""
            circulation = "folio"
            [backend.koha]
            host = "x"
            """)))
    kinds = ", ".join(registered_kinds())   # embedded, lms and the upstreams installed
    assert caught.value.errors == [
        "backend.circulation: no backend of kind 'folio' is installed; "
        f"registered kinds: {kinds}",
        f"backend.koha: no backend of kind 'koha' is installed; registered kinds: {kinds}"]
    config = parse_config(tomllib.loads(_config("lms", tmp_path) + textwrap.dedent("""
        circulation = "embedded"
        [backend.lms]
        host = 7
        port = 210
        [backend.embedded]
        path = "x"
        """)))
    problems = [p for p in deployment_problems(config) if p.startswith("backend")]
    assert problems == ["backend.lms.port: unknown key", "backend.lms.host: must be a string",
                        "backend.embedded.path: unknown key (the 'embedded' backend has no "
                        "settings)"]
    with pytest.raises(BackendUnavailable) as refused:
        Gateway(config, reactor=Clock(), environ={})
    assert str(refused.value) == ("backend.lms.port: unknown key; "
                                  "backend.lms.host: must be a string")
