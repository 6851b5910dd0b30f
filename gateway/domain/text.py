# -*- test-case-name: tests.gateway.test_indexing -*-
"""How a term's text folds and splits into words: the one rule every word comparison uses (the
embedded word index, the queries against it, and what a protocol layer counts as a term's words).

Folding is: Unicode compatibility decomposition (NFKD: ``ﬁ`` → ``fi``), full case folding
(``ß`` → ``ss``, final ``ς`` → ``σ``), removal of combining marks (``é`` → ``e``, ``й`` → ``и``,
``ά`` → ``α``, Hebrew points, Arabic harakat) and a few Latin letters that do not decompose
(``ł`` → ``l``, ``ø`` → ``o``, ``đ`` → ``d``). Decomposed and precomposed input fold the same.
A run of letters and digits is one word; CJK text without spaces stays one word per run (as in
Zebra's word indexes), so a CJK query must give the run whole or use truncation.
"""

from __future__ import annotations

import re
import unicodedata

_UNDECOMPOSED = str.maketrans({
    "ł": "l", "đ": "d", "ð": "d", "ø": "o", "ħ": "h", "ı": "i", "ŀ": "l", "ŧ": "t",
    "æ": "ae", "œ": "oe", "þ": "th", "ĸ": "k", "ŋ": "n",
})

_WORD = re.compile(r"[^\W_]+")
_MASK_WORD = re.compile(r"[^\W_]*[#?][^\W_#?]*(?:[#?][^\W_#?]*)*|[^\W_]+")


def fold(text: str) -> str:
    """``text`` as the word index compares it (see the module docstring)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold()).lower()
    return "".join([c for c in decomposed if not unicodedata.combining(c)]).translate(
        _UNDECOMPOSED)


def tokenize(text: str, *, keep_masks: bool = False) -> tuple[str, ...]:
    """The folded words of ``text`` (``#``/``?`` kept inside words when masking)."""
    pattern = _MASK_WORD if keep_masks else _WORD
    return tuple(pattern.findall(fold(text)))


def words(text: str) -> str:
    """The folded words of ``text`` joined by spaces, as a word-index column stores them."""
    return " ".join(_WORD.findall(fold(text))) if text else ""


__all__ = ["fold", "tokenize", "words"]
