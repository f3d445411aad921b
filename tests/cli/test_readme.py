"""README.md followed top to bottom in one folder, as a reader would.

Every fenced block runs in the README's order, in one folder:
- ```sh lines run as commands (continuation lines joined). `scripts/serve`,
  `hookline serve`, `hookline receiver` and `hookline deliveries watch` run in
  the background, as in a terminal of their own; a later `scripts/serve` stops
  the one before it, as the README asks. `export` lines set the environment of
  what follows. Everything else must exit 0 with no traceback.
- The ```python block of the Python section runs as a script with this
  interpreter, and must print what its comments promise.
- The JSON file the walkthrough asks to save is written there; the example
  message must be what the receiver got (same fields, the same values wherever
  the README shows one); the example watch output must match what the watch
  printed.
- The verification samples (```python and ```js blocks under a
  `<!-- sample: … -->` marker) are functions; tests/samples runs each against a
  real delivery.

What the environment supplies instead of edits: HOOKLINE_ADDRESS and
HOOKLINE_LISTEN put the server on a free port (and on PostgreSQL
HOOKLINE_DATABASE its database); the key is the one the server writes to
./.hookline/admin.key. Four things are edited, each because the README names
a place this machine may not have free: the receiver's port 8000 and the
console's port 8080 become free ports, the `--listen` ports of the PostgreSQL
section become free ports, and its example database URL becomes a database of
the test server's.
`scripts/test` is not run from within the suite: CI runs it (see
test_ci_runs_the_readme_test_command)."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import BACKEND, free_port, postgres_database, wait_serving

from .helpers import HOOKLINE, SECRET, Process, cli_env

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_RECEIVER_PORT = "8000"
README_CONSOLE_PORT = "8080"
README_DATABASE = "postgresql://hookline@db.internal:5432/hookline"
BACKGROUND = ("scripts/serve", "hookline serve", "hookline receiver", "hookline deliveries watch")

_BLOCK = re.compile(r"^```(?P<language>[a-z]*)\n(?P<code>.*?)^```$", re.M | re.S)
_SAMPLE_MARKER = re.compile(r"<!-- sample: ([a-z0-9-]+) -->\n$")


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    before: str  # the README text between the previous block and this one
    section: str  # the "## " heading it is under


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    blocks: list[Block] = []
    end = 0
    for match in _BLOCK.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.M)
        blocks.append(Block(match["language"], match["code"], text[end : match.start()], headings[-1]))
        end = match.end()
    return blocks


def commands_of(block: Block) -> list[str]:
    """The command lines of an sh block, continuation lines joined, comments dropped."""
    commands = []
    for line in block.code.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            commands.append(" ".join(line.split()))
    return commands


def test_every_block_is_one_the_reader_can_follow() -> None:
    for block in readme_blocks():
        assert block.language in ("sh", "python", "js", "json", "text"), f"a block in an unknown language: {block}"
        if block.language == "js":
            assert _SAMPLE_MARKER.search(block.before), f"a JavaScript block that is not a sample: {block.code}"
        for command in commands_of(block) if block.language == "sh" else []:
            assert command.startswith(("hookline ", "scripts/", "export ")), f"a command the test cannot run: {command}"
            assert "<" not in command, f"a placeholder the reader cannot type: {command}"


def test_scripts_serve_is_hookline_serve() -> None:
    # The test starts `hookline serve` for `scripts/serve`: scripts/serve's only
    # other work is setting up .venv, which the test runs in already.
    assert (ROOT / "scripts" / "serve").read_text().rstrip().endswith('exec hookline serve "$@"')


def test_ci_runs_the_readme_test_command() -> None:
    [first] = [b for b in readme_blocks() if b.section == "The two commands"]
    [test_command] = [c for c in commands_of(first) if c.startswith("scripts/test")]
    assert f"bash {test_command} " in (ROOT / ".ci" / "run").read_text()


@pytest.fixture
def storage_env() -> Iterator[dict[str, str]]:
    """Where the walkthrough's server keeps its data on the suite's backend."""
    if BACKEND == "sqlite":
        yield {}
        return
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    with postgres_database() as url:
        yield {"HOOKLINE_DATABASE": url, "HOOKLINE_MASTER_KEY": key}


class Reader:
    """Runs the README's blocks in one folder and keeps what each printed."""

    def __init__(self, folder: Path, env: dict[str, str], database_for_section: str) -> None:
        self.folder = folder
        self.env = env
        self.database_for_section = database_for_section
        self.receiver_port = str(free_port())
        self.console_port = str(free_port())
        self.background: dict[str, Process] = {}
        self.outputs: list[tuple[str, str]] = []  # (command, stdout) of each command that ended
        self.tour_output = ""

    def edit(self, text: str) -> str:
        text = text.replace(f"--port {README_RECEIVER_PORT}", f"--port {self.receiver_port}")
        text = text.replace(f"127.0.0.1:{README_RECEIVER_PORT}/", f"127.0.0.1:{self.receiver_port}/")
        text = text.replace(README_DATABASE, self.database_for_section)
        text = text.replace(f"--console-port {README_CONSOLE_PORT}", f"--console-port {self.console_port}")
        return re.sub(r"--listen ([0-9.]+):\d+", lambda m: f"--listen {m[1]}:{free_port()}", text)

    def run_sh(self, block: Block) -> None:
        for command in commands_of(block):
            command = self.edit(command)
            print("$", command, file=sys.stderr)
            if command.startswith("scripts/test"):
                continue  # CI runs it; within the suite it would run itself
            if command.startswith("export "):
                name = command.split()[1].split("=", 1)[0]
                result = self.run(f'{command} && printf %s "${name}"')
                self.env[name] = result.stdout
            elif command.startswith("scripts/serve"):
                if "serve" in self.background:  # the README asks to stop it first (Ctrl-C)
                    assert self.background.pop("serve").stop() == 0
                args = shlex.split(command)[1:]
                self.background["serve"] = Process([*HOOKLINE, "serve", *args], env=self.env, cwd=self.folder)
                wait_serving(self.env["HOOKLINE_LISTEN"])
                if "--console-port" in args:
                    self.background["serve"].wait_for(rf"console on http://127\.0\.0\.1:{self.console_port} ", "err")
                    check_console(self.console_port)
            elif command.startswith("hookline serve"):
                address = re.search(r"--listen [0-9.]+:(\d+)", command)
                assert address, f"a server the test cannot find: {command}"
                name = f"serve-{len(self.background)}"
                self.background[name] = Process(["bash", "-c", f"exec {command}"], env=self.env, cwd=self.folder)
                wait_serving(f"127.0.0.1:{address[1]}")
            elif command.startswith(BACKGROUND):
                process = Process(["bash", "-c", f"exec {command}"], env=self.env, cwd=self.folder)
                self.background[command.split()[1]] = process
                if command.startswith("hookline receiver"):
                    process.wait_for(r"listening on http://127\.0\.0\.1:" + self.receiver_port, "err")
                else:
                    process.wait_for(r"^watching deliveries", "err")  # the stream is open
            else:
                result = self.run(command)
                self.outputs.append((command, result.stdout))

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["bash", "-c", command], env=self.env, cwd=self.folder, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{command}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def run_python(self, block: Block) -> None:
        script = self.folder / "readme_tour.py"
        script.write_text(self.edit(block.code))
        result = subprocess.run(
            [sys.executable, script.name], env=self.env, cwd=self.folder, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"the Python section\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        self.tour_output = result.stdout

    def output_of(self, prefix: str) -> str:
        return next(out for command, out in self.outputs if command.startswith(prefix))

    def stop_all(self) -> dict[str, int]:
        return {name: process.stop() for name, process in reversed(self.background.items())}


def check_console(port: str) -> None:
    """The console answers: its sign-in page, and no page without signing in."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/webhooks", timeout=10) as answer:
        assert answer.url.endswith("/signin") and "API key" in answer.read().decode()


def received_messages(receiver_output: str) -> list[dict[str, Any]]:
    """The bodies `hookline receiver` printed, as pretty JSON indented by two."""
    bodies = re.findall(r"^  \{\n.*?^  \}$", receiver_output, re.M | re.S)
    return [json.loads(body) for body in bodies]


def assert_matches_example(example: Any, real: Any, where: str = "message") -> None:
    """The README's example has the real message's fields, and its values
    wherever it shows one (not an elided "…")."""
    if isinstance(example, dict):
        assert isinstance(real, dict) and list(example) == list(real), f"{where}: {list(example)} vs {real}"
        for key in example:
            assert_matches_example(example[key], real[key], f"{where}.{key}")
    elif isinstance(example, str) and "…" in example:
        prefix = example.split("…")[0]
        assert isinstance(real, str) and real.startswith(prefix), f"{where}: {real!r} is not {example!r}"
    else:
        assert example == real, f"{where}: the README shows {example!r}, the receiver got {real!r}"


def check_tour(block: Block, printed: str) -> None:
    """The Python section printed what its comments say."""
    lines = printed.splitlines()
    assert re.fullmatch(r"wh_\w+", lines[0]), printed
    states = [line for line in lines if line.startswith("JOB_STATE_")]
    promised_end = re.search(r"# \.\.\. (JOB_STATE_\w+ \w+)", block.code)
    assert promised_end and states and states[-1] == promised_end[1], printed
    promised_output = re.search(r"json\.dumps\(.*# (\{.*\})$", block.code, re.M)
    assert promised_output and promised_output[1] in lines, printed
    changes = [line.split() for line in lines if line.startswith("DELIVERY_EVENT_KIND_")]
    assert [c[0].removeprefix("DELIVERY_EVENT_KIND_") for c in changes] == [
        "QUEUED",
        "ATTEMPT_STARTED",
        "ATTEMPT_RESULT",
        "SUCCEEDED",
    ], printed
    assert changes[2][2] == "200" and len({c[1] for c in changes}) == 1, printed


def check_watch_example(example: str, watched: str) -> None:
    """Each line of the README's example watch output was printed, but for
    times and ids."""
    for line in example.splitlines():
        fields = line.split()
        if len(fields) < 2 or not fields[1].isupper():
            continue
        kind, event_type, target = fields[1], fields[3], fields[5]
        pattern = rf"{kind}\s+dlv_\S+\s+{re.escape(event_type)}\s+-> {target}\s"
        assert re.search(pattern, watched), f"the watch printed no line like {line!r}:\n{watched}"


def test_the_readme_top_to_bottom_in_one_folder(tmp_path: Path, storage_env: dict[str, str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    env = cli_env(HOOKLINE_ADDRESS=address, HOOKLINE_LISTEN=address, **storage_env)
    with postgres_database() as section_database:
        reader = Reader(tmp_path, env, section_database)
        checks: list[Block] = []
        try:
            for block in readme_blocks():
                if _SAMPLE_MARKER.search(block.before):
                    continue  # a verification function: tests/samples runs each against a real delivery
                if block.language == "sh":
                    reader.run_sh(block)
                elif block.language == "python":
                    reader.run_python(block)
                    check_tour(block, reader.tour_output)
                elif block.language == "json" and (saved := re.search(r"Save this\s+as `([^`]+)`:\s*$", block.before)):
                    (tmp_path / saved[1]).write_text(block.code)
                else:
                    checks.append(block)  # what the reader should see: checked once it happened

            receiver, watch = reader.background["receiver"], reader.background["deliveries"]
            watch.wait_for(r"SUCCEEDED\s+dlv_\S+\s+JOB\.COMPLETED\s+-> receiver\s+after 1 attempt")
            receiver.wait_for(r'"eventType": "WEBHOOK.TEST"')
            messages = received_messages(receiver.out)
            for block in checks:
                if block.language == "json":
                    example = json.loads(block.code)
                    correlation = example["data"]["correlationId"]
                    [real] = [m for m in messages if m["data"].get("correlationId") == correlation]
                    assert_matches_example(example, real)
                else:
                    check_watch_example(block.code, watch.out)
                    for line in block.code.splitlines():
                        if line.startswith("  ") and line.strip():
                            assert line.strip() in receiver.out, f"the receiver never printed {line.strip()!r}"

            # Every request the receiver got verified both ways and was answered 200.
            requests = receiver.out.split("\n#")
            assert len(requests) == len(messages) >= 3, receiver.out
            for request in requests:
                assert "Standard Webhooks signature: verified" in request, request
                assert "X-Webhook-Signature (DecisionRules): verified" in request, request
                assert "answering 200" in request, request
            order_42 = [m for m in messages if m["data"].get("correlationId") == "order-42"]
            assert len(order_42) == 1 and order_42[0]["data"]["output"] == {"total": 12.5, "count": 2}

            started = reader.output_of("hookline jobs start ")
            assert re.search(r"^state:\s+COMPLETED$", started, re.M) and '"total": 12.5' in started
            created = reader.output_of("hookline webhooks create ")
            assert re.search(r"^secret:\s+\(the one you gave, not shown\)$", created, re.M) and SECRET not in created
            tested = reader.output_of("hookline webhooks test ")
            assert re.search(r"^state:\s+SUCCEEDED$", tested, re.M)
            assert "revoked" in reader.output_of("hookline keys revoke ")
            # The PostgreSQL section's servers left the walkthrough's key and server as they were.
            assert (tmp_path / "pg" / "admin.key").exists()
            listed = reader.run(f"HOOKLINE_DATABASE= hookline --address {address} webhooks list").stdout
            assert "billing" in listed and "receiver" in listed
        finally:
            codes = reader.stop_all()
    # Ctrl-C ends every long-running command cleanly.
    for name, code in codes.items():
        assert code == 0, f"{name}: exit {code}\n{reader.background[name].err}"
        assert "Traceback" not in reader.background[name].err
