"""Small argument checks shared by training and evaluation: devices and positive integers."""
from __future__ import annotations

import re

import torch

from space.errors import check_positive_int  # noqa: F401  (re-exported: training code validates with it too)

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def is_torch_device(device: str) -> bool:
    """``device`` is spelled as :func:`resolve_device` accepts it (``cpu``, ``cuda``, ``cuda:N``); nothing is probed."""
    m = _DEVICE.match(device.strip().lower()) if isinstance(device, str) else None
    return m is not None and not (m.group(1) == "cpu" and m.group(2) is not None)


def resolve_device(device: str, *, field: str) -> torch.device:
    """Validate a device string (``cpu``, ``cuda`` or ``cuda:N``) and return the ``torch.device``.

    Raises ``ValueError`` naming ``field`` for a malformed string, and saying that CUDA is
    unavailable (or that index N does not exist) when it is.
    """
    if not is_torch_device(device):
        raise ValueError(f"{field}: must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    m = _DEVICE.match(device.strip().lower())
    if m.group(1) == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"{field}: {device!r} requested but CUDA is unavailable on this machine; use 'cpu'")
    index = int(m.group(2)) if m.group(2) is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ValueError(f"{field}: {device!r} requested but only {torch.cuda.device_count()} CUDA "
                         f"device(s) exist (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)
