"""The SRU upstream: the library's own SRU server behind the ``ICatalogue`` interface.

:mod:`.cql_writer` writes a domain query plan as CQL with the server's index names,
:mod:`.client` speaks SRU 1.1/1.2 over HTTP (pooled, bounded, timed), :mod:`.reader` reads its
answers safely, :mod:`.catalogue` is :class:`~.catalogue.UpstreamSruCatalogue`, and
:mod:`.backend` registers it as the backend kind ``sru`` (settings: :mod:`.settings`).
"""
