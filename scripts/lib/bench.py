"""Throughput and latency benchmark of hookline, each figure beside the reference
it is judged against, measured in the same run (issues 5 and 14).

What runs where:
  * hookline runs in a child process (`python -m hookline.cli serve`, which starts
    its delivery process, and the fork server of its job worker processes), so
    its CPU time (utime + stime from /proc/PID/stat, summed over that process
    and all its descendants) and peak RSS (VmHWM from /proc/PID/status, summed
    over it and its children) are its own. It uses the embedded default (SQLite
    in a temporary data dir) or, with --database URL, a fresh PostgreSQL
    database created for the run on that server and dropped after it (WITH
    (FORCE)); a generated master key is passed in either case. With --processes N (and --database), N such processes
    run against that database, each on its own port with its own data dir; the
    driver's StartJob calls take them in turn, its other calls go to the first,
    and every figure counts all N. Server settings are the defaults, except
    --allow-target 127.0.0.0/8.
  * the webhook receiver (bench_receiver.py) runs in another child process: a
    raw asyncio HTTP/1.1 server answering 200 at once; it counts arrivals per
    (webhook, event id), notes arrival times and data.endedAt, and verifies the
    signatures of a sample (1 request in 50; every one in the latency phase, 1 in
    10 in the fan-out) with hookline.signing.verify against each webhook's secret.
    A signature that does not verify stops the run.
  * this process drives it: gRPC (grpc.aio, one channel) and the plain aiohttp
    client of the ceiling.

The figures (keys of --json):
  ceiling_per_s        a plain aiohttp.ClientSession posting a body of the mean
                       webhook body size, with hookline-like headers, to the same
                       receiver, 64 in flight, while no hookline process runs.
  deliveries_per_s     end to end: N jobs started as fast as 64 concurrent StartJob
                       calls allow on a trivial flow linked to 4 webhooks; 4N
                       deliveries divided by the time from the first job's end
                       (data.endedAt) until no delivery is PENDING or SENDING
                       (polled with ListDeliveries every 50 ms once all 4N
                       messages arrived), i.e. until the last attempt was recorded.
  latency_p50_ms/p99   job end (data.endedAt, ms) to the message's arrival, jobs
                       started at a paced 200/s on a trivial flow with 1 webhook.
  fanout_1000_s        one job of a flow linked to 1,000 webhooks: from its end to
                       the arrival of the last of the 1,000 messages (median of
                       3 runs; 1 with --quick).
  publish_per_s        PublishEvent calls per second (an event type no webhook
                       subscribes to), 64 concurrent grpc.aio calls on one
                       channel, for the same time as rpc_ceiling_per_s.
  publish_deliveries_per_s  end to end from PublishEvent, no jobs involved: as
                       many events as deliveries_per_s has jobs, published by 64
                       concurrent calls to a type 4 webhooks subscribe to; the
                       deliveries divided by the time from the first publish call
                       until no delivery is PENDING or SENDING.
  rpc_ceiling_per_s    grpc.health.v1 Health/Check calls per second, and
  startjob_per_s       StartJob calls per second (flow without webhooks), both
                       from 64 concurrent grpc.aio calls on one channel (one per
                       server, taken in turn), for a fixed time. Jobs left
                       WAITING are then canceled.
  backlog_small_per_s  the pending backlog is written while no hookline process
  backlog_large_per_s  runs, straight through the storage layer
  rss_mb_large         (storage.deliveries.record_event: one JOB.COMPLETED event
                       to 16 webhooks per call, 200 events per transaction, the
                       body of a real job event); then hookline starts and drains
                       it. Rate = deliveries recorded / time from the first arrival
                       until none is PENDING or SENDING. If the drain outlasts the
                       time cap, the rate is the arrivals so far over the time so
                       far (marked "partial"). rss_mb_large is the server's peak
                       RSS (VmHWM) during the large drain.
  cpu_us_per_delivery  the hookline processes' CPU time (user + system, every
                       process of every server) per delivery while draining the
                       small backlog, from when a tenth of it has arrived and every
                       server has a connection to the receiver (a delivery process
                       still imports for a while after its server listens) until
                       none is PENDING or SENDING, divided by the deliveries that
                       arrived meanwhile. CPU time stays steady on a busy machine
                       where rates do not. The large backlog's is in the notes.
  db_cpu_us_per_delivery  with --database, on a PostgreSQL server on this machine:
                       its processes' CPU time per delivery over the same stretch
                       (the backends of the run's database, the background
                       processes and the postmaster; see PostgresCpu), with what
                       one PostgreSQL core would carry at that cost.

Webhooks subscribe to JOB.COMPLETED, JOB.ERROR and JOB.CANCELED. A failed RPC
(e.g. INTERNAL) does not stop the run: figures count what succeeded and the
table lists the failures under PROBLEMS; the server logs are then kept.

Counts (full / --quick): 5,000 / 600 jobs x 4 webhooks end to end; 10 / 2.5 s
at 200 jobs/s for latency; 5 / 1.5 s per RPC rate and for the ceiling; backlogs
10,000 and 200,000 / 2,000 and 20,000, each drain capped at 180 / 8 s.
--quick finishes within a minute on 2 cores (the full run takes about 6 minutes);
--processes N with --database runs N hookline processes on the one database;
--profile DIR attaches `py-spy record` to each hookline process (speedscope files,
hookline-N.speedscope.json: 1 = setup to fan-out, 2 = small backlog, 3 = large;
hookline-N.K.speedscope.json for process K of --processes);
--profile-gil keeps only the samples that hold the GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import itertools
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hookline.v1 import (
    events_pb2,
    events_pb2_grpc,
    flows_pb2,
    flows_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
)

HERE = Path(__file__).resolve().parent
CONCURRENCY = 64
KEYS = (
    "ceiling_per_s",
    "deliveries_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "fanout_1000_s",
    "startjob_per_s",
    "rpc_ceiling_per_s",
    "publish_per_s",
    "publish_deliveries_per_s",
    "backlog_small_per_s",
    "backlog_large_per_s",
    "rss_mb_large",
    "cpu_us_per_delivery",
)
DB_KEYS = ("db_cpu_us_per_delivery",)  # with --database


@dataclass
class Sizes:
    rpc_seconds: float
    throughput_events: int
    latency_seconds: float
    latency_rate: float
    fanout_webhooks: int
    fanout_runs: int
    ceiling_seconds: float
    backlog_small: int
    backlog_large: int
    backlog_cap_s: float


QUICK = Sizes(1.5, 600, 2.5, 200, 1000, 1, 1.5, 2_000, 20_000, 8)
FULL = Sizes(5, 5_000, 10, 200, 1000, 3, 5, 10_000, 200_000, 180)
THROUGHPUT_HOOKS = 4
BACKLOG_HOOKS = 16
# Every end of a job is sent, so a job whose end was lost (and is reaped) still arrives.
JOB_EVENTS = ["JOB.COMPLETED", "JOB.ERROR", "JOB.CANCELED"]
# Event types the benchmark publishes: one no webhook subscribes to, one THROUGHPUT_HOOKS webhooks do.
PUBLISH_NOOP, PUBLISH_TP = "BENCH.NOOP", "BENCH.THROUGHPUT"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the receiver -------------------------------------------------------------------


class Receiver:
    """Handle on the receiver process (bench_receiver.py)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "bench_receiver.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        match = re.match(r"listening on (\d+)", line)
        if not match:
            raise RuntimeError(f"the receiver did not start: {line!r}")
        self.port = int(match.group(1))
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def control(self, path: str, payload: Any = None) -> Any:
        body = json.dumps(payload).encode() if payload is not None else b""
        self.conn.request("POST" if payload is not None or path in ("/_reset",) else "GET", path, body=body)
        return json.loads(self.conn.getresponse().read())

    def reset(self, **config: Any) -> None:
        self.control("/_config", {"sample_every": 50, "keep_arrivals": False, "status": 200, **config})
        self.control("/_reset")

    def stats(self) -> dict[str, Any]:
        return self.control("/_stats")

    def wait_unique(self, expected: int, timeout: float, every: float = 0.05) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["unique"] >= expected or time.monotonic() > deadline:
                return stats
            time.sleep(every)

    def close(self) -> None:
        self.conn.close()
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the hookline processes ---------------------------------------------------------


