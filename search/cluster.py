"""Where trials run: an embedded Ray instance or an existing cluster, and cleaning up after a killed driver.

``connect(cfg)`` starts embedded Ray (``ray.init()``) or joins the cluster at ``ray.address``
(``host:port``, ``ray://host:port`` or ``auto``; else the ``RAY_ADDRESS`` environment variable). Joining
never hangs in Ray's retry loop: the GCS port is probed first (3 s), token authentication is turned
on when a token is at hand (a cluster started with ``ray start --head`` requires it once
``~/.ray/auth_token`` exists), and every failure becomes one :class:`ConfigError` line naming
``ray.address``.

A search driver claims its run folder before anything starts: an exclusive ``flock`` on the folder
(atomic; the kernel drops it when the driver dies, however it dies) and ``driver.json`` (pid, process
start time, later its Ray session folder). A second driver of the same run is refused with one line, and a
``--resume`` after a SIGKILLed driver kills what it left behind: the processes still holding files of its
embedded Ray session (Ray's agents outlive a killed driver), and nothing else.

``check_resources(cfg)`` runs right after connecting: a trial that no node could ever place
(``ray.cpus_per_trial``/``ray.gpus_per_trial`` above what the largest node has) stops the search with
one line naming the field, instead of waiting forever.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Config

PROBE_TIMEOUT_S = 3.0
CONNECT_RETRIES = "10"  # ~1 s each: Ray's default is 20, with a log line per attempt
DRIVER_FILE = "driver.json"
WORKER_NICENESS = "RAY_worker_niceness"
"""Ray's variable for its worker processes' niceness (Ray's default 15); embedded Ray gets 0 unless it is set."""


def split_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; None for ``auto``; ValueError otherwise."""
    if address == "auto":
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be host:port, ray://host:port or auto, got {address!r}")
    return host.strip("[]"), int(port)


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if a TCP connection to ``host:port`` opens within ``timeout`` seconds, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def use_token_auth_if_available() -> bool:
    """Set ``RAY_AUTH_MODE=token`` when it is unset and a token exists (file or environment).

    A token-mode driver also joins clusters that have authentication off, so this only removes the
    failure mode where a ``ray start --head`` cluster (token auth on) rejects a driver forever.
    """
    if os.environ.get("RAY_AUTH_MODE"):
        return os.environ["RAY_AUTH_MODE"].lower() == "token"
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not (os.environ.get("RAY_AUTH_TOKEN") or path.is_file()):
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    refresh_ray_config()
    return True


def refresh_ray_config() -> None:
    """Make an already imported Ray re-read its environment (``RAY_AUTH_MODE``).

    Ray reads its C++ config once, at import; the only way to refresh it is the private
    ``ray._raylet.Config.initialize`` that Ray itself calls at start-up (no public API exists in Ray 2.x).
    Kept in this one function so the private access is in one place; an older/newer Ray without it reads
    the variable at ``ray.init``.
    """
    try:
        from ray._raylet import Config as RayletConfig

        RayletConfig.initialize("")
    except Exception:
        pass


@contextmanager
def _stderr_to_file() -> Iterator[Path]:
    """Send file descriptor 2 (where Ray's C++ core logs each failed attempt) to a temporary file."""
    fd, name = tempfile.mkstemp(prefix="nas-ray-connect-", suffix=".log")
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        yield Path(name)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def connect(cfg: Config) -> None:
    """Start embedded Ray or join ``ray.address``; a cluster that cannot be joined raises ConfigError."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                                  configure_logging=True)
    field = "ray.address"
    address = cfg.ray.address
    if address is None and os.environ.get("RAY_ADDRESS"):
        field, address = "RAY_ADDRESS", os.environ["RAY_ADDRESS"]
    if address is None:
        # Ray starts its worker processes at niceness 15 (RAY_worker_niceness): beside any other job at the normal
        # priority on this machine (a second search, `nas compare`, a build), the trials then get a few percent of a
        # core (measured: one proxy epoch 250-350 s instead of 8 s next to two busy processes on 2 cores). The
        # embedded instance runs its workers at 0, like the driver; a value the user exported is kept.
        os.environ.setdefault(WORKER_NICENESS, "0")
        ray.init(num_cpus=cfg.ray.num_cpus, _temp_dir=cfg.ray.temp_dir, **kwargs)
        return
    try:
        hostport = split_address(address)
    except ValueError as exc:
        raise ConfigError(f"{field}: {exc}") from None
    if hostport is not None:
        problem = probe(*hostport)
        if problem:
            raise ConfigError(f"{field}: no Ray cluster reachable at {address!r} ({problem}); start one with "
                              f"`ray start --head --port {hostport[1]}` or remove ray.address to run locally")
    use_token_auth_if_available()
    saved = os.environ.get("RAY_gcs_server_port_wait_time_s")
    os.environ["RAY_gcs_server_port_wait_time_s"] = saved or CONNECT_RETRIES
    log = None
    try:
        with _stderr_to_file() as log:
            ray.init(address=address, **kwargs)
    except Exception as exc:
        cause = exc.__cause__ or exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[-1][:300]
        hint = "; the cluster uses token auth: set RAY_AUTH_TOKEN or copy its ~/.ray/auth_token here" \
            if "auth" in str(cause).lower() else ""
        raise ConfigError(f"{field}: cannot join the Ray cluster at {address!r}: {first}{hint}") from None
    finally:
        if saved is None:
            os.environ.pop("RAY_gcs_server_port_wait_time_s", None)
        if log is not None:
            log.unlink(missing_ok=True)


def check_resources(cfg: Config) -> None:
    """Refuse (ConfigError naming the field) a trial no alive node of the connected cluster could ever place."""
    import ray

    try:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    except Exception:  # a Ray client without node information: nothing to check against
        return
    need = {"CPU": cfg.ray.cpus_per_trial, "GPU": cfg.ray.gpus_per_trial}
    if any(all(node.get(k, 0.0) >= v for k, v in need.items()) for node in nodes):
        return
    where = "this machine" if cfg.ray.address is None and not os.environ.get("RAY_ADDRESS") else "the cluster"
    for key, name in (("CPU", "cpus_per_trial"), ("GPU", "gpus_per_trial")):
        most = max((node.get(key, 0.0) for node in nodes), default=0.0)
        if need[key] > most:
            if key == "CPU" and cfg.ray.num_cpus is not None:
                where = f"ray.num_cpus: {cfg.ray.num_cpus}"
            hint = "; set gpus_per_trial: 0 (and proxy.device: cpu)" if key == "GPU" and most == 0 else ""
            raise ConfigError(f"ray.{name}: a trial needs {need[key]:g} {key}(s) but the largest Ray node has "
                              f"{most:g} ({where}); a trial could never start{hint}")
    raise ConfigError(f"ray.cpus_per_trial: no single Ray node has {need['CPU']:g} CPU(s) and "
                      f"{need['GPU']:g} GPU(s) together ({where}); a trial could never start")


def session_dir() -> str | None:
    """This driver's Ray session folder when it started Ray itself (embedded); None when it joined a cluster."""
    try:
        import ray

        node = ray._private.worker._global_node
        return node.get_session_dir_path() if node is not None and node.head else None
    except Exception:
        return None


# --------------------------------------------------------------------------- killed drivers


def _start_ticks(pid: int) -> int | None:
    """Process start time (clock ticks since boot; /proc/PID/stat field 22) or None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def processes_using(path: str) -> list[int]:
    """Pids (not this one) whose command line, working folder or open files lie under ``path`` (Linux /proc)."""
    root = os.path.realpath(path)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if root in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
                continue
            links = [entry / "cwd", *(entry / "fd").iterdir()]
            if any(os.readlink(p).startswith(root + "/") for p in links):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def kill_processes(pids: list[int], *, grace_s: float = 3.0) -> int:
    """SIGKILL ``pids`` (Ray's agents ignore SIGTERM) and wait up to ``grace_s`` for them to go; return how many."""
    killed = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except OSError:
            pass
    deadline = time.time() + grace_s
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return killed


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class RunClaim:
    """This driver's hold on a run folder: an open descriptor of the folder with an exclusive ``flock``.
    The descriptor is not inherited by child processes (Ray's), so the lock ends with this process."""

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir, self.fd = Path(run_dir), fd

    def release(self) -> None:
        """Remove ``driver.json`` (if it is this process's) and drop the lock."""
        release_run(self.run_dir)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            os.close(self.fd)


def claim_run(run_dir: Path, *, out: Callable[[str], None] = print, field: str = "--resume") -> RunClaim:
    """Before (re)starting a run: lock its (existing) folder, refuse if a live driver holds it, clean up after one
    that was killed, and write this driver's ``driver.json``."""
    run_dir = Path(run_dir)
    path = run_dir / DRIVER_FILE
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = _recorded(path).get("pid", "?")
        raise ConfigError(f"{field}: run folder {str(run_dir)!r} is being searched by process {pid}; "
                          f"stop it first (or wait for it to finish)") from None
    claim = RunClaim(run_dir, fd)
    rec = _recorded(path)
    same_host = rec.get("host") == socket.gethostname()
    pid = rec.get("pid")
    if same_host and isinstance(pid, int) and pid != os.getpid() and _alive(pid) \
            and _start_ticks(pid) == rec.get("start_ticks"):  # a driver of an older version (no lock)
        claim.release()
        raise ConfigError(f"{field}: run folder {str(run_dir)!r} is being searched by process {pid}; "
                          f"stop it first (or wait for it to finish)")
    session = rec.get("session_dir")
    if same_host and _is_ray_session(session):
        n = kill_processes(processes_using(session))
        if n:
            out(f"stopped {n} leftover Ray process(es) of the interrupted driver (pid {pid})")
    record_driver(run_dir, session_dir=None)
    return claim


def _recorded(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def _is_ray_session(path: Any) -> bool:
    """Only a real Ray session folder (``.../session_<date>_<pid>`` with ``logs/``) is ever swept for processes."""
    if not isinstance(path, str) or not os.path.isabs(path):
        return False
    p = Path(os.path.realpath(path))
    return p.name.startswith("session_") and len(p.parts) > 2 and (p / "logs").is_dir()


def record_driver(run_dir: Path, *, session_dir: str | None = None) -> None:
    """Write ``driver.json``: this process and its embedded Ray session (for :func:`claim_run`)."""
    pid = os.getpid()
    rec = {"pid": pid, "start_ticks": _start_ticks(pid), "host": socket.gethostname(), "session_dir": session_dir,
           "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (Path(run_dir) / DRIVER_FILE).write_text(json.dumps(rec, indent=2))


def release_run(run_dir: Path) -> None:
    """Remove this driver's ``driver.json`` (a finished or cleanly interrupted search)."""
    path = Path(run_dir) / DRIVER_FILE
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass
