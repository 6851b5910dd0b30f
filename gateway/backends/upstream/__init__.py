"""The upstream backend: the library's own catalogue, reached over Z39.50 or SRU.

It will hold the upstream catalogue (a Z39.50 or SRU client behind the ``Catalogue`` interface,
issue 6/9). What is here so far is the part every such catalogue needs whatever the transport:
the per-LMS holdings profiles that turn the holdings an LMS serves (MARC item fields such as
Koha's 952, or OPAC holdings and circulation records) into our domain item states, and the rule
that keeps the LMS's temporary interlibrary-loan items away from brokers (:mod:`.holdings`).
"""
