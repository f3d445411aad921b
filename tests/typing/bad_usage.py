"""Mistakes mypy must catch in code that uses an installed hookline: scripts/lint
requires mypy to report an error on each line marked with an "error:" comment
naming its code, and nothing else. Were the package untyped (no py.typed), mypy would pass it all."""

from __future__ import annotations

from hookline.client import Client, GetJobRequest, StartJobRequest


def mistakes(client: Client) -> None:
    StartJobRequest(flow=123)  # error: [arg-type]
    StartJobRequest(flwo="invoice")  # error: [call-arg]
    client.jobs.GetJob(StartJobRequest(flow="invoice"))  # error: [arg-type]
    print(client.jobs.GetJob(GetJobRequest(id="job_1")).stat)  # error: [attr-defined]
