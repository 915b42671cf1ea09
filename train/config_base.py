"""The one config idiom: frozen pydantic models that refuse unknown keys and fail with one line naming the field.

:class:`ConfigModel` is the base of every settings class (``MethodsConfig``, ``RetrainConfig``,
``CompressConfig`` here; the search config's sections in ``search/config.py``). Building one with bad
values raises ``ValueError("field: problem")``; :func:`first_error` turns a pydantic
``ValidationError`` into that line (dotted location for nested models, ``unknown key; valid keys: ...``
for a misspelt key). Checks that involve several fields raise :class:`FieldError` from a
``model_validator`` so that the line still names the field.
"""
from __future__ import annotations

import types
import typing
from typing import Any, Iterable, Literal, Self

from pydantic import BaseModel, ConfigDict, ValidationError


class FieldError(ValueError):
    """``field: problem`` from a check across fields; ``field`` may be dotted (``methods.lr_rule``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def literal(names: Iterable[str]) -> Any:
    """``Literal[...]`` of ``names``: a field whose valid values come from a registry or a tuple."""
    return Literal[tuple(names)]  # type: ignore[misc]


def model_at(model: type[BaseModel] | None, path: Iterable[str]) -> type[BaseModel] | None:
    """The model class reached from ``model`` through the field names ``path`` (None past a non-model)."""
    for name in path:
        field = model.model_fields.get(name) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next((m for m in map(_model_in, typing.get_args(annotation)) if m is not None), None)
    return None


def error_location(exc: ValidationError, model: type[BaseModel]) -> tuple[list[str], str]:
    """The first problem as (field path, ``must be ..., got X``)."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    cause = (err.get("ctx") or {}).get("error")
    msg = err["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    if isinstance(cause, FieldError):
        return loc + cause.field.split("."), cause.problem
    if err["type"] == "extra_forbidden":
        parent = model_at(model, loc[:-1])
        if parent is None:
            return loc, "unknown key"
        home = [name for name in parent.model_fields
                if loc[-1] in getattr(model_at(parent, [name]), "model_fields", {})]
        moved = f"; {loc[-1]} belongs in {home[0]}" if home else ""
        return loc, f"unknown key{moved}; valid keys: {', '.join(parent.model_fields)}"
    if err["type"] != "value_error" and isinstance(err.get("input"), (str, int, float, type(None))):
        msg += f", got {err['input']!r}"
    return loc, msg


def first_error(exc: ValidationError, model: type[BaseModel], *, root: str = "<config>") -> str:
    """One line for the first problem: ``a.b: must be ..., got X`` (``root`` when it has no field)."""
    loc, msg = error_location(exc, model)
    return f"{'.'.join(loc) or root}: {msg}"


class ConfigModel(BaseModel):
    """Frozen, ``extra="forbid"``, finite floats; a bad value raises ``ValueError("field: problem")``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:  # a FieldError keeps its path when this model is nested in another
            loc, msg = error_location(exc, type(self))
            raise (FieldError(".".join(loc), msg) if loc else ValueError(msg)) from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`: validate a plain mapping (nested sections as mappings)."""
        if not isinstance(data, dict):
            raise ValueError(f"<config>: expected a mapping, got {type(data).__name__}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists, nested sections as dicts): JSON- and ``weights_only``-safe."""
        return self.model_dump(mode="json")

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` (``model_copy(update=...)`` would skip validation)."""
        return type(self)(**{**dict(self), **changes})

    def check(self) -> Self:
        """``self`` if it still validates (an instance made by ``model_copy``/``model_construct`` was never checked)."""
        type(self).from_dict(self.to_dict())
        return self
