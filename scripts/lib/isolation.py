"""Measures how a hanging endpoint affects a healthy one: N jobs whose flow is
linked to a healthy webhook, once alone and once beside a webhook whose endpoint
hangs until the request timeout. Prints the healthy webhook's latency from each
job's end to its message's arrival (p50, p99) for both runs."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from google.protobuf import struct_pb2

from hookline.client import (
    Client,
    CreateFlowRequest,
    CreateWebhookRequest,
    Flow,
    GetJobRequest,
    StartJobRequest,
    Webhook,
)
from hookline.server.app import Hookline, create_server
from hookline.server.settings import Settings


class Receiver:
    """Loopback receiver: /healthy answers at once, /hangs sleeps past the timeout."""

    def __init__(self, hang_s: float):
        self.arrivals: dict[str, float] = {}  # job id -> arrival time at /healthy
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.path == "/hangs":
                    time.sleep(hang_s)
                else:
                    with receiver.lock:
                        receiver.arrivals.setdefault(json.loads(body)["data"]["jobId"], time.time())
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"


def run(jobs: int, with_hanging: bool, timeout_s: float) -> tuple[float, float]:
    receiver = Receiver(hang_s=timeout_s + 5)
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            listen="127.0.0.1:0",
            allow_targets=["127.0.0.0/8"],
            request_timeout_s=timeout_s,
            retry_schedule="0,1h",
        )
        app = Hookline(settings)
        server, port = create_server(app)
        server.start()
        app.start_background()
        try:
            client = Client(f"127.0.0.1:{port}", app.admin_key)
            hooks = [("healthy", "/healthy")] + ([("hangs", "/hangs")] if with_hanging else [])
            ids = [
                client.webhooks.CreateWebhook(
                    CreateWebhookRequest(
                        webhook=Webhook(alias=alias, url=receiver.base + path, event_types=["JOB.COMPLETED"])
                    )
                ).webhook.id
                for alias, path in hooks
            ]
            definition = struct_pb2.Struct()
            definition.update({"steps": [{"transform": "@"}]})
            client.flows.CreateFlow(CreateFlowRequest(flow=Flow(alias="f", definition=definition, webhook_ids=ids)))
            with ThreadPoolExecutor(8) as pool:
                job_ids = list(pool.map(lambda _: client.jobs.StartJob(StartJobRequest(flow="f")).id, range(jobs)))
            deadline = time.monotonic() + 300
            while len(receiver.arrivals) < jobs and time.monotonic() < deadline:
                time.sleep(0.05)
            latencies = []
            for job_id in job_ids:
                job = client.jobs.GetJob(GetJobRequest(id=job_id))
                latencies.append((receiver.arrivals[job_id] - job.end_time.ToMilliseconds() / 1000) * 1000)
            client.close()
        finally:
            app.stopping.set()
            server.stop(grace=None).wait()
            app.stop()
            receiver.server.shutdown()
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49], cuts[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=2.0, help="request timeout in seconds")
    args = parser.parse_args()
    alone = run(args.jobs, False, args.timeout)
    beside = run(args.jobs, True, args.timeout)
    print(f"{args.jobs} jobs; healthy webhook latency from job end to arrival (ms)")
    print(f"{'':28}{'p50':>8}{'p99':>8}")
    print(f"{'alone':28}{alone[0]:8.1f}{alone[1]:8.1f}")
    print(f"{'beside a hanging endpoint':28}{beside[0]:8.1f}{beside[1]:8.1f}")
    print(f"p99 ratio (beside / alone): {beside[1] / alone[1]:.2f}")


if __name__ == "__main__":
    main()
