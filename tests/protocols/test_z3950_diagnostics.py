"""The Bib-1 diagnostic names the metrics use agree with YAZ's table (read in place from
../shared; skipped without it) and turn outcomes into names."""

from __future__ import annotations

from pathlib import Path

from protocols.z3950.diagnostics import BIB1_DIAGNOSTICS, diagnostic_name, outcome_name

KNOWN_DIFFERENCES = {15}
"""YAZ's table reads "Record no authorized..." for 15; ours keeps the standard's wording."""


def test_names_agree_with_yaz(shared_dir: Path) -> None:
    table = shared_dir / "z3950" / "data" / "bib1-diagnostics.tsv"
    reference = {}
    for line in table.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            number, text = line.split("\t", 1)
            reference[int(number)] = " ".join(text.split())
    for code, name in BIB1_DIAGNOSTICS.items():
        if code not in KNOWN_DIFFERENCES:
            assert reference.get(code) == name, code


def test_outcome_names() -> None:
    assert diagnostic_name(114) == "Unsupported Use attribute"
    assert diagnostic_name(99999) == "unknown"
    assert outcome_name("diagnostic 2") == "Temporary system error"
    assert outcome_name("success") == "success"
    assert outcome_name("protocolError") == "protocolError"
