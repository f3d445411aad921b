"""The delivery processes of `hookline serve --role all` (or worker).

The delivery worker runs in child processes (one unless --delivery-processes
says more), so that sending and recording deliveries gets cores of its own
instead of sharing one interpreter lock with the gRPC server and the job runner.
The API process starts them and stops them on shutdown; when one dies it stops
the others, re-queues what was being sent (as after any crash) and starts a new
set. One whose event loop gives no heartbeat for --delivery-stall-timeout
(stopped, or stuck) is killed, and replaced the same way. The children die with
their parent.

Each child is joined to the API process by a socket pair (Link): each side tells
the other of its commits (notify's topics), and the child sends its metrics to
the parent, which serves their sum. On the embedded database all of them take
turns writing (TurnTakingSqliteDatabase); only the API process holds the data
dir's lock and settles work that dead processes left behind.

This module is the API process's side (and the Link both use); a delivery
process runs delivery_main, which nothing imports: run as __main__, it is
loaded once."""

from __future__ import annotations

import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from . import notify
from .delivery.capacity import process_share
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("hookline.delivery")

# What a delivery process runs (named, not imported: it imports this module).
ENTRY_MODULE = "hookline.server.delivery_main"
RESTART_DELAY_S = 1.0
# What a stopping delivery process has beyond the shutdown grace to record what
# it sent, give back the rest and exit, before it is killed.
STOP_MARGIN_S = 10.0
TOPICS, METRICS, HEARTBEAT = b"t", b"m", b"h"
# How often the supervisor looks for a delivery process that stopped beating,
# and how long a new one may take to send its first heartbeat.
STALL_CHECK_EVERY_S = 0.5
FIRST_HEARTBEAT_WITHIN_S = 60.0


class Link:
    """One end of the socket pair between the API and delivery processes."""

    def __init__(
        self,
        sock: socket.socket,
        on_metrics: Callable[[list[tuple[str, dict[str, str], float]]], None] = lambda _: None,
        on_close: Callable[[], None] = lambda: None,
    ):
        self._sock = sock
        self._on_metrics = on_metrics
        self._on_close = on_close
        self._thread = threading.Thread(target=self._receive, name="process-link", daemon=True)
        self.last_heartbeat: float | None = None  # time.monotonic() of the other side's last one

    def start(self) -> None:
        notify.relays.append(self.send_topics)
        self._thread.start()

    def send_topics(self, topics: tuple[str, ...]) -> None:
        self._send(TOPICS + ",".join(topics).encode())

    def send_metrics(self, snapshot: list[tuple[str, dict[str, str], float]]) -> None:
        self._send(METRICS + json.dumps(snapshot).encode())

    def send_heartbeat(self) -> None:
        self._send(HEARTBEAT)

    def _send(self, message: bytes) -> None:
        try:
            # Never block a committing writer: with the buffer full the other
            # side is behind on wake-ups already, and its poll catches up; a
            # lost metrics snapshot is followed by a newer one.
            self._sock.send(message, socket.MSG_DONTWAIT)
        except OSError:
            pass

    def close(self) -> None:
        if self.send_topics in notify.relays:
            notify.relays.remove(self.send_topics)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._sock.close()

    def _receive(self) -> None:
        notify.hub.publish(*notify.TOPICS)  # catch up on anything committed before the link existed
        while True:
            try:
                message = self._sock.recv(1 << 16)
            except OSError:
                break
            if not message:
                break
            kind, body = message[:1], message[1:]
            if kind == TOPICS:
                notify.hub.publish(*body.decode().split(","))
            elif kind == METRICS:
                self._on_metrics(json.loads(body))
            elif kind == HEARTBEAT:
                self.last_heartbeat = time.monotonic()
        self._on_close()


