"""What open watchers cost ordinary calls: StartJob latency (p50, p99) with no
stream open, then with N WatchDeliveries streams open, then with none again,
while the jobs complete and their deliveries go to a loopback receiver.

What runs where:
  * hookline runs in a child process (`python -m hookline.cli serve`, the
    defaults but --allow-target 127.0.0.0/8 and --max-streams, SQLite in a
    temporary data dir or, with --database URL, a fresh PostgreSQL database on
    that server), as in scripts/bench;
  * the receiver is scripts/lib/bench_receiver.py, in a process of its own;
  * the watchers run in another child process (this file with --hold): N
    WatchDeliveries streams on one grpc.aio channel, each read to the end and
    counted; space-wide by default, or with --filter webhook each on a webhook
    of its own that receives nothing (the load goes to one more webhook);
  * this process makes the StartJob calls: one at a time, paced at --rate per
    second, on a flow whose one step is a transform, linked to one webhook
    subscribed to JOB.COMPLETED. Each call's latency is its own duration.

Each phase lasts --seconds; before each, one second of calls is not counted.
Prints a table; --json FILE writes the figures too; --profile DIR attaches
`py-spy record` to the hookline process (as scripts/bench does)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from hookline.v1 import flows_pb2, flows_pb2_grpc, jobs_pb2, jobs_pb2_grpc, webhooks_pb2, webhooks_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CpuMeter, Receiver, ScratchDatabase, Server  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the watchers' process ----------------------------------------------------------


async def hold(address: str, key: str, webhook_ids: list[str]) -> None:
    """Open one stream per entry of `webhook_ids` ("" = space-wide), say so on
    stdout once each has its first message, read them until stdin closes, then
    print how many messages they got."""
    channel = grpc.aio.insecure_channel(address)
    stub = webhooks_pb2_grpc.WebhookServiceStub(channel)
    md = (("authorization", f"Bearer {key}"),)
    counts = [0] * len(webhook_ids)
    opened = asyncio.Event()
    ready = 0
    failures: list[str] = []

    async def watch(index: int, webhook_id: str) -> None:
        nonlocal ready
        call = stub.WatchDeliveries(webhooks_pb2.WatchDeliveriesRequest(webhook_id=webhook_id), metadata=md)
        try:
            async for _ in call:
                counts[index] += 1
                if counts[index] == 1:
                    ready += 1
                    if ready == len(webhook_ids):
                        opened.set()
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                failures.append(f"{error.code().name}: {error.details()}")
                opened.set()

    tasks = [asyncio.create_task(watch(i, w)) for i, w in enumerate(webhook_ids)]
    await opened.wait()
    print(json.dumps({"open": ready, "failures": failures}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await channel.close()
    print(json.dumps({"messages": sum(counts), "failures": failures}), flush=True)


class Watchers:
    """Handle on the watchers' process."""

    def __init__(self, address: str, key: str, webhook_ids: list[str]):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--hold", address, key, *[w or "-" for w in webhook_ids]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        opened = json.loads(line) if line else {"open": 0, "failures": ["the watchers' process died"]}
        if opened["failures"] or opened["open"] != len(webhook_ids):
            raise RuntimeError(f"could not open {len(webhook_ids)} streams: {opened}")

    def close(self) -> int:
        """Stop watching; the number of messages the streams got."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        result = json.loads(self.proc.stdout.readline() or '{"messages": -1}')
        self.proc.wait(30)
        return int(result["messages"])


# --- this process: setup and the paced StartJob calls --------------------------------


class Api:
    def __init__(self, address: str, key: str):
        self.channel = grpc.insecure_channel(address)
        self.md = (("authorization", f"Bearer {key}"),)
        self.webhooks = webhooks_pb2_grpc.WebhookServiceStub(self.channel)
        self.flows = flows_pb2_grpc.FlowServiceStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)

    def webhook(self, alias: str, url: str) -> str:
        request = webhooks_pb2.CreateWebhookRequest(
            webhook=webhooks_pb2.Webhook(alias=alias, url=url, event_types=["JOB.COMPLETED"])
        )
        return self.webhooks.CreateWebhook(request, metadata=self.md).webhook.id

    def flow(self, alias: str, webhook_id: str) -> None:
        definition = struct_pb2.Struct()
        definition.update({"steps": [{"transform": "@"}]})
        flow = flows_pb2.Flow(alias=alias, definition=definition, webhook_ids=[webhook_id])
        self.flows.CreateFlow(flows_pb2.CreateFlowRequest(flow=flow), metadata=self.md)

    def paced_start_jobs(self, rate: float, seconds: float) -> list[float]:
        """StartJob latencies in ms, one call at a time, started `rate` times a second."""
        value = struct_pb2.Value()
        value.struct_value.update({"order": 1, "items": [{"sku": "A-1", "price": 5}]})
        request = jobs_pb2.StartJobRequest(flow="load", input=value)
        latencies = []
        t0 = time.monotonic()
        for i in range(int(rate * seconds)):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            began = time.perf_counter()
            self.jobs.StartJob(request, metadata=self.md, timeout=30)
            latencies.append((time.perf_counter() - began) * 1000)
        return latencies


def percentiles(latencies: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49], cuts[98]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--hold":
        address, key, *filters = sys.argv[2:]
        asyncio.run(hold(address, key, ["" if f == "-" else f for f in filters]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=100, help="streams to open (default 100)")
    parser.add_argument("--filter", choices=["space", "webhook"], default="space", help="what each stream watches")
    parser.add_argument("--rate", type=float, default=20, help="StartJob calls per second (default 20)")
    parser.add_argument("--seconds", type=float, default=10, help="length of each phase (default 10)")
    parser.add_argument("--database", metavar="URL", help="PostgreSQL server URL; a fresh database is made on it")
    parser.add_argument("--json", metavar="FILE", type=Path, help="write the figures to FILE")
    parser.add_argument("--profile", metavar="DIR", type=Path, help="py-spy record the hookline process into DIR")
    parser.add_argument("--profile-gil", action="store_true", help="with --profile: only samples holding the GIL")
    args = parser.parse_args()

    master_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    receiver = Receiver()
    scratch = ScratchDatabase(args.database) if args.database else None
    data_dir = Path(tempfile.mkdtemp(prefix="hookline-watchers-"))
    database = scratch.url if scratch else None
    cap = ["--max-streams", str(max(100, args.watchers))]
    server = Server(data_dir, database, master_key, "hookline", args.profile, args.profile_gil, cap)
    figures: dict[str, float] = {}
    rows: list[tuple[str, str]] = []
    try:
        key = (data_dir / "admin.key").read_text().strip()
        api = Api(server.address, key)
        api.flow("load", api.webhook("load", receiver.url("/load")))
        quiet = [api.webhook(f"quiet{i:03d}", receiver.url(f"/quiet{i}")) for i in range(args.watchers)]
        filters = quiet if args.filter == "webhook" else [""] * args.watchers
        receiver.reset(sample_every=1000)

        def phase(name: str, streams: int) -> None:
            began = time.monotonic()
            watchers = Watchers(server.address, key, filters[:streams]) if streams else None
            if watchers:
                log(f"{streams} streams open in {time.monotonic() - began:.1f} s")
            try:
                api.paced_start_jobs(args.rate, 1.0)  # not counted
                before = receiver.stats()["unique"]
                cpu = CpuMeter(server)
                latencies = api.paced_start_jobs(args.rate, args.seconds)
                share = cpu.share()
                arrived = receiver.stats()["unique"] - before
            finally:
                messages = watchers.close() if watchers else 0
            p50, p99 = percentiles(latencies)
            figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"] = p50, p99
            note = f"{len(latencies)} calls, {arrived} deliveries arrived meanwhile, server cpu {share:.0%}"
            if streams:
                note += f", {messages} stream messages"
            rows.append((f"{name} ({streams} streams)", f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  {note}"))
            log(f"{name}: {rows[-1][1]}")

        phase("none", 0)
        phase("watched", args.watchers)
        phase("none_again", 0)
        api.channel.close()
    finally:
        server.stop()
        receiver.close()
        if scratch:
            scratch.drop()
        shutil.rmtree(data_dir, ignore_errors=True)
    backend = "PostgreSQL" if scratch else "SQLite"
    print(
        f"StartJob at {args.rate:g}/s for {args.seconds:g} s per phase, {backend}, "
        f"{args.watchers} {'space-wide' if args.filter == 'space' else 'per-webhook'} watchers"
    )
    width = max(len(r[0]) for r in rows)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    ratio = figures["watched_p50_ms"] / min(figures["none_p50_ms"], figures["none_again_p50_ms"])
    print(f"p50 with watchers / without: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({k: round(v, 2) for k, v in figures.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
