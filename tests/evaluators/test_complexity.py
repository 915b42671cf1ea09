"""Params / fvcore FLOPs / conv+linear MACs, the per-stage table and the complexity evaluator."""
from __future__ import annotations

import torch.nn as nn

import space
from evaluators import ComplexityEvaluator
from space.complexity import count_complexity, layer_table


def test_wrn_28_10_macs_match_published():
    model = space.build_model(space.get_preset("wrn-28-10"), num_classes=10)
    out = count_complexity(model, input_size=32, in_chans=3)
    assert abs(out["macs"] - 5.24e9) / 5.24e9 < 0.01  # WRN-28-10 on CIFAR: 5.24 G multiply-adds
    assert out["params"] == sum(p.numel() for p in model.parameters())
    assert out["flops"] > out["macs"]  # fvcore also counts batch-norm and pooling


def test_hand_counted_macs_and_mode_restored():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    model.train()
    out = count_complexity(model, input_size=8, in_chans=3)
    assert out["macs"] == 8 * 3 * 9 * 64 + 8 * 10
    assert out["params"] == (8 * 3 * 9 + 8) + 2 * 8 + (8 * 10 + 10)
    assert model.training


def test_grouped_conv_macs():
    model = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)  # depthwise
    assert count_complexity(model, input_size=4, in_chans=16)["macs"] == 16 * 9 * 16


def test_layer_table_sums_to_total():
    model = space.build_model(space.get_preset("wrn-16-4"), num_classes=10)
    rows = layer_table(model, input_size=32, in_chans=3)
    total = count_complexity(model, input_size=32, in_chans=3)
    assert [r["name"] for r in rows][:4] == ["stem", "stages.0", "stages.1", "stages.2"]
    assert rows[-1]["name"] == "classifier" and rows[-1]["out_shape"] == (1, 10)
    assert rows[1]["out_shape"] == (1, 64, 32, 32) and rows[3]["out_shape"] == (1, 256, 8, 8)
    assert sum(r["macs"] for r in rows) == total["macs"]
    assert sum(r["params"] for r in rows) == total["params"]


def test_complexity_evaluator():
    ev = ComplexityEvaluator(num_classes=10, in_chans=1)
    arch = space.wrn(10, 1, input_size=16)
    out = ev.evaluate(arch)
    assert ev.cheap and ev.name == "complexity" and set(out) == {"params", "flops", "macs"}
    ref = count_complexity(space.build_model(arch, num_classes=10, in_chans=1), input_size=16, in_chans=1)
    assert out == {k: float(v) for k, v in ref.items()}
    bigger = ev.evaluate(space.wrn(10, 1, input_size=32))
    assert bigger["macs"] > 3.5 * out["macs"] and bigger["params"] == out["params"]


def test_count_cache_file_is_shared_by_evaluators_and_keyed_by_input_and_code(tmp_path, monkeypatch):
    """A second evaluator (another process or run) reads the first one's counts from the file instead of
    counting; another input size or another ``space`` source hash is another key and is counted afresh."""
    import sqlite3

    import evaluators.complexity as cx

    arch = space.wrn(10, 1, input_size=16)
    direct = {k: float(v) for k, v in count_complexity(space.build_model(arch, num_classes=10, in_chans=1),
                                                       input_size=16, in_chans=1).items()}
    path = tmp_path / "counts.sqlite"
    assert ComplexityEvaluator(num_classes=10, in_chans=1, cache_file=path).evaluate(arch) == direct
    with sqlite3.connect(path) as con:  # read back with the plain sqlite3 module
        assert con.execute("SELECT COUNT(*) FROM counts").fetchone()[0] == 1

    calls = []
    monkeypatch.setattr(cx, "count_complexity", lambda *a, **k: calls.append(1) or count_complexity(*a, **k))
    second = ComplexityEvaluator(num_classes=10, in_chans=1, cache_file=path)
    assert second.evaluate(arch) == direct and calls == []  # from the file, not counted
    assert second.evaluate(space.wrn(10, 1, input_size=32))["macs"] > 3.5 * direct["macs"] and len(calls) == 1
    monkeypatch.setattr(cx, "space_code_hash", lambda: "another-version")
    assert ComplexityEvaluator(num_classes=10, in_chans=1, cache_file=path).evaluate(arch) == direct
    assert len(calls) == 2  # a block's code changed: never reuse the old count


def test_count_cache_setting_resolves_paths_and_refuses_a_folder(tmp_path, monkeypatch):
    import pytest

    from evaluators.complexity import ComplexitySettings

    monkeypatch.chdir(tmp_path)
    assert ComplexitySettings(cache_file="c.sqlite").cache_file == str(tmp_path / "c.sqlite")
    with pytest.raises(ValueError, match="is a folder"):
        ComplexitySettings(cache_file=str(tmp_path))
