"""configs/cifar10_search.yaml as shipped (every seed block per stage at 16 px, MO-ASHA over 3 proxy epochs),
shortened to a few trials: a real search on the shared CIFAR-10 subset, then `nas compare` against a preset trained
with the same proxy protocol, which names the front point closest to any preset the front does not dominate."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml

from search.results.compare import shortfall

from .test_e2e import nas

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ray_tmp():
    path = tempfile.mkdtemp(prefix="nasray", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_shipped_config_searches_and_compares(tmp_path, cifar_dir, ray_tmp):
    cfg = yaml.safe_load((ROOT / "configs" / "cifar10_search.yaml").read_text())
    assert cfg["data"]["image_size"] == 16 and cfg["scheduler"]["name"] == "mo_asha"
    cfg["data"]["data_dir"] = str(cifar_dir)
    cfg["search"].update(n_trials=4, seed=1)
    cfg["ray"] = {"num_cpus": 2, "temp_dir": ray_tmp}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    nas("search", str(path), "--results", str(tmp_path / "results"), cwd=tmp_path)
    run = tmp_path / "results" / "cifar10_search"
    study = optuna.load_study(study_name="cifar10_search", storage=f"sqlite:///{run / 'study.db'}")
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len({t.user_attrs["arch_id"] for t in done}) == 4
    for t in done:  # MO-ASHA's rungs: epoch 1, then the full 3; every network built for 16×16 inputs
        assert t.user_attrs["epochs"] in (1, 3) if t.state.name == "PRUNED" else t.user_attrs["epochs"] == 3
        assert "input_size: 16" in t.user_attrs["arch_yaml"]

    out = nas("compare", str(run), "--presets", "wrn-16-1", "--no-remeasure", cwd=tmp_path).stdout
    doc = json.loads((run / "compare.json").read_text())
    (row,) = doc["presets"]
    assert row["status"] == "ok" and "input_size: 16" in row["arch_yaml"] and doc["proxy"]["epochs"] == 3
    if row["dominated_by"]:
        assert "the front dominates 1 of 1 preset(s): wrn-16-1" in out
    else:
        c = row["closest"]
        front = {f["number"]: f for f in doc["front"]}
        eps = [max(shortfall(f[o], row[o], d) for o, d in zip(doc["objectives"], doc["directions"]))
               for f in front.values()]
        assert c["epsilon"] == pytest.approx(min(eps)) and f"wrn-16-1: closest front trial #{c['number']}" in out
