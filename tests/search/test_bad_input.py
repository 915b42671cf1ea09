"""Bad input never starts a search: every malformed config (`nas search`) or architecture (`nas show`) in
tests/search/bad_inputs/ gives exactly one stderr line naming the field or problem, exit code 2, no run
folder, no study and no traceback. Each file's first line says what the message must contain:
``# expect: <fragment>``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from search.cli import main

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES = sorted(CORPUS.glob("*.yaml"))


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: <fragment>'"
    return first.removeprefix("# expect: ").strip()


def command(path: Path, results: Path) -> list[str]:
    if path.name.startswith("config_"):
        return ["search", str(path), "--results", str(results)]
    assert path.name.startswith("arch_"), path.name
    return ["show", str(path)]


def test_corpus_is_large_and_covers_both_commands():
    assert len(CASES) >= 30
    assert sum(p.name.startswith("config_") for p in CASES) >= 20
    assert sum(p.name.startswith("arch_") for p in CASES) >= 10


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_input_gives_one_line_and_exit_2(path, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NAS_STORAGE_URL", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    results = tmp_path / "results"
    rc = main(command(path, results))
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert rc == 2, captured
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("nas: error: ") and expected(path) in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not results.exists() or not any(results.iterdir()), "a run folder was left behind"
    assert not Path("/tmp/nas-pwned").exists()  # a !!python tag is never executed


def test_no_ray_was_started_in_process():
    import ray

    assert not ray.is_initialized()


@pytest.mark.parametrize("name", ["config_ray_unreachable.yaml", "arch_python_tag.yaml"])
def test_end_to_end_subprocess_one_line_no_traceback(name, tmp_path):
    """The same property through a real `python -m search.cli` process (interpreter, logging, Ray imports)."""
    path = CORPUS / name
    results = tmp_path / "results"
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("NAS_STORAGE_URL", "RAY_ADDRESS")}
    proc = subprocess.run([sys.executable, "-m", "search.cli", *command(path, results)], capture_output=True,
                          text=True, timeout=120, env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and expected(path) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not results.exists() or not any(results.iterdir())


# --------------------------------------------------------------------------- inputs made by the test


def _one_line_exit_2(argv: list[str], capsys, fragment: str) -> str:
    rc = main(argv)
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, captured
    assert lines[0].startswith("nas: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["a/b", "../../x", "..", ".", "x/../../y"])
def test_name_option_is_one_folder_name(name, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NAS_STORAGE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work" / "results").mkdir(parents=True)
    path = CORPUS.parent.parent.parent / "configs" / "quickstart.yaml"
    _one_line_exit_2(["search", str(path), "--name", name, "--results", str(tmp_path / "work" / "results")], capsys,
                     "--name: must be a folder name")
    assert [p.name for p in tmp_path.rglob("*")] == ["work", "results"]  # nothing written, inside or outside


def _big(path: Path) -> None:  # valid YAML: a config followed by 10 MB of comment lines
    path.write_text("data: {name: digits}\n" + ("# " + "x" * 98 + "\n") * 100_000)


def _latin1(path: Path) -> None:
    path.write_bytes("data: {name: digits}\nname: caf\u00e9\n".encode("latin-1"))


@pytest.mark.parametrize("make, fragment", [(_big, "is 9.6 MiB; a config may be at most 1 MiB"),
                                            (_latin1, "is not UTF-8 text (byte 0xe9 at offset 30)")])
def test_oversized_or_non_utf8_config(make, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NAS_STORAGE_URL", raising=False)
    path = tmp_path / "bad.yaml"
    make(path)
    _one_line_exit_2(["search", str(path), "--results", str(tmp_path / "results")], capsys, fragment)
    assert not (tmp_path / "results").exists()


def test_unresponsive_database_fails_within_15_s(tmp_path, capsys, monkeypatch):
    """A port that accepts connections but never speaks (a firewall black hole, a hung server): libpq's
    connect timeout ends the wait, one line names the field, exit 2."""
    import socket
    import time

    monkeypatch.delenv("NAS_STORAGE_URL", raising=False)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        path = tmp_path / "pg.yaml"
        path.write_text(f"data: {{name: digits}}\nstorage: postgresql+psycopg2://nas@127.0.0.1:{port}/nas\n")
        t0 = time.monotonic()
        _one_line_exit_2(["search", str(path), "--results", str(tmp_path / "results")], capsys,
                         f"storage: cannot open '127.0.0.1:{port}/nas'")
        assert time.monotonic() - t0 <= 15
    assert not (tmp_path / "results").exists()


def _fake_run(tmp_path: Path, config: dict) -> tuple[Path, Path]:
    """A run folder as a driver leaves it after its first trial (config.yaml, run.json, a SQLite study with
    one COMPLETE trial), written through the same functions, without Ray."""
    import optuna
    import yaml

    from search.config import dump_config, parse_config
    from search.resume import fingerprint, write_record
    from search.storage import make_storage

    cfg = parse_config(config)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    run = tmp_path / "results" / cfg.name
    run.mkdir(parents=True)
    url = f"sqlite:///{run / 'study.db'}"
    study = optuna.create_study(storage=make_storage(url), study_name=cfg.name, directions=["maximize", "minimize"])
    study.set_user_attr("fingerprint", fingerprint(cfg))
    study.add_trial(optuna.trial.create_trial(values=[0.5, 1.0]))
    (run / "config.yaml").write_text(dump_config(cfg))
    write_record(run, study_name=cfg.name, storage_url=url, cfg=cfg)
    return path, run


def test_resume_with_a_changed_config_names_the_field(tmp_path, capsys, monkeypatch):
    import yaml

    monkeypatch.delenv("NAS_STORAGE_URL", raising=False)
    config = {"name": "r", "data": {"name": "digits"}, "proxy": {"epochs": 6}, "search": {"n_trials": 4}}
    path, run = _fake_run(tmp_path, config)
    before = _tree(run)
    path.write_text(yaml.safe_dump({**config, "proxy": {"epochs": 3}}))
    _one_line_exit_2(["search", str(path), "--results", str(tmp_path / "results"), "--resume"], capsys,
                     "proxy.epochs: the run was started with 6, the config says 3; resume with the run's config")
    assert _tree(run) == before


def test_resume_refuses_another_storage_than_run_json(tmp_path, capsys, monkeypatch):
    """The run is in RUN/study.db; resumed in a shell whose NAS_STORAGE_URL names another database, it must not
    open (and fill) that one."""
    path, run = _fake_run(tmp_path, {"name": "r", "data": {"name": "digits"}})
    before = _tree(run)
    other = tmp_path / "other.db"
    monkeypatch.setenv("NAS_STORAGE_URL", f"sqlite:///{other}")
    _one_line_exit_2(["search", str(path), "--results", str(tmp_path / "results"), "--resume"], capsys,
                     f"NAS_STORAGE_URL: gives 'sqlite:///{other}' but the run is stored in 'sqlite:///{run}/study.db'")
    assert _tree(run) == before and not other.exists()
