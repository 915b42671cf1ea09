"""Checkpoints that resume a retrain exactly and load with ``torch.load(weights_only=True)``.

A checkpoint holds the model, optimizer, LR scheduler, EMA and GradScaler states, the number of
completed epochs and optimizer updates, the history, each callback's state, the config, and the
RNG states of every rank (torch CPU, CUDA, numpy's global generator — timm's Mixup draws from it —
and Python's ``random``). Only tensors and plain Python data are stored: numpy's state is kept
as a tensor plus ints. It is written to a temporary file and renamed, so a kill while saving
leaves the previous checkpoint intact. The loaders need no state: epoch e's order and
augmentation are a pure function of ``(seed, e)``.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"
FORMAT = 2


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states as tensors and plain data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": [int(version), [int(v) for v in internal], gauss_next],
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (temporary file, then rename)."""
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` onto the CPU; ``ValueError`` if it is not one of ours."""
    if not path.is_file():
        raise ValueError(f"--resume: no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"--resume: {path} is not a retrain checkpoint of format {FORMAT} "
                         f"(found format {state.get('format') if isinstance(state, dict) else None!r})")
    return state
