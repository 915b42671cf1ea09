"""Scores from how a minibatch's samples relate inside the untrained network (Mellor et al.): jacob_cov, the
Jacobian-correlation score of NASWOT's first version as the zero-cost release computes it, and naswot, the ICML 2021
log-determinant of the ReLU binary-code kernel."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .common import Batch, check_batch, on_model, scratch_copy

JACOB_COV_K = 1e-5
"""The released ``jacob_cov.py``'s ``k``, added to each eigenvalue."""


def jacob_cov_from_jacobian(jacobian: np.ndarray) -> float:
    """−Σᵢ [log(λᵢ + k) + 1/(λᵢ + k)] over the eigenvalues λ of the N×N correlation matrix of the rows of an
    (N, D) ``jacobian``, k = 1e-5 (released ``jacob_cov.py``'s ``eval_score``). NaN when a row is constant (its
    correlation is undefined), where the release's eigen-decomposition fails and it records NaN.

    Deliberate difference: ``eigvalsh`` (the matrix is symmetric) instead of ``eig``, so the eigenvalues are real.
    """
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant row: NaN, handled below
        corr = np.corrcoef(np.asarray(jacobian, dtype=np.float64))
    if not np.isfinite(corr).all():
        return float("nan")
    lam = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(lam + JACOB_COV_K) + 1.0 / (lam + JACOB_COV_K)))


def jacob_cov(model: nn.Module, batch: Batch, *, seed: int = 0) -> float:
    """Jacobian covariance (Mellor et al. 2020, arXiv v1; Abdelfattah et al. 2021): the rows are ∂(Σ_c f_c(xₙ))/∂xₙ,
    the gradient of the sum of each sample's outputs with respect to its input (the release's
    ``y.backward(torch.ones_like(y))``), scored by :func:`jacob_cov_from_jacobian`. ``y`` is not used."""
    batch = check_batch(batch, min_size=2)
    with scratch_copy(model, batch, seed=seed) as net:
        x, _ = on_model(net, batch)
        x = x.detach().clone().requires_grad_(True)
        return jacob_cov_from_jacobian(input_jacobian(net(x), x))


def input_jacobian(y: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """The rows ∂(Σ_c y_c(xₙ))/∂xₙ as an (N, D) array; all zeros when ``y`` does not depend on ``x`` (a network whose
    every path to the output is cut, e.g. a NAS-Bench-201 cell of ``none`` edges), whose jacob_cov is then NaN."""
    (jac,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
    if jac is None:
        return np.zeros((x.shape[0], x[0].numel()))
    return jac.reshape(jac.shape[0], -1).cpu().numpy()


def code_kernel(codes: torch.Tensor) -> torch.Tensor:
    """One layer's share of K_H for (N, units) 0/1 ``codes``: cᵢ·cⱼ + (1−cᵢ)·(1−cⱼ) = units − d_H(cᵢ, cⱼ), the
    release's per-hook ``x @ x.t() + (1 - x) @ (1 - x.t())``, as an N×N float64 CPU tensor."""
    c = codes.reshape(codes.shape[0], -1).to(torch.float32)
    agree_on = (c @ c.T).double()  # integer counts: exact in float32 below 2**24 units
    on = c.sum(1, dtype=torch.float64)
    return (2 * agree_on - on[:, None] - on[None, :] + c.shape[1]).cpu()  # (1-c)(1-c)ᵀ = units - on_i - on_j + ccᵀ


def naswot_from_codes(codes: list[torch.Tensor]) -> float:
    """log|K_H| for the binary codes of one batch, one (N, units) 0/1 tensor per ReLU layer (Mellor et al. 2021,
    §3): K_H[i, j] = N_A − d_H(cᵢ, cⱼ) with N_A the number of units and d_H the Hamming distance, summed layer by
    layer (:func:`code_kernel`). The log of the absolute determinant (``slogdet``), as released; −inf when K_H is
    singular."""
    return _logdet(sum(code_kernel(c) for c in codes))


def _logdet(kernel: torch.Tensor) -> float:
    return float(np.linalg.slogdet(kernel.numpy())[1])


def naswot(model: nn.Module, batch: Batch, *, seed: int = 0) -> float:
    """NASWOT score (Mellor et al., "Neural Architecture Search without Training", ICML 2021): the codes are the signs
    (input > 0) of every module whose class name contains ``ReLU`` (the release's ``'ReLU' in str(type(module))``),
    one forward pass in training mode, scored by :func:`naswot_from_codes`. ``y`` is not used; the release's default
    batch is 128.

    Deliberate differences: the release counts a ReLU only after a first forward/backward pass has reached it, then
    runs a second forward pass; here one forward pass counts every ReLU module that runs (the same codes for any
    network whose ReLUs all feed the output and whose forward pass draws no random numbers). A network with no
    ReLU-family module raises ``ValueError`` (the release would score it log|0| = −inf).
    """
    batch = check_batch(batch, min_size=2)
    with scratch_copy(model, batch, seed=seed) as net:
        relus = relu_modules(net, model)
        codes = CodeHooks(relus, batch[0].shape[0])
        try:
            x, _ = on_model(net, batch)
            with torch.no_grad():
                net(x)
        finally:
            codes.remove()
        return codes.score()


def relu_modules(net: nn.Module, model: nn.Module) -> list[nn.Module]:
    """Every module of ``net`` whose class name contains ``ReLU``; ``ValueError`` naming ``model`` when none."""
    relus = [m for m in net.modules() if "ReLU" in type(m).__name__]
    if not relus:
        raise ValueError(f"model: naswot needs ReLU-family modules (its codes are ReLU input signs); "
                         f"{type(model).__name__} has none")
    return relus


class CodeHooks:
    """Forward pre-hooks on ``relus`` adding each call's :func:`code_kernel` of its input signs to an n×n kernel;
    :meth:`score` is naswot's log|K_H| (:func:`naswot`)."""

    def __init__(self, relus: list[nn.Module], n: int) -> None:
        self.kernel = torch.zeros(n, n, dtype=torch.float64)
        self.calls, self.modules = 0, len(relus)
        self.handles = [m.register_forward_pre_hook(self._record) for m in relus]

    def _record(self, _m: nn.Module, inp: Any) -> None:
        self.kernel = self.kernel + code_kernel(inp[0].detach() > 0)
        self.calls += 1

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def score(self) -> float:
        if not self.calls:
            raise ValueError(f"model: none of the {self.modules} ReLU-family modules ran in the forward pass")
        return _logdet(self.kernel)
