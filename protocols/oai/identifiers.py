# -*- test-case-name: tests.protocols.test_oai_identifiers -*-
"""OAI identifiers in the C{oai-identifier} scheme: C{oai:<repository>:<local id>}.

The gateway will name each catalogue record C{oai:<its domain>:<record id>} with
L{OAIIdentifierScheme.identifier}, turn a harvester's identifier back into its record id
with L{OAIIdentifierScheme.local_id} (anything else is C{idDoesNotExist}), and put
L{OAIIdentifierScheme.description} in Identify so harvesters know the scheme.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from .errors import OAIError, OAIErrorCode

__all__ = ["OAI_IDENTIFIER_NS", "OAIIdentifierScheme"]

OAI_IDENTIFIER_NS = "http://www.openarchives.org/OAI/2.0/oai-identifier"
_REPOSITORY = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*(\.[a-zA-Z][a-zA-Z0-9-]*)+")
_LOCAL_SAFE = "-_.!~*'();/?:@&=+$,"
_LOCAL = re.compile(r"[a-zA-Z0-9\-_.!~*'();/?:@&=+$,%]+")


@dataclass(frozen=True)
class OAIIdentifierScheme:
    """The identifiers of one repository, named by its domain (C{library.example.org})."""

    repository_identifier: str

    def __post_init__(self) -> None:
        if not _REPOSITORY.fullmatch(self.repository_identifier):
            raise ValueError(f"not a domain name: {self.repository_identifier!r}")

    @property
    def prefix(self) -> str:
        return f"oai:{self.repository_identifier}:"

    def identifier(self, local_id: str) -> str:
        """The OAI identifier of a record; characters the scheme excludes are %-escaped."""
        if not local_id:
            raise ValueError("a local identifier cannot be empty")
        return self.prefix + quote(local_id, safe=_LOCAL_SAFE)

    def local_id(self, identifier: str) -> str:
        """The record id an OAI identifier names, or C{idDoesNotExist}."""
        local = identifier[len(self.prefix):] if identifier.startswith(self.prefix) else ""
        if not local or not _LOCAL.fullmatch(local):
            raise OAIError(OAIErrorCode.ID_DOES_NOT_EXIST, identifier[:200])
        return unquote(local)

    def description(self, sample_local_id: str = "1") -> bytes:
        """The C{<oai-identifier>} description for Identify."""
        sample = self.identifier(sample_local_id).replace("&", "&amp;").replace("<", "&lt;")
        return (f'<oai-identifier xmlns="{OAI_IDENTIFIER_NS}">'
                f"<scheme>oai</scheme>"
                f"<repositoryIdentifier>{self.repository_identifier}</repositoryIdentifier>"
                f"<delimiter>:</delimiter><sampleIdentifier>{sample}</sampleIdentifier>"
                f"</oai-identifier>").encode()
