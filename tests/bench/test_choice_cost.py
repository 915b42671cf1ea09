"""bench/choice_cost.py: groups by network-wide and per-stage choices, checked on two hand-made rows."""
from __future__ import annotations

import pytest

from ._load import load_bench


def _arch(blocks: list[str], norm: str, att: str) -> str:
    stages = "".join(f"- {{block: {b}, depth: 1, width: 16, stride: 1, norm: {norm}, attention: {att}, act: relu, "
                     "order: pre}\n" for b in blocks)
    return f"stages:\n{stages}"


def test_groups_by_choice_by_hand(capsys):
    bench = load_bench("choice_cost")
    rows = [{"arch_yaml": _arch(["basic", "ghost"], "bn", "se"), "train_seconds": 10.0, "val_acc": 0.3},
            {"arch_yaml": _arch(["ghost", "ghost"], "gn", "none"), "train_seconds": 30.0, "val_acc": None}]
    g = bench.by_choice(rows)
    assert g[("block", "ghost")] == {"n": 2, "median_train_s": 20.0, "mean_val_acc": pytest.approx(0.2)}
    assert g[("block", "basic")]["n"] == 1 and g[("norm", "gn")]["mean_val_acc"] == 0.1  # diverged = chance
    assert ("attention", "se") in g and ("order", "pre") in g and g[("act", "relu")]["n"] == 2


def test_runs_on_the_committed_table(capsys):
    assert load_bench("choice_cost").main([]) == 0
    out = capsys.readouterr().out
    assert "networks, proxy" in out and "\nnorm=bn " in out and "\nblock=ghost " in out
