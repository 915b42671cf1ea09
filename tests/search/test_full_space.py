"""The full space (configs/full_space.yaml): every searchable choice open, only compatible combinations drawn.

The sampler offers a value only if the registries' checks accept some completion of the stage, so a
sample is valid or an :class:`InvalidSample` naming the reason, never an architecture that fails to build.
"""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from search import InvalidSample, SearchSpace, load_config, parse_config
from search.space_def import stage_problem
from space import ACTIVATIONS, ATTENTIONS, BLOCKS, NORMS, ORDERS, Arch, Stage, build_model, build_stage

optuna.logging.set_verbosity(optuna.logging.WARNING)
FULL = Path(__file__).resolve().parents[2] / "configs" / "full_space.yaml"
N_SAMPLES = 300


def _space(**space_kw) -> SearchSpace:
    return SearchSpace(parse_config({"space": space_kw}).space, input_size=32)


def _draw(sp: SearchSpace, n: int, seed: int = 0) -> list[tuple[dict, Arch | InvalidSample]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        try:
            arch = sp.sample(trial)
            out.append((trial.params, arch))
            study.tell(trial, 0.0)
        except InvalidSample as exc:
            out.append((trial.params, exc))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return out


@pytest.fixture(scope="module")
def full() -> SearchSpace:
    return SearchSpace(load_config(FULL).space, input_size=32)


@pytest.fixture(scope="module")
def samples(full) -> list[tuple[dict, Arch | InvalidSample]]:
    return _draw(full, N_SAMPLES)


def test_full_space_opens_every_searchable_choice(full):
    c = full.cfg
    for key, have, want in (("block", c.block, [e.name for e in BLOCKS if e.meta.get("searchable", True)]),
                            ("norm", c.norm, NORMS.names()), ("attention", c.attention, ATTENTIONS.names()),
                            ("order", c.order, ORDERS)):
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        assert not missing, f"configs/full_space.yaml does not open the registered {key} choice(s) {missing}: add " \
                            f"them to space.{key} (or register a block with searchable=False if it is an export format)"
        assert not extra, f"configs/full_space.yaml opens {key} choice(s) {extra} that are not searchable"
    assert {"basic_slim", "basic_lowrank"} <= set(BLOCKS.names()) - set(c.block)
    assert {"relu", "elu"} <= set(c.act) <= set(ACTIVATIONS.names()) and len(c.act) >= 5
    assert full.size() > 10 ** 9


def test_full_space_samples_are_valid_or_explained(full, samples):
    invalid = [s for _, s in samples if isinstance(s, InvalidSample)]
    valid = [s for _, s in samples if isinstance(s, Arch)]
    assert all(str(e).strip() for e in invalid)
    fraction = len(invalid) / len(samples)
    print(f"\nfull space: {len(samples)} samples, invalid fraction {fraction:.3f}")
    assert fraction <= 0.02
    seen = {f: {getattr(s, f) for a in valid for s in a.stages} for f in ("block", "norm", "attention", "act", "order")}
    c = full.cfg
    assert seen == {"block": set(c.block), "norm": set(c.norm), "attention": set(c.attention), "act": set(c.act),
                    "order": set(c.order)}
    for arch in valid:
        prev = arch.stem.width
        for i, stage in enumerate(arch.stages):
            assert stage_problem(stage, prev, stem_norm=i == 0 and arch.stem.norm_act) is None
            assert not (stage.block == "resattn" and stage.attention in ("nl", "nl_scaled"))  # search_exclude meta
            assert stage.block != "g_ghost" or stage.depth >= 3
            prev = stage.width


def test_full_space_samples_replay_from_their_params(full, samples):
    for params, arch in samples[:60]:
        if isinstance(arch, Arch):
            assert full.sample(optuna.trial.FixedTrial(params)).arch_id == arch.arch_id


def test_every_tenth_full_space_sample_builds_and_runs(samples):
    valid = [a for _, a in samples if isinstance(a, Arch)]
    for arch in valid[::10]:
        model = build_model(arch, num_classes=10)
        out = model(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 10) and torch.isfinite(out).all(), arch.to_yaml()


def test_stage_problem_names_the_inner_width_the_build_would_fail_on():
    stage = Stage("ghost", 1, 32, 2, norm="gn")  # the expanded width 3·16 = 48 is not a multiple of 32 groups
    assert stage_problem(stage, 16, where="stages[1]") == (
        "stages[1].norm: gn: width 48 not divisible by groups 32 (inner width 48 of block 'ghost')")
    with pytest.raises(ValueError, match="width 48 not divisible"):
        build_stage(stage, 16)
    assert stage_problem(Stage("ghost", 1, 128, 2, norm="gn"), 64) is None


def test_spec_error_becomes_a_readable_invalid_sample():
    sp = _space(block=["g_ghost"], order=["post"], depth=[1, 2])
    with pytest.raises(InvalidSample) as err:
        sp.sample(optuna.trial.FixedTrial({"s0.depth": 2}))
    msg = str(err.value)
    assert msg.startswith("stages[0]: no block of ['g_ghost'] fits after 16 input channels")
    assert "a G-Ghost stage needs depth >= 3" in msg and "got 1" in msg


def test_offers_follow_the_registries():
    # G-Ghost's depth check: its stages get depth 3 only, other blocks keep every depth
    sp = _space(block=["g_ghost", "basic"], order=["post"], depth=[1, 2, 3], per_stage=["block", "depth"])
    archs = [a for _, a in _draw(sp, 40)]
    assert all(isinstance(a, Arch) for a in archs)
    depths = {(s.block, s.depth) for a in archs for s in a.stages}
    assert {d for b, d in depths if b == "g_ghost"} == {3} and {d for b, d in depths if b == "basic"} == {1, 2, 3}
    # GhostNet's own SE excludes a stage attention; Residual Attention excludes non-local (search_exclude)
    sp = _space(block=["ghost", "resattn", "basic"], order=["pre", "post"], attention=["none", "se", "nl"],
                per_stage=["block", "attention"], block_args={"ghost": {"se": 0.25}})
    pairs = {(s.block, s.attention) for _, a in _draw(sp, 60) for s in a.stages}
    assert {a for b, a in pairs if b == "ghost"} == {"none"}
    assert {a for b, a in pairs if b == "resattn"} == {"none", "se"}
    assert {a for b, a in pairs if b == "basic"} == {"none", "se", "nl"}


def test_every_sample_suggests_the_same_names_and_shared_values_remap_per_stage():
    sp = _space(depth=[1, 2], width_mult=[0.5, 1.0], order=["pre", "post"], act=["relu", "elu"])
    for params, _arch in _draw(sp, 10):
        assert set(params) == {"s0.depth", "s1.depth", "s2.depth", "width_mult", "order.basic", "act"}
    # group norm is impossible inside a Ghost stage after 16 channels: that stage alone re-maps it (gn -> bn, the
    # next listed norm), the others keep the network's draw
    sp = _space(block=["ghost", "basic"], order=["post"], norm=["gn", "bn"], per_stage=["block"])
    params = {"s0.block": "basic", "s1.block": "ghost", "s2.block": "basic", "norm": "gn", "depth": 1}
    assert [s.norm for s in sp.sample(optuna.trial.FixedTrial(params)).stages] == ["gn", "bn", "gn"]
    params = {**params, "s0.block": "ghost", "s1.block": "basic"}
    assert [s.norm for s in sp.sample(optuna.trial.FixedTrial(params)).stages] == ["bn", "gn", "gn"]
    assert [s.norm for s in sp.sample(optuna.trial.FixedTrial({**params, "norm": "bn"})).stages] == ["bn"] * 3


@pytest.mark.parametrize("drawn, used", [(4, 4), (1, 3), (3, 3), (2, 4)])
def test_a_rejected_draw_goes_to_the_next_accepted_value_wrapping_around(drawn, used):
    """G-Ghost needs depth >= 3; with depths listed [4, 1, 3, 2], 1 goes forward to 3 and 2 wraps around to 4."""
    sp = _space(block=["g_ghost"], order=["post"], depth=[4, 1, 3, 2], stem_width=[16])
    arch = sp.sample(optuna.trial.FixedTrial({f"s{i}.depth": drawn for i in range(3)}))
    assert [s.depth for s in arch.stages] == [used] * 3


def test_a_fixed_option_no_stage_can_use_is_a_config_error():
    from search import ConfigError

    with pytest.raises(ConfigError, match=r"^space\.block_args\.sk: block_args\.groups=64 must divide"):
        parse_config({"space": {"block": ["sk"], "order": ["post"], "block_args": {"sk": {"groups": 64}}}})
    parse_config({"space": {"block": ["sk"], "order": ["post"], "width_mult": [1.0, 2.0],
                            "block_args": {"sk": {"groups": 64}}}})  # width 128 in the last stage: mid 64
