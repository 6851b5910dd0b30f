"""Fixtures shared by the gateway tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import pytest_twisted
from twisted.internet import reactor as global_reactor
from twisted.internet.interfaces import IReactorFromThreads

from gateway.storage.store import Store

reactor = cast(IReactorFromThreads, global_reactor)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A started store on a fresh database, stopped after the test if it still runs."""
    s = Store(tmp_path / "db.sqlite3", reactor)
    s.start()
    yield s
    if s.running:
        pytest_twisted.blockon(s.stop())
