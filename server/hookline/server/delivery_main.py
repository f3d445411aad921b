"""A delivery process: what `python -m hookline.server.delivery_main` runs, as
started by the API process (delivery_process.DeliveryProcesses).

It reads its settings from stdin (pickled: they may hold the master key, which
must not show on a command line), opens its part of hookline (the delivery
worker), beats and sends its metrics over the Link, and stops at SIGTERM or
when the API process is gone. Nothing imports this module, so running it as
__main__ loads it once."""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import signal
import socket
import sys
import threading

from .app import DatabaseUnreachable, Hookline, Part, configure_logging
from .delivery_process import RESTART_DELAY_S, Link
from .settings import Settings

log = logging.getLogger("hookline.delivery")

METRICS_EVERY_S = 1.0
PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int) -> None:
    """Be killed when the API process ends, however it ends (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it ended before the line above
        os._exit(1)


def _open(settings: Settings, done: threading.Event) -> Hookline | None:
    """This process's part of hookline, once the database answers (the API
    process is running already, so it is worth waiting for); None if told to stop first."""
    while True:
        try:
            return Hookline(settings, parts={Part.DELIVERIES}, lock_data_dir=False)
        except DatabaseUnreachable as error:
            log.warning("%s; trying again in %.0f s", error, RESTART_DELAY_S)
        if done.wait(RESTART_DELAY_S):
            return None


def main() -> None:
    fd, parent_pid = int(sys.argv[1]), int(sys.argv[2])
    _die_with(parent_pid)
    # Ctrl-C reaches the whole process group; the API process decides when this one stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    settings: Settings = pickle.load(sys.stdin.buffer)
    configure_logging(settings.database)
    sys.setswitchinterval(0.001)  # as in the API process (app.serve)
    # The API process serves the metrics (this one sends it its own) and settles
    # the work of dead delivery processes (this one holds no data dir lock).
    app = _open(settings, done)
    if app is None:
        return
    # The pair closes when the API process is gone: stop then too.
    link = Link(socket.socket(fileno=fd), on_close=done.set)
    link.start()
    assert app.worker is not None
    app.worker.heartbeat = link.send_heartbeat
    app.start_background()
    log.info("delivery process %d running", os.getpid())
    while not done.wait(METRICS_EVERY_S):
        link.send_metrics(app.metrics.snapshot())
    # Sends in flight have the shutdown grace (settings.shutdown_grace_s) to finish.
    app.stop()
    link.send_metrics(app.metrics.snapshot())
    link.close()


if __name__ == "__main__":
    main()
