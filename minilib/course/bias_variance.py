"""The ℓ2 bias-variance decomposition and ℓ2 / ℓ1 as maximum likelihood (notebook 01).

* :func:`bias_variance_mc` checks the decomposition E[(y^ - y)^2] = noise + bias^2 + variance
  (MR-GAN section 3.2 / Appendix E, Eq. 16-17) on Monte Carlo draws; :func:`estimator_draws` makes the draws.
* :func:`fit_location_scale` fits centre (and dispersion) by gradient descent on ``mle_loss``:
  ℓ2 / ℓ1 as Gaussian / Laplace maximum likelihood (MR-GAN Eq. 3-5); :func:`mle_closed_form` is the answer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..losses import DISTS, mle_loss

__all__ = ["BiasVariance", "bias_variance_mc", "estimator_draws", "FitResult", "fit_location_scale", "mle_closed_form"]

_F64 = torch.float64


@dataclass(frozen=True)
class BiasVariance:
    """Monte Carlo terms of E[(y^ - y)^2] = noise + bias^2 + variance (MR-GAN section 3.2)."""

    expected_loss: float  # mean of (y^_t - y_t)^2 over the paired draws
    noise: float  # Var y
    bias2: float  # (E y^ - E y)^2
    variance: float  # Var y^
    stderr: float  # standard error of expected_loss

    @property
    def total(self) -> float:
        """noise + bias2 + variance (should match expected_loss within a few stderr)."""
        return self.noise + self.bias2 + self.variance


def bias_variance_mc(pred: torch.Tensor, y: torch.Tensor) -> BiasVariance:
    """Decompose the ℓ2 risk of an estimator from T paired, independent draws.

    Args:
        pred: ``[T]`` draws of the prediction y^ (e.g. an estimator on T independent training sets,
            or T generator samples), independent of ``y``.
        y: ``[T]`` draws of the target.
    Returns: :class:`BiasVariance` with population-style (divide by T) variances.
    """
    for name, t in (("pred", pred), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 1 or t.numel() < 2:
            raise ValueError(f"{name} must be 1-D with at least 2 draws, got shape {tuple(t.shape)}")
    if pred.shape != y.shape:
        raise ValueError(f"pred and y must have the same shape, got {tuple(pred.shape)} and {tuple(y.shape)}")
    pred, y = pred.to(_F64), y.to(_F64)
    sq = (pred - y) ** 2
    return BiasVariance(
        expected_loss=float(sq.mean()),
        noise=float(y.var(unbiased=False)),
        bias2=float((pred.mean() - y.mean()) ** 2),
        variance=float(pred.var(unbiased=False)),
        stderr=float(sq.std() / math.sqrt(sq.numel())),
    )


def estimator_draws(estimator: Callable[[torch.Tensor], torch.Tensor], sampler: Callable[[int], torch.Tensor],
                    n_train: int, n_trials: int) -> torch.Tensor:
    """Apply ``estimator`` to ``n_trials`` independent training sets of ``n_train`` draws each.

    Args:
        estimator: maps ``[n_trials, n_train]`` to ``[n_trials]`` (reduce over dim 1).
        sampler: ``sampler(m)`` returns ``m`` i.i.d. draws ``[m]``.
    Returns: ``[n_trials]`` estimates, the draws of y^ for :func:`bias_variance_mc`.
    """
    if n_train < 1 or n_trials < 2:
        raise ValueError(f"need n_train >= 1 and n_trials >= 2, got n_train={n_train}, n_trials={n_trials}")
    data = sampler(n_train * n_trials).reshape(n_trials, n_train)  # [T, n]
    out = estimator(data)
    if not isinstance(out, torch.Tensor) or out.shape != (n_trials,):
        raise ValueError(f"estimator must return a tensor of shape ({n_trials},), got {getattr(out, 'shape', type(out))}")
    return out


@dataclass
class FitResult:
    """Result of :func:`fit_location_scale`: final estimates and the per-step trace."""

    center: float
    dispersion: float  # variance (gaussian) or MAD (laplace); the fixed value 1 if not learned
    centers: list[float]
    losses: list[float]


def fit_location_scale(y: torch.Tensor, dist: str = "gaussian", learn_dispersion: bool = False,
                       steps: int = 1500, lr: float = 0.05, init_center: float = 0.0) -> FitResult:
    """Maximum likelihood by gradient descent on :func:`minilib.losses.mle_loss` (MR-GAN Eq. 4, 5).

    With the dispersion fixed to 1 the Gaussian NLL is ℓ2 / 2 (centre -> mean) and the Laplace NLL is ℓ1
    (centre -> median); learning the log-dispersion too gives variance / MAD. Adam with a cosine-decayed
    learning rate, so the non-smooth ℓ1 fit settles on the median.

    Args:
        y: ``[N]`` sample.
    """
    if dist not in DISTS:
        raise ValueError(f"dist must be one of {DISTS}, got {dist!r}")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.numel() < 2:
        raise ValueError(f"y must be a 1-D tensor with at least 2 values, got {getattr(y, 'shape', type(y))}")
    if steps < 1 or lr <= 0:
        raise ValueError(f"need steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    y = y.to(_F64)
    center = torch.tensor(float(init_center), dtype=_F64, requires_grad=True)
    log_disp = torch.zeros((), dtype=_F64, requires_grad=learn_dispersion)
    params = [center, log_disp] if learn_dispersion else [center]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    centers, losses = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = mle_loss(center.expand_as(y), log_disp.expand_as(y), y, dist)
        loss.backward()
        opt.step()
        sched.step()
        centers.append(center.item())
        losses.append(loss.item())
    return FitResult(center.item(), float(torch.exp(log_disp.detach())), centers, losses)


def mle_closed_form(y: torch.Tensor, dist: str = "gaussian") -> tuple[float, float]:
    """Closed-form MLE: (mean, variance / N) for Gaussian, (median, mean |y - median|) for Laplace."""
    if dist not in DISTS:
        raise ValueError(f"dist must be one of {DISTS}, got {dist!r}")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.numel() < 2:
        raise ValueError(f"y must be a 1-D tensor with at least 2 values, got {getattr(y, 'shape', type(y))}")
    y = y.to(_F64)
    if dist == "gaussian":
        return float(y.mean()), float(y.var(unbiased=False))
    med = y.median()
    return float(med), float((y - med).abs().mean())
