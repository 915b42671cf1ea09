"""bench/chaos.py at its smallest: one interruption per mode (kill -9 to the driver, kill -9 to a trial worker,
SIGINT to the driver) of a real 4-trial search, resumed until the budget is done: nothing lost, nothing trained
twice, nothing hung."""
from __future__ import annotations

import json

from ._load import load_bench


def test_one_interruption_per_mode_loses_nothing(tmp_path, capsys):
    bench = load_bench("chaos")
    out = tmp_path / "chaos.json"
    rc = bench.main(["--interruptions", "1", "--trials", "4", "--max-delay", "1", "--no-baseline", "--seed", "0",
                     "--json", str(out)])
    text = capsys.readouterr().out
    rows = {r["mode"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"driver", "worker", "sigint"}, text
    for r in rows.values():
        assert r["interruptions"] == 1, text
        assert (r["lost"], r["twice"], r["hung"], r["bad_exits"]) == (0, 0, 0, []), text
        assert r["finished"] == r["budget"] == 4, text
    assert rows["driver"]["starts"] == rows["sigint"]["starts"] == 2 and rows["worker"]["starts"] == 1, text
    assert rows["worker"]["states"].get("FAIL", 0) >= 1, text  # the killed worker's trial failed, and counted
    assert rc == 0, text
