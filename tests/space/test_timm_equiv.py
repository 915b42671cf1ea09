"""Presets of space/preset_data/timm_equiv.yaml rebuild a timm model exactly, and match their golden numbers."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import timm
import yaml

from space import build_model, get_preset, preset_meta
from space.complexity import count_complexity

logging.getLogger("fvcore").setLevel(logging.ERROR)
GOLDEN = yaml.safe_load((Path(__file__).resolve().parents[1] / "golden.yaml").read_text())
TIMM = {"wide-resnet50-2": ("wide_resnet50_2", 68_883_240)}  # preset -> timm model, its params


@pytest.mark.parametrize("name", sorted(TIMM))
def test_preset_has_timm_models_parameters_exactly(name):
    ours = build_model(get_preset(name), num_classes=1000)
    model, params = TIMM[name]
    theirs = timm.create_model(model, num_classes=1000)
    assert sorted(tuple(p.shape) for p in ours.parameters()) == sorted(tuple(p.shape) for p in theirs.parameters())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == params


@pytest.mark.parametrize("name", sorted(TIMM))
def test_preset_matches_golden_params_and_macs(name):
    golden, meta = GOLDEN[name], preset_meta(name)
    assert meta["published"]["params"] == golden["params"] and meta["published"]["macs"] == golden["macs"]
    arch = get_preset(name)
    got = count_complexity(build_model(arch, num_classes=golden["num_classes"]), input_size=golden["input_size"],
                           in_chans=3)
    assert got["params"] == pytest.approx(golden["params"], rel=golden["tolerance"])
    assert got["macs"] == pytest.approx(golden["macs"], rel=golden["tolerance"])
