"""The Z39.50 upstream: the library's own Z39.50 target (Koha's Zebra, say) behind ``ICatalogue``.

:mod:`.connection` is one association (a Twisted protocol on the origin side of
:mod:`protocols.z3950.client`), :mod:`.pool` keeps associations per target, :mod:`.pqf_writer`
writes query plans as PQF per LMS profile, :mod:`.catalogue` is the catalogue, :mod:`.settings`
reads ``[backend.z3950]`` and :mod:`.backend` registers the kind ``z3950``.
"""
