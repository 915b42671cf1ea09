"""The architecture spec: frozen, typed, validated data that round-trips through YAML.

``Arch(stem, stages, head, input_size)``; each ``Stage`` names its block, depth, width, stride,
normaliser, attention, activation and unit order, plus block/norm/attention options
(pycls AnyNet's per-stage lists; timm byobnet's ``ByoBlockCfg``). ``arch_id`` is a short sha1
of the canonical form. Every problem raises :class:`SpecError` naming the field.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

import yaml

from .errors import SpecError
from .registry import ACTIVATIONS, ATTENTIONS, BLOCKS, NORMS, Entry, normalize_name

ORDERS = ("post", "pre", "white_conv")
"""Unit orders: conv→norm→act (post), norm→act→conv (pre-activation, WRN), and
norm→conv→act with the normaliser (a whitening) right before each conv (Cho et al.)."""

Args = tuple[tuple[str, Any], ...]


def _freeze_args(value: Any, where: str) -> Args:
    if value is None:
        return ()
    if isinstance(value, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        value = dict(value)
    if not isinstance(value, Mapping):
        raise SpecError(where, f"must be a mapping of option names to values, got {value!r}")
    out = []
    for key, val in value.items():
        if not isinstance(key, str):
            raise SpecError(where, f"option names must be strings, got {key!r}")
        if isinstance(val, list):
            val = tuple(val)
        if not isinstance(val, (int, float, str, bool, tuple)) and val is not None:
            raise SpecError(f"{where}.{key}", f"must be a scalar or a list, got {type(val).__name__}")
        out.append((key, val))
    return tuple(sorted(out))


def _check_int(value: Any, where: str, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(where, f"must be an integer, got {value!r}")
    if value < minimum:
        raise SpecError(where, f"must be >= {minimum}, got {value}")


def _check_choice(registry, name: Any, where: str) -> Entry:
    if not isinstance(name, str):
        raise SpecError(where, f"must be a string naming one of: {', '.join(registry.names())}")
    try:
        return registry.entry(name)
    except ValueError as exc:
        raise SpecError(where, str(exc)) from None


def _check_options(entry: Entry, args: Args, where: str) -> Args:
    out = []
    for key, val in args:
        if key not in entry.options:
            valid = ", ".join(sorted(entry.options)) or "none"
            raise SpecError(f"{where}.{key}", f"unknown option for {entry.name!r}; valid: {valid}")
        val = entry.options[key].coerce(val, f"{where}.{key}")
        if val != entry.options[key].default:  # canonical form: defaults are implied, so ids agree
            out.append((key, val))
    return tuple(out)


@dataclass(frozen=True)
class Stem:
    """Input stem: a k×k conv (stride s) to ``width`` channels, optionally norm+act and a 3×3/2 max-pool.

    The stem's norm and activation are the first stage's (``norm_act``); WRN uses a bare conv; ``act``
    (with ``norm_act`` false) is conv→act without a norm, Cho et al.'s whitening ResNet stem.
    """

    width: int = 16
    kernel: int = 3
    stride: int = 1
    norm_act: bool = False
    pool: bool = False
    act: bool = field(default=False, metadata={"omit_default": True})


@dataclass(frozen=True)
class Stage:
    """``depth`` blocks of type ``block`` to ``width`` channels; the first has stride ``stride``."""

    block: str
    depth: int
    width: int
    stride: int = 1
    norm: str = "bn"
    attention: str = "none"
    act: str = "relu"
    order: str = "post"
    block_args: Args = ()
    norm_args: Args = ()
    attn_args: Args = ()

    def __post_init__(self) -> None:
        for name in ("block_args", "norm_args", "attn_args"):
            object.__setattr__(self, name, _freeze_args(getattr(self, name), name))
        for name in ("block", "norm", "attention", "act", "order"):
            val = getattr(self, name)
            if isinstance(val, str) and val.strip():
                object.__setattr__(self, name, normalize_name(val))

    @property
    def block_kw(self) -> dict[str, Any]:
        return dict(self.block_args)

    @property
    def norm_kw(self) -> dict[str, Any]:
        return dict(self.norm_args)

    @property
    def attn_kw(self) -> dict[str, Any]:
        return dict(self.attn_args)


@dataclass(frozen=True)
class Head:
    """Classifier head: [final norm(+act)] → global average pool → [1×1 conv to ``hidden`` + act]
    → dropout → linear. The final norm is added for ``pre`` (norm+act, as WRN) and ``white_conv``
    (norm only, Cho et al.'s extra whitening before the classifier) last stages."""

    hidden: int = 0
    dropout: float = 0.0


@dataclass(frozen=True)
class Arch:
    """A whole network: stem, stages, head and the input resolution it is specified for."""

    stem: Stem
    stages: tuple[Stage, ...]
    head: Head = field(default_factory=Head)
    input_size: int = 32
    channels: Args = field(default=(), metadata={"omit_default": True})
    """Widths of a channel-pruned network: ``{root conv path: kept channels}`` (:mod:`space.channels`);
    empty for every unpruned architecture (and then absent from the YAML and the id)."""
    ranks: Args = field(default=(), metadata={"omit_default": True})
    """Low-rank convs (LRPET's export): ``{conv path: rank r}``, each built as a k×k conv to ``r`` channels
    and a 1×1 conv back (:func:`space.channels.apply_ranks`); empty and absent otherwise."""

    def __post_init__(self) -> None:
        if isinstance(self.stages, list):
            object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "channels", _freeze_args(self.channels, "channels"))
        object.__setattr__(self, "ranks", _freeze_args(self.ranks, "ranks"))
        validate(self)

    @property
    def channels_kw(self) -> dict[str, int]:
        return dict(self.channels)

    @property
    def ranks_kw(self) -> dict[str, int]:
        return dict(self.ranks)

    @property
    def arch_id(self) -> str:
        """Short sha1 of the canonical JSON form: equal specs share an id, any change alters it."""
        canon = json.dumps(to_dict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(canon.encode()).hexdigest()[:12]

    def to_yaml(self) -> str:
        return to_yaml(self)

    @classmethod
    def from_yaml(cls, text: str) -> Arch:
        return from_yaml(text)

    def replace(self, **changes: Any) -> Arch:
        return replace(self, **changes)


# --------------------------------------------------------------------------- validation


def validate(arch: Arch) -> None:
    """Check every field of ``arch``; raise :class:`SpecError` naming the first bad one."""
    if not isinstance(arch.stem, Stem):
        raise SpecError("stem", f"must be a Stem, got {type(arch.stem).__name__}")
    _check_int(arch.stem.width, "stem.width")
    _check_int(arch.stem.kernel, "stem.kernel")
    _check_int(arch.stem.stride, "stem.stride")
    if arch.stem.kernel % 2 == 0:
        raise SpecError("stem.kernel", f"must be odd, got {arch.stem.kernel}")
    for name in ("norm_act", "pool", "act"):
        if not isinstance(getattr(arch.stem, name), bool):
            raise SpecError(f"stem.{name}", f"must be true or false, got {getattr(arch.stem, name)!r}")
    if arch.stem.act and arch.stem.norm_act:
        raise SpecError("stem.act", "must be false when norm_act is true (norm_act already activates)")
    if not isinstance(arch.stages, tuple) or not arch.stages:
        raise SpecError("stages", "must be a non-empty list of stages")
    prev = arch.stem.width
    for i, stage in enumerate(arch.stages):
        _validate_stage(stage, f"stages[{i}]")
        _check_norm_widths(stage, prev, arch.stem if i == 0 else None, f"stages[{i}]")
        prev = stage.width
    if not isinstance(arch.head, Head):
        raise SpecError("head", f"must be a Head, got {type(arch.head).__name__}")
    _check_int(arch.head.hidden, "head.hidden", minimum=0)
    if isinstance(arch.head.dropout, bool) or not isinstance(arch.head.dropout, (int, float)) \
            or not 0.0 <= arch.head.dropout < 1.0:
        raise SpecError("head.dropout", f"must be a number in [0, 1), got {arch.head.dropout!r}")
    object.__setattr__(arch.head, "dropout", float(arch.head.dropout))
    _check_int(arch.input_size, "input_size")
    for path, width in arch.channels:
        _check_int(width, f"channels.{path}")
    for path, rank in arch.ranks:
        _check_int(rank, f"ranks.{path}")
    total_stride = arch.stem.stride * (2 if arch.stem.pool else 1)
    for s in arch.stages:
        total_stride *= s.stride
    if total_stride > arch.input_size:
        raise SpecError("stages", f"total stride {total_stride} exceeds input_size {arch.input_size}")


def _validate_stage(stage: Stage, where: str) -> None:
    if not isinstance(stage, Stage):
        raise SpecError(where, f"must be a Stage, got {type(stage).__name__}")
    block = _check_choice(BLOCKS, stage.block, f"{where}.block")
    _check_int(stage.depth, f"{where}.depth")
    _check_int(stage.width, f"{where}.width")
    _check_int(stage.stride, f"{where}.stride")
    if stage.stride > 2:
        raise SpecError(f"{where}.stride", f"must be 1 or 2, got {stage.stride}")
    norm = _check_choice(NORMS, stage.norm, f"{where}.norm")
    attn = _check_choice(ATTENTIONS, stage.attention, f"{where}.attention")
    _check_choice(ACTIVATIONS, stage.act, f"{where}.act")
    if stage.order not in ORDERS:
        raise SpecError(f"{where}.order", f"must be one of {', '.join(ORDERS)}, got {stage.order!r}")
    orders = block.meta.get("orders", ("post",))
    if stage.order not in orders:
        raise SpecError(f"{where}.order", f"block {block.name!r} supports orders {', '.join(orders)}, "
                                          f"got {stage.order!r}")
    object.__setattr__(stage, "block_args", _check_options(block, stage.block_args, f"{where}.block_args"))
    object.__setattr__(stage, "norm_args", _check_options(norm, stage.norm_args, f"{where}.norm_args"))
    object.__setattr__(stage, "attn_args", _check_options(attn, stage.attn_args, f"{where}.attn_args"))
    check = block.meta.get("check")
    if check is not None:
        problem = check(stage)
        if problem:
            raise SpecError(where, problem)
    for entry, kind in ((norm, "norm"), (attn, "attention")):
        check = entry.meta.get("check")
        problem = check(stage) if check is not None else None
        if problem:
            raise SpecError(f"{where}.{kind}", problem)


def _check_norm_widths(stage: Stage, in_width: int, stem: Stem | None, where: str) -> None:
    """Run the norm's check for every width it will normalise: the stage width, the input width
    for norms placed before the first conv (``pre``/``white_conv``) and the stem's when it has one."""
    check = NORMS.entry(stage.norm).meta.get("check")
    if check is None:
        return
    widths = {in_width} if stage.order in ("pre", "white_conv") else set()
    if stem is not None and stem.norm_act:
        widths.add(stem.width)
    for w in sorted(widths - {stage.width}):
        problem = check(replace(stage, width=w))
        if problem:
            raise SpecError(f"{where}.norm", f"{problem} (input width {w})")
    inner = BLOCKS.entry(stage.block).meta.get("norm_widths")  # widths normalised inside the block
    for w in sorted(set(inner(stage, in_width)) - {stage.width} if inner is not None else ()):
        problem = check(replace(stage, width=w))
        if problem:
            raise SpecError(f"{where}.norm", f"{problem} (inner width {w} of block {stage.block!r})")


# --------------------------------------------------------------------------- dict / YAML


def to_dict(arch: Arch) -> dict[str, Any]:
    """Canonical plain-data form (field order fixed; option mappings sorted; tuples as lists)."""

    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v

    def obj(o: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(o):
            val = getattr(o, f.name)
            if f.metadata.get("omit_default") and val == f.default:  # a newer field: old ids stay valid
                continue
            if f.name.endswith("_args"):
                val = {k: conv(v) for k, v in val}
            out[f.name] = conv(val) if not isinstance(val, dict) else val
        return out

    out = {
        "input_size": arch.input_size,
        "stem": obj(arch.stem),
        "stages": [obj(s) for s in arch.stages],
        "head": obj(arch.head),
    }
    if arch.channels:  # a newer field: unpruned specs keep their ids
        out["channels"] = dict(arch.channels)
    if arch.ranks:
        out["ranks"] = dict(arch.ranks)
    return out


def _take(data: Any, cls: type, where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise SpecError(where or "<document>", f"must be a mapping, got {type(data).__name__}")
    names = [f.name for f in fields(cls)]
    for key in data:
        if key not in names:
            raise SpecError(f"{where}.{key}" if where else str(key), f"unknown key; valid: {', '.join(names)}")
    return dict(data)


def from_dict(data: Any) -> Arch:
    """Inverse of :func:`to_dict`; unknown keys and wrong types raise :class:`SpecError`."""
    if data is None:
        raise SpecError("<document>", "is empty; expected a mapping with stem, stages, head, input_size")
    top = _take(data, Arch, "")
    if "stages" not in top:
        raise SpecError("stages", "is required")
    stem = Stem(**_take(top.get("stem", {}) or {}, Stem, "stem"))
    if not isinstance(top["stages"], list):
        raise SpecError("stages", f"must be a list, got {type(top['stages']).__name__}")
    stages = []
    for i, s in enumerate(top["stages"]):
        kw = _take(s, Stage, f"stages[{i}]")
        for req in ("block", "depth", "width"):
            if req not in kw:
                raise SpecError(f"stages[{i}].{req}", "is required")
        try:
            stages.append(Stage(**kw))
        except SpecError as exc:
            raise SpecError(f"stages[{i}].{exc.field}", exc.problem) from None
    head = Head(**_take(top.get("head", {}) or {}, Head, "head"))
    return Arch(stem=stem, stages=tuple(stages), head=head, input_size=top.get("input_size", 32),
                channels=top.get("channels") or (), ranks=top.get("ranks") or ())


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # never emit &anchors
        return True


# LibYAML's emitter when PyYAML was built with it: the same text, ~4× faster (a search writes every proposal's
# YAML in its driver, and each trial process parses one); the pure-Python classes otherwise.
_FastDumper: type = type("_FastDumper", (yaml.CSafeDumper,), {"ignore_aliases": _Dumper.ignore_aliases}) \
    if getattr(yaml, "__with_libyaml__", False) else _Dumper
_FastLoader: type = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader


def to_yaml(arch: Arch) -> str:
    """Canonical YAML; ``to_yaml(from_yaml(to_yaml(a))) == to_yaml(a)`` byte for byte."""
    return yaml.dump(to_dict(arch), Dumper=_FastDumper, sort_keys=False, default_flow_style=False, width=100)


def from_yaml(text: str) -> Arch:
    """Parse YAML (safe loader: ``!!python`` tags are rejected) into a validated :class:`Arch`."""
    try:
        try:
            data = yaml.load(text, Loader=_FastLoader)  # a safe loader: LibYAML's or PyYAML's SafeLoader
        except yaml.YAMLError:
            data = yaml.safe_load(text)  # the pure-Python parser's message (its line numbers), as before
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError("<document>", f"is not valid YAML{at}: {problem}") from None
    return from_dict(data)
