"""The word-count limit's short cut (a term too short to hold more than ``limit`` words is not
scanned) answers exactly as counting the words does."""

from __future__ import annotations

import itertools
import re

from hypothesis import given
from hypothesis import strategies as st

from gateway.z3950.query import _more_words

_WORD = re.compile(r"[^\W_]+")


def _counted(text: str, limit: int) -> bool:
    return next(itertools.islice(_WORD.finditer(text), limit, None), None) is not None


@given(st.text(alphabet="ab _-é1\u00a0\U0001f600", max_size=24), st.integers(0, 8))
def test_short_cut_agrees_with_counting(text: str, limit: int) -> None:
    assert _more_words(text, limit) == _counted(text, limit)


def test_boundaries() -> None:
    assert not _more_words("a b c", 3) and _more_words("a b c d", 3)
    assert _more_words("a b c d", 3) and not _more_words("abcdefg", 3)
