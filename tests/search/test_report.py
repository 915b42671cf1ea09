"""`nas report`: a self-contained HTML page naming every front architecture, plus PNGs, from the storage alone —
for a finished run, one with RUNNING/FAIL/PRUNED trials, a resumed one, and one with no complete trial yet."""
from __future__ import annotations

import html
import json
import re

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from search import Config, open_run
from search.cli import main
from search.results.report import PNGS, build_report
from search.run import close_interrupted
from space import build_model, from_yaml
from space.complexity import count_params

from ._tiny_run import copy_run, tiny_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "tiny_shared"
    base.mkdir(exist_ok=True)
    return tiny_run(base)


def _front_ids(run) -> list[str]:
    study, _ = open_run(run)
    return [t.user_attrs["arch_id"] for t in study.best_trials]


def test_report_of_a_finished_run_is_self_contained_and_names_the_front(tiny, tmp_path, capsys):
    run = copy_run(tiny, tmp_path)
    assert main(["report", str(run)]) == 0
    assert "report.html" in capsys.readouterr().out
    page = (run / "report" / "report.html").read_text()
    front = _front_ids(run)
    assert front and all(aid in page for aid in front)
    # plotly.js inlined exactly once, before the first figure uses it; nothing fetched from the network
    assert len(re.findall(r"plotly\.js v\d", page)) == 1
    assert page.index("plotly.js v") < page.index("Plotly.newPlot") and page.count("Plotly.newPlot") >= 5
    assert not re.search(r"<script[^>]*\bsrc=", page)
    # every section is there
    for title in ("Pareto front", "Optimisation history", "Parameter importances", "parallel coordinates",
                  "Trial states and durations", "All trials"):
        assert title in page
    for name in PNGS:
        data = (run / "report" / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name
    # the front table carries the `nas show` numbers: params of each front architecture, counted afresh
    study, _ = open_run(run)
    for t in study.best_trials:
        model = build_model(from_yaml(t.user_attrs["arch_yaml"]), num_classes=10, in_chans=1)
        assert f"{count_params(model):,}" in page
        assert html.escape(t.user_attrs["arch_yaml"]) in page


def test_report_with_running_failed_pruned_trials_and_after_resume(tiny, tmp_path):
    run = copy_run(tiny, tmp_path)
    study, _ = open_run(run)
    base = study.best_trials[0]
    arch = {"arch_id": base.user_attrs["arch_id"], "arch_yaml": base.user_attrs["arch_yaml"]}
    study.add_trial(create_trial(state=TrialState.FAIL, params=base.params, distributions=base.distributions,
                                 user_attrs={**arch, "fail_reason": "RuntimeError: boom in the test"}))
    study.add_trial(create_trial(state=TrialState.PRUNED, params=base.params, distributions=base.distributions,
                                 user_attrs={**arch, "pruned_at_epoch": 1}, intermediate_values={1: 0.5}))
    for attrs in ({"over_limit": "constraints.max_params: 9e+04 > 5e+04"},
                  {"screened_out": "synflow 1.2e+03 < 4.5e+03 of trial 0 (best of 4)"}):
        study.add_trial(create_trial(state=TrialState.PRUNED, params=base.params, distributions=base.distributions,
                                     user_attrs={**arch, **attrs}))
    running = study.ask(fixed_distributions=base.distributions)
    for k, v in arch.items():
        running.set_user_attr(k, v)

    build_report(run, out=lambda s: None)
    page = (run / "report" / "report.html").read_text()
    for text in ("RUNNING", "PRUNED", "FAIL", "boom in the test", "stopped at epoch 1",
                 "over a limit: constraints.max_params: 9e+04 &gt; 5e+04",
                 "screened out: synflow 1.2e+03 &lt; 4.5e+03 of trial 0 (best of 4)"):
        assert text in page
    assert "epoch ?" not in page
    assert all(aid in page for aid in _front_ids(run))
    assert (run / "report" / "trials.png").read_bytes()[:8] == PNG_MAGIC

    # resume: the interrupted trial is closed FAIL, a new trial completes on a new architecture
    assert close_interrupted(study) == 1
    new = from_yaml(base.user_attrs["arch_yaml"]).replace(input_size=32)
    study.add_trial(create_trial(state=TrialState.COMPLETE, params=base.params, distributions=base.distributions,
                                 values=[0.999, 1.0, 1e-3],
                                 user_attrs={"arch_id": new.arch_id, "arch_yaml": new.to_yaml()}))
    build_report(run, out=lambda s: None)
    page = (run / "report" / "report.html").read_text()
    assert "interrupted" in page and "RUNNING</span>" not in page
    assert new.arch_id in _front_ids(run) and new.arch_id in page


def test_report_of_a_run_with_no_complete_trial(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    url = f"sqlite:///{run / 'study.db'}"
    (run / "run.json").write_text(json.dumps({"study_name": "empty", "storage": url}))
    cfg = Config(name="empty")
    study = optuna.create_study(storage=url, study_name="empty", directions=["maximize", "minimize"])
    study.set_user_attr("config", cfg.model_dump(mode="json"))
    study.ask()  # one trial, still running

    path = build_report(run, out=lambda s: None)
    page = path.read_text()
    assert "No complete trial yet" in page and "RUNNING" in page
    assert (run / "report" / "trials.png").is_file() and not (run / "report" / "pareto.png").exists()
