"""`nas latency-table` on ONNX Runtime (``--device ort-cpu``): every unit exported and timed alone, the same
calibration and validation as the torch table, and a unit that cannot be exported alone is one line naming it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from evaluators import measure_latency
from evaluators.latency_table import LatencyPredictor, LatencyTable
from search.cli import main
from search.config import parse_config
from search.latency_space import sample_archs
from search.space_def import SearchSpace
from space import build_model

TINY = {
    "name": "tiny-ort",
    "data": {"name": "digits"},
    "space": {"strides": [1, 2], "base_widths": [8, 16], "width_mult": [1.0], "depth": [1, 2], "order": ["pre"]},
    "objectives": ["val_acc", "latency_ms"],
    "latency": {"device": "ort-cpu"},
}


def _config(folder: Path) -> Path:
    cfg = folder / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "latency": {**TINY["latency"], "lock_dir": str(folder)}}))
    return cfg


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, str]:
    tmp = tmp_path_factory.mktemp("ortlt")
    cfg = _config(tmp)
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
        rc = main(["latency-table", "--space", str(cfg), "--out", str(tmp / "table.yaml"), "--warmup", "2",
                   "--repeats", "10", "--rounds", "1", "--calibrate", "2"])
    assert rc == 0, lines
    return cfg, tmp / "table.yaml", "\n".join(lines)


def test_table_is_timed_with_onnx_runtime_and_covers_the_space(built):
    cfg_path, table_path, stdout = built
    assert "on ort-cpu" in stdout and re.search(r"measured \d+ distinct units", stdout)
    table = LatencyTable.load(table_path)
    assert table.device == "ort-cpu" and all(e["ms"] > 0 for e in table.entries.values())
    space = SearchSpace(parse_config(TINY).space, input_size=16)
    predictor = LatencyPredictor(table, measure_missing=False)  # a missing key would raise KeyError
    for arch in sample_archs(space, 3, seed=11):  # the units' sum against the whole network measured end to end
        whole = measure_latency(build_model(arch, num_classes=10, in_chans=1), input_shape=(1, 1, 16, 16),
                                device="ort-cpu", warmup=2, repeats=10)["median_ms"]
        assert whole / 4 < predictor.units_ms(arch) < 4 * whole, (arch.arch_id, predictor.units_ms(arch), whole)


def test_validate_prints_share_and_rank_correlation(built, capsys):
    cfg_path, table_path, _ = built
    assert main(["latency-table", "--validate", "--table", str(table_path), "--space", str(cfg_path), "--n", "3"]) == 0
    out = capsys.readouterr().out
    assert "(ort-cpu, batch 1," in out
    assert len([line for line in out.splitlines() if re.match(r"^[0-9a-f]{12}\s", line)]) == 3
    m = re.search(r"within ±10%: (\d+)/3 .*Spearman ρ = (-?[\d.]+|nan)", out)
    assert m and 0 <= int(m.group(1)) <= 3


def test_a_unit_that_cannot_be_exported_alone_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    import torch

    def refuse(*args, **kwargs):
        raise RuntimeError("no ONNX symbol for this operator\nmore detail")

    cfg = _config(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.onnx, "export", refuse)
    assert main(["latency-table", "--space", str(cfg), "--out", str(tmp_path / "t.yaml"), "--calibrate", "0"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("nas: error: OnnxExportError: onnx export of unit 'stem c=1>16 k=3")
    assert "RuntimeError: no ONNX symbol for this operator" in err[0] and not (tmp_path / "t.yaml").exists()
