"""What optuna-dashboard reads from a real search's storage: the objective names, per-epoch learning curves
(intermediate values of the first objective) and the constraint values of a hard limit, an over-limit
architecture PRUNED without training."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile

import optuna
import yaml
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

from search import SearchSpace, parse_config

from ._tiny_run import CONFIG
from .test_constraints import macs_of


def test_a_real_search_stores_metric_names_learning_curves_and_constraints(tmp_path):
    cfg = {**CONFIG, "name": "dash", "objectives": ["val_acc", "macs"]}
    space = SearchSpace(parse_config({"space": cfg["space"]}).space, input_size=16)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    macs = sorted({macs_of(space.sample(study.ask()).to_yaml()) for _ in range(40)})
    assert len(macs) == 2  # width 0.25 or 0.5; the limit lets the small ones through
    bound = sum(macs) / 2
    ray_tmp = tempfile.mkdtemp(prefix="nasdash", dir="/tmp")  # short: Ray's socket paths are length-limited
    try:
        cfg.update(constraints={"max_macs": bound}, ray={"num_cpus": 2, "temp_dir": ray_tmp})
        (tmp_path / "dash.yaml").write_text(yaml.safe_dump(cfg))
        proc = subprocess.run([sys.executable, "-m", "search.cli", "search", str(tmp_path / "dash.yaml"),
                               "--results", str(tmp_path / "results")], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "over a limit, not trained: constraints.max_macs:" in proc.stdout
    stored = optuna.load_study(study_name="dash", storage=f"sqlite:///{tmp_path / 'results' / 'dash' / 'study.db'}")
    assert stored.metric_names == ["val_acc", "macs"]
    assert stored.user_attrs["constraint_names"] == ["macs"]
    trials = [t for t in stored.trials if "cached_from" not in t.user_attrs]
    assert len(trials) == 4 and len({t.user_attrs["arch_id"] for t in trials}) == 4  # the whole space, once each
    for t in trials:
        m = macs_of(t.user_attrs["arch_yaml"])
        assert t.system_attrs[_CONSTRAINTS_KEY] == [m - bound] and t.constraints == {"0": m - bound}
        if m > bound:
            assert t.state.name == "PRUNED" and t.intermediate_values == {} and "epochs" not in t.user_attrs
            assert t.user_attrs["over_limit"].startswith("constraints.max_macs: ")
        else:
            assert t.state.name == "COMPLETE" and sorted(t.intermediate_values) == [1, 2]
            assert all(0.0 <= v <= 1.0 for v in t.intermediate_values.values())
            assert t.values[1] == m
