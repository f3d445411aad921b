"""All server settings in one object, read at the edge from flags and
HOOKLINE_* environment variables (a flag wins over its variable)."""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2.extensions

from .delivery import retry, targets
from .durations import parse_duration
from .redact import redact, redact_url
from .storage.database import POSTGRES_SCHEMES

MIN_JOB_MEMORY_LIMIT_MIB = 16
# Besides PostgreSQL, a sqlite:/// URL names an SQLite file outside the data dir.
DATABASE_SCHEMES = (*POSTGRES_SCHEMES, "sqlite")


@dataclass
class Limits:
    max_json_bytes: int = 1 << 20  # job input and output, each
    max_json_depth: int = 32
    max_event_types: int = 64
    max_url_length: int = 2048
    max_description_length: int = 1000
    max_headers: int = 32


@dataclass
class Settings:
    listen: str = "127.0.0.1:50051"
    data_dir: Path = Path(".hookline")
    database: str | None = None
    role: str = "all"  # api | worker | all
    # Run the delivery worker in this process rather than in a delivery process.
    single_process: bool = False
    # Delivery processes; each takes its share of delivery_concurrency, of
    # webhook_max_in_flight (at least one each) and of every webhook's rate limit.
    delivery_processes: int = 1
    allow_targets: list[str] = field(default_factory=list)
    metrics_port: int | None = None
    # Loopback by default, as gRPC is: the metrics need no key.
    metrics_host: str = "127.0.0.1"
    # The web console (console/): off unless a port is given; loopback by default.
    console_port: int | None = None
    console_host: str = "127.0.0.1"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    retry_schedule: str = retry.DEFAULT_SCHEDULE
    max_streams: int = 100
    job_workers: int = 4
    # Memory a job's steps may use in their worker process (input validation, transforms, fail_if).
    job_memory_limit_mib: int = 256
    delivery_concurrency: int = 64
    webhook_max_in_flight: int = 8
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 15.0
    response_capture_bytes: int = 16 * 1024
    job_lease_s: float = 10.0
    delivery_lease_s: float = 60.0
    # A delivery process whose event loop gives no sign of life for this long
    # (stopped, or stuck) is killed and replaced.
    delivery_stall_timeout_s: float = 10.0
    # At SIGTERM: how long calls, running jobs and sends in flight have, all at
    # once, to finish; what has not is then given back to the queue.
    shutdown_grace_s: float = 5.0
    # The fallback when no wake-up arrives (they come in-process, or by LISTEN/NOTIFY).
    poll_interval_s: float = 5.0
    stream_heartbeat_s: float = 15.0
    rotation_grace_s: float = 24 * 3600.0
    # A webhook with no success for this long while its deliveries keep failing is disabled.
    auto_disable_after_s: float = 5 * 86400.0
    # Events, deliveries and attempts older than this are purged; jobs after job_retention_s.
    retention_s: float = 30 * 86400.0
    job_retention_s: float = 30 * 86400.0
    # 32 bytes, URL-safe base64; from HOOKLINE_MASTER_KEY or <data-dir>/master.key.
    master_key: str | None = None
    idempotency_ttl_s: float = 24 * 3600.0
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        try:
            self.schedule = retry.parse_schedule(self.retry_schedule)
        except ValueError as error:
            raise ValueError(f"{option('retry_schedule')}: {error}") from None
        try:
            self.allowed_networks = targets.parse_networks(self.allow_targets)
        except ValueError as error:
            raise ValueError(f"{error} ({variable_of('allow_targets')} takes them comma-separated)") from None
        _check_address(self.listen, "listen")
        if self.metrics_port is not None:
            _check_port(self.metrics_port, "metrics_port")
        if not self.metrics_host.strip():
            raise ValueError(f"{option('metrics_host')} must name a host, e.g. 127.0.0.1")
        if self.console_port is not None:
            _check_port(self.console_port, "console_port")
            if self.role == "worker":
                raise ValueError(f"{option('console_port')} needs the API: use --role api or all, not worker")
        if not self.console_host.strip():
            raise ValueError(f"{option('console_host')} must name a host, e.g. 127.0.0.1")
        if self.database is not None:
            _check_database_url(self.database)
        if self.role not in ("api", "worker", "all"):
            raise ValueError(f"{option('role')} must be api, worker or all, not {self.role!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(f"{option('tls_cert')} and {option('tls_key')} go together")
        for name in _AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ValueError(f"{option(name)} must be at least 1, not {getattr(self, name)}")
        for name in _POSITIVE_SECONDS:
            seconds = getattr(self, name)
            if not (math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"{option(name)} must be a positive, finite duration, not {seconds}")
        if not (math.isfinite(self.shutdown_grace_s) and self.shutdown_grace_s >= 0):
            raise ValueError(f"{option('shutdown_grace_s')} must be a finite duration, not {self.shutdown_grace_s}")
        if self.response_capture_bytes < 0:
            raise ValueError(f"{option('response_capture_bytes')} must not be negative")
        if self.single_process and self.delivery_processes > 1:
            raise ValueError("--single-process runs no delivery process; drop it or --delivery-processes")
        if self.job_memory_limit_mib < MIN_JOB_MEMORY_LIMIT_MIB:
            raise ValueError(f"{option('job_memory_limit_mib')} must be at least {MIN_JOB_MEMORY_LIMIT_MIB} (MiB)")
        if self.delivery_lease_s <= self.request_timeout_s:
            raise ValueError(f"{option('delivery_lease_s')} must be longer than {option('request_timeout_s')}")


# A JSON object level is three message levels (Value, Struct, map entry) and a
# job's output sits two more down in ListJobsResponse; upb and the C++ runtime
# stop at 100, so deeper JSON would be stored but never read back.
MAX_READABLE_JSON_DEPTH = 32
# Settings that count things, of which there must be one at least.
_AT_LEAST_ONE = ("max_streams", "job_workers", "delivery_concurrency", "webhook_max_in_flight", "delivery_processes")
# Durations an operator sets, none of which may be zero (a lease or timeout of 0 would fail every time).
_POSITIVE_SECONDS = (
    "connect_timeout_s",
    "request_timeout_s",
    "job_lease_s",
    "delivery_lease_s",
    "delivery_stall_timeout_s",
    "auto_disable_after_s",
    "retention_s",
    "job_retention_s",
)
_PORT = re.compile(r"[0-9]{1,5}")


def _check_port(port: int, name: str) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"{option(name)} must be a port from 0 to 65535, not {port}")


