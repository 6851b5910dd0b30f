"""Sierra record numbers: check digits of known records, every written form read as the same
record, wrong check digits refused, and the forms sent to the LMS and kept by the gateway."""

from __future__ import annotations

import pytest

from protocols.ncip.sierra_ids import (
    BadCheckDigit,
    RecordNumber,
    canonical,
    check_digit,
    parse,
    parse_bare,
    to_lms,
)

# Published record numbers with their check digits (Wellcome Collection's and the University
# of Sydney's Sierra tools document these), and one whose remainder is 10.
KNOWN = [("1024364", "1"), ("1952770", "6"), ("3384632", "7"), ("3696836", "5"),
         ("1234567", "2"), ("1000001", "x")]


@pytest.mark.parametrize("digits,expected", KNOWN)
def test_check_digits_of_known_records(digits: str, expected: str) -> None:
    assert check_digit(digits) == expected


def test_check_digit_weights_run_from_the_right_without_cycling() -> None:
    assert check_digit("0000001") == "2"          # 1 * 2
    assert check_digit("1000000") == "8"          # 1 * 8: the weights do not wrap at 7
    assert check_digit("1000001") == "x"          # 8 + 2 = 10
    assert check_digit("0000000") == "0"
    with pytest.raises(ValueError):
        check_digit("12a4567")


@pytest.mark.parametrize("text", [".b10243641", "b10243641", ".b1024364", "b1024364",
                                  ".b1024364a", "B1024364A", " .b10243641 ", ".B10243641"])
def test_every_written_form_is_the_same_record(text: str) -> None:
    assert parse(text) == RecordNumber("b", "1024364")
    assert canonical(text, "b") == ".b10243641"
    assert to_lms(text, "b") == "1024364"


def test_x_check_digit_and_eight_digit_systems() -> None:
    assert parse(".i1000001x") == RecordNumber("i", "1000001")
    assert parse(".I1000001X") == RecordNumber("i", "1000001")
    assert RecordNumber("i", "1000001").full == ".i1000001x"
    eight = "12345678"
    full = f".b{eight}{check_digit(eight)}"
    assert parse(full, width=8) == RecordNumber("b", eight)
    assert parse(f"b{eight}a", width=8) == RecordNumber("b", eight)
    assert parse(f"b{eight}", width=8) == RecordNumber("b", eight)
    assert parse(full) is None                    # nine characters in a seven-digit system


@pytest.mark.parametrize("text", [".b10243642", "b10243649", ".i19527707", ".p1234567x",
                                  ".i10000010", "p33846320"])
def test_wrong_check_digits_are_refused(text: str) -> None:
    with pytest.raises(BadCheckDigit):
        parse(text)


@pytest.mark.parametrize("text", ["39999000000012", "P100", "LEND-001", ".b123456",
                                  "b123456789012", ".z1234567", "b1234567-1", "", "bb1234567"])
def test_not_record_numbers(text: str) -> None:
    assert parse(text) is None
    assert to_lms(text, "i") == text and canonical(text, "i") == text


def test_kind_must_match_where_the_context_says_it() -> None:
    assert parse(".i19527706", "i") == RecordNumber("i", "1952770")
    assert parse(".i19527706", "p") is None
    assert to_lms(".i19527706", "p") == ".i19527706"   # not a patron number: left alone


def test_bare_digits_are_a_bib_id_only_where_the_field_says_so() -> None:
    assert parse("1024364") is None
    assert parse_bare("1024364", "b") == RecordNumber("b", "1024364")
    assert parse_bare("10243641", "b") == RecordNumber("b", "1024364")
    assert to_lms("10243641", "b") == "1024364"
    assert canonical("1024364", "b") == ".b10243641"
    with pytest.raises(BadCheckDigit):
        parse_bare("10243649", "b")
    assert parse_bare("123456", "b") is None


def test_items_and_patrons_go_to_the_lms_as_weak_keys() -> None:
    assert to_lms(".i19527706", "i") == "i1952770"
    assert to_lms("i1952770a", "i") == "i1952770"
    assert to_lms(".p3384632", "p") == "p3384632"
    assert canonical("p33846327", "p") == ".p33846327"
    assert to_lms("23529000000011", "p") == "23529000000011"     # a barcode: unchanged
