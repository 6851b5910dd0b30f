"""The SQLite store (writer thread, group commit, readers) and its migrations."""
