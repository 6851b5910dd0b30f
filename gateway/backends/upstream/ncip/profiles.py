# -*- test-case-name: tests.gateway.upstream_ncip.test_recorded_replies -*-
"""LMS profiles: how each NCIP responder wants its requests and what its answers mean.

A profile carries the request shape (namespace style, version, NCIP 1 structure, application
profile), the services the LMS has, the action names it understands, how a retry after a lost
answer is settled (resend with the same RequestId where the LMS deduplicates, else the texts
that mean "already done", else refuse and leave it to staff), and the LMS's vocabulary back:
its Problem types and free-text errors, mapped to the gateway's domain errors (which the NCIP
service turns into standard Problem types). Pure data and functions: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.domain import model as domain
from protocols.ncip import sierra_ids
from protocols.ncip.upstream import NCIP1_VERSION_URI, RequestShape, UpstreamReply

ALL_SERVICES = frozenset({"LookupUser", "LookupItem", "AcceptItem", "CheckOutItem",
                          "CheckInItem", "RenewItem", "RequestItem", "CancelRequestItem",
                          "DeleteItem"})

class UpstreamUnavailable(domain.CirculationError):
    """The LMS could not be reached or did not answer usably (Temporary Processing Failure)."""


class UpstreamUnsupported(domain.ServiceUnsupported):
    """The LMS has no NCIP service for this: the broker gets Unsupported Service."""


# Standard Problem Type texts (NCIP 1 and 2 schemes) → domain errors.
STANDARD: tuple[tuple[str, type[domain.CirculationError]], ...] = (
    # about our own request to the LMS (its agency or system authentication, our
    # configuration): not the broker's to fix; the broker may retry once staff have.
    (r"agency authentication failed|system authentication failed|unknown agency|"
     r"unknown system|unauthori[sz]ed (service|combination)|unknown partner",
     UpstreamUnavailable),
    (r"^unknown user$|user unknown|borrower not found|patron not found|no borrower",
     domain.UnknownPatron),
    (r"^user blocked$|blocked|debarred|restricted|expired", domain.PatronBlocked),
    (r"^unknown item$|item unknown|could not find an item|no item information|"
     r"item not found|unknown barcode", domain.UnknownItem),
    (r"^item not checked out$|not on loan|not checked out|not issued", domain.ItemNotCheckedOut),
    (r"^item not renewable$|not renewable|renewal not allowed", domain.ItemNotRenewable),
    (r"maximum renewals exceeded|too many renewals", domain.MaximumRenewalsExceeded),
    (r"^unknown request$|request not found|no such request", domain.UnknownRequest),
    (r"already on loan|already checked out|checked out to another|issued to another|"
     r"user ineligible to check out this item", domain.ItemAlreadyCheckedOut),
    (r"duplicate request", domain.DuplicateRequest),
    (r"needed data missing", domain.NeededDataMissing),
    (r"item does not circulate|not for loan|resource cannot be provided",
     domain.ItemNotAvailable),
)


@dataclass(frozen=True)
class Profile:
    """One LMS's NCIP dialect."""

    name: str
    shape: RequestShape = RequestShape()
    services: frozenset[str] = ALL_SERVICES
    hold_action: str = "Hold For Pickup"
    circulate_action: str | None = "Circulate"     # None: AcceptItem (hold) then CheckOutItem
    dedups_request_id: bool = False                # a resent RequestId is not done twice
    # On a retry after a lost answer: texts that mean the change is already there.
    already_done: dict[str, str] = field(default_factory=dict)
    # Services that are never resent when their first answer was lost (not idempotent and
    # no RequestId deduplication): staff settle them; the broker gets Temporary Failure.
    never_resend: frozenset[str] = frozenset()
    vocabulary: tuple[tuple[str, type[domain.CirculationError]], ...] = ()
    # NCIPServer: an unknown patron crashes LookupUser into Dancer's HTTP 500 page; a page
    # matching this (and only that page) is Unknown User, any other 500 a failure.
    lookup_user_500_unknown: str | None = None
    empty_problem_by_service: dict[str, type[domain.CirculationError]] = field(
        default_factory=dict)
    user_elements: tuple[str, ...] = ("Name Information", "User Privilege", "Block Or Trap")
    from_agency_must_match: str | None = None       # regex our FromAgencyId must match
    title_holds: bool = False       # RequestItem names the record (BibliographicId), scope Title

    def broker_id(self, kind: str, value: str) -> str | None:
        """The id as the gateway keeps it (its mirror, its replies to brokers): Sierra record
        numbers in their display form whichever way the broker wrote them (``b`` bib, ``i``
        item, ``p`` patron); None when it cannot name a record (a wrong check digit)."""
        if self.shape.record_ids != "sierra":
            return value
        try:
            return sierra_ids.canonical(value, kind)
        except sierra_ids.BadCheckDigit:
            return None

    def supports(self, service: str) -> bool:
        """Whether the LMS has this NCIP service."""
        return service in self.services

    def error_for(self, service: str, reply: UpstreamReply) -> domain.CirculationError:
        """The domain error a Problem stands for: the LMS's own vocabulary first, then the
        standard types, then by service when the Problem says nothing."""
        texts = [t.lower() for t in reply.texts]
        for patterns in (self.vocabulary, STANDARD):
            for pattern, error in patterns:
                if any(re.search(pattern, text, re.I) for text in texts):
                    return error(f"{self.name}: {'; '.join(reply.texts)}",
                                 element=_element(error), value=self._value_back(error, reply))
        fallback = self.empty_problem_by_service.get(service)
        if fallback is not None:
            return fallback(f"{self.name}: {service} Problem without a reason",
                            element=_element(fallback), value=self._value_back(fallback, reply))
        return UpstreamUnavailable(
            f"{self.name}: {service} Problem not understood: {'; '.join(reply.texts)[:200]}")

    def record_forms(self, value: str) -> list[str]:
        """The forms a record id may be kept under in the catalogue, likeliest first: for
        Sierra a bib number's display form, weak key and bare digits, then as written."""
        if self.shape.record_ids != "sierra":
            return [value]
        try:
            found = sierra_ids.parse_bare(value, "b")
        except sierra_ids.BadCheckDigit:
            return [value]
        if found is None:
            return [value]
        forms = [found.full, found.key, found.digits, value]
        return [f for i, f in enumerate(forms) if f not in forms[:i]]

    def _value_back(self, error: type[domain.CirculationError],
                    reply: UpstreamReply) -> str | None:
        """The Problem's value in the broker's terms (an LMS record key mapped back)."""
        element = _element(error)
        kind = {"UserIdentifierValue": "p", "ItemIdentifierValue": "i"}.get(element or "")
        if reply.value is None or kind is None:
            return reply.value
        return self.broker_id(kind, reply.value) or reply.value

    def unknown_user_page(self, reply: UpstreamReply) -> bool:
        """Whether an HTTP error answering LookupUser is this LMS's way to say Unknown User."""
        return (reply.kind == "http-error" and self.lookup_user_500_unknown is not None
                and re.search(self.lookup_user_500_unknown, reply.detail) is not None)

    def is_already_done(self, service: str, reply: UpstreamReply) -> bool:
        """Whether a Problem answered to a resend says the change is already in place."""
        pattern = self.already_done.get(service)
        return pattern is not None and any(re.search(pattern, t, re.I) for t in reply.texts)


