# -*- test-case-name: tests.protocols.test_z3950_codec,tests.protocols.test_z3950_fixtures -*-
"""pyasn1 types for Z39-50-APDU-1995 as YAZ 5.34.0 ships it, plus EXTERNAL.

Written by hand from ``shared/z3950/asn1/modules/Z39-50-APDU-1995.asn``. The module has no
default tagging, so every bare ``[n]`` is EXPLICIT (a constructed wrapper), CHOICE tags
included; ``IMPLICIT`` only where the text says so (``docs/z3950.md`` section 3).

Strings: C{InternationalString} (GeneralString) and C{VisibleString} are declared with the
ISO-8859-1 codec, which maps every byte to one code point and back, so whatever bytes a
client sends survive decoding and re-encoding unchanged. Read them with C{.asOctets()} and
decode the text with L{protocols.z3950.charset}; build them from C{bytes} (or from C{str},
which the builders in L{protocols.z3950.codec} encode as UTF-8 first).

Record-syntax modules (OPAC, SUTRS, diag-1, charneg-3, searchResult-1) are in
L{protocols.z3950.asn1_records}.
"""

from __future__ import annotations

from pyasn1.type import base, char, namedtype, tag, tagmap, univ, useful

Taggable = base.SimpleAsn1Type | base.ConstructedAsn1Type
"""An ASN.1 type that can be subtyped with another tag."""

__all__ = [
    "PDU",
    "External",
    "InternationalString",
    "OtherInformation",
    "OtherInformationUnit",
]

NT = namedtype.NamedType
OPT = namedtype.OptionalNamedType
NTs = namedtype.NamedTypes


def ctx(number: int, constructed: bool = False) -> tag.Tag:
    """Return a context-class tag (primitive unless C{constructed})."""
    fmt = tag.tagFormatConstructed if constructed else tag.tagFormatSimple
    return tag.Tag(tag.tagClassContext, fmt, number)


def implicit(asn1: Taggable, number: int) -> Taggable:
    """C{[number] IMPLICIT asn1} (the tag keeps the primitive/constructed form of C{asn1})."""
    return asn1.subtype(implicitTag=ctx(number))


def explicit(asn1: Taggable, number: int) -> Taggable:
    """C{[number] asn1} in a module without default tagging: an explicit, constructed wrapper."""
    return asn1.subtype(explicitTag=ctx(number, True))


def _implicit_tagset(base: Taggable, number: int) -> tag.TagSet:
    return base.tagSet.tagImplicitly(ctx(number))


# --------------------------------------------------------------------------------------
# String types carried as bytes (ISO-8859-1 is lossless for any byte value).


class InternationalString(char.GeneralString):
    """C{InternationalString ::= GeneralString}; bytes preserved exactly (see module doc)."""

    encoding = "iso-8859-1"


class VisibleString(char.VisibleString):
    """VisibleString that tolerates non-ASCII bytes (YAZ sends v2Addinfo with any bytes)."""

    encoding = "iso-8859-1"


class ObjectDescriptor(useful.ObjectDescriptor):
    """ObjectDescriptor (GraphicString), bytes preserved."""

    encoding = "iso-8859-1"


class LanguageCode(InternationalString):
    """C{LanguageCode ::= GeneralString} (ANSI Z39.53), from RecordSyntax-explain."""


class TaggedAny(univ.Any):
    """An ANY used under an explicit tag, without pyasn1's catch-all default.

    pyasn1's Any tag map sends every unknown tag to the Any; inside a CHOICE that also has
    explicitly tagged arms (C{Query}: type-0 [0] ANY next to type-2 [2] OCTET STRING)
    that swallows the other arms before explicit tags are unwrapped. Use this subclass,
    always with C{explicit()}.
    """

    @property
    def tagMap(self) -> tagmap.TagMap:
        # types-pyasn1 keys presentTypes by TagMap; pyasn1 keys them by TagSet
        return tagmap.TagMap({self.tagSet: self})  # type: ignore[dict-item]


# --------------------------------------------------------------------------------------
# EXTERNAL (X.208 1990 form, [UNIVERSAL 8] IMPLICIT SEQUENCE) -- pyasn1 has none.


class ExternalEncoding(univ.Choice):
    """C{encoding} of EXTERNAL: single-ASN1-type [0] explicit ANY, octet-aligned, arbitrary."""

    componentType = NTs(
        NT("single-ASN1-type", explicit(TaggedAny(), 0)),
        NT("octet-aligned", implicit(univ.OctetString(), 1)),
        NT("arbitrary", implicit(univ.BitString(), 2)),
    )