def _proc_stats() -> dict[int, list[str]]:
    """Every process's /proc/PID/stat fields after the command name (field 3 on):
    [0] state, [1] ppid, ... [11] utime, [12] stime, [13] cutime, [14] cstime."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            found[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            pass  # it ended meanwhile
    return found


def _tree(root: int, stats: dict[int, list[str]]) -> list[int]:
    """`root` and all its descendants still running (children of children too:
    the job workers are the fork server's, not the API process's)."""
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found.append(pid)
            todo.extend(children.get(pid, ()))
    return found


def _ticks_s(fields: list[str], reaped_children: bool) -> float:
    """utime + stime (and cutime + cstime: the children it waited for) in seconds."""
    return sum(int(f) for f in fields[11 : 15 if reaped_children else 13]) / os.sysconf("SC_CLK_TCK")


def _connected_to(pids: list[int], port: int) -> bool:
    """Whether one of `pids` holds an established TCP connection to 127.0.0.1:`port`."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.scandir(f"/proc/{pid}/fd"):
                target = os.readlink(fd.path)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue  # it ended meanwhile
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()  # local, remote (hex address:port), state (01: established), ..., inode
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                return True
    return False


class Server:
    """One hookline process (`python -m hookline.cli serve`) and the processes it
    starts (delivery processes, the job workers' fork server and its workers)."""

    def __init__(
        self,
        data_dir: Path,
        database: str | None,
        master_key: str,
        name: str,
        profile: Path | None,
        gil: bool,
        extra_args: list[str] | None = None,
    ):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / f"{name}.log"
        self.name = name
        args = [
            sys.executable, "-m", "hookline.cli", "serve",
            "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), "--allow-target", "127.0.0.0/8",
        ]  # fmt: skip
        if database:
            args += ["--database", database]
        args += extra_args or []
        env = dict(os.environ, HOOKLINE_MASTER_KEY=master_key)
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log_file, stderr=subprocess.STDOUT)
        self.port = 0
        self.address = ""
        self.profile = profile
        self.gil = gil
        self.spy: subprocess.Popen[bytes] | None = None

    def wait_listening(self) -> None:
        self.port = self._wait_port()
        self.address = f"127.0.0.1:{self.port}"
        if self.profile is not None:
            self.profile.mkdir(parents=True, exist_ok=True)
            self.spy = subprocess.Popen(
                [_py_spy(), "record", "--pid", str(self.proc.pid), "--nonblocking", "--format", "speedscope",
                 "--threads", "--subprocesses", *(["--gil"] if self.gil else []),
                 "-o", str(self.profile / f"{self.name}.speedscope.json")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            match = re.search(r"hookline listening on [^\s:]+:(\d+)", text)
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"hookline exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"hookline did not start within 60 s; see {self.log_path}")

    def pids(self, stats: dict[int, list[str]] | None = None) -> list[int]:
        return _tree(self.proc.pid, _proc_stats() if stats is None else stats)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.spy is not None:
            try:
                self.spy.wait(30)  # py-spy writes its file when the process it watches exits
            except subprocess.TimeoutExpired:
                self.spy.send_signal(signal.SIGINT)
                self.spy.wait()
        self.log_file.close()


class Servers:
    """The hookline processes of one stretch of the run (one, or --processes N on
    one PostgreSQL database), measured together."""

    def __init__(self, servers: list[Server]):
        self.all = servers
        self.address = servers[0].address
        self.addresses = [server.address for server in servers]

    def cpu_s(self) -> float:
        """CPU time of all their processes so far, and of the children they waited for
        (a job worker or delivery process that was replaced)."""
        stats = _proc_stats()
        return sum(_ticks_s(stats[pid], True) for server in self.all for pid in server.pids(stats))

    def peak_rss_mb(self) -> float:
        """The sum of the own peaks (VmHWM) of each server process and its children.
        Not of the job workers: forked from the fork server, they share most of its
        pages (25 MB of VmHWM each, 7 MB proportional), which VmHWM would count again."""
        total = 0.0
        stats = _proc_stats()
        roots = {server.proc.pid for server in self.all}
        pids = [pid for pid, fields in stats.items() if pid in roots or int(fields[1]) in roots]
        for pid in pids:
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("VmHWM:")) / 1024
        return total

    def all_sending(self, port: int) -> bool:
        """Whether every server has a process connected to the receiver: each has
        finished starting (a delivery process imports for a while after `listening`)."""
        stats = _proc_stats()
        return all(_connected_to(server.pids(stats), port) for server in self.all)

    def stop(self) -> None:
        for server in self.all:
            server.stop()


def _py_spy() -> str:
    """py-spy beside this Python (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


class CpuMeter:
    """The servers' CPU use over a stretch of wall time, as a share of one core."""

    def __init__(self, servers: Servers):
        self.servers = servers
        self.cpu0 = servers.cpu_s()
        self.wall0 = time.monotonic()

    def share(self) -> float:
        return (self.servers.cpu_s() - self.cpu0) / max(1e-9, time.monotonic() - self.wall0)


# --- gRPC helpers -------------------------------------------------------------------


class Api:
    """grpc.aio stubs on one channel per server, the API key sent with each call.
    StartJob and health checks take the servers in turn; every other call goes to the first."""

    def __init__(self, addresses: list[str], key: str):
        self.channels = [grpc.aio.insecure_channel(address) for address in addresses]
        self.channel = self.channels[0]
        self.md = (("authorization", f"Bearer {key}"),)
        self.webhooks = webhooks_pb2_grpc.WebhookServiceStub(self.channel)
        self.flows = flows_pb2_grpc.FlowServiceStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.events = events_pb2_grpc.EventServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.job_starters = itertools.cycle([jobs_pb2_grpc.JobServiceStub(channel) for channel in self.channels])
        self.health_checkers = itertools.cycle([health_pb2_grpc.HealthStub(channel) for channel in self.channels])
        self.errors: Counter[str] = Counter()  # failed calls, by method and status

    def take_errors(self) -> str:
        """The failed calls since the last look, in words ("" if none)."""
        text = ", ".join(f"{n} x {what}" for what, n in self.errors.most_common())
        self.errors.clear()
        return text

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def unfinished(self) -> int:
        """Deliveries still PENDING or SENDING (at most 1 counted per state; -1: the call failed)."""
        n = 0
        for state in (webhooks_pb2.DELIVERY_STATE_PENDING, webhooks_pb2.DELIVERY_STATE_SENDING):
            try:
                reply = await self.webhooks.ListDeliveries(
                    webhooks_pb2.ListDeliveriesRequest(state=state, page_size=1), metadata=self.md
                )
            except grpc.aio.AioRpcError as error:
                self.errors[f"ListDeliveries {error.code().name}"] += 1
                return -1
            n += len(reply.deliveries)
        return n

    async def failed(self) -> int:
        reply = await self.webhooks.ListDeliveries(
            webhooks_pb2.ListDeliveriesRequest(state=webhooks_pb2.DELIVERY_STATE_FAILED, page_size=1), metadata=self.md
        )
        return len(reply.deliveries)

    async def wait_recorded(self, timeout: float) -> float | None:
        """Poll until no delivery is PENDING or SENDING; returns when (time.time()) that
        was seen, or None if it was not within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while await self.unfinished():
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        return time.time()

    async def publish(self, event_type: str, i: int) -> events_pb2.Event | None:
        """PublishEvent, or None (counted in errors) if the call failed."""
        value = struct_pb2.Value()
        value.struct_value.update({"order": i, "items": [{"sku": "A-1", "price": 5}, {"sku": "B-2", "price": 7.5}]})
        try:
            request = events_pb2.PublishEventRequest(event_type=event_type, data=value)
            return await self.events.PublishEvent(request, metadata=self.md)
        except grpc.aio.AioRpcError as error:
            self.errors[f"PublishEvent {error.code().name}"] += 1
            return None

    async def start_job(self, flow: str, i: int) -> jobs_pb2.Job | None:
        """StartJob, or None (counted in errors) if the call failed."""
        value = struct_pb2.Value()
        value.struct_value.update({"order": i, "items": [{"sku": "A-1", "price": 5}, {"sku": "B-2", "price": 7.5}]})
        try:
            request = jobs_pb2.StartJobRequest(flow=flow, input=value)
            return await next(self.job_starters).StartJob(request, metadata=self.md)
        except grpc.aio.AioRpcError as error:
            self.errors[f"StartJob {error.code().name}"] += 1
            return None


async def bounded(concurrency: int, jobs: list[Any], fn: Any) -> list[Any]:
    """fn(job) for each job, `concurrency` at a time; results in order."""
    results: list[Any] = [None] * len(jobs)
    it = iter(enumerate(jobs))

    async def worker() -> None:
        for index, job in it:
            results[index] = await fn(job)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(jobs)))))
    return results


async def rate_for(seconds: float, call: Any, concurrency: int = CONCURRENCY) -> tuple[int, float]:
    """Calls that succeeded (returned something but None) and the time taken, with
    `concurrency` loops of `call` for `seconds`."""
    done = 0
    stop_at = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            if await call() is not None:
                done += 1

    start = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done, time.monotonic() - start


def ended_at(text: str) -> float:
    """RFC 3339 with milliseconds and Z, as Unix seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- the benchmark ------------------------------------------------------------------


@dataclass
class CpuWindow:
    """Where the counted stretch of a drain began."""

    arrived: int  # deliveries that had arrived then
    server_s: float  # the servers' CPU seconds then (PostgresCpu keeps its own start)

    def spent(self, servers: Servers, postgres: PostgresCpu | None) -> tuple[float, float, float]:
        """CPU seconds since: the servers', the run database's backends', PostgreSQL's background processes'."""
        server_s = servers.cpu_s() - self.server_s
        backends_s, background_s = postgres.since_start() if postgres and postgres.local else (0.0, 0.0)
        return server_s, backends_s, background_s


@dataclass
class Run:
    sizes: Sizes
    receiver: Receiver
    data_dir: Path
    database: str | None
    master_key: str
    profile: Path | None
    profile_gil: bool
    processes: int = 1
    postgres: PostgresCpu | None = None
    figures: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)
    key: str = ""
    secrets: dict[str, str] = field(default_factory=dict)
    body_bytes: float = 0
    template: tuple[bytes, str] | None = None  # a real job event's body and its event id
    servers: int = 0

    def server(self) -> Servers:
        """Start the run's hookline processes: the first in the data dir, the others
        (--processes) each in a data dir of its own under it. Only the first ever
        writes the admin key (into its data dir), so it starts alone at first."""
        self.servers += 1
        started = []
        try:
            for number in range(self.processes):
                data_dir = self.data_dir if number == 0 else self.data_dir / f"process-{number + 1}"
                name = f"hookline-{self.servers}" + (f".{number + 1}" if self.processes > 1 else "")
                started.append(Server(data_dir, self.database, self.master_key, name, self.profile, self.profile_gil))
                if self.servers == 1 and number == 0:
                    started[0].wait_listening()
            for server in started:
                if not server.port:
                    server.wait_listening()
        except BaseException:
            for server in started:
                server.stop()
            raise
        return Servers(started)

    # -- setup ---------------------------------------------------------------------

    async def setup(self, api: Api) -> None:
        definition = struct_pb2.Struct()
        definition.update({"steps": [{"transform": "@"}]})

        for name in (PUBLISH_NOOP, PUBLISH_TP):
            event_type = events_pb2.EventType(name=name, description="benchmark")
            await api.events.CreateEventType(events_pb2.CreateEventTypeRequest(event_type=event_type), metadata=api.md)

        async def hook(alias: str, event_types: list[str] = JOB_EVENTS) -> str:
            path = f"/h/{alias}"
            reply = await api.webhooks.CreateWebhook(
                webhooks_pb2.CreateWebhookRequest(
                    webhook=webhooks_pb2.Webhook(alias=alias, url=self.receiver.url(path), event_types=event_types)
                ),
                metadata=api.md,
            )
            self.secrets[path] = reply.secret
            return reply.webhook.id

        tp = await bounded(8, [f"tp{i}" for i in range(THROUGHPUT_HOOKS)], hook)
        await bounded(8, [f"ptp{i}" for i in range(THROUGHPUT_HOOKS)], lambda alias: hook(alias, [PUBLISH_TP]))
        lat = await hook("lat")
        fan = await bounded(16, [f"fan{i:04d}" for i in range(self.sizes.fanout_webhooks)], hook)
        await bounded(8, [f"bk{i:02d}" for i in range(BACKLOG_HOOKS)], hook)
        for alias, linked in (("noop", []), ("tp", tp), ("lat", [lat]), ("fan", fan)):
            await api.flows.CreateFlow(
                flows_pb2.CreateFlowRequest(
                    flow=flows_pb2.Flow(alias=alias, definition=definition, webhook_ids=linked)
                ),
                metadata=api.md,
            )
        self.receiver.control("/_config", {"secrets": self.secrets})

    # -- phases on the first server ------------------------------------------------------

    async def rpc_phase(self, api: Api, server: Servers) -> None:
        seconds = self.sizes.rpc_seconds
        check = health_pb2.HealthCheckRequest(service="")
        await rate_for(0.3, lambda: next(api.health_checkers).Check(check))  # warm the channels
        cpu = CpuMeter(server)
        n, elapsed = await rate_for(seconds, lambda: next(api.health_checkers).Check(check))
        self.figures["rpc_ceiling_per_s"] = n / elapsed
        self.notes["rpc_ceiling_per_s"] = f"{n} calls, server cpu {cpu.share():.0%}"
        api.errors.clear()
        counter = iter(range(10**9))
        cpu = CpuMeter(server)
        n, elapsed = await rate_for(seconds, lambda: api.start_job("noop", next(counter)))
        self.figures["startjob_per_s"] = n / elapsed
        self.notes["startjob_per_s"] = f"{n} calls, server cpu {cpu.share():.0%}"
        self.problem("startjob_per_s", api.take_errors())
        # The jobs left WAITING would run during the next phases: cancel them, let the running ones end.
        deadline = time.monotonic() + 30
        canceled = 0
        while time.monotonic() < deadline:
            try:
                request = jobs_pb2.CancelJobsRequest(flow_id="noop")
                canceled += (await api.jobs.CancelJobs(request, metadata=api.md)).canceled_count
                busy = False
                for state in (jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_CANCELING, jobs_pb2.JOB_STATE_WAITING):
                    request = jobs_pb2.ListJobsRequest(state=state, page_size=1)
                    busy = busy or bool((await api.jobs.ListJobs(request, metadata=api.md)).jobs)
                if not busy:
                    break
            except grpc.aio.AioRpcError as error:
                api.errors[f"CancelJobs/ListJobs {error.code().name}"] += 1
            await asyncio.sleep(0.1)
        log(f"startjob: {n} jobs started; {canceled} left waiting were canceled")
        self.problem("startjob_per_s", api.take_errors())
        # Once the jobs are gone, so that publishing has the server to itself as StartJob had.
        cpu = CpuMeter(server)
        n, elapsed = await rate_for(seconds, lambda: api.publish(PUBLISH_NOOP, next(counter)))
        self.figures["publish_per_s"] = n / elapsed
        self.notes["publish_per_s"] = f"{n} calls, server cpu {cpu.share():.0%}"
        self.problem("publish_per_s", api.take_errors())

    async def throughput_phase(self, api: Api, server: Servers) -> None:
        events = self.sizes.throughput_events
        expected = events * THROUGHPUT_HOOKS
        self.receiver.reset(keep_arrivals=True)
        cpu = CpuMeter(server)
        started = time.monotonic()
        jobs = await bounded(CONCURRENCY, list(range(events)), lambda i: api.start_job("tp", i))
        events = sum(job is not None for job in jobs)
        expected = events * THROUGHPUT_HOOKS
        log(f"deliveries: {events} jobs started in {time.monotonic() - started:.1f} s")
        self.problem("deliveries_per_s", api.take_errors())
        stats = await asyncio.to_thread(self.receiver.wait_unique, expected, max(60, expected / 20))
        recorded = await api.wait_recorded(60) if stats["unique"] >= expected else None
        if recorded is None:
            self.problem("deliveries_per_s", f"{stats['unique']} of {expected} arrived, not all recorded in time")
        arrivals = self.receiver.control("/_arrivals")
        first_end = min(ended_at(a[3]) for a in arrivals)
        end = recorded or stats["last"]
        self.figures["deliveries_per_s"] = stats["unique"] / (end - first_end)
        self.notes["deliveries_per_s"] = (
            f"{events} events x {THROUGHPUT_HOOKS} webhooks in {end - first_end:.1f} s, server cpu {cpu.share():.0%}"
        )
        self.body_bytes = stats["mean_body_bytes"]
        self.check(stats, "deliveries_per_s")
        if await api.failed():
            self.problem("deliveries_per_s", "some deliveries FAILED")
        # A real event's body, the template of the backlog's events.
        event_id = arrivals[0][1]
        event = await api.events.GetEvent(events_pb2.GetEventRequest(id=event_id), metadata=api.md)
        self.template = (event.body, event_id)

    async def publish_throughput_phase(self, api: Api, server: Servers) -> None:
        events = self.sizes.throughput_events
        self.receiver.reset(keep_arrivals=True)
        cpu = CpuMeter(server)
        first_call = time.time()
        published = await bounded(CONCURRENCY, list(range(events)), lambda i: api.publish(PUBLISH_TP, i))
        events = sum(event is not None for event in published)
        expected = events * THROUGHPUT_HOOKS
        log(f"publish deliveries: {events} events published in {time.time() - first_call:.1f} s")
        self.problem("publish_deliveries_per_s", api.take_errors())
        stats = await asyncio.to_thread(self.receiver.wait_unique, expected, max(60, expected / 20))
        recorded = await api.wait_recorded(60) if stats["unique"] >= expected else None
        if recorded is None:
            self.problem(
                "publish_deliveries_per_s", f"{stats['unique']} of {expected} arrived, not all recorded in time"
            )
        end = recorded or stats["last"]
        self.figures["publish_deliveries_per_s"] = stats["unique"] / (end - first_call)
        self.notes["publish_deliveries_per_s"] = (
            f"{events} events x {THROUGHPUT_HOOKS} webhooks in {end - first_call:.1f} s, server cpu {cpu.share():.0%}"
        )
        self.check(stats, "publish_deliveries_per_s")
        if await api.failed():
            self.problem("publish_deliveries_per_s", "some deliveries FAILED")

    async def latency_phase(self, api: Api, server: Servers) -> None:
        rate = self.sizes.latency_rate
        count = int(rate * self.sizes.latency_seconds)
        self.receiver.reset(keep_arrivals=True, sample_every=1)
        cpu = CpuMeter(server)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        calls = []
        for i in range(count):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            calls.append(asyncio.create_task(api.start_job("lat", i)))
        issued = count / (loop.time() - t0) if count > 1 else rate
        ok = sum(job is not None for job in await asyncio.gather(*calls))
        accepted = count / (loop.time() - t0)
        self.problem("latency_p99_ms", api.take_errors())
        stats = await asyncio.to_thread(self.receiver.wait_unique, ok, 60)
        share = cpu.share()
        if stats["unique"] < ok:
            self.problem("latency_p99_ms", f"only {stats['unique']} of {ok} messages arrived within 60 s")
        self.check(stats, "latency_p99_ms")
        latencies = [(a[2] - ended_at(a[3])) * 1000 for a in self.receiver.control("/_arrivals")]
        cuts = statistics.quantiles(latencies, n=100)
        self.figures["latency_p50_ms"] = cuts[49]
        self.figures["latency_p99_ms"] = cuts[98]
        self.notes["latency_p50_ms"] = (
            f"{count} jobs at {rate:.0f}/s (issued at {issued:.0f}/s, all accepted at {accepted:.0f}/s)"
        )
        self.notes["latency_p99_ms"] = f"max {max(latencies):.1f} ms, server cpu {share:.0%}"
        if await api.wait_recorded(60) is None:
            self.problem("latency_p99_ms", "deliveries still unfinished 60 s after the last arrival")

    async def fanout_phase(self, api: Api, server: Servers) -> None:
        n = self.sizes.fanout_webhooks
        runs = []
        for run in range(self.sizes.fanout_runs):
            self.receiver.reset(keep_arrivals=True, sample_every=10)
            cpu = CpuMeter(server)
            for _ in range(3):
                if await api.start_job("fan", run) is not None:
                    break
            self.problem("fanout_1000_s", api.take_errors())
            stats = await asyncio.to_thread(self.receiver.wait_unique, n, 120, 0.01)
            if stats["unique"] < n:
                self.problem("fanout_1000_s", f"only {stats['unique']} of {n} messages arrived within 120 s")
            self.check(stats, "fanout_1000_s")
            arrivals = self.receiver.control("/_arrivals")
            if not arrivals:
                raise RuntimeError("no fan-out message arrived")
            end = ended_at(arrivals[0][3])
            runs.append(max(a[2] for a in arrivals) - end)
            share = cpu.share()
            if await api.wait_recorded(60) is None:
                self.problem("fanout_1000_s", "deliveries still unfinished 60 s after the last arrival")
        self.figures["fanout_1000_s"] = statistics.median(runs)
        self.notes["fanout_1000_s"] = (
            f"{n} webhooks; runs: {', '.join(f'{r:.2f}' for r in runs)} s, server cpu {share:.0%}"
        )

    def problem(self, key: str, text: str) -> None:
        if text:
            self.problems.setdefault(key, []).append(text)
            log(f"{key}: {text}")

    def check(self, stats: dict[str, Any], key: str) -> None:
        """Signatures verified on the sample (a failure stops the run: figures of
        unsigned messages mean nothing); duplicates are allowed (at-least-once)."""
        if stats["failed"] or (stats["requests"] and not stats["verified"]):
            raise RuntimeError(f"{key}: signatures did not verify: {stats['failures']}")
        if stats["duplicates"]:
            self.notes[key] = self.notes.get(key, "") + f", {stats['duplicates']} duplicate arrivals"

    # -- the ceiling, with no hookline running ------------------------------------------

    async def ceiling_phase(self) -> None:
        import aiohttp

        size = int(self.body_bytes) or 600
        body = b'{"pad":"' + b"x" * max(0, size - 10) + b'"}'
        headers = {
            "webhook-id": "evt_" + "0" * 26,
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1," + base64.b64encode(os.urandom(32)).decode(),
            "X-Webhook-Signature": os.urandom(32).hex(),
            "X-Webhook-Timestamp": str(int(time.time())),
            "X-Webhook-Delivery-Attempt": "0",
            "Content-Type": "application/json",
            "User-Agent": "hookline-bench",
        }
        url = self.receiver.url("/ceiling")
        self.receiver.reset()
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post() -> bool:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"receiver answered {response.status}")
                    return True

            await rate_for(0.3, post)
            n, elapsed = await rate_for(self.sizes.ceiling_seconds, post)
        self.figures["ceiling_per_s"] = n / elapsed
        self.notes["ceiling_per_s"] = f"aiohttp, {CONCURRENCY} in flight, {len(body)} B bodies"

    # -- backlogs ------------------------------------------------------------------------

    def write_backlog(self, deliveries: int) -> float:
        """PENDING deliveries, written through the storage layer while no server runs."""
        from hookline.server.storage import models as m
        from hookline.server.storage.database import open_database
        from hookline.server.storage.deliveries import record_event

        assert self.template is not None
        body, template_id = self.template
        database = open_database(self.data_dir, self.database)
        started = time.monotonic()
        try:
            hooks = list(m.Webhook.select().where(m.Webhook.alias.startswith("bk")).order_by(m.Webhook.alias))
            assert len(hooks) == BACKLOG_HOOKS
            events = deliveries // BACKLOG_HOOKS
            per_tx = 200
            for start in range(0, events, per_tx):
                with m.db.atomic():
                    for _ in range(min(per_tx, events - start)):
                        record_event(
                            hooks[0].space_id,
                            "JOB.COMPLETED",
                            lambda event_id, _now: body.replace(template_id.encode(), event_id.encode()),
                            hooks,
                        )
        finally:
            database.close()
            if hasattr(database, "close_all"):
                database.close_all()
        return time.monotonic() - started

    def drain(self, name: str, deliveries: int) -> tuple[float, float, bool]:
        """Start hookline on a written backlog; returns (rate, peak RSS MB, drained)."""
        self.receiver.reset(sample_every=50)
        servers = self.server()
        try:
            return asyncio.run(self._drain(servers, name, deliveries))
        finally:
            servers.stop()

    async def _drain(self, servers: Servers, name: str, deliveries: int) -> tuple[float, float, bool]:
        api = Api(servers.addresses, self.key)
        try:
            cpu = CpuMeter(servers)
            cap = time.monotonic() + self.sizes.backlog_cap_s
            stats = self.receiver.stats()
            window: CpuWindow | None = None
            while stats["unique"] < deliveries and time.monotonic() < cap:
                await asyncio.sleep(0.1)
                stats = self.receiver.stats()
                if window is None:
                    window = self.cpu_window(servers, stats["unique"], deliveries)
                elif self.postgres:
                    self.postgres.sample()  # the time of a backend that ends before the last sample
            rss = servers.peak_rss_mb()
            drained = stats["unique"] >= deliveries
            recorded = await api.wait_recorded(60) if drained else None
            spent = window.spent(servers, self.postgres) if window else None
            if drained and recorded is None:
                self.problem(f"{name}_per_s", "all arrived but not all were recorded within 60 s")
            stats = self.receiver.stats()
            if not stats["unique"]:
                raise RuntimeError(f"{name}: nothing arrived within {self.sizes.backlog_cap_s} s")
            rate = stats["unique"] / ((recorded or stats["last"]) - stats["first"])
            self.problem(f"{name}_per_s", api.take_errors())
            rss = max(rss, servers.peak_rss_mb())
            self.check(stats, f"{name}_per_s")
            share = cpu.share()
            how = "drained" if drained else f"partial: {stats['unique']} in {self.sizes.backlog_cap_s:.0f} s cap"
            log(f"{name}: {rate:.0f}/s ({how}), peak RSS {rss:.0f} MB, server cpu {share:.0%}")
            self.cpu_per_delivery(name, window, spent, stats["unique"], drained)
            return rate, rss, drained
        finally:
            await api.close()

    def cpu_window(self, servers: Servers, arrived: int, deliveries: int) -> CpuWindow | None:
        """The start of the stretch of a drain whose CPU time is counted, or None if not yet:
        from a tenth of the backlog on, once every server sends (a delivery process
        is still starting for a while after its server listens; that is no delivery's cost)."""
        if arrived < deliveries / 10 or not servers.all_sending(self.receiver.port):
            return None
        if self.postgres:
            self.postgres.start()
        return CpuWindow(arrived, servers.cpu_s())

    def cpu_per_delivery(
        self, name: str, window: CpuWindow | None, spent: tuple[float, float, float] | None, arrived: int, drained: bool
    ) -> None:
        """CPU µs per delivery over the counted stretch: the servers' figure and, on
        PostgreSQL, the database's; the small backlog's are figures, the large one's notes."""
        key = "cpu_us_per_delivery"
        if window is None or spent is None or arrived <= window.arrived:
            self.problem(key, f"{name}: it drained before every server was sending; nothing counted")
            return
        count = arrived - window.arrived
        server_us, backends_us, background_us = (seconds * 1e6 / count for seconds in spent)
        db_us = backends_us + background_us
        until = "all recorded" if drained else "the time cap, partial"
        how = f"{count} deliveries of the small backlog (from {window.arrived} arrived until {until})"
        log(
            f"{name}: {server_us:.0f} µs of server cpu per delivery"
            + (f", {db_us:.0f} µs of PostgreSQL's" if self.postgres and self.postgres.local else "")
        )
        if name != "backlog_small":
            self.notes[key] = self.notes.get(key, "") + f"; large backlog: {server_us:.0f}"
            if self.postgres and self.postgres.local:
                db_key = "db_cpu_us_per_delivery"
                self.notes[db_key] = self.notes.get(db_key, "") + f"; large backlog: {db_us:.0f}"
            return
        self.figures[key] = server_us
        self.notes[key] = f"{how}; every process of {self.processes} server(s): API, delivery, fork server, job workers"
        if self.postgres is None:
            return
        key = "db_cpu_us_per_delivery"
        if not self.postgres.local:
            self.problem(key, "PostgreSQL does not run on this machine: its processes' CPU time cannot be read")
            return
        self.figures[key] = db_us
        # What one core of each side carries, for sizing: deliveries/s per PostgreSQL core, and how
        # many hookline cores that keeps busy.
        self.notes[key] = (
            f"backends of the run's database {backends_us:.0f} + background processes {background_us:.0f}; "
            f"one PostgreSQL core carries ~{1e6 / db_us:,.0f} deliveries/s, which keeps "
            f"~{server_us / db_us:.1f} hookline cores busy"
        )

    def backlog_phase(self) -> None:
        for name, count in (("backlog_small", self.sizes.backlog_small), ("backlog_large", self.sizes.backlog_large)):
            seconds = self.write_backlog(count)
            log(f"{name}: wrote {count} pending deliveries in {seconds:.1f} s")
            rate, rss, drained = self.drain(name, count)
            self.figures[f"{name}_per_s"] = rate
            note = f"{count} pending" + ("" if drained else f", partial ({self.sizes.backlog_cap_s:.0f} s cap)")
            self.notes[f"{name}_per_s"] = note
            if name == "backlog_large":
                self.figures["rss_mb_large"] = rss
                self.notes["rss_mb_large"] = (
                    "VmHWM of the hookline processes (API, delivery, fork server), each its own peak"
                )

    # -- all of it ---------------------------------------------------------------------

    def run(self) -> None:
        server = self.server()
        try:
            self.key = (self.data_dir / "admin.key").read_text().strip()
            asyncio.run(self._first_server(server))
        finally:
            server.stop()
        log("ceiling (no hookline running)")
        asyncio.run(self.ceiling_phase())
        self.backlog_phase()

    async def _first_server(self, server: Servers) -> None:
        api = Api(server.addresses, self.key)
        try:
            t = time.monotonic()
            await self.setup(api)
            log(f"setup: {len(self.secrets)} webhooks in {time.monotonic() - t:.1f} s")
            for name, phase in (
                ("rpc", self.rpc_phase),
                ("deliveries", self.throughput_phase),
                ("publish deliveries", self.publish_throughput_phase),
                ("latency", self.latency_phase),
                ("fan-out", self.fanout_phase),
            ):
                log(name)
                await phase(api, server)
        finally:
            await api.close()


