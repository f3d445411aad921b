"""Webhook signing and verification, two schemes from one secret.

* Standard Webhooks (Svix compatible): ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64 HMAC-SHA256>`` over ``"{id}.{timestamp}.{body}"``,
  keyed with the base64-decoded part of the secret after ``whsec_``.
* DecisionRules compatible: ``X-Webhook-Signature``, the lowercase hex
  HMAC-SHA256 of the raw body keyed with the whole secret string. It signs no
  timestamp, so on its own it does not stop replays.

Standard library only: this module ships with the client, which depends on
nothing but grpcio and protobuf.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from secrets import token_bytes
from typing import Any

__all__ = [
    "SECRET_PREFIX",
    "VerificationError",
    "check_secret",
    "decisionrules_signature",
    "generate_secret",
    "signature_headers",
    "standard_signature",
    "verify",
]

SECRET_PREFIX = "whsec_"

# Imported secrets may come from other providers; Svix issues 24 bytes, we issue 32.
_MIN_SECRET_BYTES = 24
_MAX_SECRET_BYTES = 64


class VerificationError(Exception):
    """A webhook request failed verification; the message says why."""


def generate_secret() -> str:
    """A fresh secret: ``whsec_`` + standard base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(32)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    """The HMAC key of the Standard Webhooks scheme, or ValueError saying what is wrong."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"webhook secret must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    if not encoded:
        raise ValueError(f"webhook secret has nothing after {SECRET_PREFIX!r}")
    # Like the Standard Webhooks libraries, tolerate base64 without its padding.
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"webhook secret must be {SECRET_PREFIX!r} followed by standard base64") from None
    if not _MIN_SECRET_BYTES <= len(key) <= _MAX_SECRET_BYTES:
        raise ValueError(
            f"webhook secret must decode to {_MIN_SECRET_BYTES} to {_MAX_SECRET_BYTES} bytes, not {len(key)}"
        )
    return key


def check_secret(secret: str) -> None:
    """Raise ValueError unless ``secret`` is ``whsec_`` + base64 of 24..64 bytes."""
    _secret_key(secret)


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` entry of the ``webhook-signature`` header."""
    return "v1," + _standard_digest(_secret_key(secret), msg_id, timestamp, body)


def _standard_digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def decisionrules_signature(secret: str, body: bytes) -> str:
    """The ``X-Webhook-Signature`` value: hex HMAC-SHA256 keyed with the whole secret."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_headers(
    secrets: Sequence[str],
    msg_id: str,
    timestamp: int,
    body: bytes,
    attempt_number: int,
) -> dict[str, str]:
    """All signing headers of one attempt.

    ``secrets`` is newest first; during a rotation grace period each still-valid
    secret adds a ``v1`` entry so receivers on either secret keep verifying. The
    DecisionRules header has room for one signature only, so it uses the newest.
    ``attempt_number`` starts at 1; the header counts retries, so it is one less.
    """
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    if attempt_number < 1:
        raise ValueError(f"attempt numbers start at 1, not {attempt_number}")
    seconds = str(int(timestamp))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": seconds,
        "webhook-signature": " ".join(standard_signature(s, msg_id, int(timestamp), body) for s in secrets),
        "X-Webhook-Signature": decisionrules_signature(secrets[0], body),
        "X-Webhook-Timestamp": seconds,
        "X-Webhook-Delivery-Attempt": str(attempt_number - 1),
    }


def _check_timestamp(value: str, header: str, now: float, tolerance: float) -> int:
    try:
        timestamp = int(value.strip())
    except ValueError:
        raise VerificationError(f"invalid {header} header: {value!r}") from None
    if abs(now - timestamp) > tolerance:
        raise VerificationError("timestamp outside tolerance")
    return timestamp


def verify(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    now: float | None = None,
    tolerance: float = 300,
) -> Any:
    """Check a received webhook and return its parsed JSON body.

    Prefers the Standard Webhooks headers; falls back to ``X-Webhook-Signature``
    when they are absent. Header names are matched case-insensitively. Raises
    VerificationError naming the first problem found, and ValueError if
    ``secret`` itself is malformed.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    lowered = {name.lower(): value for name, value in headers.items()}
    current = time.time() if now is None else now

    signature = lowered.get("webhook-signature")
    if signature is not None:
        key = _secret_key(secret)
        msg_id = lowered.get("webhook-id")
        if not msg_id:
            raise VerificationError("missing webhook-id header")
        ts_header = lowered.get("webhook-timestamp")
        if not ts_header:
            raise VerificationError("missing webhook-timestamp header")
        timestamp = _check_timestamp(ts_header, "webhook-timestamp", current, tolerance)
        expected = base64.b64decode(_standard_digest(key, msg_id, timestamp, raw))
        for entry in signature.split():
            version, _, encoded = entry.partition(",")
            if version != "v1":
                continue
            try:
                candidate = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                continue
            if hmac.compare_digest(expected, candidate):
                break
        else:
            raise VerificationError("no matching signature")
    else:
        hex_signature = lowered.get("x-webhook-signature")
        if hex_signature is None:
            raise VerificationError("missing webhook-signature (or X-Webhook-Signature) header")
        ts_header = lowered.get("x-webhook-timestamp")
        if ts_header is not None:
            _check_timestamp(ts_header, "X-Webhook-Timestamp", current, tolerance)
        expected_hex = decisionrules_signature(secret, raw).encode("ascii")
        given = hex_signature.strip().lower().encode("utf-8")
        if not hmac.compare_digest(expected_hex, given):
            raise VerificationError("no matching signature")

    try:
        return json.loads(raw)
    except ValueError:
        raise VerificationError("body is not valid JSON") from None
