"""SRU query plans kept per distinct query: the same answers, and nothing kept that may change.

Over the in-memory catalogue the listener tests use: a repeated query reaches the catalogue
with the very plan planned the first time and answers the same document; a query naming a
kept result set is planned every time, so once the set has expired it is diagnostic 51
again; a query that fails keeps failing with the same diagnostic. (The daemon tests in
``test_sru_clients`` run the same paths through yaz-client, zoomsh and sruthi.)
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.task import Clock

from gateway.config import Config
from gateway.sru.service import Outcome, SruService
from gateway.testing import FakeCatalogue


class Planned(FakeCatalogue):
    """The in-memory catalogue, remembering the plans it was asked to search."""

    def __init__(self) -> None:
        super().__init__()
        self.plans: list[Any] = []

    def search(self, plan: Any) -> Any:
        self.plans.append(plan)
        return super().search(plan)


def _ask(service: SruService, **parameters: str) -> Outcome:
    outcomes: list[Outcome] = []
    service.handle(list({"version": "1.2", **parameters}.items()), peer=None
                   ).addCallback(outcomes.append)
    [outcome] = outcomes
    return outcome


def test_repeated_query_reuses_its_plan_and_answers_the_same() -> None:
    catalogue = Planned()
    service = SruService(catalogue, config=lambda: Config(), clock=Clock())
    first = _ask(service, query="rec.id=rec0001", recordSchema="dc")
    second = _ask(service, query="rec.id=rec0001", recordSchema="dc")
    assert first.hits == 1 and first.body == second.body
    assert len(catalogue.plans) == 2 and catalogue.plans[0] is catalogue.plans[1]
    other = _ask(service, query="rec.id=rec0002", recordSchema="dc")
    assert catalogue.plans[2] is not catalogue.plans[0] and other.body != first.body


def test_result_set_query_is_planned_again_after_the_set_expired() -> None:
    clock = Clock()
    service = SruService(Planned(), config=lambda: Config(), clock=clock)
    kept = _ask(service, query="rec.id=rec0001", resultSetTTL="30")
    found = re.search(rb"<zs:resultSetId>([^<]+)<", kept.body)
    assert found is not None
    query = f'cql.resultSetId="{found.group(1).decode()}"'
    assert _ask(service, query=query).hits == 1
    clock.advance(31)
    gone = _ask(service, query=query)
    assert gone.outcome == "diagnostic 51" and b"info:srw/diagnostic/1/51" in gone.body


def test_failing_query_fails_the_same_every_time() -> None:
    service = SruService(Planned(), config=lambda: Config(), clock=Clock())
    answers = [_ask(service, query="no.such.index=x") for _ in range(2)]
    assert answers[0].outcome.startswith("diagnostic") and answers[0].body == answers[1].body