def _element(error: type[domain.CirculationError]) -> str | None:
    if error in (domain.UnknownPatron, domain.PatronBlocked):
        return "UserIdentifierValue"
    if error in (domain.UnknownItem, domain.ItemNotCheckedOut, domain.ItemAlreadyCheckedOut,
                 domain.ItemNotRenewable, domain.ItemNotAvailable):
        return "ItemIdentifierValue"
    if error in (domain.UnknownRequest, domain.DuplicateRequest):
        return "RequestIdentifierValue"
    return None


KOHA_NCIPSERVER = Profile(
    name="koha-ncipserver",
    shape=RequestShape(style="prefix"),
    # LookupItem answers an empty NCIPMessage; RenewItem never succeeds; no DeleteItem.
    services=ALL_SERVICES - {"LookupItem", "RenewItem", "DeleteItem"},
    hold_action="Hold For Pickup And Notify",
    circulate_action=None,
    already_done={"CheckOutItem": r"already on loan to this borrower",
                  "CheckInItem": r"not on loan"},
    never_resend=frozenset({"AcceptItem", "RequestItem"}),
    vocabulary=(
        (r"already on loan to this borrower", domain.ItemAlreadyCheckedOut),
        (r"there is no hold on this item", domain.ItemNotAvailable),
        (r"we can not place a request, we have no borrower", domain.UnknownPatron),
        (r"we can not place a request, we have no item", domain.UnknownItem),
    ),
    lookup_user_500_unknown=r"Error 500 .*Unable to process your query",
    # Koha's message keys without text (DEBARRED, UNKNOWN_BARCODE, ISSUED_TO_ANOTHER...):
    # the reason cannot be told apart; the nearest standard type per service.
    empty_problem_by_service={"CheckOutItem": domain.ItemAlreadyCheckedOut,
                              "CheckInItem": domain.ItemNotCheckedOut,
                              "AcceptItem": domain.ItemNotAvailable,
                              "RequestItem": domain.ItemNotAvailable},
    user_elements=("Name Information",),
    from_agency_must_match=r"CPomAG",
)

