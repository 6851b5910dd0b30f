# -*- test-case-name: tests.protocols.test_ncip_parse -*-
"""Value objects shared by NCIP requests and responses (identifiers, header, bib data).

Protocol-level but dialect-free: an NCIP 1 C{UniqueUserId} and an NCIP 2 C{UserId} both
become a L{UserId}. Secrets (PINs, passwords, agency authentication) are kept out of
C{repr()} so they cannot reach a log line by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from .codes import Code, SchemeValue

AUTH_SECRET_TYPES = frozenset(
    {
        "pin",
        "password",
        "md5 message digest algorithm",
        "secondary confirmation string",
        "x.509 certificate",
    }
)
"""AuthenticationInputType values (folded) whose data is a secret, never to be echoed."""


def _as_code(value: str | None) -> Code | None:
    return Code(value) if value is not None and not isinstance(value, Code) else value


class _CodedType:
    """Mixin: store a C{type}/C{code} given as plain C{str} as a L{Code}."""

    def __post_init__(self) -> None:
        for name in ("type", "code"):
            if hasattr(self, name):
                object.__setattr__(self, name, _as_code(getattr(self, name)))


@dataclass(frozen=True)
class Header:
    """InitiationHeader (or ResponseHeader) fields; agency ids keep their Scheme for echoing."""

    from_agency: SchemeValue | None = None
    to_agency: SchemeValue | None = None
    from_system: SchemeValue | None = None
    to_system: SchemeValue | None = None
    from_agency_authentication: str | None = field(default=None, repr=False)
    from_system_authentication: str | None = field(default=None, repr=False)
    on_behalf_of_agency: SchemeValue | None = None
    application_profile: Code | None = None


@dataclass(frozen=True)
class UserId(_CodedType):
    """A patron identifier (C{UserId}, C{UniqueUserId} or C{VisibleUserId}).

    C{type} may be given as a plain C{str}; it is stored as a L{Code}.

    @ivar visible: True when it came as an NCIP 1 C{VisibleUserId} (a barcode, typically).
    """

    value: str
    agency: str | None = None
    type: str | None = None
    visible: bool = False


@dataclass(frozen=True)
class ItemId(_CodedType):
    """An item identifier (C{ItemId} or C{UniqueItemId})."""

    value: str
    agency: str | None = None
    type: str | None = None


@dataclass(frozen=True)
class RequestId(_CodedType):
    """A request identifier (C{RequestId} or C{UniqueRequestId})."""

    value: str
    agency: str | None = None
    type: str | None = None


@dataclass(frozen=True)
class AuthenticationInput:
    """One C{AuthenticationInput}; C{data} is hidden from repr (it may be a PIN)."""

    data: str = field(repr=False)
    format: Code | None = None
    type: Code | None = None

    @property
    def is_secret(self) -> bool:
        """True when the type names a PIN, password or similar (or is missing)."""
        return self.type is None or self.type.casefold() in AUTH_SECRET_TYPES


@dataclass(frozen=True)
class BibliographicId(_CodedType):
    """A C{BibliographicItemId} (kind C{"item"}) or C{BibliographicRecordId} (C{"record"}).

    Codes seen: C{ISBN}, C{OCLC}, C{SYSNUMBER}, C{BibID}, C{barcode}, C{Accession Number}.
    """

    identifier: str
    code: str | None = None
    agency: str | None = None
    kind: str = "record"


@dataclass(frozen=True)
class BibliographicDescription:
    """The bibliographic fields brokers send with temporary items and requests."""

    title: str | None = None
    author: str | None = None
    publisher: str | None = None
    publication_date: str | None = None
    place_of_publication: str | None = None
    edition: str | None = None
    pagination: str | None = None
    medium_type: Code | None = None
    language: Code | None = None
    bibliographic_level: Code | None = None
    ids: tuple[BibliographicId, ...] = ()

    def identifier(self, *codes: str) -> str | None:
        """The first identifier whose code matches one of C{codes} (case-insensitive)."""
        for bib_id in self.ids:
            if bib_id.code is not None and Code(bib_id.code).is_one_of(*codes):
                return bib_id.identifier
        return None

    @property
    def isbn(self) -> str | None:
        """The ISBN, if one was sent."""
        return self.identifier("ISBN")

    @property
    def oclc_number(self) -> str | None:
        """The OCLC number, if one was sent."""
        return self.identifier("OCLC")


@dataclass(frozen=True)
class Location:
    """An item location: type plus the name instances by level (1 = broadest)."""

    type: Code | None = None
    names: tuple[tuple[int | None, str], ...] = ()

    @property
    def name(self) -> str | None:
        """The most specific location name sent."""
        return self.names[-1][1] if self.names else None


@dataclass(frozen=True)
class ItemOptionalFields:
    """Item details a broker sends (AcceptItem, CreateItem, RequestItem, notifications)."""

    bibliographic: BibliographicDescription | None = None
    call_number: str | None = None
    copy_number: str | None = None
    circulation_status: Code | None = None
    locations: tuple[Location, ...] = ()
    item_use_restrictions: tuple[Code, ...] = ()
    date_due: datetime | date | None = None


@dataclass(frozen=True)
class Amount:
    """C{Amount}: NCIP C{MonetaryValue} is an integer in minor units of C{currency}."""

    value: int | None = None
    currency: Code | None = None


@dataclass(frozen=True)
class FiscalTransaction:
    """C{FiscalTransactionInformation} (ReShare/WSILL fees)."""

    action_type: Code | None = None
    transaction_type: Code | None = None
    amount: Amount | None = None
    description: str | None = None
    reference_id: str | None = None
    payment_method: Code | None = None
    request_id: RequestId | None = None
    item_id: ItemId | None = None


@dataclass(frozen=True)
class PersonalName:
    """Patron name, structured and/or unstructured."""

    given: str | None = None
    surname: str | None = None
    unstructured: str | None = None
    prefix: str | None = None
    initials: str | None = None
    suffix: str | None = None


@dataclass(frozen=True)
class ShippingAddress:
    """The parts of C{ShippingInformation} brokers use: an address or pickup text and a note."""

    unstructured: str | None = None
    address_type: Code | None = None
    note: str | None = None
