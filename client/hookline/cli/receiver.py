"""`hookline receiver`: a local endpoint to point webhooks at while trying
hookline out. It prints every request it gets (method, path, headers, the body
as pretty JSON) and whether each signature scheme verifies against the given
secret, then answers with a chosen status, after a chosen delay; `--fail-first N`
answers 500 to the first N requests, to watch the retries happen.

Standard library only, like the rest of the client."""

from __future__ import annotations

import argparse
import hmac
import json
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from hookline import signing

from ._errors import CliError
from ._output import Printer, clock, pretty_json
from ._values import bounded_int

MAX_BODY_SHOWN = 64 * 1024
MAX_BODY_READ = 64 * 1024 * 1024
MAX_DELAY_MS = 3_600_000  # longer than any sender waits
VERIFIED = "verified"


def add_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "receiver",
        help="a local endpoint that prints each delivery and checks its signatures",
        description=(
            "Listens on HOST:PORT, prints each request (method, path, headers, pretty JSON body) and whether "
            "its Standard Webhooks and X-Webhook-Signature signatures verify against --secret, and answers "
            "--status after --delay-ms. Any path is accepted. Ctrl-C stops it."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=bounded_int(0, 65535), default=8000, help="port to listen on (default 8000; 0 picks a free one)"
    )
    parser.add_argument(
        "--secret",
        dest="secrets",
        action="append",
        default=[],
        metavar="WHSEC",
        help="the webhook's whsec_ secret to verify with; repeat it during a rotation",
    )
    parser.add_argument(
        "--status", type=bounded_int(100, 599), default=200, metavar="CODE", help="status to answer (default 200)"
    )
    parser.add_argument(
        "--delay-ms",
        type=bounded_int(0, MAX_DELAY_MS),
        default=0,
        metavar="N",
        help="wait this long before answering (at most an hour)",
    )
    parser.add_argument(
        "--fail-first",
        type=bounded_int(0, 2**31 - 1),
        default=0,
        metavar="N",
        help="answer 500 to the first N requests",
    )
    parser.add_argument(
        "--tolerance",
        type=bounded_int(0, 2**31 - 1),
        default=300,
        metavar="SECONDS",
        help="webhook-timestamp tolerance (default 300)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per request instead")
    parser.set_defaults(handler=None, run=run)


# --- checking signatures -------------------------------------------------------------


def check_standard(body: bytes, headers: Mapping[str, str], secrets: Sequence[str], tolerance: float = 300) -> str:
    """`verified`, or why not, for the Standard Webhooks headers alone."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if "webhook-signature" not in lowered:
        return "missing (no webhook-signature header)"
    if not secrets:
        return "not checked (no --secret)"
    standard = {k: v for k, v in lowered.items() if k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    problems = []
    for secret in secrets:
        try:
            signing.verify(body, standard, secret, tolerance=tolerance)
            return VERIFIED
        except signing.VerificationError as error:
            if str(error) == "body is not valid JSON":
                return VERIFIED + " (the body is not JSON)"
            problems.append(str(error))
        except ValueError as error:  # the secret itself is malformed
            problems.append(f"bad --secret: {error}")
    return "FAILED: " + "; ".join(dict.fromkeys(problems))


def check_decisionrules(body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> str:
    """`verified`, or why not, for X-Webhook-Signature (hex HMAC-SHA256 of the body)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    given = lowered.get("x-webhook-signature")
    if given is None:
        return "missing (no X-Webhook-Signature header)"
    if not secrets:
        return "not checked (no --secret)"
    for secret in secrets:
        expected = signing.decisionrules_signature(secret, body)
        if hmac.compare_digest(expected.encode(), given.strip().lower().encode("utf-8", "replace")):
            return VERIFIED
    return "FAILED: no matching signature"


# --- the server -----------------------------------------------------------------------


@dataclass
class Options:
    secrets: list[str]
    status: int
    delay_ms: int
    fail_first: int
    tolerance: int
    as_json: bool


