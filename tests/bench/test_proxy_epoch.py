"""bench/proxy_epoch.py runs end to end at minimal sizes: both rows, and the engine's weights equal the plain loop's."""
from __future__ import annotations

import json

from ._load import load_bench


def test_bench_main_runs_and_the_engine_matches_the_plain_loop(tmp_path, cifar_dir, capsys):
    bench = load_bench("proxy_epoch")
    out = tmp_path / "proxy_epoch.json"
    assert bench.main(["--cifar-images", "130", "--digits-images", "40", "--warmup", "0", "--repeats", "2",
                       "--data-dir", str(cifar_dir), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cifar wrn-16-1" in text and "digits wrn-10-1" in text
    rows = {r["row"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["cifar wrn-16-1"]["steps"] == 2 and rows["digits wrn-10-1"]["steps"] == 2  # 130 = 128 + 2; 40 = 32 + 8
    for r in rows.values():
        assert r["same_weights"] and len(r["times"]["engine"]) == len(r["times"]["plain"]) == 2 and r["ratio"] > 0
