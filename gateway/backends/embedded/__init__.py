"""The embedded backend: catalogue and circulation in our own SQLite, importers, demo data."""