def _check_address(address: str, name: str) -> None:
    """HOST:PORT, a port always: gRPC would take a bare host as port 443."""
    host, _, port = address.rpartition(":")
    if not host or not _PORT.fullmatch(port) or (":" in host and not (host[0] == "[" and host[-1] == "]")):
        raise ValueError(
            f"{option(name)} must be HOST:PORT, such as 127.0.0.1:50051 or [::1]:50051 (a port is needed), "
            f"not {address!r}"
        )
    _check_port(int(port), name)


def _check_database_url(url: str) -> None:
    scheme = url.partition("://")[0]
    if scheme not in DATABASE_SCHEMES:
        raise ValueError(
            f"{option('database')} must be a postgresql:// URL (leave it out for SQLite in the data dir), "
            f"not {redact_url(url)!r}"
        )
    if scheme in POSTGRES_SCHEMES:
        try:
            psycopg2.extensions.parse_dsn(url)  # libpq's own reading of it, as the LISTEN connection has
        except psycopg2.ProgrammingError as error:
            detail = str(error).strip().removeprefix("invalid dsn: ")
            raise ValueError(f"{option('database')} is not a valid PostgreSQL URL: {redact(detail, url)}") from None
        try:
            _ = urlsplit(url).port  # how the connection pool reads it (playhouse.db_url)
        except ValueError as error:
            raise ValueError(f"{option('database')} has a bad port: {error}") from None


