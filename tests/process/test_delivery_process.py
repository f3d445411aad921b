"""`hookline serve` runs its delivery worker in a delivery process of its own
(or several, --delivery-processes). Wake-ups, live streams and metrics cross
between the processes; a killed delivery process is replaced and loses nothing;
it never outlives the server; several share the limits and send each message
once; `--single-process` keeps everything in one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Reply, free_port, wait_serving
from google.protobuf import struct_pb2

from hookline.client import (
    Client,
    CreateFlowRequest,
    CreateWebhookRequest,
    DeliveryEventKind,
    Flow,
    ListAttemptsRequest,
    ListDeliveriesRequest,
    StartJobRequest,
    WatchDeliveriesRequest,
    Webhook,
)

from .conftest import HOOKLINE, Storage, StreamReader, eventually

KIND = DeliveryEventKind


def _delivery_processes(pid: int) -> list[int]:
    """The live delivery processes among the children of `pid` (it also has the
    job workers' fork server and multiprocessing's resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # it ended meanwhile
        if int(fields[1]) == pid and fields[0] != "Z" and _entry_module(command).startswith("hookline.server.delivery"):
            found.append(int(stat.parent.name))
    return found


def _entry_module(command: list[bytes]) -> str:
    """The module a `python -m MODULE ...` command line runs ("" if it is not one)."""
    return command[2].decode() if len(command) > 2 and command[1] == b"-m" else ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Serve:
    def __init__(self, storage: Storage, log: Path, *extra: str, env: dict[str, str] | None = None):
        self.storage, self.log = storage, log
        self.address = f"127.0.0.1:{free_port()}"
        self.metrics_port = free_port()
        with log.open("a") as out:
            self.process = subprocess.Popen(
                [
                    *HOOKLINE, "serve", "--listen", self.address, "--metrics-port", str(self.metrics_port),
                    *storage.args, "--allow-target", "127.0.0.0/8", "--retry-schedule", "0,200ms,500ms",
                    *extra,
                ],
                env={**storage.env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_serving(self.address)
        self.client = Client(self.address, (storage.data_dir / "admin.key").read_text().strip())

    def children(self) -> list[int]:
        return _delivery_processes(self.process.pid)

    def delivery_process(self) -> int:
        eventually(lambda: len(self.children()) == 1, 10, "the delivery process did not start")
        return self.children()[0]

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` that carry `labels`, as scraped from --metrics-port."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        total = 0.0
        for sample_labels, value in re.findall(rf"^{re.escape(name)}(?:{{(.*)}})? (\S+)$", text, re.M):
            found = dict(re.findall(r'(\w+)="([^"]*)"', sample_labels))
            if labels.items() <= found.items():
                total += float(value)
        return total

    def flow(self, receiver, alias: str, rate_limit_per_s: int = 0) -> str:  # type: ignore[no-untyped-def]
        """A flow linked to one webhook at the receiver's /<alias>; returns the webhook id."""
        webhook = Webhook(
            alias=alias,
            url=receiver.url(f"/{alias}"),
            event_types=["JOB.COMPLETED"],
            rate_limit_per_s=rate_limit_per_s,
        )
        hook = self.client.webhooks.CreateWebhook(CreateWebhookRequest(webhook=webhook)).webhook
        definition = struct_pb2.Struct()
        definition.update({"steps": [{"transform": "@"}]})
        self.client.flows.CreateFlow(
            CreateFlowRequest(flow=Flow(alias=alias, definition=definition, webhook_ids=[hook.id]))
        )
        return hook.id

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


@pytest.fixture
def serve(storage: Storage, tmp_path: Path) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for server in started:
        server.stop()


def test_deliveries_streams_and_metrics_cross_the_two_processes(serve, storage, tmp_path, receiver) -> None:  # type: ignore[no-untyped-def]
    server = Serve(storage, tmp_path / "serve.log")
    serve.append(server)
    assert server.delivery_process() != server.process.pid
    webhook_id = server.flow(receiver, "dp-cross")

    reader = StreamReader(server.client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=webhook_id)))
    seen = reader.seen
    eventually(lambda: bool(seen), 10, "the stream did not open")
    for _ in range(3):
        server.client.jobs.StartJob(StartJobRequest(flow="dp-cross"))
    receiver.wait_for("/dp-cross", 3, timeout=10)
    # Sent and recorded by the delivery process; streamed by the API process.
    eventually(
        lambda: sum(m.kind == KIND.DELIVERY_EVENT_KIND_SUCCEEDED for m in seen) == 3,
        10,
        "the stream did not show 3 successes",
    )
    reader.stop()
    # Counted by the delivery process; served by the API process.
    eventually(
        lambda: server.metric("hookline_delivery_attempts_total", outcome="succeeded") >= 3,
        10,
        "the metrics did not count 3 successful attempts",
    )
    assert server.metric("hookline_jobs_ended_total", state="COMPLETED") >= 3


def test_a_killed_delivery_process_is_replaced_and_loses_nothing(serve, storage, tmp_path, receiver) -> None:  # type: ignore[no-untyped-def]
    server = Serve(storage, tmp_path / "serve.log")
    serve.append(server)
    server.flow(receiver, "dp-kill")
    server.client.jobs.StartJob(StartJobRequest(flow="dp-kill"))
    receiver.wait_for("/dp-kill", 1, timeout=10)
    eventually(
        lambda: server.metric("hookline_delivery_attempts_total", outcome="succeeded") >= 1,
        10,
        "the metrics did not count the first attempt",
    )
    counted = server.metric("hookline_delivery_attempts_total", outcome="succeeded")

    first = server.delivery_process()
    os.kill(first, signal.SIGKILL)
    for _ in range(20):  # while no delivery process runs
        server.client.jobs.StartJob(StartJobRequest(flow="dp-kill"))
    eventually(lambda: server.children() not in ([], [first]), 10, "no new delivery process started")
    arrived = receiver.wait_for("/dp-kill", 21, timeout=30)
    assert len({r.headers["webhook-id"] for r in arrived}) == 21
    assert server.process.poll() is None
    assert "the delivery process was killed by signal 9" in server.log.read_text()
    # What the killed process had counted is kept.
    eventually(
        lambda: server.metric("hookline_delivery_attempts_total", outcome="succeeded") >= counted + 20,
        10,
        "the metrics lost the killed process's count",
    )


def test_the_delivery_process_dies_with_the_server(serve, storage, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = Serve(storage, tmp_path / "serve.log")
    serve.append(server)
    child = server.delivery_process()
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    eventually(lambda: not _alive(child), 10, "the delivery process outlived the server")


def test_sigterm_stops_both_processes(serve, storage, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = Serve(storage, tmp_path / "serve.log")
    serve.append(server)
    child = server.delivery_process()
    server.process.terminate()
    assert server.process.wait(timeout=60) == 0
    assert not _alive(child)
    assert "was killed" not in server.log.read_text()


# A sitecustomize for every Python process of a server: at exit, it writes down
# the files of hookline it loaded under more than one module name (the standard
# library has aliases of its own, such as os.path).
MODULE_CENSUS = """
import atexit, collections, json, os, sys


def _census():
    folder = os.environ.get("MODULE_CENSUS_DIR")
    if not folder:
        return
    names = collections.defaultdict(list)
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and (name == "__main__" or name.split(".")[0] == "hookline"):
            names[os.path.realpath(path)].append(name)
    with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as out:
        json.dump({path: sorted(n) for path, n in names.items() if len(n) > 1}, out)


atexit.register(_census)
"""


def test_the_delivery_process_loads_each_module_once(serve, storage, tmp_path, receiver) -> None:  # type: ignore[no-untyped-def]
    census = tmp_path / "census"
    census.mkdir()
    (census / "sitecustomize.py").write_text(MODULE_CENSUS)
    path = os.pathsep.join(p for p in (str(census), storage.env.get("PYTHONPATH")) if p)
    server = Serve(storage, tmp_path / "serve.log", env={"PYTHONPATH": path, "MODULE_CENSUS_DIR": str(census)})
    serve.append(server)
    child = server.delivery_process()
    # Once it has sent something it is running, with every module it uses loaded.
    server.flow(receiver, "dp-census")
    server.client.jobs.StartJob(StartJobRequest(flow="dp-census"))
    receiver.wait_for("/dp-census", 1, timeout=10)
    server.process.terminate()
    assert server.process.wait(timeout=60) == 0
    # Loaded twice, a module has two of every class and global (e.g. notify's relays).
    assert json.loads((census / f"{child}.json").read_text()) == {}


def test_a_send_in_flight_at_sigterm_finishes_within_the_grace_and_is_not_sent_again(  # type: ignore[no-untyped-def]
    serve, storage, tmp_path, receiver
) -> None:
    server = Serve(storage, tmp_path / "serve.log")
    serve.append(server)
    # SIGTERM while the receiver takes 1 s to answer: within the grace (5 s by default).
    receiver.respond("/dp-grace", [Reply(200, delay_s=1.0, on_arrival=server.process.terminate), 200])
    webhook_id = server.flow(receiver, "dp-grace")
    server.client.jobs.StartJob(StartJobRequest(flow="dp-grace"))
    assert server.process.wait(timeout=30) == 0
    again = Serve(storage, tmp_path / "again.log")
    serve.append(again)
    # A second event, sent after anything given back (that would be due first).
    again.client.jobs.StartJob(StartJobRequest(flow="dp-grace"))
    arrived = receiver.wait_for("/dp-grace", 2, timeout=30)
    assert len({r.headers["webhook-id"] for r in arrived}) == 2  # the first one was not sent again
    eventually(lambda: len(_attempts(again, webhook_id)) == 2, 10, "the second attempt was not recorded")
    assert [(a.status_code, a.error) for a in _attempts(again, webhook_id)] == [(200, "")] * 2
    assert "did not stop" not in server.log.read_text()


@pytest.mark.parametrize("mode", [[], ["--single-process"]], ids=["delivery-process", "single-process"])
def test_a_send_slower_than_the_shutdown_grace_is_given_back_and_sent_once_more(  # type: ignore[no-untyped-def]
    serve, storage, tmp_path, receiver, mode
) -> None:
    alias = f"dp-grace-over-{len(mode)}"
    server = Serve(storage, tmp_path / "serve.log", "--shutdown-grace", "1s", *mode)
    serve.append(server)
    terminated = []

    def terminate() -> None:
        terminated.append(time.monotonic())
        server.process.terminate()

    # Answered 6 s after SIGTERM, 5 s after the grace ran out.
    receiver.respond(f"/{alias}", [Reply(200, delay_s=6.0, on_arrival=terminate), 200])
    webhook_id = server.flow(receiver, alias)
    server.client.jobs.StartJob(StartJobRequest(flow=alias))
    assert server.process.wait(timeout=30) == 0
    assert time.monotonic() - terminated[0] < 6.0  # it did not wait for the answer
    again = Serve(storage, tmp_path / "again.log", *mode)
    serve.append(again)
    first, second = receiver.wait_for(f"/{alias}", 2, timeout=30)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    eventually(lambda: len(_attempts(again, webhook_id)) == 1, 10, "the attempt was not recorded")
    [attempt] = _attempts(again, webhook_id)
    assert (attempt.status_code, attempt.error) == (200, ""), attempt.error
    assert len(receiver.at(f"/{alias}")) == 2  # once more, not again after the success


def test_single_process_delivers_without_a_delivery_process(serve, storage, tmp_path, receiver) -> None:  # type: ignore[no-untyped-def]
    server = Serve(storage, tmp_path / "serve.log", "--single-process")
    serve.append(server)
    server.flow(receiver, "dp-single")
    server.client.jobs.StartJob(StartJobRequest(flow="dp-single"))
    receiver.wait_for("/dp-single", 1, timeout=10)
    assert server.children() == []


def test_two_delivery_processes_send_each_message_once(serve, storage, tmp_path, receiver) -> None:  # type: ignore[no-untyped-def]
    server = Serve(storage, tmp_path / "serve.log", "--delivery-processes", "2")
    serve.append(server)
    eventually(lambda: len(server.children()) == 2, 10, "two delivery processes did not start")
    server.flow(receiver, "dp-two")
    for _ in range(40):
        server.client.jobs.StartJob(StartJobRequest(flow="dp-two"))
    arrived = receiver.wait_for("/dp-two", 40, timeout=30)
    assert len({r.headers["webhook-id"] for r in arrived}) == 40
    eventually(
        lambda: server.metric("hookline_delivery_attempts_total", outcome="succeeded") >= 40,
        10,
        "the metrics did not sum both processes' attempts",
    )
    assert len(receiver.at("/dp-two")) == 40  # none sent twice


def test_delivery_processes_share_a_webhook_s_in_flight_cap(serve, storage, tmp_path, receiver) -> None:  # type: ignore[no-untyped-def]
    server = Serve(storage, tmp_path / "serve.log", "--delivery-processes", "2", "--webhook-max-in-flight", "4")
    serve.append(server)
    eventually(lambda: len(server.children()) == 2, 10, "two delivery processes did not start")
    receiver.respond("/dp-cap", [Reply(delay_s=1.0)])
    server.flow(receiver, "dp-cap")
    for _ in range(12):
        server.client.jobs.StartJob(StartJobRequest(flow="dp-cap"))
    arrived = receiver.wait_for("/dp-cap", 12, timeout=30)
    # Each request is answered 1 s after it arrives, and the next one in its slot
    # comes only after that: the most requests at once, as the receiver saw them.
    edges = sorted([(r.time, 1) for r in arrived] + [(r.time + 1.0, -1) for r in arrived])
    in_flight = peak = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        in_flight += step
        peak = max(peak, in_flight)
    assert peak == 4  # 2 + 2, not 4 + 4


def test_delivery_processes_share_a_webhook_s_rate_limit(serve, storage, tmp_path, receiver) -> None:  # type: ignore[no-untyped-def]
    server = Serve(storage, tmp_path / "serve.log", "--delivery-processes", "2")
    serve.append(server)
    eventually(lambda: len(server.children()) == 2, 10, "two delivery processes did not start")
    server.flow(receiver, "dp-rate", rate_limit_per_s=4)
    for _ in range(9):
        server.client.jobs.StartJob(StartJobRequest(flow="dp-rate"))
    times = sorted(r.time for r in receiver.wait_for("/dp-rate", 9, timeout=30))
    # 4 per second in all (2 each): 9 take at least (9 - 2) / 4 s; at 4 each, half that.
    assert times[-1] - times[0] >= 1.5


def test_when_one_delivery_process_dies_all_start_again_and_nothing_is_lost(  # type: ignore[no-untyped-def]
    serve, storage, tmp_path, receiver
) -> None:
    server = Serve(storage, tmp_path / "serve.log", "--delivery-processes", "2")
    serve.append(server)
    eventually(lambda: len(server.children()) == 2, 10, "two delivery processes did not start")
    first = server.children()
    server.flow(receiver, "dp-two-kill")
    server.client.jobs.StartJob(StartJobRequest(flow="dp-two-kill"))
    receiver.wait_for("/dp-two-kill", 1, timeout=10)
    eventually(  # recorded, so that the kill interrupts no send
        lambda: server.metric("hookline_delivery_attempts_total", outcome="succeeded") >= 1,
        10,
        "the metrics did not count the first attempt",
    )

    os.kill(first[0], signal.SIGKILL)
    for _ in range(20):
        server.client.jobs.StartJob(StartJobRequest(flow="dp-two-kill"))
    eventually(
        lambda: len(server.children()) == 2 and not set(server.children()) & set(first),
        20,
        "a new pair of delivery processes did not start",
    )
    arrived = receiver.wait_for("/dp-two-kill", 21, timeout=30)
    assert len({r.headers["webhook-id"] for r in arrived}) == 21
    assert f"delivery process {first[0]} was killed by signal 9" in server.log.read_text()
    assert not _alive(first[1])  # stopped with it, not left running beside the new pair


def _attempts(server: Serve, webhook_id: str) -> list:  # type: ignore[type-arg]
    deliveries = server.client.webhooks.ListDeliveries(ListDeliveriesRequest(webhook_id=webhook_id)).deliveries
    return [
        a
        for d in deliveries
        for a in server.client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=d.id)).attempts
    ]


def test_an_answer_that_came_while_the_delivery_process_was_stopped_is_recorded(  # type: ignore[no-untyped-def]
    serve, storage, tmp_path, receiver
) -> None:
    # Stopped for three times the request timeout while the receiver answered at
    # once: when it runs again it reads the answer; nothing is sent twice.
    server = Serve(storage, tmp_path / "serve.log", "--request-timeout", "1", "--delivery-stall-timeout", "30s")
    serve.append(server)
    server.delivery_process()
    resumed = threading.Event()
    stopped: list[int] = []

    def stop_for_a_while() -> None:
        # The process sending now (looked up at this moment, not before).
        stopped.extend(server.children())
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)

        def resume() -> None:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            resumed.set()

        threading.Timer(3.0, resume).start()

    receiver.respond("/dp-pause", [Reply(200, on_arrival=stop_for_a_while), 200])
    webhook_id = server.flow(receiver, "dp-pause")
    server.client.jobs.StartJob(StartJobRequest(flow="dp-pause"))
    assert resumed.wait(30)
    eventually(lambda: len(_attempts(server, webhook_id)) == 1, 10, "the attempt was not recorded")
    [attempt] = _attempts(server, webhook_id)
    assert (attempt.status_code, attempt.error) == (200, ""), attempt.error
    assert attempt.duration_ms >= 2500  # it did span the stop
    assert len(receiver.at("/dp-pause")) == 1
    assert server.children() == stopped  # the supervisor let a short stop be


def test_a_stopped_delivery_process_is_replaced_and_loses_nothing(  # type: ignore[no-untyped-def]
    serve, storage, tmp_path, receiver
) -> None:
    server = Serve(
        storage, tmp_path / "serve.log",
        "--delivery-stall-timeout", "2s", "--request-timeout", "2", "--delivery-lease", "4s",
    )  # fmt: skip
    serve.append(server)
    first = server.delivery_process()
    # Stopped for good while sending the first message (the receiver answers it).
    receiver.respond("/dp-stop", [Reply(200, on_arrival=lambda: os.kill(first, signal.SIGSTOP)), 200])
    server.flow(receiver, "dp-stop")
    server.client.jobs.StartJob(StartJobRequest(flow="dp-stop"))
    receiver.wait_for("/dp-stop", 1, timeout=10)
    stopped_at = time.monotonic()
    for _ in range(20):  # while the delivery process is stopped
        server.client.jobs.StartJob(StartJobRequest(flow="dp-stop"))
    eventually(lambda: server.children() not in ([], [first]), 20, "no new delivery process started")
    assert time.monotonic() - stopped_at < 15  # 2 s without a heartbeat, then the usual restart
    assert not _alive(first)
    # All 21 events; the first one twice (its answer was never recorded).
    eventually(
        lambda: len({r.headers["webhook-id"] for r in receiver.at("/dp-stop")}) == 21, 30, "not every event arrived"
    )
    log = server.log.read_text()
    assert f"delivery process {first} made no progress for" in log
    assert "the delivery process was killed by signal 9" in log
