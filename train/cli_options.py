"""Command-line options generated from a :class:`~train.config_base.ConfigModel`'s fields, flat and timm-style.

Each field becomes ``--field-name`` (a nested model's fields too, without its name: ``methods.lr_rule`` is
``--lr-rule``), its type the argparse type, a ``Literal`` the choices, ``Field(description=...)`` the help
with the default. A ``bool`` that is off by default is a switch (``--ema``), one that is on by default a
``--no-...`` switch, an optional ``bool`` a ``--x/--no-x`` pair; ``tuple[int, ...]`` takes one or more
values. Every option defaults to ``None`` so that :func:`config_from_args` passes on only what was given
and the model's defaults stay the only defaults.
"""
from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Callable, Literal, Mapping, Sequence

from pydantic.fields import FieldInfo

from .config_base import ConfigModel


def int_at_least(low: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``; ``what`` names the accepted values in the error line."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = f"int_at_least_{low}"  # argparse names the type in 'invalid <name> value' lines
    return parse


positive_int = int_at_least(1, "a positive integer")
"""An argparse type: an integer >= 1."""
non_negative_int = int_at_least(0, "an integer >= 0")
"""An argparse type: an integer >= 0."""


def option_fields(model: type[ConfigModel]) -> dict[str, tuple[str, ...]]:
    """Option ``dest`` → the field's path in ``model`` (``{"lr_rule": ("methods", "lr_rule"), ...}``)."""
    out: dict[str, tuple[str, ...]] = {}
    for name, field in model.model_fields.items():
        nested = _nested(field)
        for dest, path in (option_fields(nested).items() if nested else [(name, ())]):
            if dest in out:
                raise ValueError(f"{model.__name__}.{name}: option {dest!r} is declared twice (flat flags need "
                                 f"unique field names)")
            out[dest] = (name, *path) if nested else (name,)
    return out


def add_config_options(parser: argparse.ArgumentParser, model: type[ConfigModel], *,
                       sections: Mapping[str, str] | None = None,
                       flags: Mapping[str, Sequence[str]] | None = None) -> None:
    """Add one option per field of ``model`` to ``parser``.

    ``sections``: field name → title of the argument group that starts at that field (a nested model's
    fields follow in the group open at it). ``flags``: option ``dest`` → its option strings, replacing
    ``--field-name`` (aliases such as ``("-b", "--batch-size")`` or timm's names).
    """
    sections, flags = dict(sections or {}), dict(flags or {})
    stale = sorted(set(sections) - set(model.model_fields)) + sorted(set(flags) - set(option_fields(model)))
    if stale:
        raise ValueError(f"{', '.join(stale)}: names no field of {model.__name__} (sections/flags)")
    _add(parser, parser, model, sections, flags)


def _add(parser: argparse.ArgumentParser, group: Any, model: type[ConfigModel], sections: dict[str, str],
         flags: dict[str, Sequence[str]]) -> Any:
    """Add ``model``'s options to ``group``, opening a new group of ``parser`` at each section; the group open last."""
    for name, field in model.model_fields.items():
        if name in sections:
            group = parser.add_argument_group(sections[name])
        nested = _nested(field)
        if nested is not None:
            group = _add(parser, group, nested, {}, flags)
        else:
            _add_option(group, name, field, flags.get(name))
    return group


def _add_option(group: Any, name: str, field: FieldInfo, strings: Sequence[str] | None) -> None:
    kind, optional = _unwrap(field.annotation)
    default = field.get_default(call_default_factory=True)
    text = (field.description or name.replace("_", " ")).replace("%", "%%")
    kwargs: dict[str, Any] = {"dest": name, "default": None}
    if kind is bool and optional:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif kind is bool:
        kwargs["action"] = "store_false" if default else "store_true"
        text = f"turn off: {text}" if default else text
    elif typing.get_origin(kind) is Literal:
        kwargs.update(choices=list(typing.get_args(kind)), type=type(typing.get_args(kind)[0]))
    elif typing.get_origin(kind) is tuple:
        kwargs.update(nargs="+", type=_unwrap(typing.get_args(kind)[0])[0])
    elif kind in (int, float, str):
        kwargs["type"] = kind
    else:
        raise TypeError(f"{name}: no command-line form for the type {field.annotation!r}")
    if kind is not bool and default is not None and "default" not in text:
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        text += f" (default {shown})"
    prefix = "--no-" if kind is bool and default and not optional else "--"
    group.add_argument(*(strings or [prefix + name.replace("_", "-")]), help=text, **kwargs)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """``(type, optional)``: ``X | None`` → ``(X, True)``; ``Annotated[X, ...]`` → ``X``."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"no command-line form for the union {annotation!r}")
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation, optional


def _nested(field: FieldInfo) -> type[ConfigModel] | None:
    kind = field.annotation
    return kind if isinstance(kind, type) and issubclass(kind, ConfigModel) else None


def config_from_args(args: argparse.Namespace, model: type[ConfigModel]) -> Any:
    """``model`` built from the options that were given; the others keep the model's defaults."""
    data: dict[str, Any] = {}
    for dest, path in option_fields(model).items():
        value = getattr(args, dest, None)
        if value is not None:
            node = data
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
    return model.from_dict(data)
