# -*- test-case-name: tests.protocols.test_sru_cql,tests.protocols.test_sru_request -*-
"""SRU (Search/Retrieve via URL) 1.1, 1.2 and 2.0: CQL, request parsing, response writing.

Pure: query parameters in, a typed request out; typed results in, XML bytes out. The gateway's
SRU listener will decode the HTTP GET query string or POST form into a parameter mapping, call
L{request.parse_request}, resolve its CQL against the catalogue's L{profile.CQLProfile}, run the
search through the Catalogue interface and render the outcome with L{response}; every
L{diagnostics.SRUError} on the way becomes a diagnostic in the response of the request's version.
"""
