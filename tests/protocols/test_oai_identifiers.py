"""OAI identifiers: building, reading back, refusing foreign ones, the Identify description."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from protocols.oai.errors import OAIError, OAIErrorCode
from protocols.oai.identifiers import OAI_IDENTIFIER_NS, OAIIdentifierScheme

SCHEME = OAIIdentifierScheme("library.example.org")


def test_identifier_and_back() -> None:
    """A record id becomes C{oai:<domain>:<id>} and reads back."""
    assert SCHEME.identifier("rec000123") == "oai:library.example.org:rec000123"
    assert SCHEME.local_id("oai:library.example.org:rec000123") == "rec000123"


def test_excluded_characters_are_escaped() -> None:
    """Spaces, non-ASCII and C{%} are %-escaped so the identifier stays in the scheme."""
    identifier = SCHEME.identifier("a b/é%")
    assert identifier == "oai:library.example.org:a%20b/%C3%A9%25"
    assert SCHEME.local_id(identifier) == "a b/é%"


@pytest.mark.parametrize("identifier", ["", "oai:other.example.org:1", "oai:library.example.org:",
                                        "oai:library.example.org:a b", "rec1"])
def test_foreign_identifiers_do_not_exist(identifier: str) -> None:
    """Identifiers of other repositories or outside the scheme are C{idDoesNotExist}."""
    with pytest.raises(OAIError) as caught:
        SCHEME.local_id(identifier)
    assert caught.value.code is OAIErrorCode.ID_DOES_NOT_EXIST


def test_bad_setup() -> None:
    """A repository identifier must be a domain name; local ids cannot be empty."""
    with pytest.raises(ValueError):
        OAIIdentifierScheme("localhost")
    with pytest.raises(ValueError):
        SCHEME.identifier("")


def test_description() -> None:
    """The Identify description names the scheme, repository and a sample."""
    root = etree.fromstring(SCHEME.description("x&y"))
    ns = {"i": OAI_IDENTIFIER_NS}
    assert root.findtext("i:repositoryIdentifier", namespaces=ns) == "library.example.org"
    assert root.findtext("i:sampleIdentifier", namespaces=ns) == "oai:library.example.org:x&y"


@given(st.text(min_size=1, max_size=30))
def test_any_local_id_round_trips(local_id: str) -> None:
    """Every non-empty record id survives the trip through an OAI identifier."""
    try:
        identifier = SCHEME.identifier(local_id)
    except UnicodeEncodeError:
        return  # lone surrogates cannot be written as UTF-8 at all
    assert SCHEME.local_id(identifier) == local_id
