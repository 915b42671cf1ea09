"""Ctrl-C ends a driver in bounded time (search/interrupt.py), with injected hangs: a non-daemon thread that never
ends (the interpreter would wait for it forever), and clean-up stuck after the interrupt then a second Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    from pathlib import Path
    from search.interrupt import install

    install(lambda: Path(sys.argv[1]), grace_s=float(sys.argv[2]))
    def stuck_forever():
        while True:
            time.sleep(0.2)
    if sys.argv[3] == "thread":
        threading.Thread(target=stuck_forever).start()  # not a daemon: exit would wait for it
    try:
        print("ready", flush=True)  # inside the try: a Ctrl-C right after "ready" is still caught
        time.sleep(60)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        if sys.argv[3] == "cleanup":
            stuck_forever()
        sys.exit(130)
""")


def _start(tmp_path: Path, grace: float, hang: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "error.log"), str(grace), hang],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_driver_that_does_not_end_after_ctrl_c_is_ended_with_its_stacks_logged(tmp_path):
    proc = _start(tmp_path, 2.0, "thread")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert 1.5 <= time.monotonic() - t0 < 30  # the grace period, then the watchdog
    assert proc.stdout.read().strip() == "interrupted"
    log = (tmp_path / "error.log").read_text()
    assert "still running 2 s after Ctrl-C" in log and "stuck_forever" in log  # the hanging thread's stack


def test_a_second_ctrl_c_ends_stuck_clean_up_at_once(tmp_path):
    proc = _start(tmp_path, 600.0, "cleanup")
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == "interrupted"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130 and time.monotonic() - t0 < 20
    assert not (tmp_path / "error.log").exists()  # ended by the second Ctrl-C, not the watchdog
