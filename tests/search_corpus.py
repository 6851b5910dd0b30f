"""A small catalogue in many scripts, and a Zebra loaded with the same records.

The records exercise what issue 14 asks of search: words in Cyrillic, Greek, Polish, German,
CJK, Hebrew and Arabic, decomposed and precomposed UTF-8, compatibility characters, a MARC-8
record, added authors (700/710/711/720, 245 $c), variant, uniform and series titles, LCCNs,
language codes and a record with more than a thousand items.

:func:`start_zebra` indexes them with Zebra (Debian ``idzebra-2.0``) using Zebra's stock MARC 21
profile (``marc21.abs``) plus the lines stock ``usmarc.abs`` uses for 1=1004-1006 and an LCCN
line, and an ICU chain that folds as :func:`gateway.backends.embedded.indexing.fold` does (NFKD,
case folding, marks removed), so hit counts can be compared query by query. The configuration is
written here (``../shared/z3950/zebra-demo/`` has the working example it follows).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pymarc

from protocols.z3950.ber import encode_length
from protocols.z3950.pqf import And, AndNot, Node, Or, Term
from tests.marc_fixtures import datafield, iso2709

ZEBRASRV = shutil.which("zebrasrv")
ZEBRAIDX = shutil.which("zebraidx")
ZEBRA_TAB = Path("/usr/share/idzebra-2.0/tab")

Spec = tuple[str, str, tuple[tuple[str, str], ...]]
"""A data field: (tag, indicators, ((code, value), ...))."""

MANY_ITEMS = 1001


def _record(local_id: str, lang: str, year: str, *fields: Spec) -> pymarc.Record:
    record = pymarc.Record(force_utf8=True)
    record.leader = pymarc.Leader("00000nam a2200000 i 4500")
    record.add_field(pymarc.Field(tag="001", data=local_id))
    record.add_field(pymarc.Field(tag="008", data=f"260101s{year}    xx            000 0 {lang} d"))
    for tag, ind, pairs in fields:
        record.add_field(pymarc.Field(tag=tag, indicators=pymarc.Indicators(ind[0], ind[1]),
                                      subfields=[pymarc.Subfield(c, v) for c, v in pairs]))
    return record


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def corpus() -> list[pymarc.Record]:
    """The UTF-8 records (the MARC-8 one is :func:`marc8_record`)."""
    return [
        _record("S001", "rus", "1869",
                ("010", "  ", (("a", "n 78-890351"),)),
                ("100", "1 ", (("a", "Толстой, Лев Николаевич,"), ("d", "1828-1910."))),
                ("245", "10", (("a", "Война и мир /"), ("c", "Лев Толстой ; перевод Ёлкина."))),
                ("246", "31", (("a", "War and peace"),)),
                ("264", " 1", (("a", "Москва :"), ("b", "Художественная литература,"),
                               ("c", "1869."))),
                ("490", "0 ", (("a", "Русская классика"),)),
                ("650", " 0", (("a", "Наполеоновские войны"),)),
                ("700", "1 ", (("a", "Maude, Aylmer,"), ("e", "translator."))),
                ("852", "  ", (("a", "ZS"), ("b", "MAIN"), ("p", "S001-1")))),
        _record("S002", "grc", "1950",
                ("100", "0 ", (("a", "Ὅμηρος."),)),
                ("240", "10", (("a", "Iliad."),)),
                ("245", "10", (("a", "Ἰλιάς :"), ("b", "ῥαψῳδία πρώτη."))),
                ("650", " 0", (("a", "Τρωικός πόλεμος"),)),
                ("852", "  ", (("a", "ZS"), ("b", "MAIN"), ("p", "S002-1")))),
        _record("S003", "fre", "1869",
                ("100", "1 ", (("a", _nfd("Flaubert, Gustave,")),)),
                ("245", "13", (("a", _nfd("L'éducation sentimentale :")),
                               ("b", _nfd("histoire d'un jeune homme.")))),
                ("650", " 0", (("a", _nfd("Français")), ("x", _nfd("Roman réaliste")))),
                ("852", "  ", (("a", "ZS"), ("b", "MAIN"), ("p", "S003-1")))),
        _record("S004", "pol", "1834",
                ("100", "1 ", (("a", "Mickiewicz, Adam."),)),
                ("245", "10", (("a", "Pan Tadeusz, czyli Ostatni zajazd na Litwie."),)),
                ("264", " 1", (("a", "Łódź :"), ("b", "Wydawnictwo Łódzkie,"), ("c", "1834."))),
                ("246", "30", (("a", "Zażółć gęślą jaźń."),)),
                ("852", "  ", (("a", "ZS"), ("b", "MAIN"), ("p", "S004-1")))),
        _record("S005", "ger", "1950",
                ("100", "1 ", (("a", "Müller, Jürgen."),)),
                ("245", "14", (("a", "Die Straße der Ölsucher."),)),
                ("852", "  ", (("a", "ZS"), ("b", "MAIN"), ("p", "S005-1")))),
        _record("S006", "eng", "2001",
                ("100", "1 ", (("a", "Ｓｍｉｔｈ, Ｊｏｈｎ."),)),
                ("245", "14", (("a", "The ﬁnal ﬂight of the Æther."),)),
                ("852", "  ", (("a", "ZS"), ("b", "MAIN"), ("p", "S006-1")))),
        _record("S007", "jpn", "1977",
                ("245", "10", (("a", "東京 大学 の 歴史"),)),
                ("852", "  ", (("a", "ZS"), ("b", "MAIN"), ("p", "S007-1")))),
        _record("S008", "heb", "1990",
                ("245", "10", (("a", "שָׁלוֹם עֲלֵיכֶם"),)),
                ("246", "31", (("a", "مُحَمَّد وَالقُرآن"),)),
                ("852", "  ", (("a", "ZS"), ("b", "MAIN"), ("p", "S008-1")))),
        _record("S009", "eng", "1985",
                ("010", "  ", (("a", "  85012345 "),)),
                ("100", "1 ", (("a", "Abelson, Harold."),)),
                ("130", "0 ", (("a", "Wizardry classics."),)),
                ("210", "0 ", (("a", "Struct. interp. comput. progr."),)),
                ("222", " 0", (("a", "Structure keytitle"),)),
                ("240", "10", (("a", "Programmes informatiques."),)),
                ("242", "10", (("a", "Struktur und Interpretation von Computerprogrammen."),)),
                ("245", "10", (("a", "Structure and interpretation of computer programs /"),
                               ("c", "Harold Abelson and Gerald Jay Sussman"
                                     " with Julie Grinberg."))),
                ("246", "30", (("a", "SICP"),)),
                ("247", "10", (("a", "Scheme lectures"),)),
                ("264", " 1", (("a", "Cambridge :"), ("b", "MIT Press,"), ("c", "1985."))),
                ("440", " 0", (("a", "Electrical engineering series"),)),
                ("700", "1 ", (("a", "Sussman, Gerald Jay."),)),
                ("710", "2 ", (("a", "Massachusetts Institute of Technology."),)),
                ("711", "2 ", (("a", "Symposium on Lisp"),)),
                ("720", "1 ", (("a", "Wisdom, Wendy"),)),
                ("730", "0 ", (("a", "Lambda papers."),)),
                ("740", "0 ", (("a", "Purple book."),)),
                ("800", "1 ", (("a", "Knuth, Donald."), ("t", "Art of programming."))),
                ("810", "2 ", (("a", "Bell Laboratories."), ("t", "Technical memoranda."))),
                ("830", " 0", (("a", "Computer science library."),)),
                ("852", "  ", (("a", "ZS"), ("b", "MAIN"), ("p", "S009-1")))),
        _record("S010", "eng", "2000",
                ("110", "2 ", (("a", "Library of Congress."),)),
                ("245", "10", (("a", "Holdings galore."),)),
                *(("852", "  ", (("a", "ZS"), ("b", "MAIN"), ("p", f"S010-{n:04d}")))
                  for n in range(1, MANY_ITEMS + 1))),
        _record("s011", "eng", "1999",
                ("111", "2 ", (("a", "Symposium on Lisp"),)),
                ("245", "10", (("a", "Proceedings of the symposium."),)),
                ("852", "  ", (("a", "ZS"), ("b", "MAIN"), ("p", "S011-1")))),
    ]


def marc8_record() -> bytes:
    """S012 as a MARC-8 ISO 2709 record (leader/09 blank): "Études" with a combining acute
    (0xE2) before its E, as MARC-8 writes diacritics."""
    return iso2709([("001", b"S012"),
                    ("008", b"260101s1975    xx            000 0 fre d"),
                    ("100", b"1 \x1faCamus, Albert."),
                    ("245", b"10\x1fa\xe2Etudes litt\xe2eraires."),
                    ("852", b"  \x1faZS\x1fbMAIN\x1fpS012-1")], coding=b" ")


def write_utf8(path: Path) -> Path:
    """All the records, the MARC-8 one converted, as one UTF-8 ISO 2709 file (for Zebra)."""
    data = b"".join(record.as_marc() for record in corpus())
    data += iso2709([("001", b"S012"),
                     ("008", b"260101s1975    xx            000 0 fre d"),
                     ("100", datafield("1 ", "a", "Camus, Albert.")),
                     ("245", datafield("10", "a", _nfd("Études littéraires.")))])
    path.write_bytes(data)
    return path


def write_sources(directory: Path) -> list[Path]:
    """The files ``interlend import-marc`` loads: the UTF-8 records and the MARC-8 one."""
    directory.mkdir(parents=True, exist_ok=True)
    utf8 = directory / "corpus.mrc"
    utf8.write_bytes(b"".join(record.as_marc() for record in corpus()))
    marc8 = directory / "marc8.mrc"
    marc8.write_bytes(marc8_record())
    return [utf8, marc8]


# -- queries too deep for pyasn1 ---------------------------------------------------------------


def _tlv(tag: bytes, *content: bytes) -> bytes:
    body = b"".join(content)
    return tag + encode_length(len(body)) + body


def _rpn(node: Node) -> bytes:
    """A type-1 RPN structure in BER, written without recursion (pyasn1 cannot go 2,000 deep)."""
    out: list[bytes] = []
    pending: list[tuple[Node, bool]] = [(node, False)]
    while pending:
        current, done = pending.pop()
        if isinstance(current, Term):
            (attr,) = current.attributes
            assert isinstance(attr.value, int), "deep queries use numeric attribute values"
            element = _tlv(b"\x30", _tlv(b"\x9f\x78", bytes([attr.type])),
                           _tlv(b"\x9f\x79", bytes([attr.value])))
            out.append(_tlv(b"\xa0", _tlv(b"\xbf\x66", _tlv(b"\xbf\x2c", element),
                                          _tlv(b"\x9f\x2d", current.value.encode()))))
        elif done:
            right, left = out.pop(), out.pop()
            op = {And: b"\x80", Or: b"\x81", AndNot: b"\x82"}[type(current)] + b"\x00"
            out.append(_tlv(b"\xa1", left, right, _tlv(b"\xbf\x2e", op)))
        else:
            assert isinstance(current, (And, Or, AndNot))
            pending += ((current, True), (current.right, False), (current.left, False))
    return out[0]


def rpn_search_request(node: Node) -> bytes:
    """A searchRequest PDU (result set "default", database "Default") with a bib-1 type-1
    query, as the codec writes it, for trees too deep for pyasn1."""
    bib1 = bytes([0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x13, 0x03, 0x01])
    return _tlv(b"\xb6", b"\x8d\x01\x00", b"\x8e\x01\x01", b"\x8f\x01\x00",
                b"\x90\x01\x01", _tlv(b"\x91", b"default"),
                _tlv(b"\xb2", _tlv(b"\x9f\x69", b"Default")),
                _tlv(b"\xb5", _tlv(b"\xa1", bib1, _rpn(node))))


# -- Zebra ----------------------------------------------------------------------------------------

_FOLD = """  <transform rule="Any-NFKD"/>
  <casemap rule="f"/>
  <transform rule="Any-NFKD; [:Nonspacing Mark:] Remove; Any-Lower"/>
  <transliterate rule="ł > l; đ > d; ð > d; ø > o; ħ > h; ı > i; æ > ae; œ > oe; þ > th;"/>
