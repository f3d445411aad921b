"""How many requests the property tests sent, by RPC and by outcome."""

from __future__ import annotations

from collections import Counter

DAMAGED = " (damaged bytes)"

calls: Counter[str] = Counter()
accepted: Counter[str] = Counter()
outcomes: Counter[str] = Counter()


def record(rpc: str, outcome: str) -> None:
    calls[rpc] += 1
    outcomes[outcome] += 1
    if outcome == "OK":
        accepted[rpc] += 1


def total() -> int:
    return sum(calls.values())


def summary() -> str:
    by_outcome = ", ".join(f"{name} {count}" for name, count in outcomes.most_common())
    damaged = sum(count for rpc, count in calls.items() if rpc.endswith(DAMAGED))
    rpcs = {rpc.removesuffix(DAMAGED) for rpc in calls}
    per_rpc = ", ".join(f"{rpc} {accepted[rpc]}/{calls[rpc]}" for rpc in sorted(calls) if not rpc.endswith(DAMAGED))
    return (
        f"property tests: {total()} generated requests to {len(rpcs)} RPCs, {damaged} of them as damaged bytes "
        f"({by_outcome})\naccepted/sent per RPC: {per_rpc}"
    )
