"""What the CLI prints: tables and fields for people, JSON for scripts, colour
only on a terminal, and a spinner while a long operation runs."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.message import Message

from hookline.client._values import whole_numbers

_CODES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}

MAX_CELL = 60


def wants_colour(stream: TextIO) -> bool:
    """ANSI colour on a terminal, unless NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Printer:
    """Writes results to stdout, as a person or a script wants them."""

    def __init__(self, as_json: bool = False, stream: TextIO | None = None):
        self.as_json = as_json
        self.stream = stream or sys.stdout
        self.colour = wants_colour(self.stream)

    # --- text ---------------------------------------------------------------------

    def paint(self, text: str, *styles: str) -> str:
        if not self.colour or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles if s)
        return f"\033[{codes}m{text}\033[0m" if codes else text

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    # --- JSON ---------------------------------------------------------------------

    def message(self, message: Message, *, compact: bool = False) -> None:
        """One message as one JSON document (compact: on one line)."""
        self.line(to_json(message, compact=compact))

    # --- people -------------------------------------------------------------------

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "nothing found") -> None:
        cells = [[_cell(value) for value in row] for row in rows]
        if not cells:
            self.line(self.paint(empty, "dim"))
            return
        widths = [len(h) for h in headers]
        for row in cells:
            for i, value in enumerate(row):
                widths[i] = max(widths[i], len(value))
        self.line(self.paint("  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip(), "bold"))
        for row in cells:
            self.line("  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip())

    def fields(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """`name: value` lines; multi-line values (JSON) are indented under their name."""
        pairs = [(name, value) for name, value in pairs if value is not None]
        width = max((len(name) for name, _ in pairs), default=0)
        for name, value in pairs:
            text = value if isinstance(value, str) else str(value)
            label = self.paint(f"{name}:".ljust(width + 1), "bold")
            if "\n" in text:
                self.line(self.paint(f"{name}:", "bold"))
                for part in text.splitlines():
                    self.line("  " + part)
            else:
                self.line(f"{label} {text}".rstrip())


def to_json(message: Message, *, compact: bool = False) -> str:
    """The message in protobuf's JSON mapping, with whole numbers as integers:
    Struct and Value keep every number a double, so `5` would print `5.0`."""
    data = whole_numbers(json_format.MessageToDict(message, always_print_fields_with_no_presence=True))
    if compact:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(data, indent=2, ensure_ascii=False)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value).replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "~"


def pretty_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False)


def timestamp(ts: Any) -> str:
    """A protobuf Timestamp as `2025-01-31 12:00:01Z`, or '' when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    moment = datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def clock(ts: Any = None) -> str:
    """HH:MM:SS.mmm in local time, for watch lines."""
    if ts is not None and (ts.seconds or ts.nanos):
        moment = datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9)
    else:
        moment = datetime.now()
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def enum_name(enum: Any, number: int, prefix: str) -> str:
    """DELIVERY_STATE_PENDING -> PENDING."""
    try:
        name = enum.Name(number)
    except ValueError:
        return str(number)
    return name[len(prefix) :] if name.startswith(prefix) else name


class Spinner:
    """A one-line status on stderr, redrawn while a long operation runs.

    Does nothing unless stderr is a terminal, so logs and pipes stay clean."""

    FRAMES = "|/-\\"

    def __init__(self, text: str = "", stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = _isatty(self.stream)
        self._text = text
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Spinner:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="hookline-spinner", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
            self.stream.write("\r\033[K")
            self.stream.flush()

    def update(self, text: str) -> None:
        with self._lock:
            self._text = text

    def _run(self) -> None:
        frame = 0
        while not self._stop.wait(0.1):
            with self._lock:
                text = self._text
            elapsed = time.monotonic() - self._started
            self.stream.write(f"\r\033[K{self.FRAMES[frame % len(self.FRAMES)]} {text}  {elapsed:.1f}s")
            self.stream.flush()
            frame += 1


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
