"""The search space a config opens, sampled through Optuna's define-by-run API.

``SearchSpace.sample(trial) -> Arch`` only calls ``trial.suggest_*`` and builds the frozen spec: no
computation. It draws the stem width, then for each stage block → order → norm → act → attention →
depth → width multiplier, and every draw offers only the candidates that can still make the stage
valid (forward checking against the registries, so no draw leads to a dead end within a stage):

- ``order``: the unit orders the block implements (registry meta ``orders``);
- any field: not the values the block's registry meta ``search_exclude`` names for it (valid
  combinations not worth their cost in a search, e.g. a non-local block in every Residual-Attention unit);
- any field: a value is offered only if some choice of the fields not drawn yet passes the spec's
  validation of the stage after its actual input width (the block/norm/attention ``check`` s:
  G-Ghost's depth >= 3, group norm's divisibility, GhostNet's SE vs the stage attention, ...), with the
  norm's ``check`` also run on each inner width the block declares in its registry meta
  ``norm_widths`` (widths it normalises besides its input and output, which the spec does not see).

Every parameter has one name and one distribution, whatever was drawn before it: ``stem_width``, ``s<i>.<field>``
for a field in ``per_stage``, ``<field>`` for one drawn once per network, and ``[s<i>.]order.<block>`` (the orders
the block implements), each over the full configured list; every sample suggests every one of them (the unused
``order.<block>`` too), so multivariate TPE models them jointly instead of falling back to independent
sampling. A drawn value that the checks above reject for this stage is **re-mapped** deterministically: to the
first accepted value after it in the configured list, wrapping around (``depth: [1, 2, 3]`` with only 3 accepted:
1 → 3, 2 → 3). The trial keeps the drawn value as its parameter, so ``sample(FixedTrial(trial.params))`` gives the
same architecture, and the sampler learns over a fixed space whose points map many-to-one onto architectures. A
field not in ``per_stage`` is drawn once and re-mapped per stage (GhostNet's inner widths and group norm, say).
What can still fail (a total stride above the input size, a stage that no choice fits after the previous one)
raises :class:`InvalidSample` with the reason, which the search records as a failed trial instead of crashing at
build time.

A **skeleton** space (``space.skeleton: PRESET``) fixes every stage to those of a preset and opens only
block options, listed in ``space.block_choices: {BLOCK: {OPTION: candidates}}``: a list of values, or for a
tuple option one list of candidates per element (NAS-Bench-201's six edges: ``{nb201_cell: {ops: [[...] ×
6]}}``). Each open value is one parameter, ``BLOCK.OPTION`` or ``BLOCK.OPTION[k]`` for element k, drawn
once per network and given to every stage of that block.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import TYPE_CHECKING, Any

from space import Arch, Head, SpecError, Stage, Stem, get_preset
from space.registry import BLOCKS

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import SpaceConfig

FIELDS = ("block", "order", "norm", "act", "attention", "depth", "width_mult")
"""Per-stage fields in drawing order; the offer of each depends on the ones drawn before it."""


class InvalidSample(ValueError):
    """A sampled combination that the spec rejects; the message says why."""


def round_width(width: float) -> int:
    """Channel count from base width × multiplier: nearest multiple of 8 (of 4 below 16)."""
    step = 8 if width >= 16 else 4
    return max(step, int(round(width / step)) * step)


def remap(value: Any, full: list, allowed: list) -> Any:
    """``value`` if ``allowed``, else the first allowed candidate after it in ``full``, wrapping around (the first
    allowed one for a value not in ``full``)."""
    if value in allowed:
        return value
    k = full.index(value) + 1 if value in full else 0
    return next(v for v in full[k:] + full[:k] if v in allowed)


def stage_problem(stage: Stage, in_width: int, *, stem_norm: bool = False, where: str = "stages[0]") -> str | None:
    """Why ``stage`` after ``in_width`` channels is invalid (``"field: problem"``), or ``None``.

    The spec validates the stage in a one-stage arch whose stem has ``in_width`` channels (normalised
    when ``stem_norm``), including the norm's ``check`` on each width of the block's ``norm_widths``
    meta. ``where`` replaces ``stages[0]`` in the message.
    """
    try:
        Arch(stem=Stem(width=in_width, norm_act=stem_norm), stages=(stage,), head=Head(), input_size=1 << 20)
    except SpecError as exc:
        return f"{where}{exc.field.removeprefix('stages[0]')}: {exc.problem}"
    return None


def option_params(block_choices: dict[str, dict[str, list]]) -> list[tuple[str, str, int | None, list]]:
    """``(block, option, element or None, candidates)`` of every open block option, in a stable order."""
    out = []
    for block in sorted(block_choices):
        for option in sorted(block_choices[block]):
            values = block_choices[block][option]
            if BLOCKS.entry(block).options[option].type is tuple:
                out.extend((block, option, k, list(cands)) for k, cands in enumerate(values))
            else:
                out.append((block, option, None, list(values)))
    return out


def check_block_choices(skeleton: str | None, block_choices: dict[str, dict[str, list]]) -> None:
    """``ValueError("field: problem")`` unless every open option names a block of the skeleton, an option of it,
    and candidates its option schema accepts (a tuple option: one non-empty list per element)."""
    if block_choices and skeleton is None:
        raise ValueError("block_choices: needs space.skeleton (a preset whose stages stay fixed)")
    stages = get_preset(skeleton).stages if skeleton is not None else ()
    for block, options in block_choices.items():
        if block not in {s.block for s in stages}:
            raise ValueError(f"block_choices.{block}: not a block of skeleton {skeleton!r}; its blocks: "
                             f"{', '.join(dict.fromkeys(s.block for s in stages))}")
        entry = BLOCKS.entry(block)
        for option, values in options.items():
            where = f"block_choices.{block}.{option}"
            spec = entry.options.get(option)
            if spec is None:
                raise ValueError(f"{where}: unknown option; valid: {', '.join(entry.options)}")
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}: must be a non-empty list of candidates")
            if spec.type is tuple:
                if any(not isinstance(c, list) or not c for c in values):
                    raise ValueError(f"{where}: a tuple option takes one non-empty list of candidates per element")
                for k, cands in enumerate(values):
                    for c in cands:
                        _coerce(spec, tuple(c if i == k else v[0] for i, v in enumerate(values)), f"{where}[{k}]")
            else:
                for c in values:
                    _coerce(spec, c, where)


def _coerce(spec: Any, value: Any, where: str) -> None:
    try:
        spec.coerce(value, where)
    except SpecError as exc:
        raise ValueError(str(exc)) from None


class SearchSpace:
    def __init__(self, cfg: SpaceConfig, *, input_size: int) -> None:
        self.cfg = cfg
        self.input_size = input_size
        self._problems: dict[tuple, str | None] = {}  # complete stage choices -> problem
        self._open: dict[tuple, str | None] = {}  # partial stage choices -> problem of every completion

    @property
    def num_stages(self) -> int:
        return len(self.skeleton.stages) if self.skeleton is not None else len(self.cfg.strides)

    @property
    def skeleton(self) -> Arch | None:
        """The preset whose stages a skeleton space keeps (None: the stage-wise space)."""
        return get_preset(self.cfg.skeleton) if self.cfg.skeleton is not None else None

    def _orders(self, block: str) -> list[str]:
        supported = BLOCKS.entry(block).meta.get("orders", ("post",))
        return [o for o in self.cfg.order if o in supported]

    def candidates(self, field: str, block: str | None = None) -> list:
        """The configured choices of ``field`` for a stage of ``block``: the orders it implements for ``order``,
        and never a value its registry meta ``search_exclude`` names for ``field``."""
        if field == "order":  # a block no listed order fits is only checked for its options (check())
            values = self._orders(block) or list(BLOCKS.entry(block).meta.get("orders", ("post",)))
        else:
            values = list(getattr(self.cfg, field))
        if block is None or field == "block":
            return values
        excluded = BLOCKS.entry(block).meta.get("search_exclude", {}).get(field, ())
        return [v for v in values if v not in excluded]

    def check(self) -> None:
        """Raise :class:`ConfigError` if a listed block has no listed order, or a fixed option fits no stage."""
        for block in self.cfg.block:
            if not self._orders(block):
                supported = ", ".join(BLOCKS.entry(block).meta.get("orders", ("post",)))
                raise ConfigError(f"space.order: block {block!r} supports orders {supported}; "
                                  f"none of them is listed")
        for field, key in (("block_args", "block"), ("norm_args", "norm"), ("attn_args", "attention")):
            for name in getattr(self.cfg, field):
                blocks = [name] if key == "block" else self.cfg.block
                problem = self._unusable({key: name}, blocks)
                if problem:
                    where, _, what = problem.partition(": ")
                    raise ConfigError(f"space.{field}.{name}: {what} ({where})")

    def _unusable(self, fixed: dict[str, Any], blocks: list[str]) -> str | None:
        """``None`` if some stage of some block in ``blocks`` is valid with ``fixed``; else the first reason."""
        c, first = self.cfg, None
        for i in range(self.num_stages):
            in_width = c.stem_width[0] if i == 0 else round_width(c.base_widths[i - 1] * c.width_mult[0])
            for block in blocks:
                problem = self._open_problem(i, in_width, {"block": block, **fixed})
                if problem is None:
                    return None
                first = first or problem
        return first

    def size(self) -> int:
        """Number of points of the discrete space, counting the choices offered with each block jointly with it.

        Exact when the registries' checks filter nothing; an upper bound otherwise (and where a field shared
        across stages offers different choices per block while the block varies per stage).
        """
        c, n = self.cfg, self.num_stages
        if c.skeleton is not None:
            return math.prod(len(cands) for *_, cands in option_params(c.block_choices))
        others = [f for f in FIELDS if f != "block"]

        def k(field: str, block: str) -> int:
            return len(self.candidates(field, block))

        if "block" in c.per_stage:
            same = {f for f in others
                    if f not in c.per_stage and len({tuple(self.candidates(f, b)) for b in c.block}) == 1}
            per_stage = sum(math.prod(k(f, b) for f in others if f not in same) for b in c.block)
            total = per_stage ** n * math.prod(k(f, c.block[0]) for f in same)
        else:
            total = sum(math.prod(k(f, b) ** (n if f in c.per_stage else 1) for f in others) for b in c.block)
        return total * len(c.stem_width)

    def _pick(self, trial: Any, name: str, choices: list) -> Any:
        return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)

    def _param(self, i: int, field: str, block: str | None) -> tuple[str, list]:
        """Name and full candidate list of the parameter that draws ``field`` for stage ``i`` (of ``block``)."""
        scope = f"s{i}." if field in self.cfg.per_stage else ""
        if field == "order":
            supported = BLOCKS.entry(block).meta.get("orders", ("post",))
            return f"{scope}order.{block}", self._orders(block) or list(supported)
        return f"{scope}{field}", list(getattr(self.cfg, field))

    def parameters(self) -> dict[str, list]:
        """``{name: candidates}`` of every parameter a sample of the stage-wise space suggests (those with one
        candidate are not parameters), in drawing order."""
        out = {"stem_width": list(self.cfg.stem_width)}
        for i in range(self.num_stages):
            for field in FIELDS:
                for block in (self.cfg.block if field == "order" else [None]):
                    name, full = self._param(i, field, block)
                    out.setdefault(name, full)
        return {name: full for name, full in out.items() if len(full) > 1}

    def sample(self, trial: Any) -> Arch:
        """Draw one architecture with ``trial.suggest_categorical`` calls (Optuna trial or FixedTrial)."""
        c = self.cfg
        if c.skeleton is not None:
            return self._sample_skeleton(trial)
        drawn: dict[str, Any] = {}
        stem_width = self._pick(trial, "stem_width", list(c.stem_width))
        stages, in_width = [], stem_width
        for i in range(self.num_stages):
            pick: dict[str, Any] = {}
            for field in FIELDS:
                pick[field] = self._draw(trial, i, in_width, pick, field, drawn)
            stages.append(self._stage(i, pick))
            in_width = stages[-1].width
        for name, full in self.parameters().items():  # the same names in every sample: unused orders too
            self._suggest(trial, name, full, drawn)
        stem = Stem(width=stem_width, norm_act=stages[0].order == "post")
        try:
            return Arch(stem=stem, stages=tuple(stages), head=Head(dropout=c.head_dropout),
                        input_size=self.input_size)
        except SpecError as exc:
            raise InvalidSample(str(exc)) from None

    def _sample_skeleton(self, trial: Any) -> Arch:
        """The skeleton's stages with every open block option drawn once (one parameter per value or element)."""
        drawn: dict[str, dict[str, Any]] = {}
        for block, option, k, cands in option_params(self.cfg.block_choices):
            name = f"{block}.{option}" if k is None else f"{block}.{option}[{k}]"
            value = self._pick(trial, name, cands)
            if k is None:
                drawn.setdefault(block, {})[option] = value
            else:
                drawn.setdefault(block, {}).setdefault(option, []).append(value)
        base = self.skeleton
        try:
            stages = tuple(dataclasses.replace(s, block_args={**s.block_kw, **{
                o: tuple(v) if isinstance(v, list) else v for o, v in drawn.get(s.block, {}).items()}})
                for s in base.stages)
            return dataclasses.replace(base, stages=stages, input_size=self.input_size)
        except SpecError as exc:
            raise InvalidSample(str(exc)) from None

    def _suggest(self, trial: Any, name: str, full: list, drawn: dict[str, Any]) -> Any:
        if name not in drawn:
            drawn[name] = self._pick(trial, name, full)
        return drawn[name]

    def _draw(self, trial: Any, i: int, in_width: int, pick: dict[str, Any], field: str,
              drawn: dict[str, Any]) -> Any:
        """One field of stage ``i``: its parameter's value (drawn once per name, kept in ``drawn``) re-mapped onto
        the candidates some completion of the stage accepts (:func:`remap`)."""
        offered = self.candidates(field, pick.get("block"))
        allowed, why = [], None
        for value in offered:
            problem = self._open_problem(i, in_width, {**pick, field: value})
            if problem is None:
                allowed.append(value)
            elif why is None:
                why = f"{value!r}: {problem}"
        if not allowed:
            if not offered:
                raise InvalidSample(f"stages[{i}].{field}: block {pick.get('block')!r} excludes every listed choice")
            raise InvalidSample(f"stages[{i}]: no {field} of {offered} fits after {in_width} input channels; {why}")
        name, full = self._param(i, field, pick.get("block"))
        return remap(self._suggest(trial, name, full, drawn), full, allowed)

    def _stage(self, i: int, pick: dict[str, Any]) -> Stage:
        c = self.cfg
        return Stage(
            block=pick["block"], depth=pick["depth"], width=round_width(c.base_widths[i] * pick["width_mult"]),
            stride=c.strides[i], norm=pick["norm"], attention=pick["attention"], act=pick["act"], order=pick["order"],
            block_args=c.block_args.get(pick["block"], {}), norm_args=c.norm_args.get(pick["norm"], {}),
            attn_args=c.attn_args.get(pick["attention"], {}))

    def _problem(self, i: int, in_width: int, pick: dict[str, Any]) -> str | None:
        """Why stage ``i`` with every field in ``pick`` is invalid after ``in_width`` channels, or ``None`` (cached)."""
        key = (i, in_width, *(pick[f] for f in FIELDS))
        if key not in self._problems:
            try:
                stage = self._stage(i, pick)
            except SpecError as exc:
                self._problems[key] = f"stages[{i}].{exc.field}: {exc.problem}"
            else:
                self._problems[key] = stage_problem(stage, in_width, stem_norm=i == 0 and stage.order == "post",
                                                    where=f"stages[{i}]")
        return self._problems[key]

    def _open_problem(self, i: int, in_width: int, partial: dict[str, Any]) -> str | None:
        """``None`` if some choice of the fields missing from ``partial`` (which names the block) makes stage ``i``
        valid, else the first completion's problem. Bounded by the product of the remaining candidate lists;
        cached, and it stops at the first valid completion."""
        key = (i, in_width, *(partial.get(f) for f in FIELDS))
        if key in self._open:
            return self._open[key]
        rest = [f for f in FIELDS if f not in partial]
        lists = [self.candidates(f, partial["block"]) for f in rest]
        empty = [f for f, values in zip(rest, lists) if not values]
        first = f"stages[{i}].{empty[0]}: block {partial['block']!r} excludes every listed choice" if empty else None
        for values in itertools.product(*lists):
            problem = self._problem(i, in_width, {**partial, **dict(zip(rest, values))})
            if problem is None:
                first = None
                break
            first = first or problem
        self._open[key] = first
        return first

    def describe(self) -> str:
        size = self.size()
        base = f", skeleton {self.cfg.skeleton}" if self.cfg.skeleton is not None else ""
        return f"{self.num_stages} stages{base}, {size:,} architectures (log10 {math.log10(size):.1f})"


def sample_archs(space: SearchSpace, n: int, *, seed: int) -> list[Arch]:
    """Up to ``n`` distinct architectures of ``space`` in draw order, drawn uniformly by Optuna's seeded
    ``RandomSampler`` (in-memory study; a draw that raises :class:`InvalidSample` is skipped). At most ``50 n``
    draws: fewer than ``n`` come back when the space has fewer distinct architectures (or they are that rare)."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    archs: dict[str, Arch] = {}
    for _ in range(50 * n):
        if len(archs) >= n:
            break
        trial = study.ask()
        try:
            arch = space.sample(trial)
        except InvalidSample:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, 0.0)
        archs.setdefault(arch.arch_id, arch)
    return list(archs.values())
