# -*- test-case-name: tests.protocols.test_z3950_records,tests.protocols.test_z3950_fixtures -*-
"""pyasn1 types for the modules carried inside EXTERNAL: OPAC, SUTRS, diag-1, charneg-3,
searchResult-1. Hand-written from ``shared/z3950/asn1/modules`` and ``charneg-3.asn``.

None of these modules declares default tagging either: bare tags are EXPLICIT.
"""

from __future__ import annotations

from pyasn1.type import univ

from .asn1 import (
    NT,
    OPT,
    DatabaseName,
    DefaultDiagFormat,
    External,
    InternationalString,
    IntUnit,
    LanguageCode,
    NTs,
    Query,
    TaggedAny,
    Term,
    explicit,
    implicit,
)

__all__ = [
    "OPACRecord",
    "HoldingsRecord",
    "HoldingsAndCircData",
    "Volume",
    "CircRecord",
    "SutrsRecord",
    "DiagnosticFormat",
    "CharSetandLanguageNegotiation",
    "OriginProposal",
    "TargetResponse",
    "Iso10646",
    "SearchInfoReport",
]

# --------------------------------------------------------------------------------------
# RecordSyntax-opac (1.2.840.10003.5.102)


class Volume(univ.Sequence):
    componentType = NTs(
        OPT("enumeration", implicit(InternationalString(), 1)),
        OPT("chronology", implicit(InternationalString(), 2)),
        OPT("enumAndChron", implicit(InternationalString(), 3)),
    )


class CircRecord(univ.Sequence):
    """One circulating item; C{availablityDate} keeps the ASN.1's spelling."""

    componentType = NTs(
        NT("availableNow", implicit(univ.Boolean(), 1)),
        OPT("availablityDate", implicit(InternationalString(), 2)),
        OPT("availableThru", implicit(InternationalString(), 3)),
        OPT("restrictions", implicit(InternationalString(), 4)),
        OPT("itemId", implicit(InternationalString(), 5)),
        NT("renewable", implicit(univ.Boolean(), 6)),
        NT("onHold", implicit(univ.Boolean(), 7)),
        OPT("enumAndChron", implicit(InternationalString(), 8)),
        OPT("midspine", implicit(InternationalString(), 9)),
        OPT("temporaryLocation", implicit(InternationalString(), 10)),
    )


HOLDINGS_STRING_FIELDS: tuple[str, ...] = (
    "typeOfRecord",
    "encodingLevel",
    "format",
    "receiptAcqStatus",
    "generalRetention",
    "completeness",
    "dateOfReport",
    "nucCode",
    "localLocation",
    "shelvingLocation",
    "callNumber",
    "shelvingData",
    "copyNumber",
    "publicNote",
    "reproductionNote",
    "termsUseRepro",
    "enumAndChron",
)
"""HoldingsAndCircData string fields, tags [1]..[17] in this order."""


class HoldingsAndCircData(univ.Sequence):
    componentType = NTs(
        *(
            OPT(name, implicit(InternationalString(), number))
            for number, name in enumerate(HOLDINGS_STRING_FIELDS, start=1)
        ),
        OPT("volumes", implicit(univ.SequenceOf(componentType=Volume()), 18)),
        OPT("circulationData", implicit(univ.SequenceOf(componentType=CircRecord()), 19)),
    )


class HoldingsRecord(univ.Choice):
    componentType = NTs(
        NT("marcHoldingsRecord", implicit(External(), 1)),
        NT("holdingsAndCirc", implicit(HoldingsAndCircData(), 2)),
    )


class OPACRecord(univ.Sequence):
    componentType = NTs(
        OPT("bibliographicRecord", implicit(External(), 1)),
        OPT("holdingsData", implicit(univ.SequenceOf(componentType=HoldingsRecord()), 2)),
    )


# --------------------------------------------------------------------------------------
# RecordSyntax-SUTRS (1.2.840.10003.5.101)


class SutrsRecord(InternationalString):
    """C{SutrsRecord ::= InternationalString}; lines end with LF."""


# --------------------------------------------------------------------------------------
# DiagnosticFormatDiag1 (1.2.840.10003.4.2). The explicit (non-default) formats are kept
# as an opaque ANY: a server only sends and reads defaultDiagRec.


class Diag1Diagnostic(univ.Choice):
    componentType = NTs(
        NT("defaultDiagRec", implicit(DefaultDiagFormat(), 1)),
        NT("explicitDiagnostic", explicit(TaggedAny(), 2)),
    )


class DiagnosticFormatElement(univ.Sequence):
    componentType = NTs(
        OPT("diagnostic", explicit(Diag1Diagnostic(), 1)),
        OPT("message", implicit(InternationalString(), 2)),
    )


class DiagnosticFormat(univ.SequenceOf):
    componentType = DiagnosticFormatElement()


# --------------------------------------------------------------------------------------
# NegotiationRecordDefinition-charSetandLanguageNegotiation-3 (1.2.840.10003.15.3)


class EnvironmentChoice(univ.Choice):
    componentType = NTs(
        NT("sevenBit", implicit(univ.Null(), 1)),
        NT("eightBit", implicit(univ.Null(), 2)),
    )


class InitialSet(univ.Sequence):
    componentType = NTs(
        OPT("g0", implicit(univ.Integer(), 0)),
        OPT("g1", implicit(univ.Integer(), 1)),
        OPT("g2", implicit(univ.Integer(), 2)),
        OPT("g3", implicit(univ.Integer(), 3)),
        NT("c0", implicit(univ.Integer(), 4)),
        OPT("c1", implicit(univ.Integer(), 5)),
    )


