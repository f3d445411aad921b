"""How each resource looks to a person: its fields, its table row, its colour."""

from __future__ import annotations

import json
import re
from typing import Any

import grpc

from hookline.client._values import from_value
from hookline.v1 import events_pb2, flows_pb2, jobs_pb2, webhooks_pb2

from ._context import Context
from ._output import Printer, enum_name, pretty_json, timestamp

ENDED_DELIVERY = (
    webhooks_pb2.DELIVERY_STATE_SUCCEEDED,
    webhooks_pb2.DELIVERY_STATE_FAILED,
    webhooks_pb2.DELIVERY_STATE_CANCELED,
)
ENDED_JOB = (jobs_pb2.JOB_STATE_COMPLETED, jobs_pb2.JOB_STATE_ERROR, jobs_pb2.JOB_STATE_CANCELED)

_STYLES = {
    "WAITING": ("dim",),
    "PENDING": ("dim",),
    "QUEUED": ("blue",),
    "RUNNING": ("cyan",),
    "SENDING": ("cyan",),
    "ATTEMPT_STARTED": ("cyan",),
    "CANCELING": ("yellow",),
    "RETRY_SCHEDULED": ("yellow",),
    "COMPLETED": ("bold", "green"),
    "SUCCEEDED": ("bold", "green"),
    "ERROR": ("bold", "red"),
    "FAILED": ("bold", "red"),
    "CANCELED": ("magenta",),
}


def styled(out: Printer, name: str, width: int = 0) -> str:
    """`name` in its colour, padded to `width` (outside the colour codes)."""
    return out.paint(name, *_STYLES.get(name, ())) + " " * max(0, width - len(name))


def status_style(code: int) -> tuple[str, ...]:
    return ("green",) if 200 <= code < 300 else ("red",)


# --- webhooks --------------------------------------------------------------------------


class WebhookNames:
    """Webhook aliases by id, looked up once each; the id when there is none
    (or the webhook is gone)."""

    def __init__(self, ctx: Context):
        self._ctx = ctx
        self._names: dict[str, str] = {}

    def __call__(self, webhook_id: str) -> str:
        if webhook_id not in self._names:
            try:
                webhook = self._ctx.call(
                    self._ctx.client.webhooks.GetWebhook, webhooks_pb2.GetWebhookRequest(id=webhook_id)
                )
                self._names[webhook_id] = webhook.alias or webhook_id
            except grpc.RpcError:
                self._names[webhook_id] = webhook_id
        return self._names[webhook_id]


def enabled_text(webhook: webhooks_pb2.Webhook) -> str:
    if webhook.enabled:
        return "yes"
    return f"no ({webhook.disabled_reason})" if webhook.disabled_reason else "no"


def show_webhook(ctx: Context, webhook: webhooks_pb2.Webhook, *extra: tuple[str, Any]) -> None:
    ctx.out.fields(
        [
            ("id", webhook.id),
            ("alias", webhook.alias),
            ("url", webhook.url),
            ("description", webhook.description or None),
            ("enabled", enabled_text(webhook)),
            ("events", ", ".join(webhook.event_types)),
            ("filter", webhook.filter or None),
            ("headers", ", ".join(_header_text(k, v) for k, v in sorted(webhook.headers.items())) or None),
            ("rate limit", f"{webhook.rate_limit_per_s}/s" if webhook.rate_limit_per_s else None),
            ("created", timestamp(webhook.create_time)),
            ("updated", timestamp(webhook.update_time)),
            *extra,
        ]
    )


# Extra headers that carry a credential (Authorization, X-Api-Key, ...): a person
# sees that they are set; --json, for scripts, still holds them.
_CREDENTIAL_HEADER = re.compile(r"auth|cookie|token|secret|key|password|signature", re.IGNORECASE)


def _header_text(name: str, value: str) -> str:
    return f"{name}: (set, not shown)" if _CREDENTIAL_HEADER.search(name) else f"{name}: {value}"


# --- flows -----------------------------------------------------------------------------


def show_flow(ctx: Context, flow: flows_pb2.Flow) -> None:
    names = WebhookNames(ctx)
    ctx.out.fields(
        [
            ("id", flow.id),
            ("alias", flow.alias),
            ("name", flow.name or None),
            ("description", flow.description or None),
            ("version", flow.version),
            ("webhooks", ", ".join(_named(names(w), w) for w in flow.webhook_ids) or "none"),
            ("created", timestamp(flow.create_time)),
            ("updated", timestamp(flow.update_time)),
            ("definition", pretty_json(from_value(flow.definition))),
        ]
    )


# --- jobs ------------------------------------------------------------------------------


def job_state(job: jobs_pb2.Job) -> str:
    return enum_name(jobs_pb2.JobState, job.state, "JOB_STATE_")


