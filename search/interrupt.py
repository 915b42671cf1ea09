"""Ctrl-C ends a search driver in bounded time.

The first SIGINT raises ``KeyboardInterrupt`` as Python's default handler does (the driver records its
running trials as interrupted and exits 130), and also arms a watchdog: if the process has not ended
``grace_s`` seconds later — Ray's or Tune's shutdown waiting on a busy actor, a lock left held where the
interrupt landed, a non-daemon thread — the watchdog appends every thread's stack to the run's
``error.log`` and ends the process with exit code 130 (``os._exit``: no further clean-up). Nothing is
lost by that: the storage already holds every finished trial, and ``--resume`` closes the trials this
driver left RUNNING (its pid is gone; :mod:`search.lease`). A second Ctrl-C ends the process at once.
"""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

GRACE_S = 60.0
"""Seconds a driver may take to end after Ctrl-C before the watchdog ends it."""
EXIT_INTERRUPTED = 130

_armed = threading.Event()


def install(log_path: Callable[[], Path | None], *, grace_s: float = GRACE_S) -> None:
    """Handle SIGINT in the main thread as described in the module docstring; ``log_path()`` names the file
    the watchdog appends the stacks to (None: standard error)."""

    def on_sigint(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, _exit_now)
        arm(log_path(), grace_s=grace_s)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


def arm(path: Path | None, *, grace_s: float = GRACE_S) -> None:
    """Start the watchdog (once per process)."""
    if _armed.is_set():
        return
    _armed.set()
    timer = threading.Timer(grace_s, _fire, args=(path, grace_s, time.strftime("%Y-%m-%d %H:%M:%S")))
    timer.daemon = True
    timer.name = "nas-interrupt-watchdog"
    timer.start()


def _fire(path: Path | None, grace_s: float, since: str) -> None:
    head = (f"nas: still running {grace_s:g} s after Ctrl-C (at {since}); ending the process (exit "
            f"{EXIT_INTERRUPTED}); every thread's stack:\n")
    try:
        if path is not None and path.parent.is_dir():
            with open(path, "a") as f:
                f.write(head)
                f.flush()
                faulthandler.dump_traceback(file=f, all_threads=True)
                f.write("\n")
            print(f"nas: did not end {grace_s:g} s after Ctrl-C; stopped it (stacks in {path})", file=sys.stderr,
                  flush=True)
        else:
            sys.stderr.write(head)
            sys.stderr.flush()
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    finally:
        os._exit(EXIT_INTERRUPTED)


def _exit_now(signum: int, frame: object) -> None:
    os._exit(EXIT_INTERRUPTED)