class External(univ.Sequence):
    """EXTERNAL; decode C{single-ASN1-type} in a second pass by C{direct-reference}."""

    tagSet = univ.Sequence.tagSet.tagImplicitly(
        tag.Tag(tag.tagClassUniversal, tag.tagFormatConstructed, 8)
    )
    componentType = NTs(
        OPT("direct-reference", univ.ObjectIdentifier()),
        OPT("indirect-reference", univ.Integer()),
        OPT("data-value-descriptor", ObjectDescriptor()),
        NT("encoding", ExternalEncoding()),
    )


# --------------------------------------------------------------------------------------
# Global auxiliary definitions


class ReferenceId(univ.OctetString):
    """C{ReferenceId ::= [2] IMPLICIT OCTET STRING}."""

    tagSet = _implicit_tagset(univ.OctetString(), 2)


class ResultSetId(InternationalString):
    """C{ResultSetId ::= [31] IMPLICIT InternationalString}."""

    tagSet = _implicit_tagset(InternationalString(), 31)


class ElementSetName(InternationalString):
    """C{ElementSetName ::= [103] IMPLICIT InternationalString}."""

    tagSet = _implicit_tagset(InternationalString(), 103)


class DatabaseName(InternationalString):
    """C{DatabaseName ::= [105] IMPLICIT InternationalString}."""

    tagSet = _implicit_tagset(InternationalString(), 105)


AttributeSetId = univ.ObjectIdentifier


class InfoCategory(univ.Sequence):
    componentType = NTs(
        OPT("categoryTypeId", implicit(univ.ObjectIdentifier(), 1)),
        NT("categoryValue", implicit(univ.Integer(), 2)),
    )


class OtherInformationChoice(univ.Choice):
    componentType = NTs(
        NT("characterInfo", implicit(InternationalString(), 2)),
        NT("binaryInfo", implicit(univ.OctetString(), 3)),
        NT("externallyDefinedInfo", implicit(External(), 4)),
        NT("oid", implicit(univ.ObjectIdentifier(), 5)),
    )


class OtherInformationUnit(univ.Sequence):
    """One element of OtherInformation: optional category plus the information CHOICE."""

    componentType = NTs(
        OPT("category", implicit(InfoCategory(), 1)),
        NT("information", OtherInformationChoice()),
    )


class OtherInformation(univ.SequenceOf):
    """C{OtherInformation ::= [201] IMPLICIT SEQUENCE OF SEQUENCE {...}}."""

    tagSet = _implicit_tagset(univ.SequenceOf(), 201)
    componentType = OtherInformationUnit()


class StringOrNumeric(univ.Choice):
    componentType = NTs(
        NT("string", implicit(InternationalString(), 1)),
        NT("numeric", implicit(univ.Integer(), 2)),
    )


class Unit(univ.Sequence):
    componentType = NTs(
        OPT("unitSystem", explicit(InternationalString(), 1)),
        OPT("unitType", explicit(StringOrNumeric(), 2)),
        OPT("unit", explicit(StringOrNumeric(), 3)),
        OPT("scaleFactor", implicit(univ.Integer(), 4)),
    )


class IntUnit(univ.Sequence):
    componentType = NTs(
        NT("value", implicit(univ.Integer(), 1)),
        NT("unitUsed", implicit(Unit(), 2)),
    )


# --------------------------------------------------------------------------------------
# Init


class ProtocolVersion(univ.BitString):
    """C{[3] IMPLICIT BIT STRING}; bit 0 is the MSB of the first content octet."""

    tagSet = _implicit_tagset(univ.BitString(), 3)


class Options(univ.BitString):
    """C{[4] IMPLICIT BIT STRING}: search(0), present(1), ... stringSchema(21)."""

    tagSet = _implicit_tagset(univ.BitString(), 4)


class IdPass(univ.Sequence):
    componentType = NTs(
        OPT("groupId", implicit(InternationalString(), 0)),
        OPT("userId", implicit(InternationalString(), 1)),
        OPT("password", implicit(InternationalString(), 2)),
    )


class IdAuthentication(univ.Choice):
    """YAZ's named CHOICE (the 1995 text has ANY): open | idPass | anonymous | other."""

    componentType = NTs(
        NT("open", VisibleString()),
        NT("idPass", IdPass()),
        NT("anonymous", univ.Null()),
        NT("other", External()),
    )


_INIT_COMMON_HEAD = (
    OPT("referenceId", ReferenceId()),
    NT("protocolVersion", ProtocolVersion()),
    NT("options", Options()),
    NT("preferredMessageSize", implicit(univ.Integer(), 5)),
    NT("exceptionalRecordSize", implicit(univ.Integer(), 6)),
)
_INIT_COMMON_TAIL = (
    OPT("implementationId", implicit(InternationalString(), 110)),
    OPT("implementationName", implicit(InternationalString(), 111)),
    OPT("implementationVersion", implicit(InternationalString(), 112)),
    OPT("userInformationField", explicit(External(), 11)),
    OPT("otherInfo", OtherInformation()),
)


