"""All server settings in one object, read at the edge from flags and
HOOKLINE_* environment variables (a flag wins over its variable)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from .delivery import retry, targets
from .durations import parse_duration

MIN_JOB_MEMORY_LIMIT_MIB = 16


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
        self.schedule = retry.parse_schedule(self.retry_schedule)
        self.allowed_networks = targets.parse_networks(self.allow_targets)
        if self.role not in ("api", "worker", "all"):
            raise ValueError(f"role must be api, worker or all, not {self.role!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.delivery_processes < 1:
            raise ValueError("--delivery-processes must be at least 1")
        if self.single_process and self.delivery_processes > 1:
            raise ValueError("--single-process runs no delivery process; drop it or --delivery-processes")
        if self.job_memory_limit_mib < MIN_JOB_MEMORY_LIMIT_MIB:
            raise ValueError(f"--job-memory-limit must be at least {MIN_JOB_MEMORY_LIMIT_MIB} (MiB)")
        if self.delivery_lease_s <= self.request_timeout_s:
            raise ValueError("delivery lease must be longer than the request timeout")
        if self.delivery_stall_timeout_s <= 0:
            raise ValueError("--delivery-stall-timeout must be positive")


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, spec in _FLAGS.items():
        spec = dict(spec)
        flag = spec.pop("flag", "--" + name.replace("_", "-"))
        if "choices" not in spec and spec.get("action") != "store_true":
            spec.setdefault("metavar", _METAVARS.get(spec.get("type", str), "VALUE"))
        parser.add_argument(flag, dest=name, default=None, **spec)
    for name, text in _LIMIT_FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=int, default=None, metavar="N", help=text)


def _parse_flag(name: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, not {raw!r}")


def from_sources(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Settings:
    """Settings from parsed flags, then HOOKLINE_<NAME> variables, then defaults."""
    values: dict = {}
    known = {f.name: f for f in fields(Settings)}
    for name, spec in _FLAGS.items():
        value = getattr(args, name, None)
        env_name = "HOOKLINE_" + spec.get("flag", "--" + name).lstrip("-").replace("-", "_").upper()
        if value is None and env_name in environ:
            raw = environ[env_name]
            if spec.get("action") == "append":
                value = [part.strip() for part in raw.split(",") if part.strip()]
            elif spec.get("action") == "store_true":
                value = _parse_flag(env_name, raw)
            else:
                value = spec.get("type", str)(raw)
        if value is not None and name in known:
            values[name] = value
    limits = {}
    for name in _LIMIT_FLAGS:
        value = getattr(args, name, None)
        if value is None and "HOOKLINE_" + name.upper() in environ:
            value = int(environ["HOOKLINE_" + name.upper()])
        if value is not None:
            if value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
            limits[name] = value
    if limits:
        values["limits"] = Limits(**limits)
    if environ.get("HOOKLINE_MASTER_KEY"):
        values["master_key"] = environ["HOOKLINE_MASTER_KEY"].strip()
    return Settings(**values)
