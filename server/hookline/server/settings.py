"""All server settings in one object, read at the edge from flags and
HOOKLINE_* environment variables (a flag wins over its variable)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from .delivery import retry, targets


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
    allow_targets: list[str] = field(default_factory=list)
    metrics_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    retry_schedule: str = retry.DEFAULT_SCHEDULE
    max_streams: int = 100
    job_workers: int = 4
    delivery_concurrency: int = 64
    webhook_max_in_flight: int = 8
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 15.0
    response_capture_bytes: int = 16 * 1024
    job_lease_s: float = 10.0
    delivery_lease_s: float = 60.0
    poll_interval_s: float = 1.0
    stream_heartbeat_s: float = 15.0
    rotation_grace_s: float = 24 * 3600.0
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
        if self.delivery_lease_s <= self.request_timeout_s:
            raise ValueError("delivery lease must be longer than the request timeout")

    @property
    def runs_api(self) -> bool:
        return self.role in ("api", "all")

    @property
    def runs_workers(self) -> bool:
        return self.role in ("worker", "all")


_FLAGS: dict[str, dict] = {
    "listen": {"help": "HOST:PORT for gRPC (default 127.0.0.1:50051)"},
    "data_dir": {"help": "data directory (default ./.hookline)", "type": Path},
    "database": {"help": "database URL, e.g. postgresql://... (default: SQLite in the data dir)"},
    "role": {"help": "api, worker or all (default all)", "choices": ["api", "worker", "all"]},
    "allow_targets": {
        "flag": "--allow-target",
        "help": "CIDR webhook targets may use even if not global (repeatable)",
        "action": "append",
    },
    "metrics_port": {"help": "serve Prometheus metrics on this port", "type": int},
    "tls_cert": {"help": "PEM certificate chain: serve gRPC over TLS", "type": Path},
    "tls_key": {"help": "PEM private key for --tls-cert", "type": Path},
    "retry_schedule": {"help": "delays before each attempt, e.g. 0,5s,5m,30m (units ms, s, m, h)"},
    "max_streams": {"help": "open streams at most (default 100)", "type": int},
    "job_workers": {"help": "jobs run at once (default 4)", "type": int},
    "delivery_concurrency": {"help": "HTTP requests in flight at most (default 64)", "type": int},
    "webhook_max_in_flight": {"help": "requests in flight per webhook at most (default 8)", "type": int},
    "connect_timeout_s": {"flag": "--connect-timeout", "help": "seconds (default 5)", "type": float},
    "request_timeout_s": {
        "flag": "--request-timeout",
        "help": "seconds for a whole attempt (default 15)",
        "type": float,
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, spec in _FLAGS.items():
        spec = dict(spec)
        flag = spec.pop("flag", "--" + name.replace("_", "-"))
        parser.add_argument(flag, dest=name, default=None, **spec)


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
            else:
                value = spec.get("type", str)(raw)
        if value is not None and name in known:
            values[name] = value
    return Settings(**values)


def parse(argv: Sequence[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="hookline serve")
    add_arguments(parser)
    return from_sources(parser.parse_args(argv))