class InitializeRequest(univ.Sequence):
    componentType = NTs(
        *_INIT_COMMON_HEAD,
        OPT("idAuthentication", explicit(IdAuthentication(), 7)),
        *_INIT_COMMON_TAIL,
    )


class InitializeResponse(univ.Sequence):
    componentType = NTs(
        *_INIT_COMMON_HEAD,
        NT("result", implicit(univ.Boolean(), 12)),
        *_INIT_COMMON_TAIL,
    )


# --------------------------------------------------------------------------------------
# Query (type-1 RPN and the rest)


class ComplexAttributeValue(univ.Sequence):
    componentType = NTs(
        NT("list", implicit(univ.SequenceOf(componentType=StringOrNumeric()), 1)),
        OPT("semanticAction", implicit(univ.SequenceOf(componentType=univ.Integer()), 2)),
    )


class AttributeValue(univ.Choice):
    componentType = NTs(
        NT("numeric", implicit(univ.Integer(), 121)),
        NT("complex", implicit(ComplexAttributeValue(), 224)),
    )


class AttributeElement(univ.Sequence):
    componentType = NTs(
        OPT("attributeSet", implicit(univ.ObjectIdentifier(), 1)),
        NT("attributeType", implicit(univ.Integer(), 120)),
        NT("attributeValue", AttributeValue()),
    )


class AttributeList(univ.SequenceOf):
    """C{AttributeList ::= [44] IMPLICIT SEQUENCE OF AttributeElement}."""

    tagSet = _implicit_tagset(univ.SequenceOf(), 44)
    componentType = AttributeElement()


class Term(univ.Choice):
    componentType = NTs(
        NT("general", implicit(univ.OctetString(), 45)),
        NT("numeric", implicit(univ.Integer(), 215)),
        NT("characterString", implicit(InternationalString(), 216)),
        NT("oid", implicit(univ.ObjectIdentifier(), 217)),
        NT("dateTime", implicit(useful.GeneralizedTime(), 218)),
        NT("external", implicit(External(), 219)),
        NT("integerAndUnit", implicit(IntUnit(), 220)),
        NT("null", implicit(univ.Null(), 221)),
    )


class AttributesPlusTerm(univ.Sequence):
    """C{[102] IMPLICIT SEQUENCE { attributes AttributeList, term Term }}."""

    tagSet = _implicit_tagset(univ.Sequence(), 102)
    componentType = NTs(NT("attributes", AttributeList()), NT("term", Term()))


class ResultSetPlusAttributes(univ.Sequence):
    tagSet = _implicit_tagset(univ.Sequence(), 214)
    componentType = NTs(NT("resultSet", ResultSetId()), NT("attributes", AttributeList()))


class Operand(univ.Choice):
    componentType = NTs(
        NT("attrTerm", AttributesPlusTerm()),
        NT("resultSet", ResultSetId()),
        NT("resultAttr", ResultSetPlusAttributes()),
    )


class ProximityUnitCode(univ.Choice):
    componentType = NTs(
        NT("known", implicit(univ.Integer(), 1)),
        NT("private", implicit(univ.Integer(), 2)),
    )


class ProximityOperator(univ.Sequence):
    componentType = NTs(
        OPT("exclusion", implicit(univ.Boolean(), 1)),
        NT("distance", implicit(univ.Integer(), 2)),
        NT("ordered", implicit(univ.Boolean(), 3)),
        NT("relationType", implicit(univ.Integer(), 4)),
        NT("proximityUnitCode", explicit(ProximityUnitCode(), 5)),
    )


class OperatorChoice(univ.Choice):
    componentType = NTs(
        NT("and", implicit(univ.Null(), 0)),
        NT("or", implicit(univ.Null(), 1)),
        NT("and-not", implicit(univ.Null(), 2)),
        NT("prox", implicit(ProximityOperator(), 3)),
    )


Operator = explicit(OperatorChoice(), 46)
"""C{Operator ::= [46] CHOICE {...}} (explicit: a CHOICE cannot be tagged implicitly)."""

_RPN_COMPONENTS: list[namedtype.NamedTypes] = [NTs()]


class RPNStructure(univ.Choice):
    """C{RPNStructure ::= CHOICE { op [0] Operand, rpnRpnOp [1] IMPLICIT SEQUENCE {...} }}.

    Recursive: the component list is installed after L{RpnRpnOp} exists and served through
    a property, so instances created inside RpnRpnOp see it too.
    """

    @property
    def componentType(self) -> namedtype.NamedTypes:  # type: ignore[override]  # recursive
        return _RPN_COMPONENTS[0]


