"""``[backend.sru]``: every key checked with its path, through the registry as the daemon
loads it; the sru kind is a catalogue only."""

from __future__ import annotations

import pytest

from gateway.backends.registry import BackendContext, BackendUnavailable, select_backend
from gateway.backends.upstream.sru.settings import SruSettingsError, read_settings
from gateway.domain.catalogue import SortField


def test_registered_as_kind_sru() -> None:
    backend = select_backend("sru")
    assert backend.kind == "sru"
    with pytest.raises(BackendUnavailable, match="backend.circulation: .*only the catalogue"):
        backend.circulation(BackendContext(config=None, store=None, clock=None,  # type: ignore
                                           audit=None, metrics=None))  # type: ignore[arg-type]


def test_every_problem_with_its_path() -> None:
    problems = select_backend("sru").settings_problems(  # type: ignore[attr-defined]
        {"base_url": "ftp://x", "version": "2.0", "timeout": 0, "max_in_flight": 2.5,
         "indexes": {"colour": "dc.colour", "title": 3}, "sort_keys": {"size": "x"},
         "profile": {"name": "koha", "holdings_tag": "1"}, "password": "p", "typo": 1,
         "index_source": "guess"}, "backend.sru")
    assert problems == [
        "backend.sru.typo: unknown key",
        "backend.sru.base_url: must be an http:// or https:// URL with a host (got 'ftp://x')",
        "backend.sru.version: '2.0' is not one of 1.1, 1.2",
        "backend.sru.password: given without a username",
        "backend.sru.timeout: must be a number of seconds from 0.1 to 3600 (got 0)",
        "backend.sru.max_in_flight: must be a whole number from 1 to 1024 (got 2.5)",
        "backend.sru.profile.holdings_tag: must be a data field tag from 010 to 999 (got '1')",
        "backend.sru.indexes.colour: unknown index: one of any, anywhere, author, conference, "
        "corporate, isbn, issn, language, lccn, local_id, oclc, personal, publisher, series, "
        "standard_identifier, subject, title, year",
        'backend.sru.indexes.title: must be a CQL index name, or "" for none',
        "backend.sru.index_source: 'guess' is not one of profile, explain",
        "backend.sru.sort_keys.size: unknown field: one of title, author, year, local_id",
    ]


def test_base_url_required() -> None:
    with pytest.raises(SruSettingsError, match=r"backend.sru.base_url: required"):
        read_settings({}, "backend.sru")


def test_a_good_table() -> None:
    settings = read_settings({
        "base_url": "https://opac.example.org/sru", "version": "1.2", "username": "u",
        "password": "p", "indexes": {"series": "bath.seriesTitle", "oclc": "", "any": ""},
        "sort_keys": {"title": "dc.title"}, "profile": "symphony", "timeout": 2,
        "page_size": 20}, "backend.sru")
    assert settings.indexes["series"] == "bath.seriesTitle"
    assert "any" not in settings.indexes and settings.indexes["title"] == "dc.title"
    assert settings.sort_keys == {SortField.TITLE: "dc.title"}
    assert settings.profile.name == "symphony" and settings.timeout == 2.0


def test_the_catalogue_provides_the_interfaces() -> None:
    from twisted.internet.testing import MemoryReactorClock
    from zope.interface.verify import verifyObject

    from gateway.backends.upstream.sru.catalogue import SruResultSet, UpstreamSruCatalogue
    from gateway.backends.upstream.sru.client import SruClient
    from gateway.backends.upstream.sru.cql_writer import DEFAULT_INDEXES, write_cql
    from gateway.domain.catalogue import ICatalogue, IResultSet
    from gateway.domain.query import WordTerm

    settings = read_settings({"base_url": "http://127.0.0.1:9/x"}, "backend.sru")
    catalogue = UpstreamSruCatalogue(SruClient(MemoryReactorClock(), settings.base_url),
                                     settings)
    assert verifyObject(ICatalogue, catalogue)
    assert verifyObject(IResultSet, SruResultSet(write_cql(WordTerm("title", "a"),
                                                           DEFAULT_INDEXES), 3))
    assert catalogue.health() == {"kind": "sru", "target": "http://127.0.0.1:9/x",
                                  "status": "unknown"}
