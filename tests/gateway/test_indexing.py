"""One folding for index and query (issue 14.1), what is indexed where (14.2-14.4), and long
boolean queries compiled without recursion or deep SQL (14.5)."""

from __future__ import annotations

import random
import sqlite3
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

import gateway.backends.embedded.search as search
from gateway.backends.embedded.importers import import_marc
from gateway.backends.embedded.indexing import (
    WORD_COLUMNS,
    fold,
    index_texts,
    tokenize,
    written_forms,
)
from gateway.backends.embedded.records import extract_fields, upsert_record
from gateway.backends.embedded.search import run_plan
from gateway.storage.store import open_database
from gateway.z3950.diagnostics import Bib1Error
from gateway.z3950.query import plan_query
from protocols.z3950 import client, codec, fastber
from protocols.z3950.ber import BERFramer
from protocols.z3950.pqf import And, AndNot, Attribute, Node, Or, Query, Term, parse_pqf
from tests.search_corpus import corpus, marc8_record, rpn_search_request

# (written in a record, written in a query): both must fold to the same words.
SCRIPTS = [
    ("Éducation", "education"),                       # Latin, precomposed
    (unicodedata.normalize("NFD", "Éducation"), "ÉDUCATION"),  # decomposed record
    ("éducation", unicodedata.normalize("NFD", "éducation")),  # decomposed query
    ("Война", "война"),                               # Cyrillic й
    ("Война", "воина"),
    ("Ёлка", "елка"),                                 # Cyrillic ё
    (unicodedata.normalize("NFD", "Йод"), "йод"),     # decomposed Cyrillic
    ("Ἰλιάς", "ιλιας"),                               # polytonic Greek, final sigma
    ("ΆΣΜΑ", "ασμα"),
    ("ῥαψῳδία", "ραψωιδια"),                          # ypogegrammeni folds to iota
    ("Zażółć gęślą jaźń", "zazolc gesla jazn"),       # Polish, ł
    ("Łódź", "lodz"),
    ("Straße", "strasse"),                            # German ß
    ("STRASSE", "straße"),
    ("ﬁnal ﬂight", "final flight"),                   # compatibility ligatures
    ("Ｓｍｉｔｈ", "smith"),                           # fullwidth
    ("Æther Øre", "aether ore"),
    ("東京 大学", "東京 大学"),                        # CJK: a run is one word
    ("שָׁלוֹם", "שלום"),                               # Hebrew points
    ("مُحَمَّد", "محمد"),                               # Arabic harakat
]


@pytest.mark.parametrize(("written", "asked"), SCRIPTS)
def test_index_and_query_fold_alike(written: str, asked: str) -> None:
    assert tokenize(written) == tokenize(asked)
    assert all(word == fold(word) for word in tokenize(written))  # folding is idempotent


def test_decomposed_input_is_not_split_at_its_marks() -> None:
    """A combining mark inside a word does not end the word (it did before: tokens were cut
    before folding)."""
    assert tokenize(unicodedata.normalize("NFD", "Войной мира")) == ("воинои", "мира")


def test_written_forms_map_folded_words_back() -> None:
    forms = written_forms(unicodedata.normalize("NFD", "L'Éducation — Война, Ἰλιάς"))
    assert forms == {"l": "L", "education": "Éducation", "воина": "Война", "ιλιασ": "Ἰλιάς"}


def _db(tmp_path: Path) -> sqlite3.Connection:
    conn = open_database(tmp_path / "catalogue.sqlite3")
    for record in corpus():
        upsert_record(conn, record)
    conn.commit()
    return conn


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = _db(tmp_path)
    yield db
    db.close()


def count(conn: sqlite3.Connection, pqf: str | Query) -> int:
    query = parse_pqf(pqf) if isinstance(pqf, str) else pqf
    return run_plan(conn, plan_query(query, {})).count


