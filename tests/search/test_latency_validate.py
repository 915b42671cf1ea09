"""`nas latency-table --validate`'s ground truth: the median of repeated end-to-end measurements, with its noise
floor (the CV over each architecture's repeats, the share of single measurements within ±10% of their median)
printed next to the predictor's share within ±10%, checked on scripted measurements."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import search.latency_space as ls
from evaluators.latency_table import LatencyPredictor, LatencyTable
from search.config import parse_config
from search.space_def import SearchSpace

SPACE = {"strides": [1, 2], "base_widths": [8, 16], "depth": [1, 2]}


def test_ground_truth_is_the_median_of_repeats_and_the_noise_floor_is_reported(monkeypatch):
    archs = ls.sample_archs(SearchSpace(parse_config({"space": SPACE}).space, input_size=16), 3, seed=0)
    table = LatencyTable(device="cpu", batch=1, in_chans=1, num_classes=10, warmup=0, repeats=1, rounds=1)
    predicted = [LatencyPredictor(table).predict(a) for a in archs]  # fills the table's units
    # three repeats per architecture, the list measured once per repeat: arch i sees truth_i × these factors
    factors = {0: [1.0, 1.3, 1.02], 1: [0.95, 1.0, 1.05], 2: [1.0, 1.0, 1.0]}
    truth = [p * 1.05 for p in predicted]  # the predictor is 5% low against the medians
    calls = itertools.count()

    def scripted(arch, table, *, context=None):
        k = next(calls)
        rep, i = divmod(k, len(archs))
        assert archs[i] is arch  # whole list per repeat
        return truth[i] * factors[i][rep]

    monkeypatch.setattr(ls, "measure_arch", scripted)
    lines: list[str] = []
    summary = ls.validate(table, archs, repeats=3, out=lines.append)
    assert next(calls) == 9
    assert summary["within_10pct"] == 1.0  # errors against the medians (1.02, 1.0, 1.0 × truth): all ≈ 5%
    cvs = [100 * np.std(f) / np.mean(f) for f in factors.values()]
    assert summary["noise_cv_median_pct"] == pytest.approx(np.median(cvs))
    assert summary["noise_cv_max_pct"] == pytest.approx(max(cvs))
    assert summary["truth_within_10pct"] == pytest.approx(8 / 9)  # only the 1.3 is > 10% from its median
    text = "\n".join(lines)
    assert "noise floor: ground truth = median of 3 measurement(s)" in text and "89% of the time" in text


def test_calibration_fits_the_medians_of_repeats_not_single_measurements(monkeypatch):
    """A calibration network measured once during a slow spell used to pull the fitted overhead up; fitted to the
    median of ``repeats`` measurements (the validation's ground truth), the known line comes back."""
    archs = ls.sample_archs(SearchSpace(parse_config({"space": SPACE}).space, input_size=16), 6, seed=1)
    table = LatencyTable(device="cpu", batch=1, in_chans=1, num_classes=10, warmup=0, repeats=1, rounds=1)
    predictor = LatencyPredictor(table)
    sums = [predictor.units_ms(a) for a in archs]
    assert len(archs) >= 4 and len(set(sums)) == len(sums)
    true_scale, true_overhead = 1.1, 0.03
    truth = [true_scale * s + true_overhead for s in sums]
    spikes = {(0, 0): 1.6, (0, 1): 1.4, (1, 2): 1.5, (2, 3): 0.7}  # (repeat, arch): one spoiled pass each
    calls = itertools.count()

    def scripted(arch, table, *, context=None):
        rep, i = divmod(next(calls), len(archs))
        assert archs[i] is arch
        return truth[i] * spikes.get((rep, i), 1.0)

    monkeypatch.setattr(ls, "measure_arch", scripted)
    lines: list[str] = []
    ls.calibrate(table, archs, repeats=3, out=lines.append)
    assert next(calls) == 3 * len(archs)
    assert table.scale == pytest.approx(true_scale) and table.overhead_ms == pytest.approx(true_overhead)
    assert table.meta["calibration"]["repeats"] == 3 and "median of 3 measurements" in lines[0]
