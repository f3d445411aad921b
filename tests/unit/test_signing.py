"""Known-answer and behaviour tests for hookline.signing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook

from hookline import signing
from hookline.signing import (
    VerificationError,
    check_secret,
    decisionrules_signature,
    generate_secret,
    signature_headers,
    standard_signature,
    verify,
)

# Vectors computed once outside this module with `openssl dgst -sha256 -hmac ...`.
SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # bytes(range(32))
OLD_SECRET = "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7"  # bytes(range(100, 124))
MSG_ID = "evt_2bGx8kQ1vN7pR4tY"
TIMESTAMP = 1700000000
BODY = b'{"eventType":"JOB.COMPLETED"}'

STANDARD_SIG = "v1,WS4IzYqC8QQSn9Z3IZs/jKvDOk5alF5YYeBr7yf+kkI="
OLD_STANDARD_SIG = "v1,kNdjE0oy8iP768tac9IDq3DED1mdYCq0Jjs7McVkGO4="
DECISIONRULES_SIG = "2583239041bdc80d8720a0d6c1df5c4f18d6ff2c8d8b78f1208ea148364f144d"
OLD_DECISIONRULES_SIG = "6119b20e87a1abeb69e899022c675c11202407e55933b9564753dcf312541055"


def test_standard_signature_known_answer() -> None:
    assert standard_signature(SECRET, MSG_ID, TIMESTAMP, BODY) == STANDARD_SIG
    assert standard_signature(OLD_SECRET, MSG_ID, TIMESTAMP, BODY) == OLD_STANDARD_SIG


def test_decisionrules_signature_known_answer() -> None:
    assert decisionrules_signature(SECRET, BODY) == DECISIONRULES_SIG
    assert decisionrules_signature(OLD_SECRET, BODY) == OLD_DECISIONRULES_SIG


def test_decisionrules_signature_matches_plain_hmac() -> None:
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert decisionrules_signature(SECRET, BODY) == expected


def test_signature_headers_exact() -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, attempt_number=1)
    assert headers == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": "1700000000",
        "webhook-signature": STANDARD_SIG,
        "X-Webhook-Signature": DECISIONRULES_SIG,
        "X-Webhook-Timestamp": "1700000000",
        "X-Webhook-Delivery-Attempt": "0",
    }


def test_standardwebhooks_library_verifies_our_headers() -> None:
    # The library checks the timestamp against the real clock, so sign with it.
    now = int(time.time())
    headers = signature_headers([SECRET], MSG_ID, now, BODY, attempt_number=1)
    assert Webhook(SECRET).verify(BODY, headers) == {"eventType": "JOB.COMPLETED"}


def test_standardwebhooks_library_verifies_during_rotation() -> None:
    now = int(time.time())
    headers = signature_headers([SECRET, OLD_SECRET], MSG_ID, now, BODY, attempt_number=1)
    # A receiver still on either secret accepts the request.
    assert Webhook(SECRET).verify(BODY, headers) == {"eventType": "JOB.COMPLETED"}
    assert Webhook(OLD_SECRET).verify(BODY, headers) == {"eventType": "JOB.COMPLETED"}


def test_rotation_headers() -> None:
    headers = signature_headers([SECRET, OLD_SECRET], MSG_ID, TIMESTAMP, BODY, 1)
    assert headers["webhook-signature"] == f"{STANDARD_SIG} {OLD_STANDARD_SIG}"
    assert headers["X-Webhook-Signature"] == DECISIONRULES_SIG  # newest only


@pytest.mark.parametrize(("attempt", "header"), [(1, "0"), (2, "1"), (8, "7")])
def test_delivery_attempt_header(attempt: int, header: str) -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, attempt)
    assert headers["X-Webhook-Delivery-Attempt"] == header


def test_signature_headers_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signature_headers([], MSG_ID, TIMESTAMP, BODY, 1)
    with pytest.raises(ValueError, match="start at 1"):
        signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, 0)


def test_verify_standard_headers() -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, 1)
    assert verify(BODY, headers, SECRET, now=TIMESTAMP + 10) == {"eventType": "JOB.COMPLETED"}
    assert verify(BODY.decode(), headers, SECRET, now=TIMESTAMP) == {"eventType": "JOB.COMPLETED"}


def test_verify_accepts_any_rotation_entry() -> None:
    headers = signature_headers([SECRET, OLD_SECRET], MSG_ID, TIMESTAMP, BODY, 1)
    assert verify(BODY, headers, OLD_SECRET, now=TIMESTAMP)["eventType"] == "JOB.COMPLETED"


def test_verify_is_case_insensitive_about_header_names() -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, 1)
    shouted = {name.upper(): value for name, value in headers.items()}
    assert verify(BODY, shouted, SECRET, now=TIMESTAMP) == {"eventType": "JOB.COMPLETED"}


def test_verify_rejects_tampered_body() -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, 1)
    with pytest.raises(VerificationError, match="no matching signature"):
        verify(b'{"eventType":"JOB.ERROR"}', headers, SECRET, now=TIMESTAMP)


def test_verify_rejects_wrong_secret() -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, 1)
    with pytest.raises(VerificationError, match="no matching signature"):
        verify(BODY, headers, OLD_SECRET, now=TIMESTAMP)


def test_verify_rejects_changed_id() -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, 1)
    headers["webhook-id"] = "evt_other"
    with pytest.raises(VerificationError, match="no matching signature"):
        verify(BODY, headers, SECRET, now=TIMESTAMP)


@pytest.mark.parametrize("offset", [301, -301, 100000])
def test_verify_rejects_stale_or_future_timestamp(offset: int) -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, 1)
    with pytest.raises(VerificationError, match="timestamp outside tolerance"):
        verify(BODY, headers, SECRET, now=TIMESTAMP + offset)


def test_verify_tolerance_edge_and_custom() -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, 1)
    verify(BODY, headers, SECRET, now=TIMESTAMP + 300)
    verify(BODY, headers, SECRET, now=TIMESTAMP + 900, tolerance=900)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("webhook-id", "missing webhook-id header"),
        ("webhook-timestamp", "missing webhook-timestamp header"),
    ],
)
def test_verify_names_missing_header(missing: str, message: str) -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, 1)
    del headers[missing]
    with pytest.raises(VerificationError, match=message):
        verify(BODY, headers, SECRET, now=TIMESTAMP)


def test_verify_without_any_signature_header() -> None:
    with pytest.raises(VerificationError, match="missing webhook-signature"):
        verify(BODY, {"content-type": "application/json"}, SECRET, now=TIMESTAMP)


def test_verify_bad_timestamp_header() -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, 1)
    headers["webhook-timestamp"] = "yesterday"
    with pytest.raises(VerificationError, match="invalid webhook-timestamp header"):
        verify(BODY, headers, SECRET, now=TIMESTAMP)


def test_verify_skips_unknown_versions_and_garbage_entries() -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY, 1)
    headers["webhook-signature"] = f"v2,abc v1,!!! nonsense {STANDARD_SIG}"
    assert verify(BODY, headers, SECRET, now=TIMESTAMP) == {"eventType": "JOB.COMPLETED"}
    headers["webhook-signature"] = "v2,abc v1,!!!"
    with pytest.raises(VerificationError, match="no matching signature"):
        verify(BODY, headers, SECRET, now=TIMESTAMP)


def test_verify_decisionrules_headers_only() -> None:
    headers = {
        "x-webhook-signature": DECISIONRULES_SIG,
        "X-Webhook-Timestamp": str(TIMESTAMP),
    }
    assert verify(BODY, headers, SECRET, now=TIMESTAMP) == {"eventType": "JOB.COMPLETED"}
    # Without a timestamp header there is nothing to check the clock against.
    assert verify(BODY, {"X-Webhook-Signature": DECISIONRULES_SIG}, SECRET, now=0) == {"eventType": "JOB.COMPLETED"}
    with pytest.raises(VerificationError, match="timestamp outside tolerance"):
        verify(BODY, headers, SECRET, now=TIMESTAMP + 1000)
    with pytest.raises(VerificationError, match="no matching signature"):
        verify(BODY, headers, OLD_SECRET, now=TIMESTAMP)
    with pytest.raises(VerificationError, match="no matching signature"):
        verify(BODY + b" ", headers, SECRET, now=TIMESTAMP)


def test_verify_rejects_non_json_body() -> None:
    body = b"not json"
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, body, 1)
    with pytest.raises(VerificationError, match="not valid JSON"):
        verify(body, headers, SECRET, now=TIMESTAMP)


def test_generate_secret() -> None:
    secret = generate_secret()
    assert secret.startswith(signing.SECRET_PREFIX)
    assert len(base64.b64decode(secret[len("whsec_") :], validate=True)) == 32
    check_secret(secret)
    assert generate_secret() != secret


@pytest.mark.parametrize("size", [24, 32, 48, 64])
def test_check_secret_accepts_24_to_64_bytes(size: int) -> None:
    check_secret("whsec_" + base64.b64encode(bytes(size)).decode())


def test_check_secret_accepts_unpadded_base64() -> None:
    check_secret("whsec_" + base64.b64encode(bytes(32)).decode().rstrip("="))


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("whsec_" + base64.b64encode(bytes(23)).decode(), "24 to 64 bytes, not 23"),
        ("whsec_" + base64.b64encode(bytes(65)).decode(), "24 to 64 bytes, not 65"),
        (base64.b64encode(bytes(32)).decode(), "must start with 'whsec_'"),
        ("whsec_", "nothing after"),
        ("whsec_not*base64*at*all*not*base64*at*all*", "standard base64"),
        ("WHSEC_" + base64.b64encode(bytes(32)).decode(), "must start with"),
    ],
)
def test_check_secret_rejects(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_secret(secret)


def test_signing_rejects_malformed_secret() -> None:
    with pytest.raises(ValueError, match="must start with"):
        standard_signature("secret", MSG_ID, TIMESTAMP, BODY)
