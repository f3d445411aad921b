"""`hookline deliveries watch` and `hookline jobs watch` while `hookline serve`
is killed and started again on the same port and data: each watch says it lost
the connection, resumes where it stopped once the server is back (no change
shown twice, none missed), and ends non-zero, saying why, when it cannot."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli.helpers import Process as Command
from cli.helpers import cli_env
from google.protobuf import struct_pb2

from hookline.client import (
    Client,
    CreateFlowRequest,
    CreateWebhookRequest,
    Flow,
    SendTestEventRequest,
    StartJobRequest,
    Webhook,
)

from .conftest import HOOKLINE, RestartableServer, Storage

DELIVERY_KINDS = ("QUEUED", "ATTEMPT_STARTED", "ATTEMPT_RESULT", "SUCCEEDED")


class Server(RestartableServer):
    """The server the watches follow, with its key and operator commands at hand."""

    def __init__(self, storage: Storage, log: Path):
        super().__init__(storage, log, ("--allow-target", "127.0.0.0/8", "--job-lease", "1s"))

    @property
    def admin_key(self) -> str:
        return (self.storage.data_dir / "admin.key").read_text().strip()

    def operator(self, *argv: str) -> str:
        """An operator command on the server's storage; its stdout."""
        done = subprocess.run(
            [*HOOKLINE, *argv, *self.storage.args], env=self.storage.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def server(storage: Storage, tmp_path: Path) -> Iterator[Server]:
    s = Server(storage, tmp_path / "serve.log")
    s.start()
    yield s
    s.stop()


def watch(server: Server, *argv: str, key: str | None = None) -> Command:
    env = cli_env(HOOKLINE_ADDRESS=server.address, HOOKLINE_API_KEY=key or server.admin_key)
    return Command([*HOOKLINE, *argv], env=env)


@pytest.mark.parametrize("ending", ["kill", "stop"])
def test_deliveries_watch_resumes_after_the_server_restarts(server: Server, receiver, ending: str) -> None:  # type: ignore[no-untyped-def]
    """Killed, the server drops the connection; stopped (SIGTERM), it ends the stream."""
    client = Client(server.address, server.admin_key)
    webhook = Webhook(alias=f"restarts-{ending}", url=receiver.url("/restarts"), event_types=["WEBHOOK.TEST"])
    client.webhooks.CreateWebhook(CreateWebhookRequest(webhook=webhook))
    human = watch(server, "deliveries", "watch", "--webhook", webhook.alias)
    as_json = watch(server, "deliveries", "watch", "--webhook", webhook.alias, "--json")
    try:
        human.wait_for(f"^watching deliveries of webhook {webhook.alias}", "err")
        as_json.wait_for('"kind":"DELIVERY_EVENT_KIND_SYNC"')
        before = client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook.alias)).delivery.id
        for command in (human, as_json):
            command.wait_for(f"SUCCEEDED.*{before}")
        client.close()

        getattr(server, ending)()
        for command in (human, as_json):
            command.wait_for(f"^hookline: lost the connection to hookline at {server.address} .*reconnecting", "err")
        server.start()
        # Sent at once: whether the watches are back yet or not, they must show it.
        with Client(server.address, server.admin_key) as client:
            after = client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook.alias)).delivery.id
        for command in (human, as_json):
            command.wait_for(f"SUCCEEDED.*{after}")
            command.wait_for(f"^hookline: reconnected to hookline at {server.address}", "err")
    finally:
        codes = [human.stop(signal.SIGINT), as_json.stop(signal.SIGINT)]
    assert codes == [0, 0] and "Traceback" not in human.err + as_json.err

    expected = [(kind, delivery) for delivery in (before, after) for kind in DELIVERY_KINDS]
    shown = [tuple(re.split(r"\s+", line)[1:3]) for line in human.out.splitlines()]
    assert shown == expected, human.out
    assert human.err.count("watching deliveries") == 1, human.err

    changes = [json.loads(line) for line in as_json.out.splitlines()]
    kept = [c for c in changes if c["kind"] != "DELIVERY_EVENT_KIND_SYNC"]
    assert [(c["kind"].removeprefix("DELIVERY_EVENT_KIND_"), c["delivery"]["id"]) for c in kept] == expected
    assert len({c["cursor"] for c in kept}) == len(kept)  # no change twice


def test_jobs_watch_follows_the_job_across_a_restart(server: Server) -> None:
    definition = struct_pb2.Struct()
    definition.update({"steps": [{"sleep_ms": 60_000}]})
    with Client(server.address, server.admin_key) as client:
        client.flows.CreateFlow(CreateFlowRequest(flow=Flow(alias="long", definition=definition)))
        job = client.jobs.StartJob(StartJobRequest(flow="long"))
    watching = watch(server, "jobs", "watch", job.id)
    try:
        watching.wait_for(f"{job.id}  RUNNING")
        server.kill()
        watching.wait_for("^hookline: lost the connection to hookline", "err")
        server.start()
        # The restarted server finds the job's lease expired: its process died with it.
        watching.wait_for(rf"{job.id}  ERROR\s+ZOMBIE_PROCESS")
        code = watching.popen.wait(30)
    finally:
        watching.stop()
    assert code == 0, watching.err
    states = [re.split(r"\s+", line)[2] for line in watching.out.splitlines()]
    assert states[-2:] == ["RUNNING", "ERROR"] and len(states) == len(set(states)), watching.out
    assert "reconnected to hookline" in watching.err and "Traceback" not in watching.err


def test_a_watch_that_cannot_resume_says_why_and_fails(server: Server) -> None:
    token = server.operator("keys", "create").strip()
    watching = watch(server, "deliveries", "watch", key=token)
    try:
        watching.wait_for("^watching deliveries of the space", "err")
        server.kill()
        watching.wait_for("^hookline: lost the connection to hookline", "err")
        server.operator("keys", "revoke", token.split("_")[1])
        server.start()
        code = watching.popen.wait(30)
    finally:
        watching.stop()
    assert code == 1, watching.err
    assert re.search(r"^hookline: cannot resume the watch: UNAUTHENTICATED: .+", watching.err, re.M), watching.err
    assert "--key" in watching.err and "Traceback" not in watching.err and token not in watching.err
