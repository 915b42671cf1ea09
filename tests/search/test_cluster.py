"""Running on a Ray cluster (search/cluster.py): `ray.address` joins an existing cluster, an unreachable one
fails fast with one line naming the field, token auth is switched on when a token is at hand, and a real
two-node cluster started with `ray start` runs a search whose trials spread over both nodes with the
configured CPUs (torch threads) each."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml

from search.cluster import connect, kill_processes, probe, processes_using, split_address, use_token_auth_if_available
from search.config import ConfigError, parse_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_split_address():
    assert split_address("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert split_address("ray://head.example.org:10001") == ("head.example.org", 10001)
    assert split_address("[::1]:6379") == ("::1", 6379)
    assert split_address("auto") is None
    for bad in ("6379", "head", "head:port", "head:70000", ":6379"):
        with pytest.raises(ValueError, match="host:port"):
            split_address(bad)


def test_unreachable_address_fails_fast_with_one_line(monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    port = free_port()  # nothing listens there
    assert probe("127.0.0.1", port) is not None
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        connect(parse_config({"ray": {"address": f"127.0.0.1:{port}"}}))
    assert time.perf_counter() - t0 < 5
    msg = str(info.value)
    assert msg.startswith(f"ray.address: no Ray cluster reachable at '127.0.0.1:{port}'") and "\n" not in msg
    assert not ray.is_initialized()

    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")  # Ray's own variable is honoured, and named
    with pytest.raises(ConfigError, match=r"^RAY_ADDRESS: no Ray cluster reachable"):
        connect(parse_config({}))
    assert not ray.is_initialized()


def test_token_auth_is_enabled_only_when_a_token_exists(monkeypatch, tmp_path):
    from ray._raylet import Config as RayletConfig

    try:
        with monkeypatch.context() as m:
            m.setenv("HOME", str(tmp_path))
            for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
                m.delenv(var, raising=False)
            assert use_token_auth_if_available() is False and "RAY_AUTH_MODE" not in os.environ
            (tmp_path / ".ray").mkdir()
            (tmp_path / ".ray" / "auth_token").write_text("0" * 32)
            assert use_token_auth_if_available() is True and os.environ["RAY_AUTH_MODE"] == "token"
            m.setenv("RAY_AUTH_MODE", "disabled")  # an explicit choice is respected
            assert use_token_auth_if_available() is False and os.environ["RAY_AUTH_MODE"] == "disabled"
            m.delenv("RAY_AUTH_MODE")
            m.setenv("HOME", str(tmp_path / "elsewhere"))
            m.setenv("RAY_AUTH_TOKEN", "1" * 32)
            assert use_token_auth_if_available() is True
    finally:
        RayletConfig.initialize("")  # back to this process's own settings


def test_shipped_cluster_configs_are_valid():
    """configs/cluster/: the `ray up` file passes Ray's own cluster-launcher schema (after its defaults are
    filled in, as `ray up` does) and the search config joins a cluster."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    root = Path(__file__).resolve().parents[2] / "configs" / "cluster"
    launcher = prepare_config(yaml.safe_load((root / "local.yaml").read_text()))
    validate_config(launcher)
    assert launcher["provider"]["type"] == "local" and launcher["max_workers"] == 2
    assert any("pip install -q -e ~/nas" in c for c in launcher["setup_commands"])
    cfg = parse_config(yaml.safe_load((root / "search.yaml").read_text()))
    assert cfg.ray.address == "auto" and cfg.ray.cpus_per_trial == 4


# --------------------------------------------------------------------------- a real cluster


