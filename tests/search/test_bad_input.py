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
