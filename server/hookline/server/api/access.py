"""Who may call what: every RPC the server answers, with the key roles allowed to
call it. The interceptor reads this table alone. A method missing from it is
refused for every key, so a new RPC is closed until it is listed here (a test
checks the table covers exactly the methods of the services)."""

from __future__ import annotations

import enum

from ..storage import spaces


class Access(enum.Enum):
    """Who may call a method; the value is the key roles allowed."""

    OPEN = frozenset[str]()  # no key needed: health checks and reflection, so generic tools work
    MANAGEMENT = frozenset({"management"})
    # A solver key runs jobs of its space's flows, and nothing else.
    RUNS_JOBS = frozenset({"management", "solver"})
    # A publisher key publishes the space's events and reads events and types,
    # and nothing else: no secrets, no webhooks, no jobs.
    PUBLISHES = frozenset({"management", "publisher"})


OPEN, MANAGEMENT, RUNS_JOBS, PUBLISHES = Access.OPEN, Access.MANAGEMENT, Access.RUNS_JOBS, Access.PUBLISHES
# Every role a key can have is one the table grants something to.
assert set(spaces.ROLES) == set().union(*(a.value for a in Access))

_WEBHOOKS = "/hookline.v1.WebhookService/"
_FLOWS = "/hookline.v1.FlowService/"
_JOBS = "/hookline.v1.JobService/"
_EVENTS = "/hookline.v1.EventService/"

METHOD_ACCESS: dict[str, Access] = {
    _WEBHOOKS + "CreateWebhook": MANAGEMENT,
    _WEBHOOKS + "GetWebhook": MANAGEMENT,
    _WEBHOOKS + "ListWebhooks": MANAGEMENT,
    _WEBHOOKS + "UpdateWebhook": MANAGEMENT,
    _WEBHOOKS + "DeleteWebhook": MANAGEMENT,
    _WEBHOOKS + "RotateWebhookSecret": MANAGEMENT,
    _WEBHOOKS + "SendTestEvent": MANAGEMENT,
    _WEBHOOKS + "ListEventTypes": MANAGEMENT,
    _WEBHOOKS + "GetWebhookStats": MANAGEMENT,
    _WEBHOOKS + "GetDelivery": MANAGEMENT,
    _WEBHOOKS + "ListDeliveries": MANAGEMENT,
    _WEBHOOKS + "ListAttempts": MANAGEMENT,
    _WEBHOOKS + "RetryDelivery": MANAGEMENT,
    _WEBHOOKS + "RecoverDeliveries": MANAGEMENT,
    _WEBHOOKS + "ListEvents": MANAGEMENT,
    _WEBHOOKS + "GetEvent": MANAGEMENT,
    _WEBHOOKS + "WatchDeliveries": MANAGEMENT,
    _FLOWS + "CreateFlow": MANAGEMENT,
    _FLOWS + "GetFlow": MANAGEMENT,
    _FLOWS + "ListFlows": MANAGEMENT,
    _FLOWS + "UpdateFlow": MANAGEMENT,
    _FLOWS + "DeleteFlow": MANAGEMENT,
    _FLOWS + "SetFlowWebhooks": MANAGEMENT,
    _FLOWS + "AddFlowWebhook": MANAGEMENT,
    _FLOWS + "RemoveFlowWebhook": MANAGEMENT,
    _FLOWS + "ListFlowWebhooks": MANAGEMENT,
    _JOBS + "StartJob": RUNS_JOBS,
    _JOBS + "GetJob": RUNS_JOBS,
    _JOBS + "ListJobs": RUNS_JOBS,
    _JOBS + "CancelJob": RUNS_JOBS,
    _JOBS + "CancelJobs": RUNS_JOBS,
    _JOBS + "WatchJob": RUNS_JOBS,
    _EVENTS + "CreateEventType": MANAGEMENT,
    _EVENTS + "GetEventType": MANAGEMENT,
    _EVENTS + "ListEventTypes": PUBLISHES,
    _EVENTS + "UpdateEventType": MANAGEMENT,
    _EVENTS + "DeleteEventType": MANAGEMENT,
    _EVENTS + "PublishEvent": PUBLISHES,
    _EVENTS + "PublishEvents": PUBLISHES,
    _EVENTS + "ListEvents": PUBLISHES,
    _EVENTS + "GetEvent": PUBLISHES,
    "/grpc.health.v1.Health/Check": OPEN,
    "/grpc.health.v1.Health/List": OPEN,
    "/grpc.health.v1.Health/Watch": OPEN,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": OPEN,
}


def access_of(method: str) -> Access | None:
    """Who may call `method`; None for a method the table does not list, which no key may call."""
    return METHOD_ACCESS.get(method)