class RpnRpnOp(univ.Sequence):
    tagSet = _implicit_tagset(univ.Sequence(), 1)
    componentType = NTs(
        NT("rpn1", RPNStructure()),
        NT("rpn2", RPNStructure()),
        NT("op", Operator),
    )


_RPN_COMPONENTS[0] = NTs(
    NT("op", explicit(Operand(), 0)),
    NT("rpnRpnOp", RpnRpnOp()),
)


class RPNQuery(univ.Sequence):
    componentType = NTs(NT("attributeSet", univ.ObjectIdentifier()), NT("rpn", RPNStructure()))


class Query(univ.Choice):
    componentType = NTs(
        NT("type-0", explicit(TaggedAny(), 0)),
        NT("type-1", implicit(RPNQuery(), 1)),
        NT("type-2", explicit(univ.OctetString(), 2)),
        NT("type-100", explicit(univ.OctetString(), 100)),
        NT("type-101", implicit(RPNQuery(), 101)),
        NT("type-102", explicit(univ.OctetString(), 102)),
        NT("type-104", implicit(External(), 104)),
    )


# --------------------------------------------------------------------------------------
# Records and diagnostics


class AddInfo(univ.Choice):
    componentType = NTs(
        NT("v2Addinfo", VisibleString()),
        NT("v3Addinfo", InternationalString()),
    )


class DefaultDiagFormat(univ.Sequence):
    componentType = NTs(
        NT("diagnosticSetId", univ.ObjectIdentifier()),
        NT("condition", univ.Integer()),
        # YAZ omits addinfo for some conditions; accept its absence (lenient reading).
        OPT("addinfo", AddInfo()),
    )


class DiagRec(univ.Choice):
    componentType = NTs(
        NT("defaultFormat", DefaultDiagFormat()),
        NT("externallyDefined", External()),
    )


class FragmentSyntax(univ.Choice):
    componentType = NTs(
        NT("externallyTagged", External()),
        NT("notExternallyTagged", univ.OctetString()),
    )


class RecordChoice(univ.Choice):
    componentType = NTs(
        NT("retrievalRecord", explicit(External(), 1)),
        NT("surrogateDiagnostic", explicit(DiagRec(), 2)),
        NT("startingFragment", explicit(FragmentSyntax(), 3)),
        NT("intermediateFragment", explicit(FragmentSyntax(), 4)),
        NT("finalFragment", explicit(FragmentSyntax(), 5)),
    )


class NamePlusRecord(univ.Sequence):
    componentType = NTs(
        OPT("name", implicit(DatabaseName(), 0)),
        NT("record", explicit(RecordChoice(), 1)),
    )


class Records(univ.Choice):
    componentType = NTs(
        NT("responseRecords", implicit(univ.SequenceOf(componentType=NamePlusRecord()), 28)),
        NT("nonSurrogateDiagnostic", implicit(DefaultDiagFormat(), 130)),
        NT("multipleNonSurDiagnostics", implicit(univ.SequenceOf(componentType=DiagRec()), 205)),
    )


class PresentStatus(univ.Integer):
    """C{[27] IMPLICIT INTEGER}: success 0, partial-1..4 1..4, failure 5."""

    tagSet = _implicit_tagset(univ.Integer(), 27)


class DatabaseSpecificEsn(univ.Sequence):
    componentType = NTs(NT("dbName", DatabaseName()), NT("esn", ElementSetName()))


class ElementSetNames(univ.Choice):
    componentType = NTs(
        NT("genericElementSetName", implicit(InternationalString(), 0)),
        NT("databaseSpecific", implicit(univ.SequenceOf(componentType=DatabaseSpecificEsn()), 1)),
    )


class SchemaChoice(univ.Choice):
    componentType = NTs(
        NT("oid", implicit(univ.ObjectIdentifier(), 1)),
        NT("uri", implicit(InternationalString(), 300)),
    )


class ElementSpec(univ.Choice):
    componentType = NTs(
        NT("elementSetName", implicit(InternationalString(), 1)),
        NT("externalEspec", implicit(External(), 2)),
    )


class Specification(univ.Sequence):
    componentType = NTs(
        OPT("schema", SchemaChoice()),
        OPT("elementSpec", explicit(ElementSpec(), 2)),
    )


class DbSpecificSpec(univ.Sequence):
    componentType = NTs(
        NT("db", explicit(DatabaseName(), 1)),
        NT("spec", implicit(Specification(), 2)),
    )


