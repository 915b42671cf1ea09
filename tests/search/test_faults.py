"""Trial faults (search/faults.py): an exception, a NaN/inf loss, an out-of-memory error or a dying trial
process each fail only their own trial, with the reason in the storage and trials.csv; an OOM is retried
once at half the batch; a search with 30% injected faults finishes its budget and reports the counts.

The Ray searches run in this process on one small embedded Ray instance (scikit-learn's digits, 1 epoch).
"""
from __future__ import annotations

import csv
import json
import math
import shutil
import tempfile

import optuna
import pytest
import torch

from search.config import parse_config
from search.evaluation import ArchEvaluation
from search.faults import (
    FAULT_KINDS,
    FaultInjector,
    InjectedFault,
    fault_kind,
    fault_summary,
    is_oom,
    train_with_oom_retry,
)
from search.run import search_from_config
from search.space_def import SearchSpace
from space import Arch, Head, Stage, Stem
from train import NonFiniteLossError

SPACE = {"strides": [1, 2], "base_widths": [8, 16], "width_mult": [0.5, 1.0], "depth": [1], "order": ["pre", "post"],
         "act": ["relu", "elu"]}


def small_config(name: str, **over) -> dict:
    """A digits search small enough for a test: 2 stages, 1 epoch, 2 trials at a time."""
    cfg = {"name": name, "data": {"name": "digits"}, "space": dict(SPACE), "objectives": ["val_acc", "macs"],
           "proxy": {"epochs": 1, "batch_size": 64, "lr": 0.05},
           "search": {"sampler": "random", "n_trials": 4, "max_concurrent": 2, "seed": 0}}
    for key, value in over.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def tiny_arch(width: int = 8) -> Arch:
    return Arch(stem=Stem(width=8), stages=(Stage(block="basic", depth=1, width=width, stride=1),
                                            Stage(block="basic", depth=1, width=16, stride=2)),
                head=Head(), input_size=16)


