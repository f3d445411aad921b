"""The delivery process of `hookline serve --role all`.

The delivery worker runs in a child process, so that sending and recording
deliveries gets a core of its own instead of sharing one interpreter lock with
the gRPC server and the job runner. The API process starts it, starts another
if it dies (the new one re-queues what the dead one was sending, as after any
crash) and stops it on shutdown; the child dies with its parent.

The two are joined by a socket pair (Link): each tells the other of its commits
(notify's topics), and the child sends its metrics to the parent, which serves
them. On the embedded database they take turns writing
(TurnTakingSqliteDatabase) and only the API process holds the data dir's lock.

The child reads its settings from stdin (pickled: they may hold the master key,
which must not show on a command line)."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace

from . import notify
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("hookline.delivery")

RESTART_DELAY_S = 1.0
METRICS_EVERY_S = 1.0
PR_SET_PDEATHSIG = 1
# Deliveries in flight get their request timeout to finish on shutdown.
STOP_MARGIN_S = 10.0
TOPICS, METRICS = b"t", b"m"


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

    def start(self) -> None:
        notify.relays.append(self.send_topics)
        self._thread.start()

    def send_topics(self, topics: tuple[str, ...]) -> None:
        self._send(TOPICS + ",".join(topics).encode())

    def send_metrics(self, snapshot: list[tuple[str, dict[str, str], float]]) -> None:
        self._send(METRICS + json.dumps(snapshot).encode())

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
        self._on_close()


class DeliveryProcess:
    """Runs and supervises the delivery process (API process side)."""

    def __init__(self, settings: Settings, metrics: Metrics):
        self._settings = settings
        self._metrics = metrics
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        # The child's death signal fires when the thread that started it ends:
        # this thread lives exactly as long as the children it starts.
        self._thread = threading.Thread(target=self._supervise, name="delivery-process", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _supervise(self) -> None:
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                process = subprocess.Popen(
                    [sys.executable, "-m", __name__, str(theirs.fileno()), str(os.getpid())],
                    stdin=subprocess.PIPE,
                    pass_fds=[theirs.fileno()],
                )
                self._process = process
            theirs.close()
            link = Link(ours, on_metrics=self._metrics.absorb)
            link.start()
            assert process.stdin is not None
            try:
                with process.stdin:
                    process.stdin.write(pickle.dumps(self._settings))
            except BrokenPipeError:
                pass  # it died at once; its exit is reported below
            code = process.wait()
            link.close()
            self._metrics.retire()
            if self._stopping.is_set():
                return
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            log.error("the delivery process %s; starting another in %.0f s", how, RESTART_DELAY_S)
            self._stopping.wait(RESTART_DELAY_S)

    def stop(self) -> None:
        """Ask the delivery process to finish or release its work, and wait for it."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            timeout = self._settings.request_timeout_s + STOP_MARGIN_S
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("the delivery process did not stop within %.0f s; killing it", timeout)
                process.kill()
        self._thread.join()


def _die_with(parent_pid: int) -> None:
    """Be killed when the API process ends, however it ends (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it ended before the line above
        os._exit(1)


def main() -> None:
    from .app import Hookline, Part, configure_logging

    fd, parent_pid = int(sys.argv[1]), int(sys.argv[2])
    _die_with(parent_pid)
    # Ctrl-C reaches the whole process group; the API process decides when this one stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    settings: Settings = pickle.load(sys.stdin.buffer)
    configure_logging()
    sys.setswitchinterval(0.001)  # as in the API process (app.serve)
    # The API process serves the metrics; this one sends it its own.
    app = Hookline(replace(settings, metrics_port=None), parts={Part.DELIVERIES}, lock_data_dir=False)
    # The pair closes when the API process is gone: stop then too.
    link = Link(socket.socket(fileno=fd), on_close=done.set)
    link.start()
    app.start_background()
    log.info("delivery process %d running", os.getpid())
    while not done.wait(METRICS_EVERY_S):
        link.send_metrics(app.metrics.snapshot())
    app.stop()
    link.send_metrics(app.metrics.snapshot())
    link.close()


if __name__ == "__main__":
    main()
