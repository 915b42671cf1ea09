"""Sampling the configured space: define-by-run, no computation, replayable from the params."""
from __future__ import annotations

import optuna
import pytest

from search import InvalidSample, SearchSpace, parse_config
from space import from_yaml

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space(**space_kw) -> SearchSpace:
    return SearchSpace(parse_config({"space": space_kw}).space, input_size=32)


def test_sample_is_valid_and_replayable():
    sp = _space(depth=[1, 2, 3], width_mult=[0.5, 1.0], order=["pre", "post"], act=["relu", "elu"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        arch = sp.sample(trial)
        assert from_yaml(arch.to_yaml()) == arch
        replay = sp.sample(optuna.trial.FixedTrial(trial.params))
        assert replay.arch_id == arch.arch_id
        seen.add(arch.arch_id)
        study.tell(trial, 0.0)
    assert len(seen) > 5


def test_space_size_counts_choices():
    sp = _space(depth=[1, 2, 3], width_mult=[0.5, 1.0], order=["pre", "post"], per_stage=["depth"])
    assert sp.size() == 3 ** 3 * 2 * 2
    sp = _space(depth=[1, 2], per_stage=["depth", "act"], act=["relu", "elu"])
    assert sp.size() == 2 ** 3 * 2 ** 3


def test_per_stage_choices_differ_between_stages():
    sp = _space(depth=[1, 2, 3, 4], per_stage=["depth"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    depths = set()
    for _ in range(10):
        arch = sp.sample(study.ask())
        depths.add(tuple(s.depth for s in arch.stages))
    assert any(len(set(d)) > 1 for d in depths)


def test_impossible_stride_is_invalid_sample():
    cfg = parse_config({"space": {"strides": [2, 2, 2, 2, 2], "base_widths": [8, 8, 8, 8, 8]}}).space
    sp = SearchSpace(cfg, input_size=16)
    with pytest.raises(InvalidSample, match="total stride"):
        sp.sample(optuna.trial.FixedTrial({"s0.depth": 1, "s1.depth": 1, "s2.depth": 1, "s3.depth": 1,
                                           "s4.depth": 1}))


def test_sample_archs_draws_distinct_architectures_until_the_space_is_exhausted():
    import itertools

    from search import sample_archs

    sp = _space(depth=[1, 2], width_mult=[0.5, 1.0])
    params = sp.parameters()
    every = {sp.sample(optuna.trial.FixedTrial(dict(zip(params, values)))).arch_id
             for values in itertools.product(*params.values())}  # the space enumerated point by point
    archs = sample_archs(sp, len(every) + 5, seed=3)
    assert len(every) == sp.size() and {a.arch_id for a in archs} == every  # exhausted: each one once, no more
    first = sample_archs(sp, 4, seed=3)
    assert len({a.arch_id for a in first}) == 4
    assert [a.arch_id for a in first] == [a.arch_id for a in archs[:4]]  # seeded draw order
    assert [a.arch_id for a in sample_archs(sp, 4, seed=4)] != [a.arch_id for a in first]
