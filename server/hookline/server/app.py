"""Wiring: storage, the job runner, the delivery worker and the gRPC server."""

from __future__ import annotations

import enum
import fcntl
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from google.protobuf import empty_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

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

from . import secretbox
from .api.event_service import EventServicer
from .api.flow_service import FlowServicer
from .api.interceptor import ApiInterceptor
from .api.job_service import JobServicer
from .api.senders import Senders
from .api.webhook_service import WebhookServicer
from .console import Console
from .delivery.worker import DeliveryWorker
from .delivery_process import DeliveryProcesses
from .errors import Unimplemented
from .execution.runner import JobRunner
from .feeds import Feeds
from .health import DatabaseHealth
from .metrics import Metrics
from .notify import Listener
from .purger import Purger
from .redact import RedactingFormatter, redact_url
from .settings import Settings
from .storage import jobs as job_store
from .storage import master_key, sending, spaces, webhooks
from .storage.database import (
    PRIVATE_DIR_MODE,
    CannotOpen,
    TurnTakingSqliteDatabase,
    database_fault,
    is_postgres,
    now_ms,
    open_database,
)

log = logging.getLogger("hookline")

SERVICE_NAMES = (
    webhooks_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
    flows_pb2.DESCRIPTOR.services_by_name["FlowService"].full_name,
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    events_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
)
KEY_FILE = "admin.key"
LOCK_FILE = "hookline.lock"


class StartupError(RuntimeError):
    """The server cannot start; the message says why and what to do."""


class DataDirInUse(StartupError):
    pass


class DatabaseUnreachable(StartupError):
    """The database did not answer; it may later."""


def unusable_data_dir(data_dir: Path, error: OSError) -> StartupError:
    if isinstance(error, (FileExistsError, NotADirectoryError)):  # from mkdir: a file is in the way
        return StartupError(f"the data dir {data_dir.resolve()} is not a directory; pass another --data-dir")
    return StartupError(
        f"cannot write to the data dir {data_dir.resolve()}: {error.strerror or error}; "
        "make it writable or pass another --data-dir"
    )


class Part(enum.Enum):
    """What a process runs: the API; the job runner and the purger; the delivery worker."""

    API = "api"
    JOBS = "jobs"
    DELIVERIES = "deliveries"


def parts_of(role: str) -> set[Part]:
    return {"api": {Part.API}, "worker": {Part.JOBS, Part.DELIVERIES}}.get(role, set(Part))


