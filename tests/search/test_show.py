"""`nas show`: the layer table prints each stage's output shape, as the built network computes it."""
from __future__ import annotations

import torch

from search.cli import main
from space import build_model, load_arch


def test_show_prints_every_stage_output_shape(capsys):
    assert main(["show", "wrn-16-1"]) == 0
    printed = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()
               if line.startswith("stages.")}
    arch = load_arch("wrn-16-1")
    model = build_model(arch, num_classes=10, in_chans=3).eval()
    shapes = {}
    for i, stage in enumerate(model.stages):
        stage.register_forward_hook(lambda m, inp, out, i=i: shapes.__setitem__(f"stages.{i}", tuple(out.shape)))
    with torch.no_grad():
        model(torch.zeros(1, 3, arch.input_size, arch.input_size))
    assert shapes["stages.0"] == (1, 16, 32, 32)
    assert printed == {name: "×".join(str(d) for d in shape) for name, shape in shapes.items()}