_FLAGS: dict[str, dict] = {
    "listen": {"metavar": "HOST:PORT", "help": "HOST:PORT for gRPC (default 127.0.0.1:50051)"},
    "data_dir": {"help": "data directory (default ./.hookline)", "type": Path},
    "database": {"metavar": "URL", "help": "database URL, e.g. postgresql://... (default: SQLite in the data dir)"},
    "role": {"help": "api, worker or all (default all)", "choices": ["api", "worker", "all"]},
    "single_process": {
        "help": "run the delivery worker in this process too (by default it runs in a "
        "delivery process of its own, so that it has a core to itself)",
        "action": "store_true",
    },
    "delivery_processes": {
        "help": "delivery processes to run (default 1); more send faster where cores are free, "
        "each with its share of the concurrency and per-webhook limits",
        "type": int,
    },
    "allow_targets": {
        "flag": "--allow-target",
        "help": "CIDR webhook targets may use even if not global (repeatable)",
        "action": "append",
    },
    "metrics_port": {"help": "serve Prometheus metrics on this port", "type": int},
    "metrics_host": {
        "metavar": "HOST",
        "help": "address the metrics port listens on (default 127.0.0.1; 0.0.0.0 for every interface)",
    },
    "console_port": {"help": "serve the web console on this port (off by default)", "type": int},
    "console_host": {
        "metavar": "HOST",
        "help": "address the console listens on (default 127.0.0.1; 0.0.0.0 for every interface)",
    },
    "tls_cert": {"help": "PEM certificate chain: serve gRPC over TLS", "type": Path},
    "tls_key": {"help": "PEM private key for --tls-cert", "type": Path},
    "retry_schedule": {"metavar": "DELAYS", "help": "delays before each attempt, e.g. 0,5s,5m,30m (units ms, s, m, h)"},
    "max_streams": {"help": "open streams at most (default 100)", "type": int},
    "job_workers": {"help": "jobs run at once (default 4)", "type": int},
    "job_memory_limit_mib": {
        "flag": "--job-memory-limit",
        "metavar": "MIB",
        "help": "MiB of memory one job's steps may use in their worker process (default 256)",
        "type": int,
    },
    "delivery_concurrency": {"help": "HTTP requests in flight at most (default 64)", "type": int},
    "webhook_max_in_flight": {"help": "requests in flight per webhook at most (default 8)", "type": int},
    "job_lease_s": {
        "flag": "--job-lease",
        "help": "lease of a running job, renewed while it runs (default 10s)",
        "type": parse_duration,
    },
    "delivery_lease_s": {
        "flag": "--delivery-lease",
        "help": "lease of a delivery being sent; longer than --request-timeout (default 60s)",
        "type": parse_duration,
    },
    "delivery_stall_timeout_s": {
        "flag": "--delivery-stall-timeout",
        "help": "replace a delivery process that shows no progress for this long (default 10s)",
        "type": parse_duration,
    },
    "shutdown_grace_s": {
        "flag": "--shutdown-grace",
        "help": "at SIGTERM, time for calls, jobs and sends in flight to finish before the rest is given back "
        "to the queue (default 5s)",
        "type": parse_duration,
    },
    "auto_disable_after_s": {
        "flag": "--auto-disable-after",
        "help": "disable a webhook failing this long with no success (default 5d)",
        "type": parse_duration,
    },
    "retention_s": {
        "flag": "--retention",
        "help": "purge events, deliveries and attempts older than this (default 30d)",
        "type": parse_duration,
    },
    "job_retention_s": {
        "flag": "--job-retention",
        "help": "purge ended jobs older than this (default 30d)",
        "type": parse_duration,
    },
    "response_capture_bytes": {"help": "bytes of each response body to keep (default 16384)", "type": int},
    "connect_timeout_s": {"flag": "--connect-timeout", "help": "seconds (default 5)", "type": float},
    "request_timeout_s": {
        "flag": "--request-timeout",
        "help": "seconds for a whole attempt (default 15)",
        "type": float,
    },
}


_METAVARS = {parse_duration: "DURATION", int: "N", float: "SECONDS", Path: "PATH"}


