# -*- test-case-name: tests.gateway.ncip.test_workflow_rules -*-
"""Resource-sharing workflows: the state-changing NCIP services, each step run exactly once.

The steps are in :mod:`gateway.ncip.temporary_items` (AcceptItem, CreateItem, DeleteItem),
:mod:`gateway.ncip.loans` (CheckOutItem, CheckInItem, RenewItem, fees) and
:mod:`gateway.ncip.requests` (RequestItem, CancelRequestItem, LookupRequest, notifications);
:mod:`gateway.ncip.exactly_once` runs them on the circulation system with the gateway's books.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.domain.circulation import ICirculation
from gateway.ncip import loans, requests, temporary_items
from gateway.ncip.exactly_once import ExactlyOnce, Host, StepFunction
from gateway.ncip.service import Handler, NcipCall, Reply
from protocols.ncip import messages as m
from protocols.ncip.responses import NCIPResponse

# The state-changing services and their steps.
CHANGES: dict[str, StepFunction] = {
    "AcceptItem": temporary_items.accept_item,
    "CreateItem": temporary_items.create_item,   # idempotent by state: see there
    "DeleteItem": temporary_items.delete_item,
    "CheckOutItem": loans.check_out_item,
    "CheckInItem": loans.check_in_item,
    "RenewItem": loans.renew_item,
    "CreateUserFiscalTransaction": loans.fiscal_transaction,
    "RequestItem": requests.request_item,
    "CancelRequestItem": requests.cancel_request_item,
    **{service: requests.notification for service in m.NOTIFICATIONS},
}


class Workflows:
    """The workflow services on a circulation system, registered on an NCIP service."""

    def __init__(self, host: Host, circulation: ICirculation) -> None:
        self.exactly_once = ExactlyOnce(host, circulation)

    def register(self, handlers: dict[str, Handler]) -> None:
        """Add the workflow services to an NCIP service's handler table."""
        for service, step in CHANGES.items():
            handlers[service] = self._changing(step)
        handlers["LookupRequest"] = self._reading(requests.lookup_request)

    def _changing(self, step: StepFunction) -> Callable[[NcipCall], Awaitable[Reply]]:
        def handle(call: NcipCall) -> Awaitable[Reply]:
            return self.exactly_once.change(call, step)
        return handle

    def _reading(self, step: StepFunction) -> Callable[[NcipCall], Awaitable[NCIPResponse]]:
        async def handle(call: NcipCall) -> NCIPResponse:
            return await self.exactly_once.read(call, step)
        return handle
