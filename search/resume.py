"""What a resumed run must match: the storage recorded in ``run.json`` and the config's fingerprint.

``run.json`` records the study name, the storage (``env:NAS_STORAGE_URL`` when the URL came from that
variable, which may hold a password), the storage URL without its password (``storage_url``) and the
:func:`fingerprint` of the config; the study keeps the fingerprint too (user attribute ``fingerprint``).
``--resume`` reopens exactly that storage and study, and refuses with one line (exit 2), before anything
starts, when the storage it would open is another one or a field of the fingerprint changed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .config import Config
from .errors import ConfigError
from .storage import bare_url

RUN_FILE = "run.json"
ENV_STORAGE = "env:NAS_STORAGE_URL"

RESUMABLE = ("name", "plugins", "storage", "search.n_trials", "search.max_concurrent", "ray", "select",
             "data.download", "latency.lock_dir",
             "latency.remeasure_front")
"""Config fields that may change on ``--resume`` (README "Resuming after a crash" says why); every other field
is in the :func:`fingerprint`."""


def fingerprint(cfg: Config) -> dict[str, Any]:
    """``{dotted field: value}`` of everything that decides which trials a run proposes and what each measures:
    the config minus :data:`RESUMABLE` (the scheduler with all its options, defaults filled in)."""
    data = cfg.model_dump(mode="json")
    data["scheduler"] = {"name": cfg.scheduler.name, **cfg.scheduler.options}
    flat: dict[str, Any] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else k)
        elif not any(key == r or key.startswith(r + ".") for r in RESUMABLE):
            flat[key] = value

    walk(data, "")
    return flat


def fingerprint_change(started: dict[str, Any], now: dict[str, Any], *, run_dir: Path) -> str | None:
    """One line naming the first field whose value differs, or None. A field only one side has (a config
    written by an older or newer ``nas``) is not compared, but an optional section turned on or off is (one side
    holds ``a.b: null``, the other ``a.b.c``: ``search.screen``, ``faults.inject``)."""
    pairs = [(key, started[key], value) for key, value in now.items() if key in started]
    for this, other, flip in ((now, started, False), (started, now, True)):
        for key in this:
            section = next((p for p in _prefixes(key) if other.get(p, 0) is None and p not in this), None)
            if section is not None:
                value = {k[len(section) + 1:]: v for k, v in this.items() if k.startswith(section + ".")}
                pairs.append((section, value, None) if flip else (section, None, value))
    for key, was, value in pairs:
        if was != value:
            return (f"{key}: the run was started with {json.dumps(was)}, the config says "
                    f"{json.dumps(value)}; resume with the run's config ({str(run_dir / 'config.yaml')!r}) or "
                    f"start a new run with another --name")
    return None


def _prefixes(key: str) -> list[str]:
    """``a.b.c`` → ``["a", "a.b"]``."""
    parts = key.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]

def read_record(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of a run folder (ConfigError when it is unreadable)."""
    path = Path(run_dir) / RUN_FILE
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--resume: cannot read {str(path)!r} ({type(exc).__name__}); the run cannot be "
                          f"resumed") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("study_name"), str) or not rec.get("storage"):
        raise ConfigError(f"--resume: {str(path)!r} names no study_name and storage; the run cannot be resumed")
    return rec


def public_url(url: str) -> str:
    """The storage as written to run.json: never a password (``env:NAS_STORAGE_URL`` when it came from there)."""
    env = os.environ.get("NAS_STORAGE_URL")
    return ENV_STORAGE if env and url == env else url


def write_record(run_dir: Path, *, study_name: str, storage_url: str, cfg: Config) -> None:
    """``run.json``: study, storage (:func:`public_url`), the URL without password, the fingerprint."""
    rec = {"study_name": study_name, "storage": public_url(storage_url), "storage_url": bare_url(storage_url),
           "fingerprint": fingerprint(cfg)}
    (Path(run_dir) / RUN_FILE).write_text(json.dumps(rec, indent=2))


def resume_storage(rec: dict[str, Any], url: str, *, run_dir: Path) -> str:
    """The storage URL to resume with: the one ``run.json`` records, given that ``url`` (what the config and
    ``NAS_STORAGE_URL`` say now) names the same database; else ConfigError naming the field to fix."""
    field = "NAS_STORAGE_URL" if os.environ.get("NAS_STORAGE_URL") else "storage"
    recorded, where = rec["storage"], rec.get("storage_url")
    if recorded == ENV_STORAGE:
        if not os.environ.get("NAS_STORAGE_URL"):
            raise ConfigError(f"NAS_STORAGE_URL: the run is stored in the database this variable named"
                              f"{' (' + where + ')' if where else ''}; set it again to resume")
        if where and bare_url(url) != where:
            raise ConfigError(f"NAS_STORAGE_URL: names {bare_url(url)!r} but the run is stored in {where!r}; "
                              f"set it to that database to resume")
        return url
    local = Path(run_dir).resolve() / "study.db"
    if recorded.startswith("sqlite:///") and recorded.endswith("/study.db") and local.is_file():
        recorded = f"sqlite:///{local}"  # the run folder was moved: its own study.db
    if bare_url(url) != bare_url(recorded):
        raise ConfigError(f"{field}: gives {bare_url(url)!r} but the run is stored in {recorded!r} (run.json); "
                          f"resume with the same storage{' (unset NAS_STORAGE_URL)' if field != 'storage' else ''}")
    if recorded.startswith("sqlite:///") and not Path(recorded.removeprefix("sqlite:///")).is_file():
        raise ConfigError(f"--resume: the run's storage {recorded!r} does not exist any more; the run cannot be "
                          f"resumed")
    return url
