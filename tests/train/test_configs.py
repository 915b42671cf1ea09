"""One config idiom: every settings class refuses a bad value with one line naming the field, and the
``nas retrain``/``nas prune`` options are generated from the declarations (a flag for every field, listed by
``--help``, parsed back into the same config)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from search.cli import build_parser
from search.config import Config, ConfigError, parse_config
from train import DATASETS
from train.compress import CompressConfig
from train.config_base import ConfigModel
from train.methods import MethodsConfig
from train.retrain import RetrainConfig
from train.retrain.cli import build_parser as retrain_parser

ROOT = Path(__file__).resolve().parents[2]
NOT_ANY_TYPE = {"not": "valid"}  # a mapping is no valid value for any scalar, list or choice field


def leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the fields of ``model``, through nested config sections (read from pydantic's field table)."""
    out = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, ConfigModel):
            out += leaves(kind, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def nest(path: tuple[str, ...], value: object) -> dict:
    return {path[0]: nest(path[1:], value) if len(path) > 1 else value}


def one_line_naming(message: str, field: str) -> None:
    assert message.startswith(f"{field}:") or message.startswith(f"{field}."), message
    assert "\n" not in message, message


CASES = [(cls, path) for cls in (MethodsConfig, RetrainConfig, CompressConfig) for path in leaves(cls)]


@pytest.mark.parametrize("cls, path", CASES, ids=[f"{c.__name__}-{'.'.join(p)}" for c, p in CASES])
def test_a_bad_value_of_any_field_is_one_line_naming_it(cls, path):
    with pytest.raises(ValueError) as err:
        cls(**nest(path, NOT_ANY_TYPE))
    one_line_naming(str(err.value), ".".join(path))


@pytest.mark.parametrize("path", leaves(Config), ids=lambda p: ".".join(p))
def test_a_bad_value_in_the_search_config_is_one_line_naming_it(path):
    with pytest.raises(ConfigError) as err:
        parse_config(nest(path, NOT_ANY_TYPE))
    one_line_naming(str(err.value), ".".join(path))


@pytest.mark.parametrize("build, start", [
    (lambda: MethodsConfig(elr_radius=1.0), "elr_radius: only used with elr: fixed"),
    (lambda: MethodsConfig(gradinit_iters=0), "gradinit_iters: must be greater than or equal to 1, got 0"),
    (lambda: RetrainConfig(warmup_epochs=5, epochs=2), "warmup_epochs: must be smaller than epochs"),
    (lambda: RetrainConfig(batch_size=3, mixup=0.2), "batch_size: mixup/cutmix pair samples"),
    (lambda: RetrainConfig(methods={"lr_rule": "auto"}, opt="lion"), "methods.lr_rule: 'auto' knows no"),
    (lambda: RetrainConfig(methods={"elr": "sometimes"}), "methods.elr: must be 'off', 'log' or 'fixed'"),
    (lambda: RetrainConfig.from_dict({"gradinit": True}), "gradinit: unknown key; gradinit belongs in methods;"),
    (lambda: RetrainConfig(lr=float("nan")), "lr: must be a finite number"),
    (lambda: CompressConfig(rank_ratio=0.5), "flops_target: method taylor needs exactly one of"),
    (lambda: CompressConfig(flops_target=1.5), "flops_target: must be in (0, 1), got 1.5"),
    (lambda: CompressConfig(method="lrpet", rank_ratio=0.5, budget="redundancy"), "budget: redundancy needs"),
    (lambda: CompressConfig(flops_target=0.5, data="mnist"), "data: must be 'cifar10'"),
])
def test_checks_across_fields_name_the_field(build, start):
    with pytest.raises(ValueError) as err:
        build()
    assert str(err.value).startswith(start) and "\n" not in str(err.value), str(err.value)


def test_configs_are_frozen_and_round_trip():
    cfg = RetrainConfig(decay_milestones=(5, 10), methods=MethodsConfig(elr="fixed", elr_radius=2.0))
    assert RetrainConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["decay_milestones"] == [5, 10]
    assert cfg.replace(lr=0.05).lr == 0.05 and cfg.lr == 0.1
    with pytest.raises(ValueError, match="^lr: must be greater than 0"):
        cfg.replace(lr=0.0)
    with pytest.raises(ValueError):
        cfg.lr = 0.3  # type: ignore[misc]
    with pytest.raises(ValueError, match="^methods.elr: "):  # model_copy skips validation; check() does not
        cfg.model_copy(update={"methods": cfg.methods.model_copy(update={"elr": "bogus"})}).check()
    assert cfg.changed_training_fields({**cfg.to_dict(), "lr": 0.3, "threads": 7}) == ["lr"]


def test_data_set_names_come_from_the_registry():
    names = DATASETS.names()
    for cls, field in ((RetrainConfig, "data"), (CompressConfig, "data")):
        assert sorted(cls.model_fields[field].annotation.__args__) == names
    assert sorted(Config.model_fields["data"].annotation.model_fields["name"].annotation.__args__) == names
    for command in ("retrain", "prune"):
        action = next(a for a in _sub(build_parser(), command)._actions if a.dest == "data")
        assert sorted(action.choices) == names


def _sub(parser, name):
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[name]


@pytest.mark.parametrize("command, cls", [("retrain", RetrainConfig), ("prune", CompressConfig)])
def test_every_field_has_a_flag_that_help_lists(command, cls):
    parser = _sub(build_parser(), command)
    options = {a.dest: a.option_strings for a in parser._actions if a.option_strings}
    fields = [path[-1] for path in leaves(cls)]
    missing = sorted(set(fields) - set(options))
    assert not missing, f"nas {command} has no option for {missing}"
    text = parser.format_help()
    for field in fields:
        assert any(s in text for s in options[field]), field
        help_text = next(a.help for a in parser._actions if a.dest == field)
        assert help_text and len(help_text) > 5, field


def test_parsed_options_build_the_same_config_as_the_python_api():
    from train.cli_options import config_from_args

    args = retrain_parser().parse_args(
        ["wrn-10-1", "--out", "o", "-b", "64", "--smoothing", "0.1", "--clip-grad", "2", "--model-ema",
         "--sched-on-epochs", "--no-tensorboard", "--no-channels-last", "--decay-milestones", "5", "10",
         "--lr-rule", "sqrt", "--elr", "fixed", "--elr-radius", "3", "--gradinit", "--torchcompile", "-j", "0"])
    want = RetrainConfig(batch_size=64, label_smoothing=0.1, grad_clip=2.0, ema=True, sched_on_updates=False,
                         tensorboard=False, channels_last=False, decay_milestones=(5, 10), compile=True, workers=0,
                         methods=MethodsConfig(lr_rule="sqrt", elr="fixed", elr_radius=3.0, gradinit=True))
    assert config_from_args(args, RetrainConfig) == want
    assert config_from_args(retrain_parser().parse_args(["a", "--out", "o"]), RetrainConfig) == RetrainConfig()


def test_python_m_train_retrain_has_the_same_options_and_one_line_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "train.retrain", "wrn-10-1", "--out", str(tmp_path / "x"),
                           "--lr-rule", "auto", "--opt", "lion"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("python -m train.retrain: error: methods.lr_rule: 'auto' knows no"), lines[0]
    assert not (tmp_path / "x").exists()
