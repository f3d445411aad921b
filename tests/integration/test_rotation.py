"""Secret rotation: during the grace period both secrets sign; after it only the new one."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from google.protobuf import duration_pb2

from hookline import signing
from hookline.client import RotateWebhookSecretRequest, SendTestEventRequest

from .helpers import make_webhook

GRACE_S = 2


def test_both_secrets_sign_during_the_grace_period_then_only_the_new_one(client, receiver):
    created = make_webhook(client, receiver.url("/rotating"))
    old = created.secret
    rotated = client.webhooks.RotateWebhookSecret(
        RotateWebhookSecretRequest(id=created.webhook.id, grace_period=duration_pb2.Duration(seconds=GRACE_S))
    )
    new = rotated.secret
    assert new.startswith("whsec_") and new != old
    rotated_at = time.time()

    client.webhooks.SendTestEvent(SendTestEventRequest(id=created.webhook.id))
    [during] = receiver.wait_for("/rotating", 1)
    assert len(during.headers["webhook-signature"].split()) == 2
    signing.verify(during.body, during.headers, old)  # receivers not yet moved keep working
    signing.verify(during.body, during.headers, new)
    assert during.headers["x-webhook-signature"] == hmac.new(new.encode(), during.body, hashlib.sha256).hexdigest()

    time.sleep(max(0.0, rotated_at + GRACE_S + 0.3 - time.time()))
    client.webhooks.SendTestEvent(SendTestEventRequest(id=created.webhook.id))
    after = receiver.wait_for("/rotating", 2)[1]
    assert len(after.headers["webhook-signature"].split()) == 1
    signing.verify(after.body, after.headers, new)
    with pytest.raises(signing.VerificationError):
        signing.verify(after.body, after.headers, old)


def test_the_default_grace_period_keeps_the_old_secret_signing(client, receiver):
    created = make_webhook(client, receiver.url("/rotating-default"))
    new = client.webhooks.RotateWebhookSecret(RotateWebhookSecretRequest(id=created.webhook.id)).secret
    client.webhooks.SendTestEvent(SendTestEventRequest(id=created.webhook.id))
    [message] = receiver.wait_for("/rotating-default", 1)
    signing.verify(message.body, message.headers, created.secret)
    signing.verify(message.body, message.headers, new)


def test_rotating_twice_keeps_every_secret_still_in_its_grace_period(client, receiver):
    created = make_webhook(client, receiver.url("/rotating-twice"))
    second = client.webhooks.RotateWebhookSecret(RotateWebhookSecretRequest(id=created.webhook.id)).secret
    third = client.webhooks.RotateWebhookSecret(RotateWebhookSecretRequest(id=created.webhook.id)).secret
    client.webhooks.SendTestEvent(SendTestEventRequest(id=created.webhook.id))
    [message] = receiver.wait_for("/rotating-twice", 1)
    assert len(message.headers["webhook-signature"].split()) == 3
    for secret in (created.secret, second, third):
        signing.verify(message.body, message.headers, secret)
