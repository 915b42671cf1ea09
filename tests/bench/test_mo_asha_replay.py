"""bench/mo_asha_replay.py: the full-budget row is exactly the reference, our MO-ASHA stops the trials the rung rule
(stop iff b/n > 1/η) stops on a table worked out by hand, and with one objective — where the reference semantics
are ASHA's in both — Syne Tune's MOASHA makes the very same decisions."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from ._load import load_bench


@pytest.fixture(scope="module")
def rp():
    return load_bench("mo_asha_replay")


def _row(acc_by_epoch: dict[int, float], macs: float, max_t: int = 9) -> dict:
    """A curve holding each given accuracy from its epoch on (epoch 1's before that)."""
    curve, acc = [], acc_by_epoch[1]
    for e in range(1, max_t + 1):
        acc = acc_by_epoch.get(e, acc)
        curve.append(acc)
    return {"arch_id": f"a{macs:g}", "val_acc": curve, "macs": macs}


# η = 3, max_t = 9: rungs at epochs 1 and 3; arrivals one at a time, in this order.
HAND = [
    _row({1: 0.5, 3: 0.8, 9: 0.85}, 10),   # T0: first at rung 1 and at rung 3 → continues to the end
    _row({1: 0.4}, 20),                    # T1: dominated by T0 at rung 1: b/n = 1/2 > 1/3 → stop after epoch 1
    _row({1: 0.6, 3: 0.7}, 30),            # T2: rung 1 front {T0, T2}, at worst b = 1: 1/3 ≤ 1/3 → on;
                                           #     rung 3 dominated by T0: 1/2 > 1/3 → stop after epoch 3
    _row({1: 0.9, 3: 0.95, 9: 0.97}, 5),   # T3: dominates every result at both rungs (b = 0) → to the end
    _row({1: 0.1}, 100),                   # T4: dominated by all four at rung 1: 4/5 > 1/3 → stop after epoch 1
]


@pytest.mark.parametrize("ranking", ["epsnet", "crowding", "hypervolume"])
def test_ours_stops_exactly_the_trials_the_rung_rule_stops(rp, ranking):
    policy = rp.Ours(objectives=["val_acc", "macs"], max_t=9, eta=3, ranking=ranking)
    trained, complete = rp.replay(HAND, policy, objectives=["val_acc", "macs"], max_t=9)
    assert trained == [9, 1, 3, 9, 1] and complete == {0, 3}
    assert policy.scheduler.num_stopped == 0  # decide() alone: the count belongs to on_trial_result/replay


def test_none_is_the_full_budget_and_ours_on_the_hand_table_keeps_the_front(rp):
    table = {"max_t": 9, "rows": HAND}
    res = rp.bench(table, seeds=3, trials=None, eta=3, rankings=["epsnet"], peers=False, concurrent=1,
                   objectives=["val_acc", "macs"])
    assert [r["none"]["compute"] for r in res["per_seed"]] == [1.0] * 3
    assert [r["none"]["hv"] for r in res["per_seed"]] == [1.0] * 3
    first = res["per_seed"][0]["ours/epsnet"]
    # T3 dominates every final point, so whichever trials complete, hv is the full run's as long as T3 does
    assert first["hv"] == pytest.approx(1.0, abs=1e-12) and 0 < first["compute"] < 1


def test_none_row_on_the_committed_table(rp):
    res = rp.bench(rp.load_table(rp.TABLE), seeds=2, trials=None, eta=3, rankings=["epsnet"], peers=True,
                   concurrent=2, objectives=["val_acc", "macs"])
    none = res["summary"]["none"]
    assert none["compute_mean"] == 1.0 and none["compute_sd"] == 0.0
    assert none["hv_mean"] == 1.0 and none["hv_sd"] == 0.0
    for name in ("ours/epsnet", "syne_tune"):
        assert 0 < res["summary"][name]["compute_mean"] < 1 and 0 < res["summary"][name]["hv_mean"] <= 1


def _random_table(seed: int, n: int = 60, max_t: int = 9) -> list[dict]:
    """Noisy rising curves with many equal accuracies (rounded to 1/20), so ties are exercised too."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        final = rng.uniform(0.5, 1.0)
        curve = final - (final - 0.1) * np.exp(-np.arange(1, max_t + 1) / rng.uniform(0.5, 4)) \
            + rng.normal(0, 0.05, max_t)
        rows.append({"arch_id": f"r{i}", "val_acc": (np.round(curve * 20) / 20).tolist(), "macs": float(i + 1)})
    return rows


@pytest.mark.parametrize("eta,concurrent", [(3, 1), (3, 4), (2, 3)])
def test_single_objective_ours_and_syne_tune_decide_alike(rp, eta, concurrent):
    for seed in range(3):
        rows = _random_table(seed)
        runs = [rp.replay(rows, policy, objectives=["val_acc"], max_t=9, concurrent=concurrent)
                for policy in (rp.Ours(objectives=["val_acc"], max_t=9, eta=eta, ranking="epsnet"),
                               rp.SyneTune(objectives=["val_acc"], max_t=9, eta=eta))]
        assert runs[0] == runs[1]
        assert 0 < len(runs[0][1]) < len(rows)  # some stopped, some completed: the comparison is not vacuous


def test_missing_syne_tune_is_one_line_and_exit_2(rp, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "syne_tune", None)  # import syne_tune now raises ImportError
    assert rp.main(["--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("syne-tune: not installed")


def test_json_holds_the_printed_summary(rp, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert rp.main(["--seeds", "2", "--trials", "20", "--ranking", "crowding", "--no-peers", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert list(doc["summary"]) == ["none", "ours/crowding"] and doc["settings"]["trials"] == 20
    assert f"{doc['summary']['ours/crowding']['compute_mean']:.1%}" in capsys.readouterr().out


def test_hand_table_syne_tune_agrees_and_the_documented_difference_shows(rp):
    objectives = ["val_acc", "macs"]
    syne = rp.replay(HAND, rp.SyneTune(objectives=objectives, max_t=9, eta=3), objectives=objectives, max_t=9)
    assert syne == ([9, 1, 3, 9, 1], {0, 3})
    # Syne Tune reads its priorities (row indices in ranked order, best first) as ranks, so it decides by the
    # index of the row ranked last: T3 dominates all three earlier results (our b = 0: continue), but the order
    # [T3, T0, T1, T2] ends in row 2, 2/4 > 1/3, and Syne Tune stops it (search/schedulers/mo_asha.py docstring).
    diff = [_row({1: 0.5, 3: 0.6}, 10), _row({1: 0.3}, 20), _row({1: 0.2}, 30), _row({1: 0.9, 3: 0.95}, 5)]
    ours = rp.replay(diff, rp.Ours(objectives=objectives, max_t=9, eta=3, ranking="epsnet"), objectives=objectives,
                     max_t=9)
    syne = rp.replay(diff, rp.SyneTune(objectives=objectives, max_t=9, eta=3), objectives=objectives, max_t=9)
    assert ours == ([9, 1, 1, 9], {0, 3})
    assert syne == ([9, 1, 1, 1], {0})


def test_rung_fidelity_is_the_rank_correlation_with_the_final_accuracy(rp):
    rows = [{"val_acc": [0.1 * k, 0.2 * k, 0.5 * k, 0.9 * k]} for k in (1, 2, 3)]  # same order at every epoch
    assert rp.rung_fidelity(rows, max_t=4, eta=3) == {1: pytest.approx(1.0), 3: pytest.approx(1.0)}
    rows = [{"val_acc": [0.3 - 0.1 * k, 0.1 * k, 0.2 * k, 0.9 * k]} for k in (1, 2, 3)]  # reversed at epoch 1
    assert rp.rung_fidelity(rows, max_t=4, eta=3)[1] == pytest.approx(-1.0)


class _Log:
    """Continues every trial and records the reports in the order they arrive."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def add(self, trial: int) -> None:
        self.seen.append((trial, 0))

    def report(self, trial: int, epoch: int, values) -> bool:
        self.seen.append((trial, epoch))
        return True

    def complete(self, trial: int, epoch: int, values) -> None:
        self.report(trial, epoch, values)


def test_concurrent_workers_report_in_the_order_epochs_end(rp):
    rows = [{"val_acc": [0.5] * 3, "seconds": 9.0}, {"val_acc": [0.5] * 3, "seconds": 3.0},
            {"val_acc": [0.5] * 3, "seconds": 6.0}]  # epochs of 3 s, 1 s, 2 s
    log = _Log()
    assert rp.replay(rows, log, objectives=["val_acc"], max_t=3, concurrent=2) == ([3, 3, 3], {0, 1, 2})
    # t=1: T1 e1; t=2: T1 e2; t=3: T0 e1 and T1 e3 (tie: T0 started first), T2 starts; t=5: T2 e1;
    # t=6: T0 e2; t=7: T2 e2; t=9: T0 e3, T2 e3
    assert log.seen == [(0, 0), (1, 0), (1, 1), (1, 2), (0, 1), (1, 3), (2, 0), (2, 1), (0, 2), (2, 2), (0, 3),
                        (2, 3)]
    sequential = _Log()
    rp.replay(rows, sequential, objectives=["val_acc"], max_t=3, concurrent=1)
    assert sequential.seen == [(i, e) for i in range(3) for e in range(4)]
