# -*- test-case-name: tests.gateway.test_identifiers -*-
"""ISBN, ISSN and OCLC normalisation, and PIN hashing."""

from __future__ import annotations

from gateway.backends.embedded.identifiers import (
    isbn_forms,
    normalise_issn,
    normalise_oclc,
    search_forms,
)
from gateway.secrets import hash_secret, keyed_hash, verify_secret


def test_isbn_both_forms() -> None:
    """An ISBN-10 or ISBN-13, hyphenated or not, gives both normalised forms."""
    assert isbn_forms("0-262-01153-0 (hbk.)") == ["9780262011532", "0262011530"]
    assert isbn_forms("9780262011532") == ["9780262011532", "0262011530"]
    assert isbn_forms("080442957X") == ["9780804429573", "080442957X"]
    assert isbn_forms("979-10-90636-07-1") == ["9791090636071"]


def test_isbn_with_bad_check_digit_has_no_forms() -> None:
    """A wrong check digit is not matched as if it were valid."""
    assert isbn_forms("0-262-01153-1") == []
    assert search_forms("isbn", "0-262-01153-1") == ["0262011531"]


def test_issn_and_oclc() -> None:
    """ISSNs lose their hyphen; OCLC numbers lose prefixes and leading zeros."""
    assert normalise_issn("ISSN 0317-847x") == "0317847X"
    assert normalise_oclc("(OCoLC)ocm00012345") == "12345"
    assert normalise_oclc("(OCoLC)on1234567890") == "1234567890"
    assert normalise_oclc("(DLC)123") is None


def test_pin_hash_round_trip() -> None:
    """A PIN verifies against its salted hash, a wrong one does not, and salts differ."""
    stored = hash_secret("1234")
    assert "1234" not in stored and stored.startswith("scrypt$")
    assert verify_secret("1234", stored)
    assert not verify_secret("4321", stored)
    assert not verify_secret("1234", None) and not verify_secret("1234", "garbage")
    assert hash_secret("1234") != stored


def test_keyed_hash_is_stable_per_key() -> None:
    """The same patron id hashes alike under one key and differently under another."""
    assert keyed_hash(b"k1", "P0001") == keyed_hash(b"k1", "P0001")
    assert keyed_hash(b"k1", "P0001") != keyed_hash(b"k2", "P0001")