class LeftAndRight(univ.Sequence):
    componentType = NTs(
        NT("gLeft", implicit(univ.Integer(), 3)),
        OPT("gRight", implicit(univ.Integer(), 4)),
    )


class Iso2022OriginProposal(univ.Sequence):
    componentType = NTs(
        OPT("proposedEnvironment", explicit(EnvironmentChoice(), 0)),
        NT("proposedSets", implicit(univ.SequenceOf(componentType=univ.Integer()), 1)),
        NT("proposedInitialSets", implicit(univ.SequenceOf(componentType=InitialSet()), 2)),
        NT("proposedLeftAndRight", implicit(LeftAndRight(), 3)),
    )


class Iso2022TargetResponse(univ.Sequence):
    componentType = NTs(
        NT("selectedEnvironment", explicit(EnvironmentChoice(), 0)),
        NT("selectedSets", implicit(univ.SequenceOf(componentType=univ.Integer()), 1)),
        NT("selectedinitialSet", implicit(InitialSet(), 2)),
        NT("selectedLeftAndRight", implicit(LeftAndRight(), 3)),
    )


class Iso2022(univ.Choice):
    componentType = NTs(
        NT("originProposal", implicit(Iso2022OriginProposal(), 1)),
        NT("targetResponse", implicit(Iso2022TargetResponse(), 2)),
    )


class Iso10646(univ.Sequence):
    """ISO 10646: C{encodingLevel} 1.0.10646.1.0.8 means UTF-8."""

    componentType = NTs(
        OPT("collections", implicit(univ.ObjectIdentifier(), 1)),
        NT("encodingLevel", implicit(univ.ObjectIdentifier(), 2)),
    )


class PrivateCharacterSet(univ.Choice):
    componentType = NTs(
        NT("viaOid", implicit(univ.SequenceOf(componentType=univ.ObjectIdentifier()), 1)),
        NT("externallySpecified", implicit(External(), 2)),
        NT("previouslyAgreedUpon", implicit(univ.Null(), 3)),
    )


class ProposedCharSet(univ.Choice):
    componentType = NTs(
        NT("iso2022", explicit(Iso2022(), 1)),
        NT("iso10646", implicit(Iso10646(), 2)),
        NT("private", explicit(PrivateCharacterSet(), 3)),
    )


class SelectedCharSets(univ.Choice):
    componentType = NTs(
        NT("iso2022", explicit(Iso2022(), 1)),
        NT("iso10646", implicit(Iso10646(), 2)),
        NT("private", explicit(PrivateCharacterSet(), 3)),
        NT("none", implicit(univ.Null(), 4)),
    )


class OriginProposal(univ.Sequence):
    componentType = NTs(
        OPT("proposedCharSets", implicit(univ.SequenceOf(componentType=ProposedCharSet()), 1)),
        OPT("proposedlanguages", implicit(univ.SequenceOf(componentType=LanguageCode()), 2)),
        OPT("recordsInSelectedCharSets", implicit(univ.Boolean(), 3)),
    )


class TargetResponse(univ.Sequence):
    componentType = NTs(
        OPT("selectedCharSets", explicit(SelectedCharSets(), 1)),
        OPT("selectedLanguage", implicit(LanguageCode(), 2)),
        OPT("recordsInSelectedCharSets", implicit(univ.Boolean(), 3)),
    )


class CharSetandLanguageNegotiation(univ.Choice):
    componentType = NTs(
        NT("proposal", implicit(OriginProposal(), 1)),
        NT("response", implicit(TargetResponse(), 2)),
    )


# --------------------------------------------------------------------------------------
# UserInfoFormat-searchResult-1 (1.2.840.10003.10.1): what Zebra puts in
# SearchResponse.additionalSearchInfo.


class QueryExpressionTerm(univ.Sequence):
    componentType = NTs(
        NT("queryTerm", explicit(Term(), 1)),
        OPT("termComment", implicit(InternationalString(), 2)),
    )


class QueryExpression(univ.Choice):
    componentType = NTs(
        NT("term", implicit(QueryExpressionTerm(), 1)),
        NT("query", explicit(Query(), 2)),
    )


class ResultsByDBDatabases(univ.Choice):
    componentType = NTs(
        NT("all", implicit(univ.Null(), 1)),
        NT("list", implicit(univ.SequenceOf(componentType=DatabaseName()), 2)),
    )


class ResultsByDBElement(univ.Sequence):
    componentType = NTs(
        NT("databases", explicit(ResultsByDBDatabases(), 1)),
        OPT("count", implicit(univ.Integer(), 2)),
        OPT("resultSetName", implicit(InternationalString(), 3)),
    )


class SearchInfoReportElement(univ.Sequence):
    componentType = NTs(
        OPT("subqueryId", implicit(InternationalString(), 1)),
        NT("fullQuery", implicit(univ.Boolean(), 2)),
        OPT("subqueryExpression", explicit(QueryExpression(), 3)),
        OPT("subqueryInterpretation", explicit(QueryExpression(), 4)),
        OPT("subqueryRecommendation", explicit(QueryExpression(), 5)),
        OPT("subqueryCount", implicit(univ.Integer(), 6)),
        OPT("subqueryWeight", implicit(IntUnit(), 7)),
        OPT("resultsByDB", implicit(univ.SequenceOf(componentType=ResultsByDBElement()), 8)),
    )


class SearchInfoReport(univ.SequenceOf):
    componentType = SearchInfoReportElement()

