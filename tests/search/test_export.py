"""search/results/export.py: the front and best.yaml list each architecture once (its earliest trial), even when
the result cache answered a later trial of the same architecture with identical values."""
from __future__ import annotations

import json

import optuna

from search import parse_config
from search.results.export import export_run
from space import load_arch


def test_cached_repeat_is_not_listed_twice_on_the_front(tmp_path):
    cfg = parse_config({"name": "dup", "objectives": ["val_acc", "macs"]})
    arch_a, arch_b = load_arch("wrn-10-1"), load_arch("wrn-16-1")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="dup",
                                directions=["maximize", "minimize"])
    study.set_user_attr("config", cfg.model_dump(mode="json"))
    rows = [(arch_a, [0.8, 10.0], {}), (arch_b, [0.9, 20.0], {}), (arch_a, [0.8, 10.0], {"cached_from": 0}),
            (arch_b, [0.9, 20.0], {"cached_from": 1})]
    for arch, values, extra in rows:
        t = study.ask()
        for key, value in {"arch_id": arch.arch_id, "arch_yaml": arch.to_yaml(), "macs": values[1], **extra}.items():
            t.set_user_attr(key, value)
        study.tell(t, values)
    (tmp_path / "run.json").write_text(json.dumps({"study_name": "dup", "storage": "sqlite:///ignored"}))
    assert len(study.best_trials) == 4  # Optuna's own front holds each architecture twice

    summary = export_run(tmp_path, out=lambda s: None)
    assert [(f["number"], f["arch_id"]) for f in summary["front"]] == [(0, arch_a.arch_id), (1, arch_b.arch_id)]
    assert sorted(p.stem for p in (tmp_path / "pareto").glob("*.yaml")) == sorted([arch_a.arch_id, arch_b.arch_id])
    assert summary["best"]["number"] == 1 and summary["best"]["arch_id"] == arch_b.arch_id
    assert (tmp_path / "best.yaml").read_text() == arch_b.to_yaml()