@pytest.mark.parametrize(("pqf", "hits"), [
    ("@attr 1=4 воина", 1), ("@attr 1=4 ΙΛΙΑΣ", 1), ("@attr 1=4 ﬁnal", 1),
    ("@attr 1=21 francais", 1), ("@attr 1=4 Straße", 1), ("@attr 1=4 lodz", 0),
    ("@attr 1=1018 lodzkie", 1),                       # publisher (1=1018)
    ("@attr 1=1003 sussman", 1), ("@attr 1=1003 grinberg", 1), ("@attr 1=1003 wisdom", 1),
    ("@attr 1=1004 sussman", 1), ("@attr 1=1004 massachusetts", 0),
    ("@attr 1=1005 massachusetts", 1), ("@attr 1=1006 symposium", 2),
    ("@attr 1=2 congress", 1), ("@attr 1=3 lisp", 2), ("@attr 1=1002 maude", 1),
    ("@attr 1=4 wizardry", 1), ("@attr 1=4 keytitle", 1), ("@attr 1=4 memoranda", 1),
    ("@attr 1=5 memoranda", 1), ("@attr 1=5 electrical", 1), ("@attr 1=5 wizardry", 0),
    ("@attr 1=9 n78890351", 1), ("@attr 1=9 \"n 78-890351\"", 1), ("@attr 1=9 85012345", 1),
    ("@attr 1=9 85-12345", 1), ("@attr 1=54 RUS", 1), ("@attr 1=54 eng", 4),
    ("@attr 1=12 s011", 1), ("@attr 1=12 S011", 1), ("@attr 1=12 @attr 5=1 s01", 2),
    ("@attr 1=30 1869", 2), ("@attr 1=31 @attr 5=1 19", 6), ("@attr 1=31 @attr 5=1 1", 9),
    ('@attr 1=4 @attr 6=3 "Ἰλιάς"', 1), ('@attr 1=4 @attr 6=3 "ιλιας ραψωιδια πρωτη"', 1),
    ('@attr 1=4 @attr 6=3 "Structure and interpretation of computer programs"', 1),
    ('@attr 1=4 @attr 6=3 "Structure and interpretation"', 0),
    ('@attr 1=4 @attr 6=3 @attr 5=1 "Structure and interp"', 1),
    ('@attr 1=4 @attr 6=3 "War and peace"', 1),      # a variant title, complete
])
def test_access_points(conn: sqlite3.Connection, pqf: str, hits: int) -> None:
    assert count(conn, pqf) == hits


@pytest.mark.parametrize("pqf", ["@attr 1=1032 x", "@attr 1=1019 x", "@attr 1=6 x"])
def test_other_uses_stay_114(conn: sqlite3.Connection, pqf: str) -> None:
    with pytest.raises(Bib1Error) as info:
        count(conn, pqf)
    assert info.value.code == 114


def test_columns_of_a_record_with_every_kind_of_name_and_title() -> None:
    texts = dict(zip(WORD_COLUMNS, index_texts(
        [(f.tag, f.data, f.subfields if not f.is_control_field() else ())
         for f in corpus()[8].fields]), strict=True))
    assert "Sussman, Gerald Jay." in texts["author"] and "Wisdom, Wendy" in texts["author"]
    assert "Julie Grinberg" in texts["author"] and "Art of programming" not in texts["author"]
    assert "Art of programming." in texts["title"] and "Art of programming." in texts["series"]
    assert "Knuth, Donald." in texts["personal"]
    assert texts["corporate"].splitlines() == ["Massachusetts Institute of Technology.",
                                               "Bell Laboratories."]
    assert texts["publisher"] == "MIT Press,"


def test_marc8_record_is_found_as_utf8(tmp_path: Path) -> None:
    """A MARC-8 record (diacritic before its letter) is indexed like its UTF-8 form."""
    conn = open_database(tmp_path / "m8.sqlite3")
    path = tmp_path / "m8.mrc"
    path.write_bytes(marc8_record())
    problems: list[str] = []
    assert import_marc(conn, [path], report=problems.append).records_created == 1, problems
    assert count(conn, "@attr 1=4 Études") == count(conn, "@attr 1=4 etudes") == 1
    assert count(conn, "@attr 1=4 litteraires") == 1


def test_extracted_identifiers() -> None:
    kinds = dict.fromkeys(kind for kind, _ in extract_fields(corpus()[0]).identifiers)
    assert list(kinds) == ["local", "lccn", "language", "title"]


# -- long boolean queries (14.5) --------------------------------------------------------------

WORDS = ["war", "wizardry", "sicp", "lambda", "purple", "holdings", "nothing", "война",
         "tadeusz", "symposium", "structure", "proceedings"]
