# -*- test-case-name: tests.protocols.test_oai_request -*-
"""The OAI-PMH 2.0 error codes by name, and the error that carries one or several."""

from __future__ import annotations

from enum import Enum

__all__ = ["OAIError", "OAIErrorCode"]


class OAIErrorCode(Enum):
    """The error codes of OAI-PMH 2.0, section 3.6."""

    BAD_ARGUMENT = "badArgument"
    BAD_RESUMPTION_TOKEN = "badResumptionToken"
    BAD_VERB = "badVerb"
    CANNOT_DISSEMINATE_FORMAT = "cannotDisseminateFormat"
    ID_DOES_NOT_EXIST = "idDoesNotExist"
    NO_RECORDS_MATCH = "noRecordsMatch"
    NO_METADATA_FORMATS = "noMetadataFormats"
    NO_SET_HIERARCHY = "noSetHierarchy"


class OAIError(Exception):
    """A request the repository answers with an C{<error code=...>} element.

    C{message} goes on the wire as the element's text: it names the argument at fault and
    never internal state.
    """

    def __init__(self, code: OAIErrorCode, message: str = "") -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code.value}: {message}" if message else code.value)

    @property
    def omits_request_arguments(self) -> bool:
        """badVerb and badArgument replies echo the base URL only (spec section 3.2)."""
        return self.code in (OAIErrorCode.BAD_VERB, OAIErrorCode.BAD_ARGUMENT)
