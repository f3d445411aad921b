"""Webhook secrets encrypted at rest: AES-256-GCM under the master key, with
the webhook id as associated data so a sealed secret cannot be moved to
another webhook's row."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12  # 96 bits, the size GCM is made for; random per seal
VERSION = "v1:"
# What the key-check value encrypts, and the associated data that keeps it
# from ever being mistaken for a webhook secret.
_CHECK_PLAINTEXT = b"hookline master key"
_CHECK_AAD = b"hookline-key-check"
KEY_CHECK_NAME = "master_key_check"  # its key in the database's meta table


class SealError(ValueError):
    """A sealed value cannot be opened: another key, another webhook, or tampered."""


def generate_key() -> str:
    """A fresh master key in the form the settings take."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def decode_key(text: str) -> bytes:
    """The key bytes of a master key, or ValueError saying what is wrong (never the key)."""
    stripped = text.strip()
    try:
        key = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("it is not URL-safe base64") from None
    # urlsafe_b64decode silently drops stray characters; re-encoding catches them.
    if base64.urlsafe_b64encode(key).decode("ascii").rstrip("=") != stripped.rstrip("="):
        raise ValueError("it is not URL-safe base64")
    if len(key) != KEY_BYTES:
        raise ValueError(f"it decodes to {len(key)} bytes, not {KEY_BYTES}")
    return key


class SecretBox:
    """Seals and opens webhook secrets with one master key."""

    def __init__(self, key: bytes):
        if len(key) != KEY_BYTES:
            raise ValueError(f"the master key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_text(cls, text: str) -> SecretBox:
        return cls(decode_key(text))

    def _encrypt(self, plaintext: bytes, aad: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plaintext, aad)
        return VERSION + base64.urlsafe_b64encode(sealed).decode("ascii")

    def _decrypt(self, text: str, aad: bytes) -> bytes:
        if not text.startswith(VERSION):
            raise SealError("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(text[len(VERSION) :])
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
        except (InvalidTag, binascii.Error, ValueError):
            raise SealError("the sealed value does not open with this key") from None

    def seal(self, webhook_id: str, secret: str) -> str:
        return self._encrypt(secret.encode("utf-8"), webhook_id.encode("utf-8"))

    def open(self, webhook_id: str, sealed: str) -> str:
        try:
            return self._decrypt(sealed, webhook_id.encode("utf-8")).decode("utf-8")
        except SealError as error:
            raise SealError(f"the secret of webhook {webhook_id} cannot be decrypted: {error}") from None

    def key_check(self) -> str:
        """A value stored once per database; only the same key opens it."""
        return self._encrypt(_CHECK_PLAINTEXT, _CHECK_AAD)

    def matches(self, key_check: str) -> bool:
        try:
            return self._decrypt(key_check, _CHECK_AAD) == _CHECK_PLAINTEXT
        except SealError:
            return False


# Set by the app at startup; storage seals and opens with it, so storage never
# reads settings or key files.
_current: SecretBox | None = None


def install(box: SecretBox) -> None:
    global _current
    _current = box


def current() -> SecretBox:
    if _current is None:
        raise RuntimeError("no master key loaded: start hookline through Hookline(settings)")
    return _current