class CompSpec(univ.Sequence):
    componentType = NTs(
        NT("selectAlternativeSyntax", implicit(univ.Boolean(), 1)),
        OPT("generic", implicit(Specification(), 2)),
        OPT("dbSpecific", implicit(univ.SequenceOf(componentType=DbSpecificSpec()), 3)),
        OPT("recordSyntax", implicit(univ.SequenceOf(componentType=univ.ObjectIdentifier()), 4)),
    )


class RecordComposition(univ.Choice):
    componentType = NTs(
        NT("simple", explicit(ElementSetNames(), 19)),
        NT("complex", implicit(CompSpec(), 209)),
    )


class Range(univ.Sequence):
    componentType = NTs(
        NT("startingPosition", implicit(univ.Integer(), 1)),
        NT("numberOfRecords", implicit(univ.Integer(), 2)),
    )


# --------------------------------------------------------------------------------------
# Search, Present, Segment


class SearchRequest(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("smallSetUpperBound", implicit(univ.Integer(), 13)),
        NT("largeSetLowerBound", implicit(univ.Integer(), 14)),
        NT("mediumSetPresentNumber", implicit(univ.Integer(), 15)),
        NT("replaceIndicator", implicit(univ.Boolean(), 16)),
        NT("resultSetName", implicit(InternationalString(), 17)),
        NT("databaseNames", implicit(univ.SequenceOf(componentType=DatabaseName()), 18)),
        OPT("smallSetElementSetNames", explicit(ElementSetNames(), 100)),
        OPT("mediumSetElementSetNames", explicit(ElementSetNames(), 101)),
        OPT("preferredRecordSyntax", implicit(univ.ObjectIdentifier(), 104)),
        NT("query", explicit(Query(), 21)),
        OPT("additionalSearchInfo", implicit(OtherInformation(), 203)),
        OPT("otherInfo", OtherInformation()),
    )


class SearchResponse(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("resultCount", implicit(univ.Integer(), 23)),
        NT("numberOfRecordsReturned", implicit(univ.Integer(), 24)),
        NT("nextResultSetPosition", implicit(univ.Integer(), 25)),
        NT("searchStatus", implicit(univ.Boolean(), 22)),
        OPT("resultSetStatus", implicit(univ.Integer(), 26)),
        OPT("presentStatus", PresentStatus()),
        OPT("records", Records()),
        OPT("additionalSearchInfo", implicit(OtherInformation(), 203)),
        OPT("otherInfo", OtherInformation()),
    )


class PresentRequest(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("resultSetId", ResultSetId()),
        NT("resultSetStartPoint", implicit(univ.Integer(), 30)),
        NT("numberOfRecordsRequested", implicit(univ.Integer(), 29)),
        OPT("additionalRanges", implicit(univ.SequenceOf(componentType=Range()), 212)),
        OPT("recordComposition", RecordComposition()),
        OPT("preferredRecordSyntax", implicit(univ.ObjectIdentifier(), 104)),
        OPT("maxSegmentCount", implicit(univ.Integer(), 204)),
        OPT("maxRecordSize", implicit(univ.Integer(), 206)),
        OPT("maxSegmentSize", implicit(univ.Integer(), 207)),
        OPT("otherInfo", OtherInformation()),
    )


class Segment(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("numberOfRecordsReturned", implicit(univ.Integer(), 24)),
        NT("segmentRecords", implicit(univ.SequenceOf(componentType=NamePlusRecord()), 0)),
        OPT("otherInfo", OtherInformation()),
    )


class PresentResponse(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("numberOfRecordsReturned", implicit(univ.Integer(), 24)),
        NT("nextResultSetPosition", implicit(univ.Integer(), 25)),
        NT("presentStatus", PresentStatus()),
        OPT("records", Records()),
        OPT("otherInfo", OtherInformation()),
    )


# --------------------------------------------------------------------------------------
# Delete


class DeleteSetStatus(univ.Integer):
    """C{[33] IMPLICIT INTEGER}: success 0 ... resultSetInUse 10."""

    tagSet = _implicit_tagset(univ.Integer(), 33)


class ListStatus(univ.Sequence):
    componentType = NTs(NT("id", ResultSetId()), NT("status", DeleteSetStatus()))


class DeleteResultSetRequest(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("deleteFunction", implicit(univ.Integer(), 32)),
        OPT("resultSetList", univ.SequenceOf(componentType=ResultSetId())),
        OPT("otherInfo", OtherInformation()),
    )


class DeleteResultSetResponse(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("deleteOperationStatus", implicit(DeleteSetStatus(), 0)),
        OPT("deleteListStatuses", implicit(univ.SequenceOf(componentType=ListStatus()), 1)),
        OPT("numberNotDeleted", implicit(univ.Integer(), 34)),
        OPT("bulkStatuses", implicit(univ.SequenceOf(componentType=ListStatus()), 35)),
        OPT("deleteMessage", implicit(InternationalString(), 36)),
        OPT("otherInfo", OtherInformation()),
    )