class Receiver:
    """Counts the requests, decides each answer, prints each request once."""

    def __init__(self, options: Options, stream: TextIO | None = None):
        self.options = options
        self.out = Printer(as_json=options.as_json, stream=stream)
        self.count = 0
        self._lock = threading.Lock()

    def next_number(self) -> int:
        with self._lock:
            self.count += 1
            return self.count

    def answer_for(self, number: int) -> int:
        return 500 if number <= self.options.fail_first else self.options.status

    def report(
        self, number: int, method: str, path: str, client: str, headers: list[tuple[str, str]], body: bytes, status: int
    ) -> None:
        header_map = dict(headers)
        standard = check_standard(body, header_map, self.options.secrets, self.options.tolerance)
        decisionrules = check_decisionrules(body, header_map, self.options.secrets)
        try:
            parsed: Any = json.loads(body) if body else None
            is_json = bool(body)
        except (ValueError, RecursionError):  # shown as text
            parsed, is_json = None, False
        with self._lock:
            if self.out.as_json:
                record = {
                    "number": number,
                    "method": method,
                    "path": path,
                    "headers": header_map,
                    "body": parsed if is_json else body.decode("utf-8", "replace"),
                    "signatures": {"standard_webhooks": standard, "x_webhook_signature": decisionrules},
                    "status": status,
                }
                self.out.line(json.dumps(record, ensure_ascii=False))
                return
            self._report_text(number, method, path, client, headers, body, parsed, is_json)
            self._verdict("Standard Webhooks signature", standard)
            self._verdict("X-Webhook-Signature (DecisionRules)", decisionrules)
            note = " (--fail-first)" if number <= self.options.fail_first else ""
            delay = f" after {self.options.delay_ms} ms" if self.options.delay_ms else ""
            self.out.line(f"  answering {self.out.paint(str(status), 'green' if status < 300 else 'red')}{delay}{note}")
            self.out.line()

    def _report_text(
        self,
        number: int,
        method: str,
        path: str,
        client: str,
        headers: list[tuple[str, str]],
        body: bytes,
        parsed: Any,
        is_json: bool,
    ) -> None:
        out = self.out
        out.line(out.paint(f"#{number} {method} {path}", "bold") + out.paint(f"  {clock()} from {client}", "dim"))
        for name, value in headers:
            out.line(f"  {out.paint(name, 'cyan')}: {value}")
        if is_json:
            text = pretty_json(parsed)
        else:
            text = body[:MAX_BODY_SHOWN].decode("utf-8", "replace")
            if len(body) > MAX_BODY_SHOWN:
                text += f"\n... ({len(body)} bytes in all)"
        if text:
            out.line()
            for line in text.splitlines():
                out.line("  " + line)
            out.line()

    def _verdict(self, name: str, verdict: str) -> None:
        if verdict.startswith(VERIFIED):
            mark = self.out.paint("ok ", "green")
        elif verdict.startswith("FAILED"):
            mark = self.out.paint("BAD", "bold", "red")
        else:
            mark = self.out.paint(" - ", "yellow")
        self.out.line(f"  {mark} {name}: {verdict}")


def make_server(host: str, port: int, receiver: Receiver) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "hookline-receiver"

        def _handle(self) -> None:
            length = self._length()
            if length is None:
                return
            body = self.rfile.read(length) if length > 0 else b""
            number = receiver.next_number()
            status = receiver.answer_for(number)
            receiver.report(
                number, self.command, self.path, self.client_address[0], list(self.headers.items()), body, status
            )
            if receiver.options.delay_ms:
                time.sleep(receiver.options.delay_ms / 1000)
            reply = json.dumps({"received": number, "status": status}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender stopped waiting (its timeout)

        def _length(self) -> int | None:
            """The body's length; None once a request without a usable one is answered."""
            text = self.headers.get("content-length") or "0"
            if not (text.isascii() and text.isdigit()):
                problem = (400, f"Content-Length must be a number of bytes, not {text!r}")
            elif len(text) > len(str(MAX_BODY_READ)) or int(text) > MAX_BODY_READ:
                problem = (413, f"the body is {text} bytes; this receiver reads at most {MAX_BODY_READ}")
            else:
                return int(text)
            print(f"hookline receiver: {self.command} {self.path}: {problem[1]}", file=sys.stderr, flush=True)
            self.close_connection = True
            self.send_error(*problem)
            return None

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET = do_HEAD = _handle  # noqa: N815 (the stdlib's names)

        def log_message(self, *args: object) -> None:
            pass  # report() prints each request

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def run(args: argparse.Namespace) -> int:
    for secret in args.secrets:
        try:
            signing.check_secret(secret)
        except ValueError as error:
            raise CliError(f"--secret: {error}") from None
    options = Options(args.secrets, args.status, args.delay_ms, args.fail_first, args.tolerance, args.json)
    receiver = Receiver(options)
    try:
        server = make_server(args.host, args.port, receiver)
    except OSError as error:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    host, port = server.server_address[:2]
    host = host.decode() if isinstance(host, bytes) else host  # bytes only for AF_UNIX, never here
    shown_host = f"[{host}]" if ":" in str(host) else host
    checks = f"verifying with {len(args.secrets)} secret(s)" if args.secrets else "no --secret: signatures not checked"
    answer = f"answering {args.status}" + (f" after {args.delay_ms} ms" if args.delay_ms else "")
    if args.fail_first:
        answer += f" (500 to the first {args.fail_first})"
    print(
        f"hookline receiver listening on http://{shown_host}:{port}/ ({checks}; {answer}; Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    _stop_on_sigterm()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print(f"hookline receiver stopped after {receiver.count} request(s)", file=sys.stderr, flush=True)
    return 0


def _stop_on_sigterm() -> None:
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:
        pass  # not the main thread: leave signals alone
