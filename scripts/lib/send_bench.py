"""CPU time per webhook request of the sending process, for one way of sending
or several, A/B runs alternating (the machine is noisy; CPU time is steadier
than rates).

Each measurement runs in a fresh child process: it sends --warmup requests (so the
connections are open), then --requests POSTs of a 1 KiB JSON body, --in-flight at
a time, to the raw asyncio receiver of scripts/bench (bench_receiver.py, its own
process), and reports the user + system CPU time of the sending process per
request over those.

Ways of sending (--mode):
  worker   DeliveryWorker.attempt of a hookline tree: what the delivery worker
           does per attempt (sign, send, read the capped body, build the record)
  aiohttp  a plain aiohttp.ClientSession.post with the same headers, body read:
           the floor any aiohttp-based sender stands on

--tree DIR measures another checkout of hookline (e.g. `git archive` of an older
commit unpacked there) with this environment's libraries; each --tree gives one
more column. Usage:
  python scripts/lib/send_bench.py [--tree DIR ...] [--mode worker aiohttp] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
_FRAME = json.dumps({"type": "JOB.COMPLETED", "data": {"output": ""}})
BODY = _FRAME.replace('""', '"' + "x" * (1024 - len(_FRAME)) + '"').encode()  # 1 KiB of JSON
SECRET = "whsec_" + "A" * 43 + "="


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _use_tree(tree: Path) -> None:
    """Import hookline (client and server halves) from `tree`, not the installed copy."""
    sys.path.insert(0, str(tree / "client"))
    import hookline

    hookline.__path__.append(str(tree / "server" / "hookline"))


async def _bounded(count: int, in_flight: int, send: Any) -> int:
    failures = 0
    remaining = iter(range(count))

    async def lane() -> None:
        nonlocal failures
        for i in remaining:
            if not await send(i):
                failures += 1

    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return failures


async def _measure(send: Any, args: argparse.Namespace) -> dict[str, Any]:
    await _bounded(args.warmup, args.in_flight, send)
    loop = asyncio.get_running_loop()
    cpu, wall = _cpu_s(), loop.time()
    failures = await _bounded(args.requests, args.in_flight, send)
    cpu, wall = _cpu_s() - cpu, loop.time() - wall
    return {"cpu_us": cpu / args.requests * 1e6, "per_s": args.requests / wall, "failures": failures}


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    from hookline.server.delivery.worker import DeliveryWorker
    from hookline.server.settings import Settings
    from hookline.server.storage.records import Delivery, SendTask

    url = f"http://127.0.0.1:{args.port}/hook"
    worker = DeliveryWorker(Settings(allow_targets=["127.0.0.0/8"], delivery_concurrency=args.in_flight))

    def task(i: int) -> SendTask:
        delivery = Delivery(
            id=f"dlv_{i}", space_id="spc_1", webhook_id="wh_1", event_id=f"evt_{i}", event_type="JOB.COMPLETED",
            job_id="", flow_id="", state="SENDING", attempt_count=0, next_attempt_time=0,
            last_status_code=0, last_error="", create_time=0, update_time=0,
        )  # fmt: skip
        return SendTask(delivery=delivery, url=url, headers={}, secrets=[SECRET], body=BODY, attempt_number=1, lease=0)

    async def send(i: int) -> bool:
        outcome = await worker.attempt(task(i))
        seen = getattr(outcome, "seen", None)  # the older tree's outcome says `succeeded` itself
        return seen.ok if seen is not None else outcome.succeeded

    await worker.open()
    try:
        return {**await _measure(send, args), "source": sys.modules[DeliveryWorker.__module__].__file__}
    finally:
        await worker.close()


async def _aiohttp(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    from hookline import signing

    url = f"http://127.0.0.1:{args.port}/hook"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.in_flight)) as session:

        async def send(i: int) -> bool:
            headers = signing.signature_headers([SECRET], f"evt_{i}", 1_800_000_000, BODY, 1)
            headers["Content-Type"] = "application/json"
            async with session.post(url, data=BODY, headers=headers) as response:
                await response.read()
                return response.status == 200

        return await _measure(send, args)


def _label(mode: str, tree: str) -> str:
    return tree if mode == "worker" else "(no hookline code but signing)"


def child(args: argparse.Namespace) -> None:
    if args.tree:
        _use_tree(Path(args.tree[0]))
    run = {"worker": _worker, "aiohttp": _aiohttp}[args.mode[0]]
    print(json.dumps(asyncio.run(run(args))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", default=[], help="a hookline checkout to measure (repeatable)")
    parser.add_argument("--mode", nargs="+", default=["worker"], choices=["worker", "aiohttp"])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    receiver = subprocess.Popen(
        [sys.executable, str(HERE / "bench_receiver.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None and receiver.stdin is not None
    port = int(receiver.stdout.readline().split()[-1])
    trees = [str(Path(t).resolve()) for t in args.tree] or [str(ROOT)]
    runs = [(mode, tree) for mode in args.mode for tree in (trees if mode == "worker" else trees[:1])]
    figures: dict[tuple[str, str], list[dict[str, Any]]] = {run: [] for run in runs}
    try:
        for round_number in range(args.rounds):
            # Alternate the order each round, so neither side always runs first.
            for mode, tree in runs if round_number % 2 == 0 else runs[::-1]:
                command = [sys.executable, __file__, "--child", "--port", str(port), "--mode", mode, "--tree", tree]
                command += ["--requests", str(args.requests), "--warmup", str(args.warmup)]
                command += ["--in-flight", str(args.in_flight)]
                result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                if "source" in result and not result["source"].startswith(tree):
                    raise SystemExit(f"measured {result['source']}, not the code in {tree}")
                figures[(mode, tree)].append(result)
                print(
                    f"round {round_number + 1}  {mode:8} {_label(mode, tree)}: {result['cpu_us']:6.0f} µs CPU/request"
                    f"  {result['per_s']:7.0f} requests/s  failures {result['failures']}",
                    flush=True,
                )
    finally:
        receiver.stdin.close()
        receiver.wait(5)
    print(f"\n{args.requests} POSTs of {len(BODY)} bytes, {args.in_flight} in flight, {args.rounds} rounds")
    for (mode, tree), results in figures.items():
        cpu = sorted(r["cpu_us"] for r in results)
        every = ", ".join(f"{c:.0f}" for c in cpu)
        print(f"{mode:8} {_label(mode, tree)}: CPU µs/request median {cpu[len(cpu) // 2]:.0f} (all: {every})")


if __name__ == "__main__":
    main()