# --------------------------------------------------------------------------------------
# Access control, resource control, resource report (decodable structure)


class SecurityChallenge(univ.Choice):
    componentType = NTs(
        NT("simpleForm", implicit(univ.OctetString(), 37)),
        NT("externallyDefined", explicit(External(), 0)),
    )


class SecurityChallengeResponse(univ.Choice):
    componentType = NTs(
        NT("simpleForm", implicit(univ.OctetString(), 38)),
        NT("externallyDefined", explicit(External(), 0)),
    )


class AccessControlRequest(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("securityChallenge", SecurityChallenge()),
        OPT("otherInfo", OtherInformation()),
    )


class AccessControlResponse(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        OPT("securityChallengeResponse", SecurityChallengeResponse()),
        OPT("diagnostic", explicit(DiagRec(), 223)),
        OPT("otherInfo", OtherInformation()),
    )


class ResourceControlRequest(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        OPT("suspendedFlag", implicit(univ.Boolean(), 39)),
        OPT("resourceReport", explicit(External(), 40)),
        OPT("partialResultsAvailable", implicit(univ.Integer(), 41)),
        NT("responseRequired", implicit(univ.Boolean(), 42)),
        OPT("triggeredRequestFlag", implicit(univ.Boolean(), 43)),
        OPT("otherInfo", OtherInformation()),
    )


class ResourceControlResponse(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("continueFlag", implicit(univ.Boolean(), 44)),
        OPT("resultSetWanted", implicit(univ.Boolean(), 45)),
        OPT("otherInfo", OtherInformation()),
    )


class TriggerResourceControlRequest(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("requestedAction", implicit(univ.Integer(), 46)),
        OPT("prefResourceReportFormat", implicit(univ.ObjectIdentifier(), 47)),
        OPT("resultSetWanted", implicit(univ.Boolean(), 48)),
        OPT("otherInfo", OtherInformation()),
    )


class ResourceReportRequest(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        OPT("opId", implicit(ReferenceId(), 210)),
        OPT("prefResourceReportFormat", implicit(univ.ObjectIdentifier(), 49)),
        OPT("otherInfo", OtherInformation()),
    )


class ResourceReportResponse(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("resourceReportStatus", implicit(univ.Integer(), 50)),
        OPT("resourceReport", explicit(External(), 51)),
        OPT("otherInfo", OtherInformation()),
    )


# --------------------------------------------------------------------------------------
# Scan


class ScanRequest(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("databaseNames", implicit(univ.SequenceOf(componentType=DatabaseName()), 3)),
        OPT("attributeSet", univ.ObjectIdentifier()),
        NT("termListAndStartPoint", AttributesPlusTerm()),
        OPT("stepSize", implicit(univ.Integer(), 5)),
        NT("numberOfTermsRequested", implicit(univ.Integer(), 6)),
        OPT("preferredPositionInResponse", implicit(univ.Integer(), 7)),
        OPT("otherInfo", OtherInformation()),
    )


class OccurrenceByDatabase(univ.Sequence):
    componentType = NTs(
        NT("db", DatabaseName()),
        OPT("num", implicit(univ.Integer(), 1)),
        OPT("otherDbInfo", OtherInformation()),
    )


class Occurrences(univ.Choice):
    componentType = NTs(
        NT("global", explicit(univ.Integer(), 2)),
        NT("byDatabase", implicit(univ.SequenceOf(componentType=OccurrenceByDatabase()), 3)),
    )


class OccurrenceByAttributesElement(univ.Sequence):
    componentType = NTs(
        NT("attributes", explicit(AttributeList(), 1)),
        OPT("occurrences", Occurrences()),
        OPT("otherOccurInfo", OtherInformation()),
    )


class TermInfo(univ.Sequence):
    componentType = NTs(
        NT("term", Term()),
        OPT("displayTerm", implicit(InternationalString(), 0)),
        OPT("suggestedAttributes", AttributeList()),
        OPT("alternativeTerm", implicit(univ.SequenceOf(componentType=AttributesPlusTerm()), 4)),
        OPT("globalOccurrences", implicit(univ.Integer(), 2)),
        OPT(
            "byAttributes",
            implicit(univ.SequenceOf(componentType=OccurrenceByAttributesElement()), 3),
        ),
        OPT("otherTermInfo", OtherInformation()),
    )


class Entry(univ.Choice):
    componentType = NTs(
        NT("termInfo", implicit(TermInfo(), 1)),
        NT("surrogateDiagnostic", explicit(DiagRec(), 2)),
    )


