"""The SQLite store (writer thread, group commit, readers), its migrations, and the gateway's
own books: audit, request tracking, retention. Every SQL statement outside the embedded
backend is in this package."""

from __future__ import annotations

