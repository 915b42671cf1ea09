"""bench/screen.py: one tiny real run with and without screening (the screened search trains as many trials and
records the rest as screened out), the table's layout, and bad options as one line."""
from __future__ import annotations

import json

import pytest

from ._load import load_bench


def test_screen_bench_runs_both_modes(tmp_path, cifar_dir, capsys):
    bench = load_bench("screen")
    out = tmp_path / "r.json"
    assert bench.main(["--samplers", "random", "--seeds", "1", "--trials", "3", "--candidates", "2",
                       "--data-dir", str(cifar_dir), "--json", str(out)]) == 0
    r = json.loads(out.read_text())["random"]
    assert r["off"]["screened"]["mean"] == 0 and 1 <= r["screen"]["screened"]["mean"] <= 3  # 2 candidates per trial
    for mode in ("off", "screen"):
        assert 0.1 <= r[mode]["best_acc"]["3"]["mean"] <= 0.9407 and 0 < r[mode]["hv_fraction"]["3"]["mean"] <= 1
    text = capsys.readouterr().out
    assert "screen: synflow best of 2" in text and "\nrandom  screen " in text


@pytest.mark.parametrize("argv, message", [
    (["--samplers", "nope"], "--samplers: unknown nope; valid: "),
    (["--metric", "val_acc", "--seeds", "1", "--trials", "1"], "search.screen.metric: 'val_acc' is not cheap"),
    (["--candidates", "1", "--seeds", "1", "--trials", "1"], "search.screen.candidates: must be greater"),
])
def test_bad_options_are_one_line(argv, message, cifar_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        load_bench("screen").main([*argv, "--data-dir", str(cifar_dir)])
    assert exc.value.code == 2 and message in capsys.readouterr().err