class ListEntries(univ.Sequence):
    componentType = NTs(
        OPT("entries", implicit(univ.SequenceOf(componentType=Entry()), 1)),
        OPT("nonsurrogateDiagnostics", implicit(univ.SequenceOf(componentType=DiagRec()), 2)),
    )


class ScanResponse(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        OPT("stepSize", implicit(univ.Integer(), 3)),
        NT("scanStatus", implicit(univ.Integer(), 4)),
        NT("numberOfEntriesReturned", implicit(univ.Integer(), 5)),
        OPT("positionOfTerm", implicit(univ.Integer(), 6)),
        OPT("entries", implicit(ListEntries(), 7)),
        OPT("attributeSet", implicit(univ.ObjectIdentifier(), 8)),
        OPT("otherInfo", OtherInformation()),
    )


# --------------------------------------------------------------------------------------
# Sort


class SortAttributes(univ.Sequence):
    componentType = NTs(NT("id", univ.ObjectIdentifier()), NT("list", AttributeList()))


class SortKey(univ.Choice):
    componentType = NTs(
        NT("sortfield", implicit(InternationalString(), 0)),
        NT("elementSpec", implicit(Specification(), 1)),
        NT("sortAttributes", implicit(SortAttributes(), 2)),
    )


class DbSort(univ.Sequence):
    componentType = NTs(NT("databaseName", DatabaseName()), NT("dbSort", SortKey()))


class SortElement(univ.Choice):
    componentType = NTs(
        NT("generic", explicit(SortKey(), 1)),
        NT("datbaseSpecific", implicit(univ.SequenceOf(componentType=DbSort()), 2)),
    )


class MissingValueAction(univ.Choice):
    componentType = NTs(
        NT("abort", implicit(univ.Null(), 1)),
        NT("null", implicit(univ.Null(), 2)),
        NT("missingValueData", implicit(univ.OctetString(), 3)),
    )


class SortKeySpec(univ.Sequence):
    componentType = NTs(
        NT("sortElement", SortElement()),
        NT("sortRelation", implicit(univ.Integer(), 1)),
        NT("caseSensitivity", implicit(univ.Integer(), 2)),
        OPT("missingValueAction", explicit(MissingValueAction(), 3)),
    )


class SortRequest(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT(
            "inputResultSetNames",
            implicit(univ.SequenceOf(componentType=InternationalString()), 3),
        ),
        NT("sortedResultSetName", implicit(InternationalString(), 4)),
        NT("sortSequence", implicit(univ.SequenceOf(componentType=SortKeySpec()), 5)),
        OPT("otherInfo", OtherInformation()),
    )


class SortResponse(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("sortStatus", implicit(univ.Integer(), 3)),
        OPT("resultSetStatus", implicit(univ.Integer(), 4)),
        OPT("diagnostics", implicit(univ.SequenceOf(componentType=DiagRec()), 5)),
        OPT("resultCount", implicit(univ.Integer(), 6)),
        OPT("otherInfo", OtherInformation()),
    )


# --------------------------------------------------------------------------------------
# Extended services


class Permission(univ.Sequence):
    componentType = NTs(
        OPT("userId", implicit(InternationalString(), 1)),
        NT("allowableFunctions", implicit(univ.SequenceOf(componentType=univ.Integer()), 2)),
    )


class ExtendedServicesRequest(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("function", implicit(univ.Integer(), 3)),
        NT("packageType", implicit(univ.ObjectIdentifier(), 4)),
        OPT("packageName", implicit(InternationalString(), 5)),
        OPT("userId", implicit(InternationalString(), 6)),
        OPT("retentionTime", implicit(IntUnit(), 7)),
        OPT("permissions", implicit(univ.SequenceOf(componentType=Permission()), 8)),
        OPT("description", implicit(InternationalString(), 9)),
        OPT("taskSpecificParameters", implicit(External(), 10)),
        NT("waitAction", implicit(univ.Integer(), 11)),
        OPT("elements", ElementSetName()),
        OPT("otherInfo", OtherInformation()),
    )


class ExtendedServicesResponse(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("operationStatus", implicit(univ.Integer(), 3)),
        OPT("diagnostics", implicit(univ.SequenceOf(componentType=DiagRec()), 4)),
        OPT("taskPackage", implicit(External(), 5)),
        OPT("otherInfo", OtherInformation()),
    )


# --------------------------------------------------------------------------------------
# Close


class CloseReasonValue(univ.Integer):
    """C{CloseReason ::= [211] IMPLICIT INTEGER} (values in L{errors.CloseReason})."""

    tagSet = _implicit_tagset(univ.Integer(), 211)


class Close(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("closeReason", CloseReasonValue()),
        OPT("diagnosticInformation", implicit(InternationalString(), 3)),
        OPT("resourceReportFormat", implicit(univ.ObjectIdentifier(), 4)),
        OPT("resourceReport", explicit(External(), 5)),
        OPT("otherInfo", OtherInformation()),
    )


