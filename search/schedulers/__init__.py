"""Early stopping: the Ray Tune schedulers a config can name (``scheduler.name``), as a registry.

A scheduler is one module in this folder (imported automatically) with one ``SCHEDULERS.register``
line: ``SCHEDULERS.register(name, factory, options={key: OptionSpec(...)}, check=..., doc=...)``.
``factory(options, *, objectives, modes, max_t)`` returns a Ray Tune ``TrialScheduler`` (or None for
Ray's FIFO order); ``options`` holds every declared option, defaults filled in, read from the keys of
the config's ``scheduler:`` section beside ``name``; the optional ``check(options, *, max_t)`` returns
why the options cannot work with ``max_t`` proxy epochs (one config error line), or None.

A scheduler that keeps state across trials defines ``replay(arrivals)``: on resume, search/run.py hands it
every per-epoch report the stored trials made, ``(key, epoch, objective vector)`` in arrival order
(search/searcher.py ``epoch_arrivals``), before any new trial runs.

Trainables report ``epoch`` (epochs completed) after every epoch and a final result without it;
:func:`is_intermediate` tells them apart.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ray.tune.schedulers import TrialScheduler

from space._autoload import import_submodules
from space.registry import Registry

SchedulerFactory = Callable[..., TrialScheduler | None]
SCHEDULERS: Registry[SchedulerFactory] = Registry("scheduler")
"""``scheduler.name`` → factory ``(options, *, objectives, modes, max_t)`` of a Ray Tune scheduler (None: FIFO)."""

TIME_ATTR = "epoch"


def is_intermediate(result: dict[str, Any]) -> bool:
    """True for a per-epoch report (it carries ``epoch``), False for a trial's final report.

    Ray sets ``done: True`` on the last result of *every* finished trial, including one a scheduler
    stopped, so ``done`` cannot tell them apart; the presence of ``epoch`` can: ArchEvaluation's final
    metrics (and a cached trial's report) never carry it. A trial whose last result is intermediate
    and carries no ``trial_error`` was stopped early.
    """
    return TIME_ATTR in result and "trial_error" not in result


def scheduler_options(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """Every option of scheduler ``name``: ``given`` checked against its declaration, defaults filled in.

    Raises ``ValueError("KEY: problem")`` for an unknown key or a bad value."""
    entry = SCHEDULERS.entry(name)
    unknown = sorted(set(given) - set(entry.options))
    if unknown:
        valid = ", ".join(entry.options) or "none"
        raise ValueError(f"{unknown[0]}: not an option of scheduler {entry.name!r}; its options: {valid}")
    return {k: (spec.coerce(given[k], k) if k in given else spec.default) for k, spec in entry.options.items()}


def check_scheduler(name: str, options: dict[str, Any], *, max_t: int) -> str | None:
    """The registered ``check`` of scheduler ``name`` (why it cannot run with ``max_t`` epochs), or None."""
    check = SCHEDULERS.entry(name).meta.get("check")
    return check(options, max_t=max_t) if check is not None else None


def make_scheduler(name: str, options: dict[str, Any], *, objectives: Sequence[str], modes: Sequence[str],
                   max_t: int) -> TrialScheduler | None:
    """The Ray Tune scheduler ``name`` with ``options``; None for ``none`` (every trial runs to the end)."""
    return SCHEDULERS.get(name)(scheduler_options(name, options), objectives=objectives, modes=modes, max_t=max_t)


def _run_to_the_end(options: dict[str, Any], *, objectives: Sequence[str], modes: Sequence[str], max_t: int) -> None:
    return None


SCHEDULERS.register("none", _run_to_the_end, doc="No early stopping: every trial trains all proxy.epochs")

import_submodules(__name__, __path__)
