"""The verification samples of README.md, run exactly as written against real
deliveries: hookline signs and sends them to the loopback receiver, and each
sample gets the received raw body, headers and the webhook's secret.

Every sample must accept the delivery and reject it once one byte of the body
changes (the body staying valid JSON, so only the signature can tell), and
reject another secret and a body without its signature headers. The Standard Webhooks samples must also accept either
secret while a rotation's grace period runs and reject a correctly signed but
stale message; the DecisionRules-scheme samples accept a replay, as the README
warns.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2

from hookline import signing
from hookline.client import (
    Client,
    CreateFlowRequest,
    CreateWebhookRequest,
    Flow,
    RotateWebhookSecretRequest,
    SendTestEventRequest,
    StartJobRequest,
    Webhook,
)

from .readme import README, Sample, readme_samples, run

STANDARD = "standard"  # webhook-id / webhook-timestamp / webhook-signature
DECISIONRULES = "decisionrules"  # X-Webhook-Signature


@dataclass(frozen=True)
class Expected:
    language: str
    scheme: str
    rejects_with: str  # the class name of what the sample raises on a bad request


SAMPLES = {
    "python-hookline": Expected("python", STANDARD, "VerificationError"),
    "python-standardwebhooks": Expected("python", STANDARD, "WebhookVerificationError"),
    "python-hmac": Expected("python", STANDARD, "InvalidWebhook"),
    "node-crypto": Expected("node", STANDARD, "Error"),
    "node-standardwebhooks": Expected("node", STANDARD, "WebhookVerificationError"),
    "python-hmac-decisionrules": Expected("python", DECISIONRULES, "InvalidWebhook"),
    "node-crypto-decisionrules": Expected("node", DECISIONRULES, "Error"),
}
STANDARD_SAMPLES = [name for name, expected in SAMPLES.items() if expected.scheme == STANDARD]
DECISIONRULES_SAMPLES = [name for name, expected in SAMPLES.items() if expected.scheme == DECISIONRULES]
PYTHON_SAMPLES = [name for name, expected in SAMPLES.items() if expected.language == "python"]

# A marker in every delivered body; its last byte is the one the tampering flips.
MARK = b"tamper-me"
WAIT_S = 15.0


@dataclass(frozen=True)
class Delivered:
    """What the receiver got, and the secret to check it with."""

    body: bytes
    headers: dict[str, str]  # names lower-cased, as Node.js hands them to a handler
    secret: str


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def tampered(body: bytes) -> bytes:
    """The body with one byte changed inside a JSON string, so it still parses."""
    at = body.index(MARK) + len(MARK) - 1
    changed = body[:at] + bytes([body[at] ^ 1]) + body[at + 1 :]
    assert sum(a != b for a, b in zip(body, changed, strict=True)) == 1
    json.loads(changed)
    return changed


# --- the samples -----------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(node_modules: object) -> dict[str, Sample]:
    """The README's samples by name (the Node.js ones need node_modules installed)."""
    return readme_samples()


def accepts(sample: Sample, delivered: Delivered, **changes: Any) -> Any:
    """The message the sample returns for the delivery (with `changes` applied)."""
    request = {"body": delivered.body, "headers": delivered.headers, "secret": delivered.secret, **changes}
    outcome = run(sample, **request)
    assert outcome.accepted, f"{sample.name} rejected it: {outcome.error}: {outcome.detail}"
    return outcome.message


def rejects(sample: Sample, delivered: Delivered, **changes: Any) -> str:
    """The sample rejects the delivery (with `changes` applied) the way it says it does."""
    request = {"body": delivered.body, "headers": delivered.headers, "secret": delivered.secret, **changes}
    outcome = run(sample, **request)
    assert not outcome.accepted, f"{sample.name} accepted it"
    assert outcome.error == SAMPLES[sample.name].rejects_with, (
        f"{sample.name} failed with {outcome.error} ({outcome.detail}), "
        f"not its {SAMPLES[sample.name].rejects_with}: a bug in the sample?"
    )
    return outcome.detail


# --- real deliveries ----------------------------------------------------------------


def create_webhook(client: Client, url: str, event_types: list[str]) -> tuple[str, str]:
    """A new webhook's id and secret."""
    created = client.webhooks.CreateWebhook(
        CreateWebhookRequest(webhook=Webhook(alias=unique("samples"), url=url, event_types=event_types))
    )
    return created.webhook.id, created.secret


def received(receiver: Any, path: str, secret: str) -> Delivered:
    [request] = receiver.wait_for(path, 1, timeout=WAIT_S)
    assert MARK in request.body
    return Delivered(request.body, request.headers, secret)


@pytest.fixture(scope="module")
def test_event(client: Client, receiver: Any) -> Delivered:
    """A WEBHOOK.TEST delivery from SendTestEvent."""
    path = "/samples/test-event"
    webhook_id, secret = create_webhook(client, receiver.url(path), ["WEBHOOK.TEST"])
    client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook_id, message=f"{MARK.decode()}: README samples"))
    return received(receiver, path, secret)