# --------------------------------------------------------------------------------------
# Duplicate detection (2001 addition; decodable structure)


class DuplicateDetectionCriterion(univ.Choice):
    componentType = NTs(
        NT("levelOfMatch", implicit(univ.Integer(), 1)),
        NT("caseSensitive", implicit(univ.Null(), 2)),
        NT("punctuationSensitive", implicit(univ.Null(), 3)),
        NT("regularExpression", implicit(External(), 4)),
        NT("rsDuplicates", implicit(univ.Null(), 5)),
    )


class RetentionCriterion(univ.Choice):
    componentType = NTs(
        NT("numberOfEntries", implicit(univ.Integer(), 1)),
        NT("percentOfEntries", implicit(univ.Integer(), 2)),
        NT("duplicatesOnly", implicit(univ.Null(), 3)),
        NT("discardRsDuplicates", implicit(univ.Null(), 4)),
    )


class SortCriterion(univ.Choice):
    componentType = NTs(
        NT("mostComprehensive", implicit(univ.Null(), 1)),
        NT("leastConmprehensive", implicit(univ.Null(), 2)),
        NT("mostRecent", implicit(univ.Null(), 3)),
        NT("oldest", implicit(univ.Null(), 4)),
        NT("leastCost", implicit(univ.Null(), 5)),
        NT(
            "preferredDatabases",
            implicit(univ.SequenceOf(componentType=InternationalString()), 6),
        ),
    )


class DuplicateDetectionRequest(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("inputResultSetIds", implicit(univ.SequenceOf(componentType=InternationalString()), 3)),
        NT("outputResultSetName", implicit(InternationalString(), 4)),
        OPT("applicablePortionOfRecord", implicit(External(), 5)),
        OPT(
            "duplicateDetectionCriteria",
            implicit(univ.SequenceOf(componentType=DuplicateDetectionCriterion()), 6),
        ),
        OPT("clustering", implicit(univ.Boolean(), 7)),
        NT("retentionCriteria", implicit(univ.SequenceOf(componentType=RetentionCriterion()), 8)),
        OPT("sortCriteria", implicit(univ.SequenceOf(componentType=SortCriterion()), 9)),
        OPT("otherInfo", OtherInformation()),
    )


class DuplicateDetectionResponse(univ.Sequence):
    componentType = NTs(
        OPT("referenceId", ReferenceId()),
        NT("status", implicit(univ.Integer(), 3)),
        OPT("resultSetCount", implicit(univ.Integer(), 4)),
        OPT("diagnostics", implicit(univ.SequenceOf(componentType=DiagRec()), 5)),
        OPT("otherInfo", OtherInformation()),
    )


# --------------------------------------------------------------------------------------
# The PDU


PDU_ARMS: dict[str, tuple[int, type[univ.Sequence]]] = {
    "initRequest": (20, InitializeRequest),
    "initResponse": (21, InitializeResponse),
    "searchRequest": (22, SearchRequest),
    "searchResponse": (23, SearchResponse),
    "presentRequest": (24, PresentRequest),
    "presentResponse": (25, PresentResponse),
    "deleteResultSetRequest": (26, DeleteResultSetRequest),
    "deleteResultSetResponse": (27, DeleteResultSetResponse),
    "accessControlRequest": (28, AccessControlRequest),
    "accessControlResponse": (29, AccessControlResponse),
    "resourceControlRequest": (30, ResourceControlRequest),
    "resourceControlResponse": (31, ResourceControlResponse),
    "triggerResourceControlRequest": (32, TriggerResourceControlRequest),
    "resourceReportRequest": (33, ResourceReportRequest),
    "resourceReportResponse": (34, ResourceReportResponse),
    "scanRequest": (35, ScanRequest),
    "scanResponse": (36, ScanResponse),
    "sortRequest": (43, SortRequest),
    "sortResponse": (44, SortResponse),
    "segmentRequest": (45, Segment),
    "extendedServicesRequest": (46, ExtendedServicesRequest),
    "extendedServicesResponse": (47, ExtendedServicesResponse),
    "close": (48, Close),
    "duplicateDetectionRequest": (49, DuplicateDetectionRequest),
    "duplicateDetectionResponse": (50, DuplicateDetectionResponse),
}
"""PDU arm name -> (context tag number, type), in the module's order."""


class PDU(univ.Choice):
    """The Z39.50 APDU: C{CHOICE { initRequest [20] IMPLICIT InitializeRequest, ... }}."""

    componentType = NTs(
        *(NT(name, implicit(cls(), number)) for name, (number, cls) in PDU_ARMS.items())
    )
