"""Named architectures, as data: every ``preset_data/*.yaml`` file, plus the ``wrn-D-K`` family.

``wrn-D-K`` (Zagoruyko & Komodakis 2016) for any depth D = 6n+4 and widening factor K: a bare
3×3 conv stem to 16 channels, three stages of n pre-activation basic blocks with widths
16K/32K/64K and strides 1/2/2, final BN-ReLU, global pooling, linear.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError
from .spec import Arch, Head, Stage, Stem, from_dict, from_yaml

_WRN = re.compile(r"^wrn[-_](\d+)[-_](\d+(?:\.\d+)?)$")


def wrn(depth: int, k: float, *, dropout: float = 0.0, input_size: int = 32) -> Arch:
    """WRN-depth-k. Raises ``ValueError`` unless depth = 6n+4 with n >= 1 and k > 0."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"wrn depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
    if k <= 0:
        raise ValueError(f"wrn widening factor must be > 0, got {k}")
    n = (depth - 4) // 6
    widths = [max(1, round(16 * k)), max(1, round(32 * k)), max(1, round(64 * k))]
    args = {"dropout": dropout} if dropout else {}
    stages = tuple(Stage("basic", n, w, s, order="pre", block_args=args) for w, s in zip(widths, (1, 2, 2)))
    return Arch(stem=Stem(width=16), stages=stages, head=Head(), input_size=input_size)


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    table: dict[str, Any] = {}
    for path in sorted((Path(__file__).parent / "preset_data").glob("*.yaml")):
        for name, entry in (yaml.safe_load(path.read_text()) or {}).items():
            if name in table:
                raise ValueError(f"preset {name!r} defined twice (second time in {path.name})")
            table[name] = entry
    return table


def list_presets() -> list[str]:
    """Every fixed preset name (the ``wrn-D-K`` family is open-ended and listed as examples)."""
    return sorted(set(_table()) | {"wrn-16-4", "wrn-28-10", "wrn-40-4", "wrn-16-8"})


def get_preset(name: str) -> Arch:
    """The :class:`Arch` named ``name``; ``ValueError`` listing the valid names otherwise."""
    key = name.strip().lower()
    m = _WRN.match(key)
    if m:
        k = float(m.group(2))
        return wrn(int(m.group(1)), int(k) if k.is_integer() else k)
    table = _table()
    if key not in table:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(list_presets())} (and any wrn-D-K)")
    return from_dict(table[key]["arch"])


def preset_meta(name: str) -> dict[str, Any]:
    """The metadata stored with a fixed preset (paper, published params/FLOPs), or ``{}``."""
    entry = _table().get(name.strip().lower(), {})
    return {k: v for k, v in entry.items() if k != "arch"}


def load_arch(path_or_name: str) -> Arch:
    """An :class:`Arch` from a YAML file path or a preset name (``wrn-28-10``, ``ghostnet-1.0``)."""
    p = Path(path_or_name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise SpecError("<arch>", f"file {path_or_name!r} does not exist")
        return from_yaml(p.read_text())
    try:
        return get_preset(path_or_name)
    except ValueError:
        raise SpecError("<arch>", f"{path_or_name!r} is neither a YAML file nor a preset; presets: "
                                  f"{', '.join(list_presets())}, wrn-D-K") from None