# --- PostgreSQL: a database of our own for the run ----------------------------------


class ScratchDatabase:
    """CREATE DATABASE on the server of `url` (connecting to the database it names),
    DROP ... WITH (FORCE) afterwards."""

    def __init__(self, url: str):
        import psycopg2

        self.admin_url = url
        self.name = f"hookline_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        parts = urllib.parse.urlsplit(url)
        self.url = urllib.parse.urlunsplit(parts._replace(path="/" + self.name))
        connection = psycopg2.connect(url)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{self.name}"')
        connection.close()

    def drop(self) -> None:
        import psycopg2

        connection = psycopg2.connect(self.admin_url)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        connection.close()


class PostgresCpu:
    """CPU time of the PostgreSQL server's processes on this machine that work for
    the run: the backends connected to the run's database (hookline's pools and
    LISTEN connections, autovacuum workers on it), the postmaster's background
    processes (checkpointer, background writer, WAL writer, launchers) and the
    postmaster itself. Not the backends of other databases: other clients (test
    suites) share this server, and their time is theirs. The background processes
    serve every database, but what they do while the run writes (WAL flushes,
    dirty pages, checkpoints) is mostly the run's; they are counted apart
    (`since_start` returns both). The postmaster's own time counts (it forks each
    new connection), not its ended children's (every database's backends).

    /proc/PID/stat is world-readable; a backend that ends between two `sample()`
    calls loses only its time since the last one."""

    def __init__(self, scratch: ScratchDatabase):
        import psycopg2

        # Connected to the database the URL names, not the run's: this backend is not counted.
        self.connection = psycopg2.connect(scratch.admin_url)
        self.connection.autocommit = True
        self.database = scratch.name
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            own = cursor.fetchone()[0]
        stats = _proc_stats()
        self.local = own in stats and Path(f"/proc/{own}/comm").read_text().strip() == "postgres"
        self.postmaster = int(stats[own][1]) if self.local else 0
        self.last: dict[int, tuple[bool, float]] = {}  # pid -> (serves the run's database, CPU s when last seen)
        self.base: dict[int, float] = {}

    def sample(self) -> None:
        if not self.local:
            return
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, datname IS NOT NULL FROM pg_stat_activity WHERE datname = %s OR datname IS NULL",
                (self.database,),
            )
            processes = [*cursor.fetchall(), (self.postmaster, False)]
        stats = _proc_stats()
        for pid, ours in processes:
            if pid in stats:
                self.last[pid] = (ours, _ticks_s(stats[pid], False))

    def start(self) -> None:
        self.last = {}
        self.sample()
        self.base = {pid: cpu for pid, (_, cpu) in self.last.items()}

    def since_start(self) -> tuple[float, float]:
        """CPU seconds since start(): (the run database's backends, the background processes)."""
        self.sample()
        backends = background = 0.0
        for pid, (ours, cpu) in self.last.items():
            spent = cpu - self.base.get(pid, 0.0)
            if ours:
                backends += spent
            else:
                background += spent
        return backends, background

    def close(self) -> None:
        self.connection.close()


