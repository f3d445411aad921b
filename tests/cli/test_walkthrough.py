"""The README's "Walkthrough with the CLI", run as written.

Every command line in the section's ```sh blocks is taken from the README and
run for real, in order, in one folder (the flow file it asks for is written
there from its ```json block): `scripts/serve` starts the server, `hookline
receiver` a receiver, `hookline deliveries watch` a live watch, and each other
command runs to its end and must succeed. The environment says where things are
instead of edits to the commands: HOOKLINE_LISTEN and HOOKLINE_ADDRESS put the
server on a free port (and, on PostgreSQL, HOOKLINE_DATABASE its database), and
the key is the one the server writes to ./.hookline/admin.key, as in the README.
One thing is edited: the receiver's port, 8000 in the README, becomes a free
port in the two commands that name it."""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BACKEND, free_port, postgres_database, wait_serving

from .helpers import HOOKLINE, Process, cli_env

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## Walkthrough with the CLI"
README_RECEIVER_PORT = "8000"
# Commands that run until stopped; the rest must end on their own.
LONG_RUNNING = ("scripts/serve", "hookline receiver", "hookline deliveries watch")


def section_text() -> str:
    text = README.read_text(encoding="utf-8")
    assert text.count(SECTION) == 1, f"README.md has no single {SECTION!r} section"
    body = text.split(SECTION, 1)[1]
    return body.split("\n## ", 1)[0]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def readme_commands() -> list[str]:
    """The command lines of the section's sh blocks, continuation lines joined."""
    commands: list[str] = []
    for block in code_blocks(section_text(), "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = " ".join(line.split())
            if not line or line.startswith("#"):
                continue
            assert line.startswith(("hookline ", "scripts/serve")), f"a README command the test cannot run: {line}"
            commands.append(line)
    return commands


def flow_file() -> tuple[str, str]:
    """The file the section asks to save, and what goes in it."""
    text = section_text()
    name = re.search(r"Save this\s+as `([^`]+)`", text)
    assert name, "the section no longer names the flow file to save"
    [content] = code_blocks(text[name.end() :], "json")[:1]
    return name.group(1), content


def test_the_section_covers_the_walkthrough() -> None:
    commands = readme_commands()
    for step in (
        "scripts/serve --allow-target 127.0.0.0/8",
        "hookline receiver ",
        "hookline webhooks create ",
        "hookline flows create ",
        "hookline flows link ",
        "hookline deliveries watch ",
        "hookline jobs start ",
    ):
        assert any(c.startswith(step) for c in commands), f"the walkthrough lost its step {step!r}"
    # The watch must be running before the job starts: it shows changes from now on.
    starts = [i for i, c in enumerate(commands) if c.startswith("hookline jobs start ")]
    watches = [i for i, c in enumerate(commands) if c.startswith("hookline deliveries watch ")]
    assert watches[0] < starts[0]


def test_scripts_serve_is_hookline_serve() -> None:
    # The test starts `hookline serve` for `scripts/serve`: scripts/serve's only
    # other work is setting up .venv, which the test runs in already.
    assert (ROOT / "scripts" / "serve").read_text().rstrip().endswith('exec hookline serve "$@"')


@pytest.fixture
def storage_env() -> Iterator[dict[str, str]]:
    """Where the server keeps its data on the suite's backend, as environment."""
    if BACKEND == "sqlite":
        yield {}
        return
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    with postgres_database() as url:
        yield {"HOOKLINE_DATABASE": url, "HOOKLINE_MASTER_KEY": key}


def test_every_readme_command_runs(tmp_path: Path, storage_env: dict[str, str]) -> None:
    commands = readme_commands()
    name, content = flow_file()
    (tmp_path / name).write_text(content)
    address = f"127.0.0.1:{free_port()}"
    receiver_port = str(free_port())
    env = cli_env(
        HOOKLINE_ADDRESS=address,
        HOOKLINE_LISTEN=address,
        HOOKLINE_RETRY_SCHEDULE="0,100ms,200ms",
        **storage_env,
    )
    background: dict[str, Process] = {}
    ran: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    try:
        for command in commands:
            if README_RECEIVER_PORT in command:
                edited = command.replace(f"--port {README_RECEIVER_PORT}", f"--port {receiver_port}")
                edited = edited.replace(f"127.0.0.1:{README_RECEIVER_PORT}/", f"127.0.0.1:{receiver_port}/")
                assert edited != command, f"8000 in an unexpected place: {command}"
                command = edited
            print("$", command, file=sys.stderr)
            if command.startswith("scripts/serve"):
                args = shlex.split(command)[1:]
                background["serve"] = Process([*HOOKLINE, "serve", *args], env=env, cwd=tmp_path)
                wait_serving(address)
            elif command.startswith(LONG_RUNNING):
                process = Process(["bash", "-c", f"exec {command}"], env=env, cwd=tmp_path)
                background[command.split()[1]] = process
                if command.startswith("hookline receiver"):
                    process.wait_for(r"listening on http://127\.0\.0\.1:" + receiver_port, "err")
                else:
                    process.wait_for(r"^watching deliveries", "err")  # the stream is open
            else:
                result = subprocess.run(
                    ["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
                )
                assert result.returncode == 0, f"{command}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
                assert "Traceback" not in result.stderr
                ran.append((command, result))

        watch, receiver = background["deliveries"], background["receiver"]
        # The job's end reached the receiver, signed both ways, and the watch saw it happen.
        watch.wait_for(r"SUCCEEDED\s+dlv_\S+\s+JOB\.COMPLETED\s+-> receiver\s+after 1 attempt")
        for kind in ("QUEUED", "ATTEMPT_STARTED", "ATTEMPT_RESULT"):
            assert re.search(rf"{kind}\s+dlv_\S+\s+JOB\.COMPLETED", watch.out), watch.out
        receiver.wait_for(r'"eventType": "WEBHOOK.TEST"')
        received = receiver.out.split("\n#")
        completed = [r for r in received if '"eventType": "JOB.COMPLETED"' in r]
        assert len(completed) == 1, receiver.out
        assert '"correlationId": "order-42"' in completed[0]
        assert '"total": 12.5' in completed[0]
        for request in received:
            assert "Standard Webhooks signature: verified" in request
            assert "X-Webhook-Signature (DecisionRules): verified" in request
            assert "answering 200" in request
        assert "FAILED" not in receiver.out

        outputs = {command: result.stdout for command, result in ran}
        started = next(out for command, out in outputs.items() if command.startswith("hookline jobs start "))
        assert re.search(r"^state:\s+COMPLETED$", started, re.M) and '"total": 12.5' in started
        created = next(out for command, out in outputs.items() if command.startswith("hookline webhooks create "))
        assert re.search(r"^secret:\s+whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw$", created, re.M)
        tested = next(out for command, out in outputs.items() if command.startswith("hookline webhooks test "))
        assert re.search(r"^state:\s+SUCCEEDED$", tested, re.M)
    finally:
        codes = {name: process.stop() for name, process in reversed(background.items())}
    # Ctrl-C ends the receiver and the watch cleanly.
    for name in ("receiver", "deliveries"):
        if name in background:
            assert codes[name] == 0, f"{name}: exit {codes[name]}\n{background[name].err}"
            assert "Traceback" not in background[name].err
    print("ran:", *[c for c in commands], sep="\n  ", file=sys.stderr)
