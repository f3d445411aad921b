"""Resource ids and aliases.

Ids are a type prefix and 26 Crockford base32 characters: 48 bits of
milliseconds then 80 random bits, so they sort by creation time; within one
millisecond the random part is incremented, so ids made by one process stay in
creation order.
"""

from __future__ import annotations

import os
import re
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
PREFIXES = ("sp", "key", "wh", "flow", "job", "evt", "dlv", "att")

_lock = threading.Lock()
_last_ms = 0
_last_random = 0


def new_id(prefix: str) -> str:
    global _last_ms, _last_random
    with _lock:
        ms = int(time.time() * 1000)
        if ms <= _last_ms:
            ms = _last_ms
            rand = (_last_random + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_random = ms, rand
    value = (ms << 80) | rand
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


_ID_FORM = re.compile(rf"^(?:{'|'.join(PREFIXES)})_[{_ALPHABET}]{{26}}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")


def looks_like_id(value: str) -> bool:
    return bool(_ID_FORM.fullmatch(value))


def alias_problem(alias: str) -> str | None:
    """Why `alias` is not a valid alias, or None when it is."""
    if not alias:
        return "is required"
    if len(alias) > 64:
        return "must be at most 64 characters"
    if not _ALIAS.fullmatch(alias):
        return "must start with a letter and contain only letters, digits, '-', '_' and '.'"
    if looks_like_id(alias):
        return "may not have the form of an id (a type prefix such as 'wh_' and 26 characters)"
    return None
