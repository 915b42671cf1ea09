"""The search space a config opens, sampled through Optuna's define-by-run API.

``SearchSpace.sample(trial) -> Arch`` only calls ``trial.suggest_*`` and builds the frozen spec:
no computation. Choices that a block does not support (a unit order, say) are never offered
(conditional parameters); a combination the spec still rejects raises :class:`InvalidSample`
with the reason, which the search records as a failed trial instead of crashing at build time.
"""
from __future__ import annotations

import math
from typing import Any

from space import Arch, Head, SpecError, Stage, Stem
from space.registry import BLOCKS

from .config import ConfigError, SpaceConfig

FIELDS = ("depth", "width_mult", "block", "order", "norm", "attention", "act")


class InvalidSample(ValueError):
    """A sampled combination that the spec rejects; the message says why."""


def round_width(width: float) -> int:
    """Channel count from base width × multiplier: nearest multiple of 8 (of 4 below 16)."""
    step = 8 if width >= 16 else 4
    return max(step, int(round(width / step)) * step)


class SearchSpace:
    def __init__(self, cfg: SpaceConfig, *, input_size: int) -> None:
        self.cfg = cfg
        self.input_size = input_size

    @property
    def num_stages(self) -> int:
        return len(self.cfg.strides)

    def _orders(self, block: str) -> list[str]:
        supported = BLOCKS.entry(block).meta.get("orders", ("post",))
        return [o for o in self.cfg.order if o in supported]

    def check(self) -> None:
        """Raise :class:`ConfigError` if a fixed option or an order cannot work with a listed choice."""
        for block in self.cfg.block:
            if not self._orders(block):
                supported = ", ".join(BLOCKS.entry(block).meta.get("orders", ("post",)))
                raise ConfigError(f"space.order: block {block!r} supports orders {supported}; "
                                  f"none of them is listed")
        for field, key in (("block_args", "block"), ("norm_args", "norm"), ("attn_args", "attention")):
            for name, args in getattr(self.cfg, field).items():
                block = name if key == "block" else self.cfg.block[0]
                orders = self._orders(block) or list(BLOCKS.entry(block).meta.get("orders", ("post",)))
                kw = {"block": block, "order": orders[0], key: name, field: args}
                try:
                    _probe(Stage(depth=1, width=64, **kw))
                except SpecError as exc:
                    raise ConfigError(f"space.{field}.{name}: {exc.problem} ({exc.field})") from None

    def size(self) -> int:
        """Number of distinct points of the discrete space (block×order counted jointly)."""
        n = self.num_stages
        total = 1
        for field in ("depth", "width_mult", "norm", "attention", "act"):
            k = len(getattr(self.cfg, field))
            total *= k ** n if field in self.cfg.per_stage else k
        pairs = sum(len(self._orders(b)) for b in self.cfg.block)
        per_stage_pair = "block" in self.cfg.per_stage or "order" in self.cfg.per_stage
        total *= pairs ** n if per_stage_pair else pairs
        return total * len(self.cfg.stem_width)

    def _pick(self, trial: Any, name: str, choices: list) -> Any:
        return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)

    def sample(self, trial: Any) -> Arch:
        """Draw one architecture with ``trial.suggest_categorical`` calls (Optuna trial or FixedTrial)."""
        c = self.cfg
        shared: dict[str, Any] = {}
        stages = []
        for i in range(self.num_stages):
            pick: dict[str, Any] = {}
            for field in FIELDS:
                scope = f"s{i}." if field in c.per_stage else ""
                if not scope and field in shared:
                    pick[field] = shared[field]
                    continue
                if field == "order":
                    choices = self._orders(pick["block"])
                    value = self._pick(trial, f"{scope}order.{pick['block']}", choices)
                else:
                    value = self._pick(trial, f"{scope}{field}", list(getattr(c, field)))
                pick[field] = value
                if not scope:
                    shared[field] = value
            stages.append(Stage(
                block=pick["block"], depth=pick["depth"],
                width=round_width(c.base_widths[i] * pick["width_mult"]), stride=c.strides[i],
                norm=pick["norm"], attention=pick["attention"], act=pick["act"], order=pick["order"],
                block_args=c.block_args.get(pick["block"], {}), norm_args=c.norm_args.get(pick["norm"], {}),
                attn_args=c.attn_args.get(pick["attention"], {})))
        stem = Stem(width=self._pick(trial, "stem_width", list(c.stem_width)),
                    norm_act=stages[0].order == "post")
        try:
            return Arch(stem=stem, stages=tuple(stages), head=Head(dropout=c.head_dropout),
                        input_size=self.input_size)
        except SpecError as exc:
            raise InvalidSample(str(exc)) from None

    def describe(self) -> str:
        size = self.size()
        return f"{self.num_stages} stages, {size:,} architectures (log10 {math.log10(size):.1f})"


def _probe(stage: Stage) -> None:
    """Validate one stage in a minimal arch (runs the registries' option checks)."""
    Arch(stem=Stem(width=16), stages=(stage,), head=Head(), input_size=64)