@pytest.fixture(scope="module")
def local_ray():
    """One embedded Ray for this module's searches, in its own short temp folder; shut down afterwards."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    tmp = tempfile.mkdtemp(prefix="nasf", dir="/tmp")
    ray.init(num_cpus=2, _temp_dir=tmp, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- no Ray


def test_is_oom_recognises_the_three_forms():
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_oom(MemoryError())
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 1 bytes. Error code 12 (Cannot allocate memory); out of memory"))
    assert not is_oom(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_oom(ValueError("out of memory"))  # not a RuntimeError: a message alone is not enough


def test_fault_kind_of_real_reasons():
    assert fault_kind("NonFiniteLossError: non-finite training loss nan at iteration 1") == "nan"
    assert fault_kind("OutOfMemoryError: CUDA out of memory at batch size 64") == "oom"
    assert fault_kind("InjectedFault: injected trial exception") == "exception"
    assert fault_kind("ZeroDivisionError: division by zero") == "exception"
    assert fault_kind("InvalidSample: stages[0].norm: gn: width 8 not divisible by groups 32") == "invalid"
    assert fault_kind("ConstraintViolation: constraints.max_macs: 2e+06 > 1e+06") == "constraint"
    assert fault_kind("interrupted: the search driver stopped") == "interrupted"
    assert fault_kind("the trial process died or raised outside the evaluation (see error.txt)") == "crash"


def test_injector_is_seeded_per_architecture_and_hits_its_rate():
    inj = FaultInjector(rate=0.3, kinds=["exception", "nan", "oom"], seed=0)
    ids = [f"{i:012x}" for i in range(3000)]
    plans = [inj.plan(a) for a in ids]
    assert plans == [FaultInjector(rate=0.3, kinds=["exception", "nan", "oom"], seed=0).plan(a) for a in ids]
    assert plans != [FaultInjector(rate=0.3, kinds=["exception", "nan", "oom"], seed=1).plan(a) for a in ids]
    hit = [p for p in plans if p is not None]
    assert abs(len(hit) / len(ids) - 0.3) < 0.03
    assert {p: hit.count(p) for p in set(hit)}.keys() == {"exception", "nan", "oom"}
    assert all(FaultInjector(rate=0.0, kinds=["nan"]).plan(a) is None for a in ids[:100])
    assert all(FaultInjector(rate=1.0, kinds=["nan"]).plan(a) == "nan" for a in ids[:100])
    with pytest.raises(ValueError, match="faults.inject.kinds"):
        FaultInjector(rate=0.5, kinds=["meltdown"])


def test_oom_retry_halves_batch_and_lr_once():
    calls = []

    def train(batch_size, lr):
        calls.append((batch_size, lr))
        if batch_size > 32:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory at batch {batch_size}")
        return {"val_acc": 0.5}

    assert train_with_oom_retry(train, batch_size=64, lr=0.1, retry=True) == \
        {"val_acc": 0.5, "batch_size": 32, "oom_retries": 1}
    assert calls == [(64, 0.1), (32, 0.05)]
    calls.clear()
    with pytest.raises(torch.cuda.OutOfMemoryError, match="also at the retry with batch size 64"):
        train_with_oom_retry(train, batch_size=128, lr=0.1, retry=True)  # 128 → 64 still too big: one retry only
    assert calls == [(128, 0.1), (64, 0.05)]
    calls.clear()
    with pytest.raises(torch.cuda.OutOfMemoryError):
        train_with_oom_retry(train, batch_size=64, lr=0.1, retry=False)
    assert calls == [(64, 0.1)]

    def broken(batch_size, lr):
        calls.append(batch_size)
        raise ValueError("not memory")

    calls.clear()
    with pytest.raises(ValueError):
        train_with_oom_retry(broken, batch_size=64, lr=0.1, retry=True)
    assert calls == [64]  # other errors are never retried


def test_injected_nan_diverges_in_the_real_training_loop():
    cfg = parse_config(small_config("nan", faults={"inject": {"rate": 1.0, "kinds": ["nan"]}}))
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        ArchEvaluation(cfg, threads=1)(tiny_arch())


def test_injected_oom_is_rescued_by_the_retry_or_fails_without_it():
    inject = {"inject": {"rate": 1.0, "kinds": ["oom"]}}
    cfg = parse_config(small_config("oom", faults=inject))
    out = ArchEvaluation(cfg, threads=1)(tiny_arch())
    assert out["batch_size"] == 32 and out["oom_retries"] == 1 and 0.0 <= out["val_acc"] <= 1.0
    cfg = parse_config(small_config("oom", faults={**inject, "oom_retry": False}))
    with pytest.raises(torch.cuda.OutOfMemoryError, match="injected"):
        ArchEvaluation(cfg, threads=1)(tiny_arch())
    cfg = parse_config(small_config("exc", faults={"inject": {"rate": 1.0, "kinds": ["exception"]}}))
    with pytest.raises(InjectedFault):
        ArchEvaluation(cfg, threads=1)(tiny_arch())


# --------------------------------------------------------------------------- real Ray searches


def _sampled_arch_ids(cfg, n: int) -> list[str]:
    """The first ``n`` distinct architectures a fresh search of ``cfg`` draws (its seeded random sampler, asked in
    order; a re-proposal is answered from the stored trial and not evaluated again)."""
    space = SearchSpace(cfg.space, input_size=16)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=cfg.search.seed))
    distinct: dict[str, None] = {}
    while len(distinct) < n:
        distinct.setdefault(space.sample(study.ask()).arch_id)
    return list(distinct)


def test_search_with_30_percent_faults_finishes_and_reports_them(local_ray, tmp_path):
    """search_from_config with faults.inject at 30% over every kind, OOM retry on (the default): the 12-trial
    budget finishes; exception, NaN and crash trials are FAIL with their reasons (storage and trials.csv),
    OOM trials COMPLETE at half the batch; the counts reach the progress output and summary.json."""
    base = parse_config(small_config("f30", space={"depth": [1, 2]}, search={"n_trials": 12}))
    sampled = _sampled_arch_ids(base, 12)
    seed = next(s for s in range(1000)  # an injection seed under which this search meets every kind
                if set(FAULT_KINDS) <= {FaultInjector(rate=0.3, kinds=FAULT_KINDS, seed=s).plan(a) for a in sampled})
    inj = FaultInjector(rate=0.3, kinds=FAULT_KINDS, seed=seed)
    cfg = parse_config({**base.model_dump(mode="json"),
                        "faults": {"inject": {"rate": 0.3, "kinds": list(FAULT_KINDS), "seed": seed}}})
    lines: list[str] = []
    run = tmp_path / "f30"
    search_from_config(cfg, run_dir=run, out=lines.append)

    stored = optuna.load_study(study_name="f30", storage=f"sqlite:///{run / 'study.db'}").get_trials()
    trials = [t for t in stored if "cached_from" not in t.user_attrs]
    assert [t.user_attrs["arch_id"] for t in trials] == sampled  # the budget finished, in the expected order
    for t in stored:  # a re-proposal: recorded with its source's outcome, never evaluated again
        if "cached_from" in t.user_attrs and not t.user_attrs.get("fail_reason", "").startswith("duplicate:"):
            src = stored[t.user_attrs["cached_from"]]
            assert (t.state, t.user_attrs["arch_id"]) == (src.state, src.user_attrs["arch_id"])
    reasons = {"exception": "InjectedFault: injected trial exception", "nan": "NonFiniteLossError: non-finite "
               "training loss", "crash": "the trial process died"}
    expected = {"failed": 0, "by_kind": {}, "oom_retried": 0}
    for t in trials:
        kind = inj.plan(t.user_attrs["arch_id"])
        if kind in reasons:
            assert t.state.name == "FAIL", (kind, t.user_attrs)
            assert t.user_attrs["fail_reason"].startswith(reasons[kind]), (kind, t.user_attrs["fail_reason"])
            expected["failed"] += 1
            expected["by_kind"][kind] = expected["by_kind"].get(kind, 0) + 1
        else:
            assert t.state.name == "COMPLETE" and math.isfinite(t.values[0]) and 0.0 <= t.values[0] <= 1.0
            assert t.user_attrs["batch_size"] == (32 if kind == "oom" else 64)
            assert t.user_attrs["oom_retries"] == (kind == "oom")
            expected["oom_retried"] += kind == "oom"
    assert expected["by_kind"].keys() == reasons.keys() and expected["oom_retried"] >= 1

    summary = json.loads((run / "summary.json").read_text())
    assert summary["faults"] == {**expected, "by_kind": dict(sorted(expected["by_kind"].items()))}
    assert summary["faults"] == fault_summary(stored)
    assert any(ln.startswith(f"finished 12 trial(s) this run, {expected['failed']} failed (") for ln in lines), lines
    rows = {int(r["number"]): r for r in csv.DictReader(open(run / "trials.csv"))}
    for t in stored:
        assert rows[t.number]["state"] == t.state.name
        assert rows[t.number]["fail_reason"] == (t.user_attrs["fail_reason"] if t.state.name == "FAIL" else "")
