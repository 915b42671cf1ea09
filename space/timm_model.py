"""The built architecture as a timm model: ``timm.create_model("nas_arch", arch=..., num_classes=...)``.

Importing :mod:`space` registers the entrypoint ``nas_arch`` with timm's ``@register_model``.
``arch`` is a YAML path, a preset name (``wrn-28-10``, ``ghostnet-1.0``) or an :class:`~space.Arch`;
the model is built by :func:`space.build_model` through timm's ``build_model_with_cfg``, so it
carries a ``pretrained_cfg`` (``input_size`` = (in_chans, S, S) with S the arch's input size,
``first_conv``/``classifier`` names, mean/std) and timm's ``checkpoint_path=`` /
``pretrained_cfg_overlay=dict(file=...)`` loading work with the ``model.pt`` that ``nas retrain``
writes::

    import space, timm
    model = timm.create_model("nas_arch", arch="results/run/retrain/arch.yaml", num_classes=10,
                              checkpoint_path="results/run/retrain/model.pt")

The mean/std in the default cfg are ImageNet's (timm's default); the data a model was retrained
on is recorded in its ``metrics.json``, not in the architecture.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .builder import build_model
from .presets import load_arch
from .spec import Arch

DEFAULT_INPUT_SIZE = 224

default_cfgs = generate_default_cfgs({
    "nas_arch": {
        "url": "", "num_classes": 1000, "input_size": (3, DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE),
        "pool_size": None, "crop_pct": 0.875, "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD, "first_conv": "stem.0", "classifier": "classifier", "license": "apache-2.0",
    },
})


def resolve_arch(arch: Arch | str | Path | None) -> Arch:
    """An :class:`Arch` from an ``Arch``, a YAML path or a preset name; ``ValueError`` otherwise."""
    if isinstance(arch, Arch):
        return arch
    if isinstance(arch, (str, Path)):
        return load_arch(str(arch))
    raise ValueError(f"arch: nas_arch needs arch=<YAML path, preset name or space.Arch>, got {arch!r}")


def _create(*, arch: Arch, num_classes: int, in_chans: int = 3, **unused: Any) -> nn.Module:
    if unused:
        raise ValueError(f"nas_arch: unsupported option(s) {', '.join(sorted(unused))}; the architecture "
                         f"(dropout included) comes from the arch spec")
    return build_model(arch, num_classes=num_classes, in_chans=in_chans)


@register_model
def nas_arch(pretrained: bool = False, *, arch: Arch | str | Path | None = None, input_size: int | None = None,
             **kwargs: Any) -> nn.Module:
    """A network from the NAS spec ``arch`` (YAML path, preset name or ``Arch``).

    ``input_size`` overrides the spec's (e.g. a CIFAR arch run at 64×64). ``pretrained=True``
    needs weights given by ``pretrained_cfg_overlay=dict(file="model.pt")`` (a file for
    ``num_classes`` classes unless the overlay says otherwise; timm then re-initialises a classifier
    of another size and adapts the stem to another ``in_chans``); ``checkpoint_path=`` (handled by
    ``timm.create_model``) loads strictly.
    """
    spec = resolve_arch(arch)
    if input_size is not None:
        spec = spec.replace(input_size=int(input_size))
    in_chans = int(kwargs.get("in_chans", 3))
    # The weights of a NAS arch come from the user's own retraining: by default they have the requested
    # classes (pass pretrained_cfg_overlay=dict(num_classes=K) to adapt a K-class file).
    overlay = {"input_size": (in_chans, spec.input_size, spec.input_size),
               "num_classes": int(kwargs.get("num_classes", 1000)),
               **(kwargs.pop("pretrained_cfg_overlay", None) or {})}
    return build_model_with_cfg(_create, "nas_arch", pretrained, pretrained_cfg_overlay=overlay, arch=spec,
                                **kwargs)
