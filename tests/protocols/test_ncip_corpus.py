"""Replay every NCIP message under ../shared/ncip/samples through the parser and writer.

Requests are told from responses by the message column of validation-report.tsv (and the
file names): every request is classified, parsed without losing the fields brokers rely on,
and answered in its own dialect with a schema-valid reply; the three broken files get an
Invalid Message Syntax Error. Files are read in place, never copied.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from protocols.ncip import (
    AcceptItem,
    Dialect,
    ItemRequested,
    LookupUser,
    NCIPProblem,
    NCIPSyntaxError,
    OtherMessage,
    PrefixStyle,
    ProblemType,
    RenewItem,
    parse_message,
    parse_xml,
    redact,
    render_problem,
    render_response,
)
from protocols.ncip.dialect import local_name
from protocols.ncip.testing import canned_response
from tests.protocols.test_ncip_writer import Schemas, load_schemas

BROKEN = {
    "samples/koha-ncip-server-bywater/t-templates/v1/RequestItem.xml",
    "samples/innreach-dcb-ncip1-csusm-relay/ItemRequested-test.xml",
    "samples/innreach-dcb-ncip1-csusm-relay/LookupUser-user.xml",
}


@dataclass(frozen=True)
class Sample:
    """One row of validation-report.tsv."""

    path: Path
    name: str
    message: str
    result: str

    @property
    def is_response(self) -> bool:
        return (
            self.message.endswith("Response")
            or self.message == "Problem"
            or ("Response" in self.path.name)
        )

    @property
    def expected_dialect(self) -> Dialect:
        if self.result.startswith("ncip_version"):
            return Dialect.VERSION
        if self.result.startswith("v1"):
            return Dialect.NCIP1
        return Dialect.NCIP2


def load_samples(shared: Path) -> list[Sample]:
    """Every message file listed in the validation report, read in place."""
    base = shared / "ncip"
    with (base / "validation-report.tsv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [Sample(base / row["file"], row["file"], row["message"], row["result"]) for row in rows]


@pytest.fixture
def samples(shared_dir: Path) -> list[Sample]:
    """All 376 sample messages."""
    return load_samples(shared_dir)


@pytest.fixture
def schemas(shared_dir: Path) -> Schemas:
    """Compiled reference schemas from ../shared."""
    return load_schemas(shared_dir)


def test_sample_set_is_complete(samples: list[Sample]) -> None:
    """The report lists 376 existing files: 240 of them requests, three of those broken."""
    assert len(samples) == 376
    assert all(s.path.is_file() for s in samples)
    requests = [s for s in samples if not s.is_response]
    assert len(requests) == 240
    assert {s.name for s in samples if s.result == "not-well-formed"} == BROKEN


def test_every_request_classified_parsed_and_answered(
    samples: list[Sample], schemas: Schemas
) -> None:
    """Each request: right dialect and service; a success (or Unsupported Service) reply and a
    Temporary Processing Failure reply, both valid in its dialect and every NCIP 2 prefix style."""
    failures: list[str] = []
    answered = 0
    for sample in (s for s in samples if not s.is_response and s.name not in BROKEN):
        try:
            envelope = parse_message(sample.path.read_bytes())
            assert envelope.dialect is sample.expected_dialect, envelope.dialect
            if sample.message != "Ext":
                assert envelope.service == sample.message, envelope.service
            styles = list(PrefixStyle) if envelope.dialect is Dialect.NCIP2 else [PrefixStyle.NS1]
            answer = canned_response(envelope)
            for style in styles:
                if isinstance(answer, NCIPProblem):
                    reply = render_problem(answer, envelope, prefix_style=style)
                else:
                    reply = render_response(answer, envelope, prefix_style=style)
                root = schemas.check(reply, envelope.dialect, style)
                first = local_name(root[0])
                assert first in (f"{envelope.service}Response", "Problem"), first
                failure = render_problem(
                    NCIPProblem(ProblemType.TEMPORARY_PROCESSING_FAILURE),
                    envelope,
                    prefix_style=style,
                )
                schemas.check(failure, envelope.dialect, style)
            answered += 1
        except Exception as exc:  # collect every failing file, then report them together
            failures.append(f"{sample.name}: {exc!r}"[:300])
    assert not failures, "\n".join(failures)
    assert answered == len([s for s in samples if not s.is_response]) - len(BROKEN)


def test_broken_samples_get_invalid_message_syntax_error(
    samples: list[Sample], schemas: Schemas
) -> None:
    """The three not-well-formed files yield a message-level Invalid Message Syntax Error."""
    for sample in (s for s in samples if s.name in BROKEN):
        with pytest.raises(NCIPSyntaxError) as info:
            parse_message(sample.path.read_bytes())
        reply = render_problem(info.value, None)
        root = schemas.check(reply, Dialect.NCIP2)
        problem_type = root.find(
            "{http://www.niso.org/2008/ncip}Problem/{http://www.niso.org/2008/ncip}ProblemType"
        )
        assert problem_type is not None and problem_type.text == "Invalid Message Syntax Error"


def test_every_response_sample_is_classified(samples: list[Sample]) -> None:
    """Response samples (useful to the writer only) still parse and classify cleanly."""
    for sample in (s for s in samples if s.is_response):
        envelope = parse_message(sample.path.read_bytes())
        assert envelope.dialect is sample.expected_dialect, sample.name
        assert envelope.service.endswith("Response") or envelope.service in ("Problem", "Ext"), (
            sample.name
        )


_FIELDS = {
    ("UserId", "UniqueUserId", "VisibleUserId"): "user_id",
    ("ItemId", "UniqueItemId"): "item_id",
    ("RequestId", "UniqueRequestId"): "request_id",
    ("RequestType",): "request_type",
    ("RequestScopeType",): "request_scope_type",
    ("RequestedActionType",): "requested_action_type",
    ("PickupLocation",): "pickup_location",
    ("DesiredDateDue",): "desired_date_due",
    ("DateForReturn",): "date_for_return",
    ("AuthenticationInput",): "authentication_inputs",
    ("BibliographicId",): "bibliographic_ids",
    ("FiscalTransactionInformation",): "fiscal_transaction",
}


def _has_value(element: etree._Element) -> bool:
    return any(t.strip() for t in element.itertext())


def test_no_loss_of_fields_brokers_rely_on(samples: list[Sample]) -> None:
    """Whenever a request carries a key element with content directly in its message, the typed
    message has the matching field filled (ids, types, pickup, dates, auth, bib ids, fees)."""
    failures = []
    checked = 0
    for sample in (s for s in samples if not s.is_response and s.name not in BROKEN):
        envelope = parse_message(sample.path.read_bytes())
        if isinstance(envelope.message, OtherMessage):
            continue
        raw_root = parse_xml(sample.path.read_bytes()).root
        message = next((c for c in raw_root if local_name(c) == envelope.service), None)
        if message is None:
            continue
        issues = {i.element for i in envelope.issues}
        for names, attribute in _FIELDS.items():
            present = [c for c in message if local_name(c) in names and _has_value(c)]
            if not present or not hasattr(envelope.message, attribute) or names[0] in issues:
                continue
            checked += 1
            value = getattr(envelope.message, attribute)
            if value in (None, ()):
                failures.append(f"{sample.name}: {attribute}")
    assert not failures, failures
    assert checked > 400


def test_real_samples_spot_checks(shared_dir: Path) -> None:
    """Fields brokers depend on, read from real messages of four implementations."""
    base = shared_dir / "ncip" / "samples"
    illiad = parse_message(
        (base / "illiad-addons-reconstructed/illiad-alma-borrowing-AcceptItem.xml").read_bytes()
    )
    accept = illiad.message
    assert isinstance(accept, AcceptItem) and illiad.prefix_style is PrefixStyle.DEFAULT
    assert accept.request_id is not None and accept.request_id.value == "IL123456"
    assert accept.user_id is not None and accept.user_id.type == "barcode id"
    assert accept.pickup_location == "MAIN" and accept.date_for_return is not None
    assert accept.bibliographic is not None and accept.bibliographic.title

    renew = parse_message(
        (base / "alma-pulibrary-lib_jobs/lib_jobs-RenewItem-request.xml").read_bytes()
    ).message
    assert isinstance(renew, RenewItem) and renew.desired_date_due is not None

    inn = parse_message((base / "innreach-dcb-ncip1-cmu-alma-relay/LookupUser.xml").read_bytes())
    assert inn.dialect is Dialect.NCIP1 and isinstance(inn.message, LookupUser)
    assert inn.message.user_id is not None and inn.message.user_id.visible

    folio = parse_message((base / "folio-mod-ncip/test-mockdata/ncip-acceptItem.xml").read_bytes())
    assert folio.prefix_style is PrefixStyle.NONE and isinstance(folio.message, AcceptItem)
    assert folio.message.fiscal_transaction is not None

    dcb = parse_message(
        (
            base
            / "openrs-dcb-service/test-fixtures-extracted"
            / "NcipControllerTests__validItemRequested.xml"
        ).read_bytes()
    )
    assert isinstance(dcb.message, ItemRequested) and dcb.message.request_id is not None


def test_redaction_over_corpus(samples: list[Sample]) -> None:
    """Every sample with AuthenticationInputData loses its data when redacted."""
    redacted = 0
    for sample in samples:
        raw = sample.path.read_bytes()
        if b"AuthenticationInputData>" not in raw or sample.name in BROKEN:
            continue
        envelope = parse_message(raw)
        out = redact(raw)
        root = etree.fromstring(out)
        data = [e.text for e in root.iter() if local_name(e) == "AuthenticationInputData"]
        assert data and all(text == "***" for text in data), sample.name
        for secret in envelope.secrets:
            assert f">{secret}<".encode() not in out
        redacted += 1
    assert redacted > 10