@pytest.fixture(scope="module")
def job_completed(client: Client, receiver: Any) -> Delivered:
    """A JOB.COMPLETED delivery whose body holds non-ASCII UTF-8."""
    path = "/samples/job-completed"
    webhook_id, secret = create_webhook(client, receiver.url(path), ["JOB.COMPLETED"])
    definition = struct_pb2.Struct()
    definition.update({"steps": [{"transform": "{total: sum(items[].price), city: city}"}]})
    flow = client.flows.CreateFlow(
        CreateFlowRequest(flow=Flow(alias=unique("samples"), definition=definition, webhook_ids=[webhook_id]))
    )
    job_input = {"note": MARK.decode(), "city": "Zürich 🪝", "items": [{"price": 5}, {"price": 7.5}]}
    client.jobs.StartJob(StartJobRequest(flow=flow.id, input=json_format.ParseDict(job_input, struct_pb2.Value())))
    delivered = received(receiver, path, secret)
    assert "Zürich 🪝".encode() in delivered.body
    return delivered


@pytest.fixture(params=["test_event", "job_completed"])
def delivered(request: pytest.FixtureRequest) -> Delivered:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def rotated(client: Client, receiver: Any) -> tuple[Delivered, str]:
    """A WEBHOOK.TEST delivery signed during a rotation's grace period (with the
    new secret), and the previous secret."""
    path = "/samples/rotation"
    webhook_id, previous = create_webhook(client, receiver.url(path), ["WEBHOOK.TEST"])
    newest = client.webhooks.RotateWebhookSecret(RotateWebhookSecretRequest(id=webhook_id)).secret
    client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook_id, message=f"{MARK.decode()}: rotation"))
    delivered = received(receiver, path, newest)
    assert len(delivered.headers["webhook-signature"].split()) == 2
    return delivered, previous


# --- the tests ----------------------------------------------------------------------


def test_readme_marks_each_sample_once_in_its_language(samples: dict[str, Sample]) -> None:
    assert sorted(samples) == sorted(SAMPLES)
    for name, sample in samples.items():
        assert sample.language == SAMPLES[name].language, name


def test_readme_warns_next_to_the_decisionrules_samples_that_they_do_not_stop_replays() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Verifying a delivery") :]
    section = section[: section.index("\n## ")]
    warning = section.index("signs no timestamp, so it does not stop replays")
    for name in DECISIONRULES_SAMPLES:
        assert 0 < section.index(f"<!-- sample: {name} -->") - warning < 1500, name


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_accepts_a_real_delivery(samples: dict[str, Sample], name: str, delivered: Delivered) -> None:
    message = accepts(samples[name], delivered)
    assert message == json.loads(delivered.body)
    assert message["metadata"]["eventId"] == delivered.headers["webhook-id"]


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_rejects_the_delivery_with_one_byte_of_the_body_changed(
    samples: dict[str, Sample], name: str, delivered: Delivered
) -> None:
    rejects(samples[name], delivered, body=tampered(delivered.body))


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_rejects_the_delivery_with_another_secret(
    samples: dict[str, Sample], name: str, test_event: Delivered
) -> None:
    rejects(samples[name], test_event, secret=signing.generate_secret())


@pytest.mark.parametrize("name", PYTHON_SAMPLES)
def test_python_sample_matches_header_names_in_any_case(
    samples: dict[str, Sample], name: str, test_event: Delivered
) -> None:
    # Flask and others hand over headers as Title-Case names.
    headers = {key.title(): value for key, value in test_event.headers.items()}
    assert accepts(samples[name], test_event, headers=headers) == json.loads(test_event.body)


@pytest.mark.parametrize("name", STANDARD_SAMPLES)
@pytest.mark.parametrize("secret", ["newest", "previous"])
def test_standard_webhooks_sample_accepts_either_secret_during_a_rotation(
    samples: dict[str, Sample], name: str, secret: str, rotated: tuple[Delivered, str]
) -> None:
    delivered, previous = rotated
    key = delivered.secret if secret == "newest" else previous
    assert accepts(samples[name], delivered, secret=key) == json.loads(delivered.body)


@pytest.mark.parametrize("name", DECISIONRULES_SAMPLES)
def test_decisionrules_sample_accepts_only_the_newest_secret_during_a_rotation(
    samples: dict[str, Sample], name: str, rotated: tuple[Delivered, str]
) -> None:
    delivered, previous = rotated
    accepts(samples[name], delivered)
    rejects(samples[name], delivered, secret=previous)


@pytest.mark.parametrize("name", STANDARD_SAMPLES)
def test_standard_webhooks_sample_rejects_a_correctly_signed_stale_message(
    samples: dict[str, Sample], name: str, test_event: Delivered
) -> None:
    ten_minutes_ago = int(time.time()) - 600
    signed = signing.signature_headers(
        [test_event.secret], test_event.headers["webhook-id"], ten_minutes_ago, test_event.body, 1
    )
    headers = test_event.headers | {key.lower(): value for key, value in signed.items()}
    rejects(samples[name], test_event, headers=headers)


@pytest.mark.parametrize("name", DECISIONRULES_SAMPLES)
def test_decisionrules_sample_accepts_a_replay_as_the_readme_warns(
    samples: dict[str, Sample], name: str, test_event: Delivered
) -> None:
    # The same request an hour later, its timestamps moved: the signature does not cover them.
    replayed = test_event.headers | {"x-webhook-timestamp": str(int(time.time()) - 3600)}
    accepts(samples[name], test_event, headers=replayed)


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_rejects_the_body_without_its_signature_headers(
    samples: dict[str, Sample], name: str, test_event: Delivered
) -> None:
    unsigned = {key: value for key, value in test_event.headers.items() if "webhook-" not in key}
    assert "content-type" in unsigned and len(unsigned) < len(test_event.headers)
    rejects(samples[name], test_event, headers=unsigned)
