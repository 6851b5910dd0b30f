"""protocols.iso2709: the plain layout, read field by field and refused whenever it is not."""

from __future__ import annotations

from collections.abc import Callable

import pymarc
import pytest

from protocols.iso2709 import is_control_tag, plain_fields


def _record() -> bytes:
    record = pymarc.Record(force_utf8=True)
    record.add_field(
        pymarc.Field(tag="001", data="rec-1"),
        pymarc.Field(tag="245", indicators=pymarc.Indicators("1", "0"),
                     subfields=[pymarc.Subfield("a", "Über den Fluss"),
                                pymarc.Subfield("c", "Ｔｅｓｔ")]),
        pymarc.Field(tag="650", indicators=pymarc.Indicators(" ", "0"),
                     subfields=[pymarc.Subfield("a", "Rivers")]),
    )
    return record.as_marc()


def test_a_record_pymarc_wrote_is_read_field_by_field_as_pymarc_reads_it() -> None:
    data = _record()
    fields = plain_fields(data)
    assert fields is not None
    read = pymarc.Record(data, force_utf8=True)
    assert [tag for tag, _ in fields] == [field.tag for field in read.fields]
    assert fields[0] == ("001", b"rec-1")
    assert fields[1][1].startswith(b"10\x1fa") and "Über".encode() in fields[1][1]


@pytest.mark.parametrize("tag, control", [("001", True), ("009", True), ("010", False),
                                          ("245", False), ("00A", False)])
def test_control_tags_are_the_ones_pymarc_takes_for_control_fields(tag: str,
                                                                     control: bool) -> None:
    assert is_control_tag(tag) is control


def _swap_entries(data: bytes) -> bytes:
    """The first two directory entries exchanged: the fields no longer come in directory order."""
    first, second = data[24:36], data[36:48]
    return data[:24] + second + first + data[48:]


def _replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new)
    return data.replace(old, new, 1)


@pytest.mark.parametrize("spoil", [
    pytest.param(lambda d: d[:-1], id="no record terminator"),
    pytest.param(lambda d: b"0000" + d[4:], id="length not the record's"),
    pytest.param(lambda d: b"0x" + d[2:], id="length not a number"),
    pytest.param(lambda d: d[:12] + b"000x0" + d[17:], id="base not a number"),
    pytest.param(lambda d: d[:12] + b"%05d" % (int(d[12:17]) - 1) + d[17:], id="base off by one"),
    pytest.param(_swap_entries, id="fields out of directory order"),
    pytest.param(lambda d: _replace(d, b"rec-1", b"re\x1e-1"), id="terminator inside a field"),
    pytest.param(lambda d: _replace(d, b"10\x1fa", b"1\x1faa"), id="one indicator"),
    pytest.param(lambda d: _replace(d, b"10\x1fa", b"1\xc3\x1fa"), id="non-ASCII indicator"),
    pytest.param(lambda d: d[:5] + "é".encode("latin-1") + d[6:], id="non-ASCII leader"),
    pytest.param(lambda d: d[:24], id="leader only"),
])
def test_anything_else_is_refused(spoil: Callable[[bytes], bytes]) -> None:
    assert plain_fields(spoil(_record())) is None


def test_a_field_longer_than_its_directory_entry_is_refused() -> None:
    data = _record()
    directory_end = int(data[12:17]) - 1
    entries = [data[i:i + 12] for i in range(24, directory_end, 12)]
    longer = entries[0][:3] + b"%04d" % (int(entries[0][3:7]) + 1) + entries[0][7:]
    assert plain_fields(data[:24] + longer + b"".join(entries[1:]) + data[directory_end:]) \
        is None
