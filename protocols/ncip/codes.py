# -*- test-case-name: tests.protocols.test_ncip_parse -*-
"""Coded values, namespaces and standard scheme URIs shared by the NCIP reader and writer.

NCIP coded values (RequestType, UserElementType, ...) arrive in any case, with odd or missing
Scheme attributes and stray whitespace. L{Code} is a C{str} that compares and hashes
case-insensitively with whitespace collapsed, so upper layers can write
C{msg.request_type == "loan"} without caring what the peer sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NCIP2_NS = "http://www.niso.org/2008/ncip"
"""The NCIP 2.x target namespace (2.0, 2.01 and 2.02 share it)."""

NCIP2_VERSION = "http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd"
"""The C{version} value written on NCIP 2 replies unless a peer asks for another."""

NCIP1_VERSION = "http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd"
"""The C{version} value written on NCIP 1 replies."""

NCIP1_DOCTYPE = (
    '<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1.0//EN" '
    '"http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">'
)
"""The standard NCIP 1.0 DOCTYPE, written only for peers that need it."""

VERSION_MESSAGE_VERSION = "http://www.niso.org/ncip/v1_0/imp1/xsd/ncip_version.xsd"
"""The C{version} value of C{NCIPVersionMessage} (LookupVersion)."""

_SPACE = re.compile(r"\s+")


_NORMALIZED: dict[str, str] = {}  # short values seen so far (the code lists are small)


def normalize_code(value: str) -> str:
    """Fold a coded value for comparison: collapse whitespace, strip, casefold."""
    plain = value if type(value) is str else str.__str__(value)  # not Code.__hash__: recursion
    folded = _NORMALIZED.get(plain)
    if folded is None:
        folded = _SPACE.sub(" ", plain).strip().casefold()
        if len(plain) <= 64 and len(_NORMALIZED) < 4096:
            _NORMALIZED[plain] = folded
    return folded


class Code(str):
    """A coded NCIP value that compares equal to any spelling differing only in case/spacing."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return normalize_code(self) == normalize_code(other)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(normalize_code(self))

    def is_one_of(self, *values: str) -> bool:
        """True when this code equals any of C{values} (case-insensitively)."""
        return any(self == v for v in values)


@dataclass(frozen=True)
class SchemeValue:
    """A value with the Scheme it was sent with (kept for echoing agency ids back)."""

    value: str
    scheme: str | None = None


_V1 = "http://www.niso.org/ncip/v1_0/imp1/schemes/"

V1_DEFAULT_SCHEMES: dict[str, str] = {
    "UniqueAgencyId": "http://www.niso.org/ncip/v1_0/schemes/agencyid.scm",
    "AgencyUserPrivilegeType": _V1 + "agencyuserprivilegetype/agencyuserprivilegetype.scm",
    "UserPrivilegeStatusType": _V1 + "userprivilegestatustype/userprivilegestatustype.scm",
    "BlockOrTrapType": _V1 + "blockortraptype/blockortraptype.scm",
    "UserAddressRoleType": _V1 + "useraddressroletype/useraddressroletype.scm",
    "ElectronicAddressType": "http://www.iana.org/assignments/uri-schemes",
    "PhysicalAddressType": _V1 + "physicaladdresstype/physicaladdresstype.scm",
    "UnstructuredAddressType": _V1 + "unstructuredaddresstype/unstructuredaddresstype.scm",
    "VisibleUserIdentifierType": _V1 + "visibleuseridentifiertype/visibleuseridentifiertype.scm",
    "VisibleItemIdentifierType": _V1 + "visibleitemidentifiertype/visibleitemidentifiertype.scm",
    "RequestType": _V1 + "requesttype/requesttype.scm",
    "RequestScopeType": _V1 + "requestscopetype/requestscopetype.scm",
    "RequestStatusType": _V1 + "requeststatustype/requeststatustype.scm",
    "CirculationStatus": _V1 + "circulationstatus/circulationstatus.scm",
    "LocationType": _V1 + "locationtype/locationtype.scm",
    "MediumType": _V1 + "mediumtype/mediumtype.scm",
    "CurrencyCode": "http://www.bsi-global.com/Technical+Information/Publications/"
    "_Publications/tig90x.doc",
    "FiscalActionType": _V1 + "fiscalactiontype/fiscalactiontype.scm",
    "FiscalTransactionType": _V1 + "fiscaltransactiontype/fiscaltransactiontype.scm",
    "BibliographicItemIdentifierCode": _V1
    + "bibliographicitemidentifiercode/bibliographicitemidentifiercode.scm",
    "BibliographicRecordIdentifierCode": _V1
    + "bibliographicrecordidentifiercode/bibliographicrecordidentifiercode.scm",
}
"""Scheme written for an NCIP 1 C{<Scheme>/<Value>} pair when the caller supplies none."""

V1_FALLBACK_SCHEME = "http://www.niso.org/ncip/v1_0/schemes/"
"""Scheme for NCIP 1 pairs that have no standard scheme in L{V1_DEFAULT_SCHEMES}."""
