"""Shared pytest fixtures: where the third-party reference material lives, and temp databases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INTERLEND_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ``../shared`` reference folder; tests that need it skip cleanly without it."""
    if not SHARED.is_dir():
        pytest.skip(f"reference material not found at {SHARED} (set INTERLEND_SHARED)")
    return SHARED