class LocalCluster:
    """A head and one worker node started with `ray start --block` on loopback, in their own temp folder and
    process groups, so that stopping them touches no other Ray on the machine (`ray stop` would stop all)."""

    def __init__(self, *, cpus_per_node: int = 2) -> None:
        self.tmp = tempfile.mkdtemp(prefix="nasc", dir="/tmp")
        self.port = free_port()
        self.procs: list[subprocess.Popen] = []
        self.env = dict(os.environ)
        if (Path.home() / ".ray" / "auth_token").is_file():  # the nodes authenticate like `ray start` would
            self.env["RAY_AUTH_MODE"] = "token"
        self.cpus = cpus_per_node

    def _start(self, *args: str) -> None:
        ray = str(Path(sys.executable).with_name("ray"))
        ports = []
        for flag in ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
                     "--metrics-export-port"):
            ports += [flag, str(free_port())]
        log = open(Path(self.tmp) / f"node{len(self.procs)}.log", "w")
        self.procs.append(subprocess.Popen(
            [ray, "start", "--block", "--temp-dir", self.tmp, "--num-cpus", str(self.cpus), "--disable-usage-stats",
             "--node-ip-address", "127.0.0.1", *ports, *args],
            start_new_session=True, stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def __enter__(self) -> LocalCluster:
        self._start("--head", "--port", str(self.port), "--include-dashboard=false", "--dashboard-port",
                    str(free_port()), "--ray-client-server-port", str(free_port()))
        deadline = time.time() + 120
        while probe("127.0.0.1", self.port, timeout=1.0) is not None:
            assert time.time() < deadline and self.procs[0].poll() is None, self.log()
            time.sleep(0.5)
        self._start("--address", f"127.0.0.1:{self.port}")
        return self

    def log(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(Path(self.tmp).glob("node*.log")))

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:  # each `ray start` leads its own process group: its raylet, GCS, agents
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.time() + 10
        while time.time() < deadline and any(p.poll() is None for p in self.procs):
            time.sleep(0.2)
        for p in self.procs:
            _signal_group(p.pid, signal.SIGKILL)
            p.wait()
        for _ in range(3):  # workers Ray moved to groups of their own: found by the files they hold in tmp
            if not kill_processes(processes_using(self.tmp)):
                break
            time.sleep(1)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


@pytest.mark.parametrize("epochs, budget", [pytest.param(1, 4, id="fast"),
                                           pytest.param(3, 8, id="long", marks=pytest.mark.slow)])
def test_search_on_a_two_node_cluster(tmp_path, epochs, budget):
    """`ray start` head + worker (2 CPUs each); `nas search` with ray.address, 2 CPUs per trial, 2 at a time:
    both nodes run trials, each trial's torch uses 2 threads; stopping the cluster leaves no process behind."""
    with LocalCluster(cpus_per_node=2) as cluster:
        cfg = {"name": "cluster", "data": {"name": "digits"},
               "space": {"strides": [1, 2], "base_widths": [8, 16], "width_mult": [0.5, 1.0], "depth": [1, 2],
                         "order": ["pre", "post"], "act": ["relu", "elu"]},
               "objectives": ["val_acc", "macs"], "proxy": {"epochs": epochs, "batch_size": 64, "lr": 0.05},
               "search": {"sampler": "random", "n_trials": budget, "max_concurrent": 2, "seed": 0},
               "ray": {"address": f"127.0.0.1:{cluster.port}", "cpus_per_trial": 2}}
        path = tmp_path / "cluster.yaml"
        path.write_text(yaml.safe_dump(cfg))
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS", "NAS_STORAGE_URL")}
        proc = subprocess.run([sys.executable, "-m", "search.cli", "search", str(path), "--results",
                               str(tmp_path / "results")], capture_output=True, text=True, timeout=900, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr + cluster.log()
        assert "InvalidAuthToken" not in proc.stderr
        trials = optuna.load_study(study_name="cluster",
                                   storage=f"sqlite:///{tmp_path / 'results' / 'cluster' / 'study.db'}").get_trials()
        assert len(trials) == budget and all(t.state.name == "COMPLETE" for t in trials)
        ran = [t for t in trials if "cached_from" not in t.user_attrs]
        assert all(t.user_attrs["threads"] == 2 for t in ran)
        assert len({t.user_attrs["node"] for t in ran}) == 2, [t.user_attrs["node"] for t in ran]
        tmp = cluster.tmp
    assert processes_using(tmp) == []


@pytest.mark.parametrize("exported, expected", [(None, 0), ("15", 15)])
def test_embedded_ray_runs_trials_at_normal_priority(tmp_path, exported, expected):
    """Ray's own default puts workers at niceness 15 (starved next to any other job); the embedded instance
    runs them at 0 unless the user exported RAY_worker_niceness, which is kept (15: Ray's default)."""
    ray_tmp = tempfile.mkdtemp(prefix="nasnice", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_worker_niceness", "RAY_ADDRESS")}
    if exported is not None:
        env["RAY_worker_niceness"] = exported
    code = ("import os, ray\nfrom search.cluster import connect\nfrom search.config import parse_config\n"
            f"connect(parse_config({{'ray': {{'num_cpus': 1, 'temp_dir': {ray_tmp!r}}}}}))\n"
            "print('nice', os.nice(0), ray.get(ray.remote(lambda: os.nice(0)).remote()))\nray.shutdown()\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    driver, worker = map(int, proc.stdout.split("nice ")[1].split()[:2])
    assert driver == 0 and worker == expected
