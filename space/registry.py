"""Dict-backed registries for the search-space choices (blocks, norms, attention, activations).

One ``Registry`` per family, in the style of timm's ``create_norm``/``create_act`` factories:
names are normalised (lower case, ``-`` and spaces become ``_``), an unknown name raises a
``ValueError`` that lists the valid ones, and registering a name twice warns and replaces.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


def normalize_name(name: str) -> str:
    """Canonical spelling of a choice name: ``"Wide-Basic"`` -> ``"wide_basic"``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a choice name must be a non-empty string, got {name!r}")
    return name.strip().lower().replace("-", "_").replace(" ", "_")


@dataclass(frozen=True)
class OptionSpec:
    """Schema of one block/norm/attention option: its type, default, and an optional check."""

    type: type
    default: Any
    doc: str = ""
    check: Callable[[Any], bool] | None = None
    valid: str = ""  # human-readable description of the valid values, for error messages

    def coerce(self, value: Any, where: str) -> Any:
        """Return ``value`` converted to this option's type, or raise naming ``where``."""
        from .errors import SpecError

        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if self.type is not bool and isinstance(value, bool) or not isinstance(value, self.type):
            raise SpecError(where, f"must be of type {self.type.__name__}, got {value!r}")
        if self.check is not None and not self.check(value):
            raise SpecError(where, f"must be {self.valid or 'valid'}, got {value!r}")
        return value


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered choice: the object (class or factory) plus its option schema and metadata."""

    name: str
    obj: T
    options: dict[str, OptionSpec] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    doc: str = ""


class Registry(Generic[T]):
    """Name -> :class:`Entry` mapping for one family of choices."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self,
        name: str,
        obj: T,
        *,
        options: dict[str, OptionSpec] | None = None,
        doc: str = "",
        **meta: Any,
    ) -> T:
        key = normalize_name(name)
        if key in self._entries:
            warnings.warn(f"{self.family} {key!r} registered twice; the later one wins", stacklevel=2)
        self._entries[key] = Entry(key, obj, dict(options or {}), dict(meta), doc or (obj.__doc__ or "").strip())
        return obj

    def entry(self, name: str) -> Entry[T]:
        key = normalize_name(name)
        try:
            return self._entries[key]
        except KeyError:
            raise ValueError(
                f"unknown {self.family} {name!r}; valid: {', '.join(sorted(self._entries))}"
            ) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        try:
            return isinstance(name, str) and normalize_name(name) in self._entries
        except ValueError:
            return False

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[k] for k in sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


BLOCKS: Registry[Any] = Registry("block")
NORMS: Registry[Any] = Registry("norm")
ATTENTIONS: Registry[Any] = Registry("attention")
ACTIVATIONS: Registry[Any] = Registry("activation")


def register_block(name: str, obj: Any, *, options: dict[str, OptionSpec] | None = None, doc: str = "",
                   orders: tuple[str, ...] = ("post",), kind: str = "block", **meta: Any) -> Any:
    """Register a block class (``kind="block"``) or a whole-stage builder (``kind="stage"``).

    ``orders`` lists the unit orders (``pre``, ``post``, ``white_conv``) the block implements.
    Optional metadata the spec and the sampler read:

    - ``check(stage) -> str | None``: a reason the stage is impossible (validated with the spec);
    - ``norm_widths(stage, in_chs) -> set[int]``: widths the block normalises inside (the norm's
      check runs on each of them too);
    - ``search_exclude``: ``{field: (values, ...)}`` never offered with this block by the sampler
      (e.g. attention too costly inside it);
    - ``searchable=False``: not offered by the full space — an export format (pruned/low-rank) or
      a block of a fixed space of its own (NAS-Bench-201's cell and reduction block);
    - ``example``: Stage overrides for the contract test.
    """
    return BLOCKS.register(name, obj, options=options, doc=doc, orders=tuple(orders), kind=kind, **meta)


def register_norm(name: str, obj: Any, *, options: dict[str, OptionSpec] | None = None, doc: str = "",
                  **meta: Any) -> Any:
    """Register a normaliser factory ``obj(num_features, **options) -> nn.Module``."""
    return NORMS.register(name, obj, options=options, doc=doc, **meta)


def register_attention(name: str, obj: Any, *, options: dict[str, OptionSpec] | None = None, doc: str = "",
                       **meta: Any) -> Any:
    """Register an attention factory ``obj(channels, **options) -> nn.Module`` (shape-preserving)."""
    return ATTENTIONS.register(name, obj, options=options, doc=doc, **meta)


def register_activation(name: str, obj: Any, *, doc: str = "", **meta: Any) -> Any:
    """Register an activation factory ``obj() -> nn.Module``."""
    return ACTIVATIONS.register(name, obj, doc=doc, **meta)