def job_code(job: jobs_pb2.Job) -> str:
    return enum_name(jobs_pb2.JobStatusCode, job.code, "")


def flow_of(job: jobs_pb2.Job) -> str:
    return f"{job.flow_alias or job.flow_id} v{job.flow_version}"


def show_job(ctx: Context, job: jobs_pb2.Job) -> None:
    ctx.out.fields(
        [
            ("id", job.id),
            ("flow", f"{flow_of(job)} ({job.flow_id})"),
            ("state", styled(ctx.out, job_state(job))),
            ("code", job_code(job)),
            ("message", job.message or None),
            ("correlation id", job.correlation_id or None),
            ("idempotency key", job.idempotency_key or None),
            ("created", timestamp(job.create_time)),
            ("claimed", timestamp(job.claim_time) or None),
            ("ended", timestamp(job.end_time) or None),
            ("input", _json_field(job, "input")),
            ("output", _json_field(job, "output")),
        ]
    )


def _json_field(message: Any, name: str) -> str | None:
    if not message.HasField(name):
        return None
    return pretty_json(from_value(getattr(message, name)))


# --- events ----------------------------------------------------------------------------


def show_event(ctx: Context, event: events_pb2.Event) -> None:
    ctx.out.fields(
        [
            ("id", event.id),
            ("type", event.event_type),
            ("job", event.job_id or None),
            ("flow", event.flow_id or None),
            ("webhook", event.webhook_id or None),
            ("created", timestamp(event.create_time)),
            ("body", _body_text(event.body)),
        ]
    )


def _body_text(body: bytes) -> str:
    """The body as pretty JSON (the bytes sent are compact), else as text."""
    try:
        return pretty_json(json.loads(body))
    except ValueError:
        return body.decode("utf-8", "replace")


# --- deliveries ------------------------------------------------------------------------


def delivery_state(delivery: webhooks_pb2.Delivery) -> str:
    return enum_name(webhooks_pb2.DeliveryState, delivery.state, "DELIVERY_STATE_")


def delivery_progress(delivery: webhooks_pb2.Delivery) -> str:
    parts = [delivery_state(delivery), f"{delivery.attempt_count} attempt{'s' if delivery.attempt_count != 1 else ''}"]
    if delivery.last_status_code:
        parts.append(f"last status {delivery.last_status_code}")
    elif delivery.last_error:
        parts.append(delivery.last_error)
    return ", ".join(parts)


def last_result(delivery: webhooks_pb2.Delivery) -> str:
    if delivery.last_status_code:
        return str(delivery.last_status_code)
    return delivery.last_error


def show_delivery(ctx: Context, delivery: webhooks_pb2.Delivery, names: WebhookNames) -> None:
    pending = delivery.state == webhooks_pb2.DELIVERY_STATE_PENDING
    ctx.out.fields(
        [
            ("id", delivery.id),
            ("event", f"{delivery.event_type} ({delivery.event_id})"),
            ("webhook", _named(names(delivery.webhook_id), delivery.webhook_id)),
            ("job", delivery.job_id or None),
            ("flow", delivery.flow_id or None),
            ("state", styled(ctx.out, delivery_state(delivery))),
            ("attempts", delivery.attempt_count),
            ("last status", delivery.last_status_code or None),
            ("last error", delivery.last_error or None),
            ("next attempt", (timestamp(delivery.next_attempt_time) or None) if pending else None),
            ("created", timestamp(delivery.create_time)),
            ("updated", timestamp(delivery.update_time)),
        ]
    )


def _named(name: str, id_: str) -> str:
    return id_ if name == id_ else f"{name} ({id_})"


def delivery_row(delivery: webhooks_pb2.Delivery, names: WebhookNames) -> tuple[Any, ...]:
    return (
        delivery.id,
        delivery.event_type,
        names(delivery.webhook_id),
        delivery_state(delivery),
        delivery.attempt_count,
        last_result(delivery),
        delivery.job_id,
        timestamp(delivery.update_time),
    )


DELIVERY_HEADERS = ("ID", "EVENT", "WEBHOOK", "STATE", "ATTEMPTS", "LAST", "JOB", "UPDATED")


def attempt_row(attempt: webhooks_pb2.Attempt) -> tuple[Any, ...]:
    return (
        attempt.number,
        timestamp(attempt.start_time),
        f"{attempt.duration_ms} ms",
        attempt.status_code or "-",
        attempt.error,
        _body_preview(attempt),
    )


ATTEMPT_HEADERS = ("#", "STARTED", "TOOK", "STATUS", "ERROR", "RESPONSE")


def _body_preview(attempt: webhooks_pb2.Attempt) -> str:
    text = attempt.response_body.decode("utf-8", "replace").strip()
    return text + (" ..." if attempt.response_truncated else "")
