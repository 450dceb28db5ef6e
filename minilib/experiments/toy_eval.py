"""Exact measurements of a toy generator, and the fixed-noise sample frames of its animations.

Split from :mod:`minilib.experiments.toys` (which re-exports every name): what the course measures on a trained
toy generator, independent of how it was trained.
"""
from __future__ import annotations

from typing import Any

import torch

from ..data.toys import MixtureToy, ToyDataset
from ..metrics.toy import conditional_w1, mode_coverage, std_ratio

__all__ = ["evaluate_toy", "sample_frame", "predictor_moments", "eval_inputs"]


def eval_inputs(dataset: ToyDataset, n: int) -> torch.Tensor:
    """Fixed inputs for metrics and frames: ``[n, 0]`` (unconditional) or an even grid of x in (-1, 1)."""
    if dataset.x_dim == 0:
        return dataset.constant_x(n)
    return torch.linspace(-0.975, 0.975, n).view(-1, 1)


@torch.no_grad()
def sample_frame(G: torch.nn.Module, dataset: ToyDataset, n: int = 600, seed: int = 1234, step: int = 0) -> dict:
    """A picture's worth of samples with fixed inputs and fixed noise (so frames move smoothly):
    ``{"step", "x" [n, x_dim], "y" [n, y_dim]}``."""
    was = G.training
    G.eval()
    x = eval_inputs(dataset, n) if dataset.x_dim == 0 else torch.rand(n, 1, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    y = G(x, G.noise(n, generator=torch.Generator().manual_seed(seed + 1)))
    G.train(was)
    return {"step": int(step), "x": x, "y": y.detach().clone()}


@torch.no_grad()
def evaluate_toy(G: torch.nn.Module, dataset: ToyDataset, n: int = 2000, n_x: int = 32, seed: int = 4321) -> dict[str, Any]:
    """Exact metrics of a generator.

    Mixtures, from ``n`` samples (:func:`~minilib.metrics.toy.mode_coverage`, the course's one mode criterion):
    ``covered`` and ``sharp_modes`` (of ``n_modes``), ``sharp`` (fraction of samples within 3 data std of a mode),
    ``kl``, and the two radii ``radius`` and ``sharp_radius``. Conditional
    toys (1-D y), on ``n_x`` inputs with ``n // n_x`` samples each against as many true samples: ``w1`` (mean per-x
    W1), ``w1_right`` (x > 0.5), ``std_ratio_right`` (mean generated / true std for x > 0.5), ``mean_err`` (mean
    ``|E_G[y|x] - E[y|x]|``) and ``mid_fraction_right`` (share of samples at x > 0.5 with ``|y| < x / 2``, the empty
    gap between the branches of the Y).
    """
    g = torch.Generator().manual_seed(seed)
    G.eval()
    if isinstance(dataset, MixtureToy):
        y = G(dataset.constant_x(n), G.noise(n, generator=g))
        out = mode_coverage(y, dataset.modes, dataset.weights, dataset.std)
        out.pop("counts")
        return out
    if dataset.x_dim != 1 or dataset.y_dim != 1:
        raise ValueError(f"evaluate_toy supports mixtures and 1-D conditional toys, got {dataset.name!r}")
    k = max(n // n_x, 2)
    xs = eval_inputs(dataset, n_x)  # [T, 1]
    samples = G(xs.repeat_interleave(k, 0), G.noise(n_x * k, generator=g)).view(n_x, k, 1)  # [T, K, 1]
    truth = dataset.sample_conditional(xs, k, g)  # [T, K, 1]
    w1 = conditional_w1(samples, truth)  # [T]
    right = xs[:, 0] > 0.5
    ratio = std_ratio(samples, dataset.conditional_std(xs))[:, 0]
    mid = (samples[right, :, 0].abs() < xs[right] / 2).float().mean()
    return {"w1": float(w1.mean()), "w1_right": float(w1[right].mean()), "std_ratio_right": float(ratio[right].mean()),
            "mean_err": float((samples.mean(1) - dataset.conditional_mean(xs)).abs().mean()),
            "mid_fraction_right": float(mid)}


@torch.no_grad()
def predictor_moments(P: torch.nn.Module, xs: torch.Tensor, dist: str = "gaussian") -> tuple[torch.Tensor, torch.Tensor]:
    """The predictor's centre and standard deviation at ``xs [T, x_dim]``: ``([T, y_dim], [T, y_dim])``.

    Gaussian: ``log_dispersion`` is the log-variance, std = ``exp(ld / 2)``. Laplace: it is the log-MAD b and the
    std of a Laplace is ``sqrt(2) b``.
    """
    center, ld = P(xs)
    std = torch.exp(0.5 * ld) if dist == "gaussian" else 2**0.5 * torch.exp(ld)
    return center, std
