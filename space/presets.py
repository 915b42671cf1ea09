"""Named architectures, as data: every ``preset_data/*.yaml`` file, plus the ``wrn-D-K`` and ``nb201-<ops>`` families.

``wrn-D-K`` (Zagoruyko & Komodakis 2016) for any depth D = 6n+4 and widening factor K: a bare
3×3 conv stem to 16 channels, three stages of n pre-activation basic blocks with widths
16K/32K/64K and strides 1/2/2, final BN-ReLU, global pooling, linear.

``nb201-<ops>`` (Dong & Yang 2020): NAS-Bench-201's skeleton around the cell whose six edge ops are
``<ops>`` — our op names joined by dots in the arch-string edge order (1←0), (2←0), (2←1), (3←0),
(3←1), (3←2), e.g. ``nb201-conv3x3.conv3x3.conv3x3.skip.conv3x3.conv3x3``, or the paper's arch
string itself (``nb201-|nor_conv_3x3~0|+|…|``). 3×3 conv stem to 16 + BN, three stages of 5 cells
at 16/32/64 channels with a residual reduction block before the second and third, BN-ReLU, global
pooling, linear (space/blocks/nb201.py).
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml

from .blocks.nb201 import parse_nb201_ops
from .errors import SpecError
from .spec import Arch, Head, Stage, Stem, from_dict, from_yaml

_WRN = re.compile(r"^wrn[-_](\d+)[-_](\d+(?:\.\d+)?)$")
_NB201 = re.compile(r"^nb201[-_](.+)$")
NB201_EXAMPLES = ("nb201-conv3x3.conv3x3.conv3x3.conv3x3.conv3x3.conv3x3",  # the largest cell
                  "nb201-conv3x3.conv3x3.conv3x3.skip.conv3x3.conv3x3")  # NAS-Bench-201's best on CIFAR-10


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


def nb201(ops: tuple[str, ...] | str, *, cells: int = 5, width: int = 16, input_size: int = 32) -> Arch:
    """NAS-Bench-201's network around the cell ``ops`` (6 op names, or a string :func:`parse_nb201_ops` reads):
    ``cells`` cells per stage at ``width``/2×/4× channels (the paper: N=5, C=16)."""
    ops = parse_nb201_ops(ops) if isinstance(ops, str) else tuple(ops)
    cell = {"ops": ops}
    stages = (Stage("nb201_cell", cells, width, 1, order="pre", block_args={**cell, "input_norm": True}),
              Stage("nb201_reduction", 1, 2 * width, 2, order="pre"),
              Stage("nb201_cell", cells, 2 * width, 1, order="pre", block_args=cell),
              Stage("nb201_reduction", 1, 4 * width, 2, order="pre"),
              Stage("nb201_cell", cells, 4 * width, 1, order="pre", block_args=cell))
    return Arch(stem=Stem(width=width), stages=stages, head=Head(), input_size=input_size)


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
    """Every fixed preset name (the ``wrn-D-K`` and ``nb201-<ops>`` families are open-ended: listed as examples)."""
    return sorted(set(_table()) | {"wrn-16-4", "wrn-28-10", "wrn-40-4", "wrn-16-8"} | set(NB201_EXAMPLES))


def get_preset(name: str) -> Arch:
    """The :class:`Arch` named ``name``; ``ValueError`` listing the valid names otherwise."""
    key = name.strip().lower()
    m = _WRN.match(key)
    if m:
        k = float(m.group(2))
        return wrn(int(m.group(1)), int(k) if k.is_integer() else k)
    m = _NB201.match(key)
    if m:
        return nb201(parse_nb201_ops(m.group(1)))
    table = _table()
    if key not in table:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(list_presets())} (and any wrn-D-K, nb201-<ops>)")
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
    except ValueError as exc:
        if _NB201.match(path_or_name.strip().lower()):
            raise SpecError("<arch>", str(exc)) from None
        raise SpecError("<arch>", f"{path_or_name!r} is neither a YAML file nor a preset; presets: "
                                  f"{', '.join(list_presets())}, wrn-D-K, nb201-<ops>") from None