OPS = (And, Or, AndNot)


def _term(rng: random.Random) -> Term:
    return Term(rng.choice(WORDS), (Attribute(None, 1, 1016),))


def _tree(rng: random.Random, operators: int, shape: str) -> Node:
    node: Node = _term(rng)
    if shape == "balanced":
        nodes: list[Node] = [_term(rng) for _ in range(operators + 1)]
        while len(nodes) > 1:
            nodes = [rng.choice(OPS)(nodes[i], nodes[i + 1]) if i + 1 < len(nodes) else nodes[i]
                     for i in range(0, len(nodes), 2)]
        return nodes[0]
    for _ in range(operators):
        op = rng.choice(OPS)
        if shape == "left" or (shape == "random" and rng.random() < 0.5):
            node = op(node, _term(rng))
        else:
            node = op(_term(rng), node)
    return node


def _expected(conn: sqlite3.Connection, node: Node) -> set[int]:
    """The hits computed with Python sets, term by term (iteratively)."""
    cache: dict[str, set[int]] = {}
    values: list[set[int]] = []
    pending: list[tuple[Node, bool]] = [(node, False)]
    while pending:
        current, done = pending.pop()
        if isinstance(current, Term):
            if current.value not in cache:
                hits = run_plan(conn, plan_query(Query(current), {}), first=10**6)
                cache[current.value] = set(hits.ids)
            values.append(cache[current.value])
        elif done:
            right, left = values.pop(), values.pop()
            values.append(left & right if isinstance(current, And) else
                          left | right if isinstance(current, Or) else left - right)
        else:
            assert isinstance(current, (And, Or, AndNot))
            pending += ((current, True), (current.right, False), (current.left, False))
    return values[0]


@pytest.mark.parametrize("shape", ["left", "right", "balanced", "random"])
@pytest.mark.parametrize("nesting", [search.MAX_NESTING, 3])
def test_long_queries_match_set_arithmetic(conn: sqlite3.Connection, shape: str, nesting: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Chains of 300 operators of every shape give exactly the hits of set arithmetic, also
    when most operands must be evaluated first (a low MAX_NESTING)."""
    monkeypatch.setattr(search, "MAX_NESTING", nesting)
    rng = random.Random(f"{shape}-{nesting}")
    for _ in range(3):
        tree = _tree(rng, 300, shape)
        hits = run_plan(conn, plan_query(Query(tree), {}), first=10**6)
        assert set(hits.ids) == _expected(conn, tree)
        assert hits.count == len(hits.ids)


def test_flat_chains_past_the_compound_limit(conn: sqlite3.Connection) -> None:
    """More operands than one compound SELECT may hold (SQLite: 500) are split."""
    title = (Attribute(None, 1, 4),)
    node: Node = Term("war", title)
    for _ in range(1200):
        node = Or(node, Term("nothing", title))
    assert run_plan(conn, plan_query(Query(node), {}, max_operators=2000)).count == 1


def test_too_many_operators_is_diagnostic_6(conn: sqlite3.Connection) -> None:
    node: Node = Term("war", ())
    for _ in range(40):
        node = Or(Term("sicp", ()), node)
    assert run_plan(conn, plan_query(Query(node), {}, max_operators=40)).count == 2
    with pytest.raises(Bib1Error) as info:
        plan_query(Query(node), {}, max_operators=39)
    assert (info.value.code, info.value.addinfo) == (6, "more than 39 boolean operators")


def test_deep_rpn_decodes_on_the_fast_path() -> None:
    """A left-deep query of 2,000 operators passes the framer (default limits) and the fast
    decoder, without recursion and without falling back to pyasn1."""
    def chain(operators: int) -> Node:
        node: Node = Term("war", (Attribute(None, 1, 4),))
        for _ in range(operators):
            node = Or(node, Term("sicp", (Attribute(None, 1, 4),)))
        return node

    small = chain(3)  # the hand encoding is what the codec writes
    assert rpn_search_request(small) == codec.encode_pdu(client.search_request(Query(small)))
    frames = BERFramer().feed(rpn_search_request(chain(2000)))
    info = fastber.read_request(frames[0], None)
    assert info is not None and info.query is not None
    assert len(info.query.terms()) == 2001