"""

_WORDS_ICU = """<icu_chain locale="">
  <transform rule="[:Control:] Any-Remove"/>
  <tokenize rule="l"/>
  <transform rule="[[:WhiteSpace:][:Punctuation:]] Remove"/>
  <display/>
""" + _FOLD + "</icu_chain>\n"

_PHRASES_ICU = """<icu_chain locale="">
  <transform rule="[:Control:] Any-Remove"/>
  <transform rule="[:Punctuation:] Remove"/>
  <display/>
""" + _FOLD + "</icu_chain>\n"

_INDEX_TYPES = """index w
completeness 0
position 1
alwaysmatches 1
firstinfield 1
icuchain words-interlend.xml
index p
completeness 1
icuchain phrases-interlend.xml
index 0
completeness 0
position 1
charmap @
sort s
completeness 1
charmap string.chr
"""

_ABS_ADDED = {  # stock marc21.abs lines that get more indexes (as stock usmarc.abs maps them)
    "100": "Author-name-personal", "700": "Author-name-personal",
    "800": "Author-name-personal", "110": "Author-name-corporate",
    "710": "Author-name-corporate", "810": "Author-name-corporate",
    "111": "Author-name-conference", "711": "Author-name-conference",
    "811": "Author-name-conference", "440": "Title-series", "490": "Title-series",
    "830": "Title-series",
}
_ABS_NEW = """encoding utf-8
melm 001\t\tLocal-number,Local-number:p
melm 010$a\t\tLC-card-number
melm 720\t\tauthor
melm 210\t\ttitle
melm 222\t\ttitle
"""


def _marc21_abs() -> str:
    """Stock marc21.abs with the indexes of :data:`_ABS_ADDED` and :data:`_ABS_NEW`."""
    lines = []
    for line in (ZEBRA_TAB / "marc21.abs").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "melm" and not parts[1].endswith("$t"):
            added = _ABS_ADDED.get(parts[1].split("$")[0])
            if added is not None:
                line += "," + added
        lines.append(line)
    return "\n".join(lines) + "\n" + _ABS_NEW


@dataclass
class Zebra:
    """A running zebrasrv on loopback."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_zebra(work: Path, marc: Path) -> Zebra:
    """Index ``marc`` (UTF-8 ISO 2709) with Zebra in ``work`` and serve it on a free port."""
    assert ZEBRASRV is not None and ZEBRAIDX is not None
    tab = work / "tab"
    for name in ("records", "tab", "reg", "shadow", "lock", "tmp"):
        (work / name).mkdir(parents=True, exist_ok=True)
    shutil.copy(marc, work / "records" / "corpus.mrc")
    (tab / "words-interlend.xml").write_text(_WORDS_ICU)
    (tab / "phrases-interlend.xml").write_text(_PHRASES_ICU)
    (tab / "interlend.idx").write_text(_INDEX_TYPES)
    (tab / "marc21.abs").write_text(_marc21_abs())
    (work / "zebra.cfg").write_text(
        f"profilePath: {tab}:{ZEBRA_TAB}\n"
        "modulePath: /usr/lib/x86_64-linux-gnu/idzebra-2.0/modules:/usr/lib/idzebra-2.0/modules\n"
        "attset: bib1.att\nattset: explain.att\nindex: interlend.idx\n"
        "recordType: grs.marcxml.marc21\ndatabase: Default\n"
        f"register: {work}/reg:100M\nshadow: {work}/shadow:100M\nlockDir: {work}/lock\n"
        f"keyTmpDir: {work}/tmp\n")
    for args in (["init"], ["-t", "grs.marcxml.marc21", "update", "records"], ["commit"]):
        subprocess.run([ZEBRAIDX, "-c", "zebra.cfg", *args], cwd=work, check=True,
                       capture_output=True, timeout=120)
    port = _free_port()
    log = work / "zebrasrv.log"
    process = subprocess.Popen([ZEBRASRV, "-c", "zebra.cfg", "-l", str(log),
                                f"tcp:127.0.0.1:{port}"], cwd=work,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Zebra(process, port, log)