# Size limits, named in the errors that enforce them.
_LIMIT_FLAGS: dict[str, str] = {
    "max_json_bytes": "bytes of a job's input or output as JSON (default 1048576)",
    "max_json_depth": "nesting levels of JSON values (default 32)",
    "max_event_types": "event types per webhook (default 64)",
    "max_url_length": "characters of a webhook URL (default 2048)",
    "max_description_length": "characters of a description (default 1000)",
}


def flag_of(name: str) -> str:
    """The flag of the setting (or size limit) `name`."""
    return _FLAGS.get(name, {}).get("flag", "--" + name.replace("_", "-"))


def variable_of(name: str) -> str:
    """The HOOKLINE_* variable of the setting (or size limit) `name`."""
    return "HOOKLINE_" + flag_of(name).lstrip("-").replace("-", "_").upper()


def option(name: str) -> str:
    """How an error names a setting: its flag and its variable."""
    return f"{flag_of(name)} ({variable_of(name)})"


_TYPE_NAMES: dict[Callable[[str], Any], str] = {int: "a whole number", float: "a number"}


def _convert(convert: Callable[[str], Any], text: str) -> Any:
    """`convert(text)`; a ValueError says what `text` should have been."""
    try:
        return convert(text)
    except ValueError as error:
        if convert in _TYPE_NAMES:
            raise ValueError(f"{text!r} is not {_TYPE_NAMES[convert]}") from None
        raise ValueError(str(error)) from None


def _flag_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """`convert` for argparse, whose own message would name the Python function."""

    def parse(text: str) -> Any:
        try:
            return _convert(convert, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's flags; each help names the variable that also sets it."""
    for name, spec in _FLAGS.items():
        spec = dict(spec)
        spec.pop("flag", None)
        if "choices" not in spec and spec.get("action") != "store_true":
            spec.setdefault("metavar", _METAVARS.get(spec.get("type", str), "VALUE"))
        if "type" in spec:
            spec["type"] = _flag_type(spec["type"])
        spec["help"] += f" [{variable_of(name)}]"
        parser.add_argument(flag_of(name), dest=name, default=None, **spec)
    for name, text in _LIMIT_FLAGS.items():
        parser.add_argument(
            flag_of(name),
            dest=name,
            type=_flag_type(int),
            default=None,
            metavar="N",
            help=f"{text} [{variable_of(name)}]",
        )


def _parse_flag(name: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, not {raw!r}")


def _from_variable(name: str, spec: dict, raw: str) -> Any:
    if spec.get("action") == "append":
        return [part.strip() for part in raw.split(",") if part.strip()]
    if spec.get("action") == "store_true":
        return _parse_flag(variable_of(name), raw)
    try:
        return _convert(spec.get("type", str), raw)
    except ValueError as error:
        raise ValueError(f"{variable_of(name)} (or {flag_of(name)}): {error}") from None


def from_sources(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Settings:
    """Settings from parsed flags, then HOOKLINE_<NAME> variables, then defaults."""
    values: dict = {}
    known = {f.name: f for f in fields(Settings)}
    for name, spec in _FLAGS.items():
        value = getattr(args, name, None)
        if value is None and variable_of(name) in environ:
            value = _from_variable(name, spec, environ[variable_of(name)])
        if value is not None and name in known:
            values[name] = value
    limits = {}
    for name in _LIMIT_FLAGS:
        value = getattr(args, name, None)
        if value is None and variable_of(name) in environ:
            value = _from_variable(name, {"type": int}, environ[variable_of(name)])
        if value is not None:
            if value <= 0:
                raise ValueError(f"{option(name)} must be positive")
            if name == "max_json_depth" and value > MAX_READABLE_JSON_DEPTH:
                raise ValueError(
                    f"{option(name)} must be at most {MAX_READABLE_JSON_DEPTH}: protobuf readers refuse messages"
                    " nested deeper than 100 levels, and each JSON level is three inside a listing"
                )
            limits[name] = value
    if limits:
        values["limits"] = Limits(**limits)
    if environ.get("HOOKLINE_MASTER_KEY"):
        values["master_key"] = environ["HOOKLINE_MASTER_KEY"].strip()
    return Settings(**values)
