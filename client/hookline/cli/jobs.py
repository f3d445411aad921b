"""`hookline jobs ...`: start, get, list, cancel, watch."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from hookline.v1 import jobs_pb2

from . import _values
from ._common import add_paging, print_list
from ._context import Context, Stream
from ._errors import CliError
from ._output import Spinner, clock, timestamp
from ._show import ENDED_JOB, flow_of, job_code, job_state, show_job, styled
from ._watch import follow

STATES = ("waiting", "running", "completed", "canceling", "canceled", "error")


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("jobs", help="jobs: runs of a flow", parents=[common])
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    start = actions.add_parser("start", parents=[common], help="start a job of a flow")
    start.add_argument("flow", help="flow id or alias")
    given = start.add_mutually_exclusive_group()
    given.add_argument("--input", metavar="JSON", help="the job's input, as JSON text")
    given.add_argument("--input-file", metavar="FILE", help="the job's input, from a JSON or YAML file (- for stdin)")
    start.add_argument(
        "--version", type=_values.INT32, default=0, help="run this version of the flow (default: the latest)"
    )
    start.add_argument("--correlation-id", default="", metavar="TEXT", help="your reference, echoed in the event")
    start.add_argument("--idempotency-key", default="", metavar="KEY", help="the same key within 24 h: the same job")
    start.add_argument(
        "--wait", action="store_true", help="wait until the job ends and show it; exits 1 unless it COMPLETED"
    )
    start.set_defaults(handler=start_job)

    get = actions.add_parser("get", parents=[common], help="show one job, with its input and output")
    get.add_argument("id")
    get.set_defaults(handler=get_job)

    listing = actions.add_parser("list", parents=[common], help="list jobs")
    listing.add_argument("--flow", default="", help="only this flow's (id or alias)")
    listing.add_argument("--state", choices=STATES, type=str.lower, help="only jobs in this state")
    listing.add_argument("--correlation-id", default="", metavar="TEXT", help="only jobs with this correlation id")
    add_paging(listing)
    listing.set_defaults(handler=list_jobs)

    cancel = actions.add_parser("cancel", parents=[common], help="cancel a job, or every waiting job")
    cancel.add_argument("id", nargs="?", help="the job to cancel")
    cancel.add_argument("--all-waiting", action="store_true", help="cancel every WAITING job (of --flow, if given)")
    cancel.add_argument("--flow", default="", help="with --all-waiting: only this flow's jobs")
    cancel.set_defaults(handler=cancel_job)

    watch = actions.add_parser("watch", parents=[common], help="print each state change of a job until it ends")
    watch.add_argument("id")
    watch.set_defaults(handler=watch_job)


def start_job(ctx: Context, args: argparse.Namespace) -> int:
    request = jobs_pb2.StartJobRequest(
        flow=args.flow,
        version=args.version,
        correlation_id=args.correlation_id,
        idempotency_key=args.idempotency_key,
    )
    if args.input is not None:
        request.input.CopyFrom(_values.to_value(_values.parse_json(args.input, "--input"), "--input"))
    elif args.input_file is not None:
        data = _values.read_document(args.input_file, "input")
        request.input.CopyFrom(_values.to_value(data, f"the input in {args.input_file}"))
    job = ctx.call(ctx.client.jobs.StartJob, request)
    if not args.wait:
        _print_job(ctx, job)
        return 0
    if not ctx.json:
        print(f"started {job.id}; waiting for it to end (Ctrl-C stops waiting, not the job)", file=sys.stderr)
    with Spinner(f"{job.id} {job_state(job)}") as spinner:
        for update in follow(ctx, _job_stream(ctx, job.id)):
            job = update
            spinner.update(f"{job.id} {job_state(job)}")
            if job.state in ENDED_JOB:
                break
    _print_job(ctx, job)
    return 0 if job.state == jobs_pb2.JOB_STATE_COMPLETED else 1


def _print_job(ctx: Context, job: jobs_pb2.Job) -> None:
    if ctx.json:
        ctx.out.message(job)
    else:
        show_job(ctx, job)


def get_job(ctx: Context, args: argparse.Namespace) -> int:
    _print_job(ctx, ctx.call(ctx.client.jobs.GetJob, jobs_pb2.GetJobRequest(id=args.id)))
    return 0


def list_jobs(ctx: Context, args: argparse.Namespace) -> int:
    request = jobs_pb2.ListJobsRequest(flow_id=args.flow, correlation_id=args.correlation_id)
    if args.state:
        request.state = jobs_pb2.JobState.Value("JOB_STATE_" + args.state.upper())
    return print_list(
        ctx,
        args,
        ctx.client.jobs.ListJobs,
        request,
        "jobs",
        jobs_pb2.ListJobsResponse,
        ("ID", "FLOW", "STATE", "CODE", "CORRELATION ID", "CREATED", "ENDED"),
        lambda j: (
            j.id,
            flow_of(j),
            job_state(j),
            job_code(j),
            j.correlation_id,
            timestamp(j.create_time),
            timestamp(j.end_time),
        ),
        noun="jobs",
    )


def cancel_job(ctx: Context, args: argparse.Namespace) -> int:
    if args.all_waiting:
        if args.id:
            raise CliError("give a job id or --all-waiting, not both")
        response = ctx.call(ctx.client.jobs.CancelJobs, jobs_pb2.CancelJobsRequest(flow_id=args.flow))
        if ctx.json:
            ctx.out.message(response)
        else:
            where = f"of flow {args.flow}" if args.flow else "in the space"
            ctx.out.line(f"canceled {response.canceled_count} waiting job(s) {where}")
        return 0
    if not args.id:
        raise CliError("give the id of the job to cancel (or --all-waiting)")
    if args.flow:
        raise CliError("--flow goes with --all-waiting")
    _print_job(ctx, ctx.call(ctx.client.jobs.CancelJob, jobs_pb2.CancelJobRequest(id=args.id)))
    return 0


def _job_stream(ctx: Context, job_id: str) -> Callable[[], Stream]:
    return lambda: ctx.stream(ctx.client.jobs.WatchJob, jobs_pb2.WatchJobRequest(id=job_id))


def watch_job(ctx: Context, args: argparse.Namespace) -> int:
    shown = None
    for job in follow(ctx, _job_stream(ctx, args.id)):
        if job == shown:  # a reopened stream starts with the state already shown
            continue
        shown = job
        if ctx.json:
            ctx.out.message(job, compact=True)
        else:
            ctx.out.line(job_line(ctx, job))
        if job.state in ENDED_JOB:
            break
    return 0


def job_line(ctx: Context, job: jobs_pb2.Job) -> str:
    out = ctx.out
    state = job_state(job)
    parts = [
        out.paint(clock(), "dim"),
        job.id,
        styled(out, state, 9),
        job_code(job),
        flow_of(job),
    ]
    if job.message:
        parts.append(out.paint(job.message, "dim"))
    return "  ".join(parts)
