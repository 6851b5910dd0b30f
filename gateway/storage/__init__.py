"""The SQLite store (writer thread, group commit, readers), its migrations, and the gateway's
own books: audit, request tracking, retention. Every SQL statement outside the embedded
backend is in this package."""

from __future__ import annotations

from pathlib import Path

DATABASE_NAME = "interlend.sqlite3"
"""The database file's name (beside it: ``-wal``, ``-shm`` and the ``.key`` file)."""

DEFAULT_DATABASE = Path("var") / DATABASE_NAME
"""Where the database lives when ``[gateway] database`` does not say."""
