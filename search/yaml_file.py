"""Reading a YAML input file: refuse what YAML would let pass silently, with one line naming the field."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20
"""A config file larger than this (1 MiB) is refused before it is parsed."""


def read_yaml(path: str | Path, *, field: str = "<config>", max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """Parse a YAML file with the safe loader (``!!python`` tags rejected), refusing what YAML would let pass
    silently: a file over ``max_bytes``, bytes that are not UTF-8, a key given twice in one mapping. Every
    problem is a :class:`ConfigError` naming ``field`` (or the duplicated key)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise ConfigError(f"{field}: {str(p)!r} is not a file")
        if size > max_bytes:
            raise ConfigError(f"{field}: {str(p)!r} is {size / 2**20:.1f} MiB; a config may be at most "
                              f"{max_bytes / 2**20:g} MiB")
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{field}: file {str(p)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{field}: {str(p)!r} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                          f"offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {str(p)!r}: {exc.strerror or exc}") from None
    try:
        _refuse_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), [], set())
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{field}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None


def _refuse_duplicate_keys(node: yaml.Node | None, path: list[str], done: set[int]) -> None:
    """``a.b: given twice (lines 3 and 7)`` for a key repeated in one mapping (``safe_load`` keeps the last).
    ``done``: nodes already checked (an alias repeats a node; each is walked once)."""
    if node is None or id(node) in done:
        return
    done.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            if isinstance(key, yaml.ScalarNode) and name in seen:
                raise ConfigError(f"{'.'.join([*path, name])}: given twice (lines {seen[name]} and "
                                  f"{key.start_mark.line + 1}); YAML would silently keep the last")
            seen[name] = key.start_mark.line + 1
            _refuse_duplicate_keys(value, [*path, name], done)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, [*path, str(i)], done)
