"""The canonical YAML text is PyYAML's own: LibYAML's emitter and parser (used when PyYAML has them, for speed)
must give the very text and data the pure-Python ``SafeDumper``/``SafeLoader`` give, on every preset and on
architectures drawn from the full search space (stored ``arch_yaml`` and ``arch_id`` do not change)."""
from __future__ import annotations

import optuna
import pytest
import yaml

from space import from_yaml, get_preset, list_presets
from space.spec import SpecError, to_dict


class _PurePython(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


def _archs():
    from search import SearchSpace, load_config

    cfg = load_config("configs/full_space.yaml")
    space = SearchSpace(cfg.space, input_size=32)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    out = [get_preset(name) for name in list_presets()]
    while len(out) < len(list_presets()) + 150:
        trial = study.ask()
        try:
            out.append(space.sample(trial))
        except ValueError:  # a combination the registries reject
            pass
        study.tell(trial, 0.0)
    return out


def test_text_and_parse_equal_pure_python_pyyaml():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    archs = _archs()
    assert len({a.arch_id for a in archs}) > 100
    for arch in archs:
        text = arch.to_yaml()
        assert text == yaml.dump(to_dict(arch), Dumper=_PurePython, sort_keys=False, default_flow_style=False,
                                 width=100)
        assert yaml.safe_load(text) == to_dict(arch)
        assert from_yaml(text) == arch


def test_parse_errors_and_python_tags_as_before():
    # the pure-Python parser's message, as before LibYAML was used (PyYAML's words and line)
    with pytest.raises(SpecError, match=r"not valid YAML at line 3: expected ',' or '\]', but got '<stream end>'"):
        from_yaml("input_size: 32\nstem: [1, 2\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        from_yaml("input_size: !!python/object/apply:os.getpid []\n")
