"""Pages from the Jinja2 templates beside this module, autoescaped, with the
filters they use to show hookline's messages to people."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jinja2
from google.protobuf import json_format, timestamp_pb2

from hookline.v1 import jobs_pb2, webhooks_pb2

# Header names whose values may be credentials: a webhook's extra headers often
# carry a receiver's token, and the console never shows a secret.
_CREDENTIAL_WORDS = ("auth", "token", "secret", "key", "cookie", "password", "session", "signature")
HIDDEN = "(hidden: may hold a credential)"


def when(ts: timestamp_pb2.Timestamp | None) -> str:
    """A time as people read it, in UTC to the millisecond; '' when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    moment = datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"


def delivery_state(value: int) -> str:
    return webhooks_pb2.DeliveryState.Name(value).removeprefix("DELIVERY_STATE_")  # type: ignore[arg-type]


def job_state(value: int) -> str:
    return jobs_pb2.JobState.Name(value).removeprefix("JOB_STATE_")  # type: ignore[arg-type]


def job_code(value: int) -> str:
    name = jobs_pb2.JobStatusCode.Name(value)  # type: ignore[arg-type]
    return "" if value == 0 else name


def text_of(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def pretty(data: bytes | str) -> str:
    """JSON indented for reading, or the text as it is when it is not JSON."""
    text = text_of(data) if isinstance(data, bytes) else data
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def shown_header(name: str, value: str) -> str:
    lowered = name.lower()
    return HIDDEN if any(word in lowered for word in _CREDENTIAL_WORDS) else value


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hookline.server.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        delivery_state=delivery_state,
        job_state=job_state,
        job_code=job_code,
        text_of=text_of,
        pretty=pretty,
        shown_header=shown_header,
        json_value=_json_value,
    )
    return env


def _json_value(value: Any) -> str:
    """A google.protobuf.Value (or Struct) as indented JSON."""
    return json.dumps(json_format.MessageToDict(value), indent=2, ensure_ascii=False)