GENERIC_NCIP2 = Profile(name="generic-ncip2", dedups_request_id=True,
                        already_done={"CheckInItem": r"^item not checked out$"})

FOLIO = Profile(
    name="folio", shape=RequestShape(style="prefix"),
    services=ALL_SERVICES - {"RenewItem"},
    vocabulary=((r"could not find|not found", domain.UnknownItem),
                (r"user is blocked|patron blocked|inactive", domain.PatronBlocked),
                (r"already checked out", domain.ItemAlreadyCheckedOut)),
    already_done={"CheckInItem": r"not checked out|not on loan"},
    never_resend=frozenset({"AcceptItem", "RequestItem"}))

ALMA = Profile(
    name="alma", shape=RequestShape(style="prefix", application_profile="ALMA"),
    vocabulary=((r"^user unknown$", domain.UnknownPatron),),
    dedups_request_id=True)

XC_TOOLKIT = Profile(name="xc-toolkit", shape=RequestShape(style="default"),
                     never_resend=frozenset({"AcceptItem"}))

GENERIC_NCIP1 = Profile(
    name="generic-ncip1",
    shape=RequestShape(style="none", ncip1=True, version=NCIP1_VERSION_URI),
    services=ALL_SERVICES - {"DeleteItem"},
    never_resend=frozenset({"AcceptItem", "RequestItem"}))

EVERGREEN = Profile(
    # Evergreen's NCIPServer (a descendant of NCIPServer): every Problem element present,
    # empty ones too; local values below; "Unsupported Service" with ProblemElement "NULL".
    name="evergreen", shape=RequestShape(style="prefix"),
    services=ALL_SERVICES - {"LookupItem"},
    vocabulary=((r"^duplicate item$", domain.DuplicateRequest),
                (r"^item already checked out$", domain.ItemAlreadyCheckedOut),
                (r"^item not checked out to this user$", domain.ItemNotCheckedOut),
                (r"^unsupported service$", UpstreamUnsupported)),
    already_done={"CheckInItem": r"^item not checked out$"},
    never_resend=frozenset({"AcceptItem", "RequestItem"}))

SIERRA = Profile(
    # III Sierra (and Millennium): NCIP 2 (ncip.md: "Sierra/Millennium (v2)"; Relais: "all
    # ... NCIP V1.0, with the exception of Innovative Interfaces and Alma"). Its services per
    # the vendor documentation the brokers cite: LookupUser, RequestItem (a Hold on a Title),
    # AcceptItem, CheckOutItem, CheckInItem. Record numbers (.b/.i/.p with the mod-11 check
    # digit) are read in any form and sent as Sierra wants them (sierra_ids); a title request
    # names the record by its bare digits, as ReShare's Sierra integration does. No captured
    # Sierra traffic exists (ncip.md section 9): its vocabulary is the standard types; no
    # RequestId deduplication is known, so lost AcceptItem/RequestItem answers go to staff.
    name="sierra", shape=RequestShape(style="prefix", record_ids="sierra"),
    services=frozenset({"LookupUser", "RequestItem", "AcceptItem", "CheckOutItem",
                        "CheckInItem"}),
    title_holds=True,
    already_done={"CheckInItem": r"^item not checked out$|not checked out"},
    never_resend=frozenset({"AcceptItem", "RequestItem"}))

PROFILES: dict[str, Profile] = {p.name: p for p in (
    KOHA_NCIPSERVER, GENERIC_NCIP2, FOLIO, ALMA, XC_TOOLKIT, GENERIC_NCIP1, EVERGREEN, SIERRA)}
PROFILES["symphony"] = Profile(**{**GENERIC_NCIP1.__dict__, "name": "symphony"})
PROFILES["polaris"] = Profile(**{**GENERIC_NCIP1.__dict__, "name": "polaris"})