class DeliveryProcesses:
    """Runs and supervises the delivery processes (API process side).

    When one dies, the others are stopped too (they finish or give back what
    they are sending), what the dead one was sending is re-queued
    (`release_abandoned`), and a new set starts: the embedded database records
    no owner per lease, so only with none running can the dead one's work be
    told apart from the living ones'."""

    def __init__(self, settings: Settings, metrics: Metrics, release_abandoned: Callable[[], None]):
        self._settings = settings
        self._count = settings.delivery_processes
        self._metrics = metrics
        self._release_abandoned = release_abandoned
        self._stopping = threading.Event()
        self._stop_deadline = 0.0  # time.monotonic() by which stopping processes must have exited
        self._lock = threading.Lock()
        self._processes: list[subprocess.Popen[bytes]] = []
        # A child's death signal fires when the thread that started it ends:
        # this thread lives exactly as long as the children it starts.
        self._thread = threading.Thread(target=self._supervise, name="delivery-processes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _supervise(self) -> None:
        while True:
            ended = threading.Event()
            with self._lock:
                if self._stopping.is_set():
                    return
                started = [self._start(number, ended) for number in range(self._count)]
                self._processes = [process for process, _ in started]
            since = time.monotonic()
            while not ended.wait(STALL_CHECK_EVERY_S):
                self._kill_stalled(started, since)
            dead = next((p for p in self._processes if p.poll() is not None), None)
            if not self._stopping.is_set():
                self._stop_all(self._processes)
            for number, (process, link) in enumerate(started):
                process.wait()
                link.close()
                self._metrics.retire(number)
            if self._stopping.is_set():
                return
            assert dead is not None and dead.returncode is not None
            code = dead.returncode
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            if self._count == 1:
                log.error("the delivery process %s; starting another in %.0f s", how, RESTART_DELAY_S)
            else:
                log.error(
                    "delivery process %d %s; the other %d were stopped, all start again in %.0f s",
                    dead.pid, how, self._count - 1, RESTART_DELAY_S,
                )  # fmt: skip
            try:
                self._release_abandoned()
            except Exception:
                log.exception("re-queuing what the dead delivery process was sending failed; its leases will lapse")
            self._stopping.wait(RESTART_DELAY_S)

    def _kill_stalled(self, started: list[tuple[subprocess.Popen[bytes], Link]], since: float) -> None:
        """Kill a delivery process that stopped beating; its end is then handled as any other."""
        stall_s = self._settings.delivery_stall_timeout_s
        for process, link in started:
            if link.last_heartbeat is None:
                silent, allowed = time.monotonic() - since, max(stall_s, FIRST_HEARTBEAT_WITHIN_S)
            else:
                silent, allowed = time.monotonic() - link.last_heartbeat, stall_s
            if silent > allowed and process.poll() is None and not self._stopping.is_set():
                log.error(
                    "delivery process %d made no progress for %.0f s (stopped or stuck); killing it",
                    process.pid, silent,
                )  # fmt: skip
                process.kill()

    def _start(self, number: int, ended: threading.Event) -> tuple[subprocess.Popen[bytes], Link]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = subprocess.Popen(
            [sys.executable, "-m", ENTRY_MODULE, str(theirs.fileno()), str(os.getpid())],
            stdin=subprocess.PIPE,
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        link = Link(ours, on_metrics=lambda snapshot: self._metrics.absorb(number, snapshot))
        link.start()
        assert process.stdin is not None
        try:
            with process.stdin:
                process.stdin.write(pickle.dumps(self._settings_of(number)))
        except BrokenPipeError:
            pass  # it died at once; its exit is reported by the supervisor

        def wait_for_exit() -> None:
            process.wait()
            ended.set()

        threading.Thread(target=wait_for_exit, name="delivery-exit", daemon=True).start()
        return process, link

    def _settings_of(self, number: int) -> Settings:
        """Delivery process `number`'s settings: its share of the limits, so that
        together they keep to them."""
        share = process_share(
            self._settings.delivery_concurrency, self._settings.webhook_max_in_flight, self._count, number
        )
        return replace(
            self._settings,
            metrics_port=None,  # the API process serves the metrics
            delivery_concurrency=share.delivery_concurrency,
            webhook_max_in_flight=share.webhook_max_in_flight,
        )

    def _stop_all(self, processes: list[subprocess.Popen[bytes]]) -> None:
        """Ask the delivery processes to finish or give back their sends, and wait for them."""
        _terminate(processes)
        _await_exit(processes, time.monotonic() + self._settings.shutdown_grace_s + STOP_MARGIN_S)

    def stop_soon(self) -> None:
        """Ask the delivery processes to finish or give back their sends within
        the shutdown grace, from now; none is started again."""
        with self._lock:
            if not self._stopping.is_set():
                self._stopping.set()
                self._stop_deadline = time.monotonic() + self._settings.shutdown_grace_s + STOP_MARGIN_S
            processes = list(self._processes)
        _terminate(processes)

    def stop(self) -> None:
        """stop_soon, then wait for the delivery processes to end."""
        self.stop_soon()
        with self._lock:
            processes = list(self._processes)
        _await_exit(processes, self._stop_deadline)
        self._thread.join()


def _terminate(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()


def _await_exit(processes: list[subprocess.Popen[bytes]], deadline: float) -> None:
    """Wait for the processes to exit until `deadline` (time.monotonic()), then kill those still running."""
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning(
                "delivery process %d did not stop within the shutdown grace and %.0f s more; killing it",
                process.pid, STOP_MARGIN_S,
            )  # fmt: skip
            process.kill()
