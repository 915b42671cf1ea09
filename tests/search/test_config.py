"""Config validation: every problem is one line naming the field; `nas search` exits 2 before Ray starts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from search import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_configs_are_valid():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.objectives[0] == "val_acc"


@pytest.mark.parametrize("data, field", [
    ({"search": {"sampler": "bayes"}}, "search.sampler"),
    ({"search": {"n_trials": 0}}, "search.n_trials"),
    ({"bogus": 1}, "bogus"),
    ({"space": {"block": ["nope"]}}, "space.block"),
    ({"space": {"norm": ["bn", "bn"]}}, "space.norm"),
    ({"space": {"strides": [1, 3, 2]}}, "space.strides"),
    ({"space": {"base_widths": [16, 32]}}, "space"),
    ({"space": {"depth": [0]}}, "space.depth"),
    ({"space": {"blok": ["basic"]}}, "space.blok"),
    ({"objectives": ["macs", "val_acc"]}, "objectives"),
    ({"objectives": ["val_acc", "speed"]}, "objectives"),
    ({"data": {"name": "mnist"}}, "data.name"),
    ({"data": {"val_fraction": 1.5}}, "data.val_fraction"),
    ({"proxy": {"epochs": "three"}}, "proxy.epochs"),
    ({"storage": "redis://x"}, "storage"),
    ({"space": {"block_args": {"basic": {"dropout": 2.0}}}}, "space.block_args.basic"),
    ({"space": {"block_args": {"basic": {"nope": 1}}}}, "space.block_args.basic"),
    ({"name": "has space"}, "name"),
])
def test_bad_config_names_field(data, field):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    msg = str(info.value)
    assert msg.startswith(field), msg
    assert "\n" not in msg


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"search\.smapler: unknown key; valid keys: sampler"):
        parse_config({"search": {"smapler": "tpe"}})


def test_empty_and_python_tag(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(empty)
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  sampler: annealing\n")
    proc = subprocess.run([sys.executable, "-m", "search.cli", "search", str(bad), "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "search.sampler" in lines[0] and "tpe" in lines[0], proc.stderr
    assert not (tmp_path / "search").exists()  # nothing started, no run folder


def test_relative_data_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = parse_config({"data": {"name": "cifar10", "data_dir": "data/c10"}})
    assert cfg.data.data_dir == str(tmp_path / "data" / "c10")  # trials run elsewhere: never relative
