"""`nas latency ARCH` through a real process: the JSON keys, ratio × the stored reference (reused by the next call,
replaced by --recalibrate), the plain protocol, and bad input as one line with exit code 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


QUICK = ("--input-size", "16", "--in-chans", "1", "--max-seconds", "1")


def _nas(*argv: str, tmp: Path) -> subprocess.CompletedProcess:
    # TMPDIR: the machine's reference file (in the per-user lock folder of the temp folder) is the test's own
    env = {**os.environ, "TMPDIR": str(tmp),
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "search.cli", "latency", *argv], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=300)


def test_json_interleaved_then_reused_reference_then_plain(tmp_path):
    arch = tmp_path / "a.yaml"
    first = _nas("wrn-10-1", *QUICK, "--json", tmp=tmp_path)
    assert first.returncode == 0, first.stderr
    r = json.loads(first.stdout)
    assert {"latency_ms", "ci_ms", "repeats", "protocol", "reference_ms", "ratio"} <= set(r)
    assert r["protocol"] == "interleaved" and r["repeats"] >= 6 and r["ci_ms"] >= 0
    assert r["latency_ms"] == pytest.approx(r["ratio"] * r["reference_ms"]) and (r["batch"], r["input_size"]) == (1, 16)
    # a YAML file of the same architecture, measured again: the same stored reference scales it
    arch.write_text(_show_yaml("wrn-10-1"))
    again = json.loads(_nas(str(arch), *QUICK, "--json", tmp=tmp_path).stdout)
    assert again["reference_ms"] == r["reference_ms"] and again["arch_id"] == r["arch_id"]
    fresh = json.loads(_nas("wrn-10-1", *QUICK, "--json", "--recalibrate", tmp=tmp_path).stdout)
    assert fresh["reference_ms"] != r["reference_ms"]  # measured afresh (a float equal to the last bit: never)
    plain = _nas("wrn-10-1", *QUICK, "--protocol", "plain", tmp=tmp_path)
    assert plain.returncode == 0 and "protocol  plain" in plain.stdout and "latency " in plain.stdout


def _show_yaml(name: str) -> str:
    from space import load_arch

    return load_arch(name).to_yaml()


@pytest.mark.parametrize("argv, fragment", [
    (["wrn-16-1", "--device", "tpu"], "--device: unknown device 'tpu'; valid: cpu, cuda"),
    (["wrn-16-1", "--protocol", "abab"], "--protocol: must be one of plain, interleaved; got 'abab'"),
    (["wrn-16-1", "--threads", "-2"], "--threads: must be >= 0"),
    (["wrn-16-1", "--max-seconds", "0"], "--max-seconds: must be > 0"),
    (["no-such-net"], "'no-such-net' is neither a YAML file nor a preset"),
    (["missing.yaml"], "file 'missing.yaml' does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(argv, fragment, capsys):
    from search.cli import main

    rc = main(["latency", *argv])
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, captured
    assert lines[0].startswith("nas: error: ") and fragment in lines[0], lines[0]
    assert captured.out == "" and "Traceback" not in captured.err


def test_bad_input_in_a_real_process(tmp_path):
    proc = _nas("wrn-16-1", "--device", "tpu", tmp=tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "--device: unknown device 'tpu'" in lines[0], proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
