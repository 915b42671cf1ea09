"""Learning rate as a function of batch size (Granziol, Zohren & Roberts, "Learning Rates as a Function
of Batch Size: A Random Matrix Theory Approach to Neural Network Training", JMLR 23, 2022).

The paper models the mini-batch Hessian as the full Hessian plus a random-matrix perturbation whose
spectral width shrinks like 1/√B. The largest stable step then grows linearly with the batch size B
for SGD (the step multiplies the raw curvature: ``lr ∝ B``, the linear scaling rule of Goyal et al.
2017) and with its square root for adaptive optimisers, whose diagonal second-moment preconditioner
already divides the curvature by the gradient noise scale (``lr ∝ √B``, the rule LAMB's authors
used too). :func:`scale_lr` applies the rule relative to the batch size ``base_batch`` at which
``base_lr`` was tuned.

**The cap.** Both rules hold only while the random-matrix (noise) part of the batch Hessian dominates
its largest eigenvalue: that part shrinks with B, and once it falls below the top eigenvalue of the
full Hessian the largest stable step stops growing and tends to the full-batch value 2/λ_max — the
lr saturates. The batch size B_crit where this happens is set by the spectrum (the paper estimates
it with stochastic Lanczos quadrature on the network and data at hand). ``max_batch`` is that B_crit:
above it the rule is applied to ``min(B, max_batch)`` (the lr stays at its value at B_crit) and a
warning is given once. The default :data:`LR_MAX_BATCH` = 1024 is a conservative stand-in, not a
measurement: raise it when a spectrum estimate or an lr sweep at the large batch supports it.
Large scaled lrs also need the gradual warm-up of Goyal et al. (2017, "Accurate, Large Minibatch SGD"):
start at the small-batch lr and ramp linearly to the scaled one over the first epochs (5 in the paper);
the retrain hook adds it when the rule raises the lr and no warm-up is configured.

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
import warnings

LR_RULES = ("auto", "linear", "sqrt", "none")
LR_MAX_BATCH = 1024
LR_WARMUP_EPOCHS = 5  # Goyal et al. 2017
_warned: set[tuple[int, int]] = set()

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


def scale_lr(base_lr: float, batch_size: int, base_batch: int, optimizer_name: str, rule: str = "auto", *,
             max_batch: int | None = LR_MAX_BATCH) -> float:
    """``base_lr`` (tuned at ``base_batch``) moved to ``batch_size`` by ``rule``, capped at ``max_batch``.

    With B = min(``batch_size``, ``max_batch``) (no cap when ``max_batch`` is None): ``linear``:
    ``base_lr · B/B₀`` (SGD); ``sqrt``: ``base_lr · √(B/B₀)`` (Adam family); ``none``: ``base_lr``;
    ``auto``: linear or sqrt from ``optimizer_name`` (``ValueError`` naming ``lr_rule`` for an optimizer
    of neither family). ``batch_size`` is the *global* batch (all processes). A batch above the cap
    warns once per (batch, cap).
    """
    kind = resolve_rule(rule, optimizer_name)
    for field, value in (("batch_size", batch_size), ("lr_base_batch", base_batch),
                         ("lr_max_batch", 1 if max_batch is None else max_batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field}: must be an integer >= 1, got {value!r}")
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or not base_lr > 0:
        raise ValueError(f"lr: must be a number > 0, got {base_lr!r}")
    batch = batch_size
    if kind != "none" and max_batch is not None and batch_size > max_batch:
        batch = max_batch
        if (batch_size, max_batch) not in _warned:
            _warned.add((batch_size, max_batch))
            warnings.warn(f"lr_rule: global batch {batch_size} is above lr_max_batch {max_batch}; the lr is kept at "
                          f"its value for batch {max_batch} (past the critical batch the stable lr saturates, "
                          f"Granziol et al. 2022)", stacklevel=2)
    ratio = batch / base_batch
    if kind == "linear":
        return float(base_lr) * ratio
    if kind == "sqrt":
        return float(base_lr) * math.sqrt(ratio)
    return float(base_lr)
