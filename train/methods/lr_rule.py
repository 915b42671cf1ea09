"""Learning rate as a function of batch size (Granziol, Zohren & Roberts, "Learning Rates as a Function
of Batch Size: A Random Matrix Theory Approach to Neural Network Training", JMLR 23, 2022).

The paper models the mini-batch Hessian as the full Hessian plus a random-matrix perturbation whose
spectral width shrinks like 1/√B. The largest stable step then grows linearly with the batch size B
for SGD (the step multiplies the raw curvature: ``lr ∝ B``, the linear scaling rule of Goyal et al.
2017) and with its square root for adaptive optimisers, whose diagonal second-moment preconditioner
already divides the curvature by the gradient noise scale (``lr ∝ √B``, the rule LAMB's authors
used too). :func:`scale_lr` applies the rule relative to the batch size ``base_batch`` at which
``base_lr`` was tuned.

Optimizer names are timm's (``timm.optim.list_optimizers()``): ``auto`` knows the SGD family
(sgd, nesterov, momentum, sgdw, sgdp) and the Adam/second-moment family (adam, adamw, nadam,
radam, adamax, adamp, adabelief, lamb, adan, adopt, laprop, rmsprop, adagrad, adafactor,
novograd and their variants), with timm's ``fused``/``bnb`` prefixes, the cautious ``c`` prefix
and the ``8bit``/``legacy`` suffixes stripped. Sign- or orthogonalisation-based optimizers (lion,
muon, kron, mars, madgrad, lars, adahessian, ...) fit neither regime of the paper: ``auto`` refuses
them and asks for an explicit rule.

>>> scale_lr(0.1, 512, 128, "sgd")
0.4
>>> round(scale_lr(1e-3, 512, 128, "adamw"), 6)
0.002
"""
from __future__ import annotations

import math

LR_RULES = ("auto", "linear", "sqrt", "none")

SGD_FAMILY = frozenset({"sgd", "sgdc", "sgdw", "sgdp", "nesterov", "nesterovw", "momentum"})
ADAPTIVE_FAMILY = frozenset({
    "adam", "adamw", "adamc", "adamp", "nadam", "nadamw", "nadamc", "radam", "radamw", "adamax",
    "adabelief", "radabelief", "lamb", "lambw", "lambc", "lambcw", "lambcd", "adan", "adanw",
    "adopt", "adoptw", "adoptc", "laprop", "lapropc", "rmsprop", "rmsproptf", "rmsproptfw",
    "rmsproptfc", "adagrad", "adafactor", "adafactorbv", "adafactorbvc", "novograd", "novogradw",
    "novogradc"})


def optimizer_family(name: str) -> str | None:
    """``"sgd"`` (linear rule), ``"adaptive"`` (square-root rule) or ``None`` when ``name`` is in neither.

    >>> optimizer_family("fusedlamb"), optimizer_family("csgdw"), optimizer_family("lion")
    ('adaptive', 'sgd', None)
    """
    key = name.strip().lower().replace("_", "").replace("-", "")
    for suffix in ("8bit", "legacy"):
        key = key.removesuffix(suffix)
    for prefix in ("fused", "bnb"):
        key = key.removeprefix(prefix)
    for candidate in (key, key[1:] if key.startswith("c") else key):
        if candidate in SGD_FAMILY:
            return "sgd"
        if candidate in ADAPTIVE_FAMILY:
            return "adaptive"
    return None


def resolve_rule(rule: str, optimizer_name: str) -> str:
    """The concrete rule (``linear``, ``sqrt`` or ``none``) that ``rule`` means for ``optimizer_name``."""
    if rule not in LR_RULES:
        raise ValueError(f"lr_rule: must be one of {', '.join(LR_RULES)}, got {rule!r}")
    if rule != "auto":
        return rule
    family = optimizer_family(optimizer_name)
    if family is None:
        raise ValueError(f"lr_rule: 'auto' knows no batch-size rule for optimizer {optimizer_name!r} (neither the "
                         f"SGD family nor an Adam-like second-moment method; Granziol et al. 2022); set lr_rule to "
                         f"'linear', 'sqrt' or 'none'")
    return "linear" if family == "sgd" else "sqrt"


def scale_lr(base_lr: float, batch_size: int, base_batch: int, optimizer_name: str, rule: str = "auto") -> float:
    """``base_lr`` (tuned at ``base_batch``) moved to ``batch_size`` by ``rule``.

    ``linear``: ``base_lr · B/B₀`` (SGD); ``sqrt``: ``base_lr · √(B/B₀)`` (Adam family); ``none``:
    ``base_lr``; ``auto``: linear or sqrt from ``optimizer_name`` (``ValueError`` naming ``lr_rule``
    for an optimizer of neither family). ``batch_size`` is the *global* batch (all processes).
    """
    kind = resolve_rule(rule, optimizer_name)
    for field, value in (("batch_size", batch_size), ("lr_base_batch", base_batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field}: must be an integer >= 1, got {value!r}")
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or not base_lr > 0:
        raise ValueError(f"lr: must be a number > 0, got {base_lr!r}")
    ratio = batch_size / base_batch
    if kind == "linear":
        return float(base_lr) * ratio
    if kind == "sqrt":
        return float(base_lr) * math.sqrt(ratio)
    return float(base_lr)