class Hookline:
    """One hookline process: its database, its background workers and its servicers."""

    def __init__(
        self,
        settings: Settings,
        parts: set[Part] | None = None,
        lock_data_dir: bool = True,
        senders: Senders | None = None,
    ):
        """`parts` default to those of settings.role; `lock_data_dir=False` is for
        the delivery process of a server whose API process holds the data dir's lock.
        `senders` are those the interceptors of an already bound server were given."""
        self.settings = settings
        self.parts = parts_of(settings.role) if parts is None else parts
        self.metrics = Metrics()
        # Bound before the data dir is touched: a port in use leaves nothing behind.
        self._serve_metrics()
        self._lock_file: IO[str] | None = None
        try:
            if lock_data_dir and not settings.database:
                self._lock_file = self._lock_data_dir()
            self._open_encrypted_storage()
        except BaseException:
            # A failed start leaves the data dir free and the metrics port closed.
            if self._lock_file:
                self._lock_file.close()
            self.metrics.stop()
            raise
        self.metrics.read_database()
        self.admin_key = self._bootstrap()
        self.stopping = threading.Event()
        self.runner = JobRunner(settings, metrics=self.metrics) if Part.JOBS in self.parts else None
        self.worker = DeliveryWorker(settings, metrics=self.metrics) if Part.DELIVERIES in self.parts else None
        self.purger = Purger(settings) if Part.JOBS in self.parts else None
        self.listener = Listener(settings.database) if is_postgres() and settings.database else None
        self.health = health.HealthServicer()
        services = SERVICE_NAMES if Part.API in self.parts else ()
        self.database_health = DatabaseHealth(self.health, services)
        # What the live streams of this process follow: one reader each for all of them.
        self.feeds = Feeds.create(settings.poll_interval_s)
        # The threads that run every open stream (a stream holds none of the server's pool).
        self.senders = senders or Senders(settings.max_streams)

    def _serve_metrics(self) -> None:
        host, port = self.settings.metrics_host, self.settings.metrics_port
        if port is None:
            return
        try:
            self.metrics.serve(host, port)
        except OSError as error:
            raise StartupError(
                f"cannot serve metrics on {host}:{port}: {error.strerror or error}; "
                "pass another --metrics-port (or --metrics-host)"
            ) from None

    def _read_master_key(self, create: bool) -> tuple[str, str]:
        """The master key's text and where it came from: HOOKLINE_MASTER_KEY, or on
        the embedded default a key file in the data dir, made for a new database."""
        if self.settings.master_key:
            return self.settings.master_key, "HOOKLINE_MASTER_KEY"
        path = self.settings.data_dir / "master.key"
        if create:
            try:
                # O_EXCL: never overwrite a key that secrets were already sealed with.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            except OSError as error:
                raise unusable_data_dir(self.settings.data_dir, error) from None
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secretbox.generate_key() + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                log.info("created the master key of webhook secrets in %s; back it up", path.resolve())
        try:
            return path.read_text(), str(path.resolve())
        except FileNotFoundError:
            raise StartupError(
                f"{path.resolve()} is missing, but this database's webhook secrets are encrypted with the master "
                "key it held: restore the file or set HOOKLINE_MASTER_KEY"
            ) from None

    def _open_encrypted_storage(self) -> None:
        """Open self.database once the master key is known to be the one it was created with."""
        if self.settings.database and not self.settings.master_key:
            raise StartupError(
                "--database needs HOOKLINE_MASTER_KEY, the key that encrypts webhook secrets; every process "
                "using this database must share it. Make one (32 random bytes, URL-safe base64) with: "
                "python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'"
            )
        try:
            database = open_database(self.settings.data_dir, self.settings.database)
        except CannotOpen as error:
            raise DatabaseUnreachable(str(error)) from None
        try:
            check = master_key.stored_check()
            text, source = self._read_master_key(create=check is None)
            try:
                box = secretbox.SecretBox.from_text(text)
            except ValueError as error:
                raise StartupError(
                    f"the master key in {source} is malformed: {error}; it must be 32 bytes in URL-safe base64"
                ) from None
            if check is None:
                # The first process stores the check value; one racing it must then open the winner's.
                check = master_key.store_check(box.key_check())
            if not box.matches(check):
                raise StartupError(
                    f"the master key does not match the one this database was created with (key from {source}); "
                    "start with that key: every process of one database must share it"
                )
            secretbox.install(box)
            sealed = webhooks.seal_plaintext_secrets()
        except BaseException as error:
            database.close()
            fault = database_fault(error) if isinstance(error, Exception) else None
            if fault is not None:
                raise DatabaseUnreachable(f"cannot open the database: {fault.message}") from None
            raise
        if sealed:
            log.info("encrypted %d webhook secrets stored in the clear by an older server", sealed)
        self.database = database

    def _lock_data_dir(self) -> IO[str]:
        """The embedded database belongs to one server process at a time."""
        data_dir = self.settings.data_dir
        try:
            data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
            handle = open(data_dir / LOCK_FILE, "w")
        except OSError as error:
            raise unusable_data_dir(data_dir, error) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DataDirInUse(
                f"another hookline server is already using {data_dir.resolve()}; stop it or pass another --data-dir"
            ) from None
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _bootstrap(self) -> str | None:
        """Create the default space on an empty database; returns a management key
        of it when this process can read one (just created, or from the key file)."""
        key_path = self.settings.data_dir / KEY_FILE
        issued = spaces.bootstrap()
        if issued is not None:
            # A key file beside a new embedded database is stale (its database is
            # gone), but on PostgreSQL the data dir is not the database's: a key
            # already there may be another database's, and the only copy of it.
            replace = os.O_EXCL if self.settings.database else os.O_TRUNC
            try:
                key_path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | replace, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(issued.token + "\n")
            except FileExistsError:
                log.warning(
                    "created the default space, but kept the management key already in %s (of another database?);"
                    " create one for this database with `hookline keys create` and its --database",
                    key_path.resolve(),
                )
                return None
            except OSError as error:
                raise unusable_data_dir(self.settings.data_dir, error) from None
            log.info("created the default space; its management key is in %s", key_path.resolve())
            return issued.token
        if key_path.exists():
            return key_path.read_text().strip()
        return None

    def interceptors(self) -> list[grpc.ServerInterceptor]:
        return api_interceptors(self.settings, self.senders)

    def add_to_server(self, server: grpc.Server) -> None:
        """The four services (unless this is a worker-only process), health and reflection."""
        services = SERVICE_NAMES if Part.API in self.parts else ()
        if Part.API in self.parts:
            webhooks_pb2_grpc.add_WebhookServiceServicer_to_server(
                WebhookServicer(self.settings, self.feeds.changes), server
            )
            flows_pb2_grpc.add_FlowServiceServicer_to_server(FlowServicer(self.settings), server)
            jobs_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(self.settings, self.feeds.jobs), server)
            events_pb2_grpc.add_EventServiceServicer_to_server(EventServicer(self.settings), server)
        else:
            server.add_generic_rpc_handlers((_NotAnApiProcess(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        for name in ("", *services):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def recover_abandoned_work(self) -> None:
        """On the embedded database only this server works (its API process holds
        the data dir's lock and runs its delivery processes), so any job still
        RUNNING or delivery still SENDING belongs to a process that died: settle
        them now rather than after their leases lapse. The process holding the
        lock does it, for its delivery processes too, before they start."""
        if self.settings.database or self._lock_file is None:
            return  # shared database: other live processes may hold leases
        if self.runner:
            for job in job_store.reap_expired(now_ms(), all_leases=True):
                log.warning(
                    "job %s ended %s/%s: the previous server stopped while running it", job.id, job.state, job.code
                )
        if Part.DELIVERIES in parts_of(self.settings.role):
            self.release_abandoned_deliveries()

    def release_abandoned_deliveries(self) -> None:
        """Re-queue every SENDING delivery (embedded database; none is being sent)."""
        if self.settings.database:
            return  # their leases lapse instead: other live processes may hold some
        released = sending.release_expired(now_ms(), all_leases=True)
        if released:
            log.warning("re-queued %d deliveries a stopped process was sending", released)

    def start_background(self) -> None:
        if self.listener:
            self.listener.start()
        self.database_health.start()
        self.recover_abandoned_work()
        if self.runner:
            self.runner.start()
        if self.worker:
            self.worker.start()
        if self.purger:
            self.purger.start()

    def end_streams(self) -> None:
        """End every open stream now, rather than at the end of the gRPC server's grace period."""
        self.stopping.set()
        self.feeds.stop()

    def stop(self, grace_s: float | None = None) -> None:
        """Stop everything; jobs running and sends in flight have `grace_s` from
        now (by default the shutdown grace), all at once, to finish."""
        deadline = time.monotonic() + (self.settings.shutdown_grace_s if grace_s is None else grace_s)
        self.end_streams()
        self.senders.stop()
        self.database_health.stop()
        self.health.enter_graceful_shutdown()
        # The worker sends on while the runner waits for its jobs.
        if self.runner:
            self.runner.stop(grace_s=max(0.0, deadline - time.monotonic()))
        if self.worker:
            self.worker.stop(grace_s=max(0.0, deadline - time.monotonic()))
        if self.purger:
            self.purger.stop()
        if self.listener:
            self.listener.stop()
        self.metrics.stop()
        self.database.close()
        if isinstance(self.database, TurnTakingSqliteDatabase):
            self.database.close_turns()
        if self._lock_file:
            self._lock_file.close()


def api_interceptors(settings: Settings, senders: Senders) -> list[grpc.ServerInterceptor]:
    return [ApiInterceptor(settings.max_streams, senders)]


def start_console(settings: Settings, server: grpc.Server) -> Console | None:
    """The web console of --console-port, if asked for. It calls the API like any
    client, over a plain loopback port of `server` of its own: its calls never
    leave the machine, whatever TLS --listen has."""
    if settings.console_port is None:
        return None
    with _core_log_silenced():
        loopback = server.add_insecure_port("127.0.0.1:0")
    console = Console(settings.console_host, settings.console_port, f"127.0.0.1:{loopback}")
    try:
        console.start()
    except OSError as error:
        server.stop(None)
        raise StartupError(
            f"cannot serve the console on {settings.console_host}:{settings.console_port}: "
            f"{error.strerror or error}; pass another --console-port (or --console-host)"
        ) from None
    return console


def create_server(app: Hookline) -> tuple[grpc.Server, int]:
    """A gRPC server for `app`, bound to settings.listen; returns it and its port."""
    server, port = bind_server(app.settings, app.interceptors())
    app.add_to_server(server)
    return server, port


def bind_server(settings: Settings, interceptors: list[grpc.ServerInterceptor]) -> tuple[grpc.Server, int]:
    """A gRPC server bound to settings.listen, its services still to add; returns it and its port."""
    credentials = tls_credentials(settings.tls_cert, settings.tls_key) if settings.tls_cert else None
    server = grpc.server(
        # hookline's streams run on app.senders; a reflection stream holds a thread of
        # this pool while open, and counts against max_streams (ApiInterceptor): the
        # 32 beyond are always left to ordinary calls.
        futures.ThreadPoolExecutor(max_workers=settings.max_streams + 32, thread_name_prefix="grpc"),
        interceptors=interceptors,
        options=[("grpc.so_reuseport", 0)],
    )
    try:
        with _core_log_silenced():
            if credentials is not None:
                port = server.add_secure_port(settings.listen, credentials)
            else:
                port = server.add_insecure_port(settings.listen)
    except RuntimeError:
        port = 0
    if port == 0:
        raise StartupError(
            f"cannot listen on {settings.listen}: {_why_unbindable(settings.listen)}; pass another --listen"
        )
    return server, port


@contextmanager
def _core_log_silenced() -> Iterator[None]:
    """gRPC's core writes its own line about a failed bind straight to stderr; the
    operator is told once, by bind_server, which names --listen."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _why_unbindable(address: str) -> str:
    """Why gRPC could not bind `address` (HOST:PORT), found by trying it the same way."""
    host, _, port = address.rpartition(":")
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        return f"cannot resolve {host} ({error.strerror})"
    for family, kind, protocol, _, where in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as error:
                return error.strerror or str(error)
    return "the address is in use or not one of this machine's"


def tls_credentials(cert_path: Path, key_path: Path | None) -> grpc.ServerCredentials:
    """The credentials of --tls-cert and --tls-key, once they are known to be a PEM
    certificate chain and the unencrypted PEM key of its first certificate (gRPC
    takes any bytes, and would then fail every handshake)."""
    assert key_path is not None  # Settings holds both or neither
    cert, key = _read_pem(cert_path, "--tls-cert"), _read_pem(key_path, "--tls-key")
    try:
        chain = x509.load_pem_x509_certificates(cert)
    except ValueError:
        raise StartupError(f"--tls-cert {cert_path.resolve()} holds no PEM certificate") from None
    try:
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise StartupError(
            f"--tls-key {key_path.resolve()} is not an unencrypted PEM private key (gRPC cannot ask for a passphrase)"
        ) from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private_key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise StartupError(
            f"--tls-key {key_path.resolve()} is not the key of the certificate in --tls-cert {cert_path.resolve()}"
        )
    return grpc.ssl_server_credentials([(key, cert)])


def _read_pem(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise StartupError(f"cannot read {flag} {path.resolve()}: {error.strerror or error}") from None


def configure_logging(database_url: str | None = None) -> None:
    """Log lines to stderr, with the password of `database_url` masked in all of them."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", database_url))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # httpx notes every request at INFO; the delivery worker logs its own attempts.
    logging.getLogger("httpx").setLevel(logging.WARNING)


class _NotAnApiProcess(grpc.GenericRpcHandler):
    """On a worker-only process, hookline's RPCs say where to call instead of gRPC's bare "Method not found"."""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method  # type: ignore[attr-defined]  # set by grpc at run time
        if not method.startswith(tuple(f"/{name}/" for name in SERVICE_NAMES)):
            return None

        def refuse(request: object, context: grpc.ServicerContext) -> None:
            raise Unimplemented(
                f"{method.lstrip('/')} is not served here: this process runs with --role worker (jobs and"
                " deliveries only); call a process with --role api or all"
            )

        # Any request parses as Empty (its fields unknown): nothing here reads it.
        return grpc.unary_unary_rpc_method_handler(refuse, request_deserializer=empty_pb2.Empty.FromString)


def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM; then stop taking calls and finish or release work.

    With --role all or worker (and not --single-process) the delivery worker
    runs in delivery processes this one supervises."""
    # Many threads hand work to each other (calls, runner, delivery loop, its
    # database thread); at the default 5 ms a thread woken by another can wait
    # that long for the interpreter at each hand-off.
    sys.setswitchinterval(0.001)
    # From the start: a signal while starting up stops the server once it has
    # started, rather than killing it half way (the health check answers SERVING
    # before the last of the start-up is done).
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    parts = parts_of(settings.role)
    split = Part.DELIVERIES in parts and not settings.single_process
    # Bound first: an address in use, or TLS files that cannot be used, leave nothing behind.
    senders = Senders(settings.max_streams)
    server, port = bind_server(settings, api_interceptors(settings, senders))
    console = start_console(settings, server)
    try:
        app = Hookline(settings, parts - {Part.DELIVERIES} if split else parts, senders=senders)
    except BaseException:
        if console:
            console.stop()
        server.stop(None)
        raise
    app.add_to_server(server)
    server.start()
    app.start_background()
    deliveries = DeliveryProcesses(settings, app.metrics, app.release_abandoned_deliveries) if split else None
    if deliveries:
        deliveries.start()
    host = settings.listen.rsplit(":", 1)[0]
    data = redact_url(settings.database) if settings.database else Path(settings.data_dir).resolve()
    log.info("hookline listening on %s:%d (data: %s)", host, port, data)
    if app.admin_key:
        log.info("management key of the default space: %s", (settings.data_dir / KEY_FILE).resolve())
    if console:
        log.info("console on %s (sign in with a management key)", console.url)
    done.wait()
    log.info("shutting down")
    # One grace for all: calls, jobs and sends in flight finish side by side.
    grace_s = settings.shutdown_grace_s
    deadline = time.monotonic() + grace_s
    if console:
        console.stop()
    app.end_streams()
    if deliveries:
        deliveries.stop_soon()
    server.stop(grace=grace_s).wait()
    if deliveries:
        deliveries.stop()
    app.stop(grace_s=max(0.0, deadline - time.monotonic()))
