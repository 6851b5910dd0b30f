# -*- test-case-name: tests.protocols.test_oai_request,tests.protocols.test_oai_writer -*-
"""OAI-PMH 2.0: request validation, signed resumption tokens, streaming response writers.

Pure: query parameters in, a typed request out; headers and rendered metadata in, bytes out.
The gateway's OAI-PMH listener will decode the GET query string or POST form, call
L{request.parse_request} with its metadata formats, granularity and a L{tokens.TokenCodec}
keyed from the gateway key, read records from the Catalogue interface page by page (keyset
order by datestamp then identifier), and write each chunk that L{writer.ListWriter} returns
straight to the HTTP transport, so a harvest of a million records runs in constant memory.
Every L{errors.OAIError} becomes an error response through L{writer.error_response}.
"""