# --- the table ----------------------------------------------------------------------


def targets(f: dict[str, float]) -> dict[str, tuple[str, bool | None]]:
    """Issue 14's targets: per key, (the target in words, met?)."""
    return {
        "ceiling_per_s": ("reference", None),
        "deliveries_per_s": (
            f">= 2,500 and >= 0.25 x ceiling ({0.25 * f['ceiling_per_s']:,.0f})",
            f["deliveries_per_s"] >= 2500 and f["deliveries_per_s"] >= 0.25 * f["ceiling_per_s"],
        ),
        "latency_p50_ms": ("(reported)", None),
        "latency_p99_ms": ("<= 7", f["latency_p99_ms"] <= 7),
        "fanout_1000_s": ("<= 0.6", f["fanout_1000_s"] <= 0.6),
        "startjob_per_s": (
            f">= 0.6 x rpc ceiling ({0.6 * f['rpc_ceiling_per_s']:,.0f})",
            f["startjob_per_s"] >= 0.6 * f["rpc_ceiling_per_s"],
        ),
        "rpc_ceiling_per_s": ("reference", None),
        "publish_per_s": ("(reported)", None),
        "publish_deliveries_per_s": ("(reported)", None),
        "backlog_small_per_s": ("reference", None),
        "backlog_large_per_s": (
            f">= 0.9 x small ({0.9 * f['backlog_small_per_s']:,.0f})",
            f["backlog_large_per_s"] >= 0.9 * f["backlog_small_per_s"],
        ),
        "rss_mb_large": ("<= 250", f["rss_mb_large"] <= 250),
        "cpu_us_per_delivery": ("<= 300", f.get("cpu_us_per_delivery", math.inf) <= 300),
        "db_cpu_us_per_delivery": ("(reported)", None),
    }


