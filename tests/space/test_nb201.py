"""NAS-Bench-201's cell, reduction block and skeleton: the paper's equations, the benchmark's own counts, presets."""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from space import Arch, Layers, SpecError, build_model, from_yaml, get_preset, load_arch, nb201
from space.blocks.nb201 import NB201_OPS, Nb201Cell, Nb201Reduction, nb201_arch_str, parse_nb201_ops
from space.complexity import count_complexity

logging.getLogger("fvcore").setLevel(logging.ERROR)
GOLDEN = yaml.safe_load((Path(__file__).resolve().parents[1] / "golden.yaml").read_text())
NB201_GOLDEN = sorted(k for k in GOLDEN if k.startswith("nb201-"))
BEST_CIFAR10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.mark.parametrize("name", NB201_GOLDEN)
def test_preset_matches_the_benchmarks_params_and_flops(name):
    golden = GOLDEN[name]
    model = build_model(get_preset(name), num_classes=golden["num_classes"])
    got = count_complexity(model, input_size=golden["input_size"], in_chans=3)
    assert got["params"] == pytest.approx(golden["params"], rel=golden["tolerance"])
    assert got["macs"] == pytest.approx(golden["macs"], rel=golden["tolerance"])
    # the benchmark counted the same modules: params agree exactly, FLOPs up to the classifier's bias adds
    assert got["params"] == golden["params"] and golden["macs"] - got["macs"] == golden["num_classes"]


def _randomise_norms(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.5, 0.5)


def _rcb(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """ReLU → conv → BN (eval) written with torch.nn.functional, on the weights of ``seq``."""
    conv, bn = seq[1], seq[2]
    y = F.conv2d(F.relu(x), conv.weight, stride=conv.stride, padding=conv.padding)
    return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def test_cell_computes_the_papers_node_sums():
    # edges (1←0), (2←0), (2←1), (3←0), (3←1), (3←2)
    cell = Nb201Cell(8, 8, 1, layers=Layers(), ops=("conv3x3", "skip", "avg_pool", "conv1x1", "none", "skip")).eval()
    _randomise_norms(cell)
    x = torch.randn(2, 8, 6, 6)
    x_before = x.clone()
    n1 = _rcb(cell.edges["1_0"], x)
    n2 = x + F.avg_pool2d(n1, 3, 1, 1, count_include_pad=False)
    n3 = _rcb(cell.edges["3_0"], x) + n2
    with torch.no_grad():
        out = cell(x)
    assert torch.equal(x, x_before)  # no in-place activation on a node other edges read
    assert torch.allclose(out, n3, atol=1e-5)
    assert set(cell.edges) == {"1_0", "2_0", "2_1", "3_0", "3_2"}  # `none` adds nothing


def test_reduction_block_is_the_resnet_basic_block():
    block = Nb201Reduction(8, 16, 2, layers=Layers()).eval()
    _randomise_norms(block)
    x = torch.randn(2, 8, 6, 6)
    shortcut = F.conv2d(F.avg_pool2d(x, 2, 2), block.shortcut[1].weight)
    with torch.no_grad():
        out = block(x)
    assert torch.allclose(out, _rcb(block.conv_b, _rcb(block.conv_a, x)) + shortcut, atol=1e-5)


def test_a_cell_with_only_none_into_a_node_gives_zeros_there():
    cell = Nb201Cell(4, 4, 1, layers=Layers(), ops=("none", "none", "none", "none", "none", "none"))
    assert torch.equal(cell(torch.randn(1, 4, 5, 5)), torch.zeros(1, 4, 5, 5))


def test_arch_strings_round_trip_and_read_the_papers_example():
    for ops in itertools.product(NB201_OPS, repeat=6):
        assert parse_nb201_ops(nb201_arch_str(ops)) == ops
    # the authors' documented example: node1 = conv3(n0); node2 = conv3(n0) + pool(n1); node3 = n0 + conv3(n1) + n2
    example = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    assert parse_nb201_ops(example) == ("conv3x3", "conv3x3", "avg_pool", "skip", "conv3x3", "skip")
    for bad in ("|nor_conv_3x3~0|+|skip_connect~0|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "conv3x3.conv3x3", "conv3x3.conv3x3.conv3x3.conv3x3.conv3x3.conv5x5"):
        with pytest.raises(ValueError):
            parse_nb201_ops(bad)


def test_preset_family_names_and_yaml():
    dotted = get_preset("nb201-conv3x3.conv3x3.conv3x3.skip.conv3x3.conv3x3")
    assert get_preset(f"nb201-{BEST_CIFAR10}").arch_id == dotted.arch_id == nb201(BEST_CIFAR10).arch_id
    assert from_yaml(dotted.to_yaml()) == dotted and isinstance(dotted, Arch)
    assert [(s.block, s.depth, s.width, s.stride) for s in dotted.stages] == [
        ("nb201_cell", 5, 16, 1), ("nb201_reduction", 1, 32, 2), ("nb201_cell", 5, 32, 1),
        ("nb201_reduction", 1, 64, 2), ("nb201_cell", 5, 64, 1)]
    assert dotted.stem.width == 16 and not dotted.stem.norm_act  # the stem's BN is the first stage's input_norm
    with pytest.raises(SpecError, match=r"nb201 ops 'conv3x3': needs 6 op names"):
        load_arch("nb201-conv3x3")
    with pytest.raises(SpecError, match=r"block_args\.ops"):
        from_yaml(dotted.to_yaml().replace("- skip", "- sep_conv"))


def test_nas_show_counts_the_preset(capsys):
    from search.cli import main

    assert main(["show", "nb201-conv3x3.conv3x3.conv3x3.conv3x3.conv3x3.conv3x3"]) == 0
    out = capsys.readouterr().out
    assert "params    1,531,546" in out and "macs      220.12 M" in out