def table(run: Run, keys: tuple[str, ...], header: str) -> str:
    f = run.figures
    goals = targets(f)
    rows = [("figure", "value", "target", "", "how")]
    for key in keys:
        value = f.get(key)
        goal, met = goals[key]
        if value is None:
            shown, met = "-", None  # not measured: PROBLEMS says why
        else:
            shown = f"{value:.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
        how = run.notes.get(key, "")
        if key in run.problems:
            how += "; PROBLEMS: " + "; ".join(run.problems[key])
        rows.append((key, shown, goal, "" if met is None else ("met" if met else "NOT MET"), how))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [header]
    for i, r in enumerate(rows):
        lines.append(
            f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:<{widths[3]}}  {r[4]}".rstrip()
        )
        if i == 0:
            lines.append("-" * (sum(widths) + 8 + max(len(r[4]) for r in rows)))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts; finishes within about a minute")
    parser.add_argument("--database", metavar="URL", help="PostgreSQL server URL; a fresh database is made on it")
    parser.add_argument(
        "--processes", metavar="N", type=int, default=1, help="with --database: N hookline processes on that database"
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="write the figures to FILE")
    parser.add_argument("--profile", metavar="DIR", type=Path, help="py-spy record each hookline process into DIR")
    parser.add_argument("--profile-gil", action="store_true", help="with --profile: only samples holding the GIL")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs) and say where")
    args = parser.parse_args()

    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.processes > 1 and not args.database:
        parser.error("--processes N needs --database URL: processes share a PostgreSQL database, not SQLite")
    if args.profile:
        _py_spy()  # before anything starts: without it there is nothing to run
    sizes = QUICK if args.quick else FULL
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    master_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    receiver = Receiver()  # exits by itself when this process ends (its stdin closes)
    scratch = ScratchDatabase(args.database) if args.database else None
    data_dir = Path(tempfile.mkdtemp(prefix="hookline-bench-"))
    run = Run(sizes, receiver, data_dir, scratch.url if scratch else None, master_key, args.profile, args.profile_gil)
    run.processes = args.processes
    keep = args.keep
    try:
        run.postgres = PostgresCpu(scratch) if scratch else None
        run.run()
        keep = keep or bool(run.problems)  # the server logs say what went wrong
    except BaseException:
        keep = True
        raise
    finally:
        receiver.close()
        if run.postgres:
            run.postgres.close()
        if scratch:
            scratch.drop()
        if keep:
            log(f"data dir and server logs kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    backend = "PostgreSQL (fresh database per run)" if scratch else "embedded default (SQLite)"
    if args.processes > 1:
        backend += f", {args.processes} hookline processes"
    header = (
        f"hookline bench{' --quick' if args.quick else ''}: {backend}, {os.cpu_count()} cores, "
        f"{time.monotonic() - began:.0f} s (load average {load_before:.2f} before it began)"
    )
    if scratch:
        header += "\n(the targets are set for the embedded default; shown here for comparison)"
    keys = KEYS + (DB_KEYS if scratch else ())
    print(table(run, keys, header))
    if args.json:
        figures = {key: round(run.figures[key], 2) if key in run.figures else None for key in keys}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
