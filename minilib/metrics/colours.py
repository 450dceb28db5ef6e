"""Exact metrics of the colour task (:mod:`minilib.data.colours`): is each sample one palette colour on the right
background, and do an input's samples cover the palette with the right frequencies?

Colour is read on the **interiors**: the shape and the background each eroded by a 3×3 window, so the one-pixel
anti-aliased border, which any generator (and the upsampled digit itself) blends, is not scored. For each sample:

* ``dist`` — the mean colour inside the shape → the nearest palette colour, and its Euclidean distance;
* ``spread`` — the within-shape standard deviation, averaged over the 3 channels (a two-coloured shape: ≈ 0.5);
* ``background error`` — the mean |y − background| on the background's interior;
* **valid** — dist ≤ 0.4 and spread ≤ 0.2 and background error ≤ 0.15.

For each input (S samples): **colours** = how many palette colours its valid samples show (of M), and
**KL**(w ‖ p̂) of the true weights w to the Jeffreys-smoothed (α = 1/2) histogram over M + 1 bins, the M colours and
"invalid": collapse and invalid samples both raise it. Its floor is what exact samples score,
:func:`kl_floor` (0.116 for M = 3 equal weights and S = 12). Every number is a mean over inputs;
**sample std** is the standard deviation over an input's S samples of the in-shape mean colour (0 for a
generator that ignores its noise, 0.75 for the default palette's exact samples).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.colours import ColourTask
from ..train import sample_k

__all__ = ["ColourCriteria", "interiors", "score_colour_samples", "score_colour_generator", "kl_floor"]


@dataclass(frozen=True)
class ColourCriteria:
    """When a sample counts as valid, and the histogram's smoothing."""

    max_distance: float = 0.4  # in-shape mean colour to the nearest palette colour (Euclidean, RGB in [-1, 1])
    max_spread: float = 0.2  # within-shape std, mean over channels
    max_background_error: float = 0.15  # mean |y - background| on the background's interior
    alpha: float = 0.5  # Jeffreys smoothing of the M + 1 bins


def interiors(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The shape's and the background's interiors ``[N, 1, H, W]`` (0 / 1): each mask of ``x`` (``> 0`` inside)
    eroded by a 3×3 window."""
    inside = (x > 0).float()
    erode = lambda m: -F.max_pool2d(-m, 3, 1, 1)  # noqa: E731
    return erode(inside), erode(1 - inside)


def _kl(w: torch.Tensor, counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """KL(w ‖ p̂) per row of ``counts [N, M + 1]`` (the last bin: invalid)."""
    p_hat = (counts + alpha) / (counts.sum(1, keepdim=True) + counts.shape[1] * alpha)
    return (w * (w / p_hat[:, :-1]).log()).sum(1)


def kl_floor(task: ColourTask, n_samples: int, alpha: float = 0.5) -> float:
    """The expected KL of *exact* samples (every sample valid, colours multinomial with the true weights) at
    ``n_samples`` per input: the best any generator can score, computed exactly over all count vectors."""
    w, m = task.probabilities().double(), task.m
    total = 0.0
    for cut in itertools.combinations(range(n_samples + m - 1), m - 1):  # stars and bars: counts summing to S
        edges = (-1, *cut, n_samples + m - 1)
        counts = torch.tensor([edges[i + 1] - edges[i] - 1 for i in range(m)], dtype=torch.float64)
        log_p = math.lgamma(n_samples + 1) - sum(math.lgamma(c + 1) for c in counts.tolist()) + float((counts * w.log()).sum())
        total += math.exp(log_p) * float(_kl(w, torch.cat([counts, torch.zeros(1, dtype=torch.float64)])[None], alpha))
    return total


@torch.no_grad()
def score_colour_samples(samples: torch.Tensor, x: torch.Tensor, task: ColourTask,
                         criteria: ColourCriteria = ColourCriteria()) -> dict[str, Any]:
    """Score ``samples [N, S, 3, H, W]`` for inputs ``x [N, 1, H, W]`` against the exact truth of ``task``.

    Returns floats ``valid``, ``colours`` (of ``M``), ``kl``, ``kl_floor``, ``background_error``, ``sample_std``,
    ``distance``, ``spread``; why samples are invalid: ``fail_distance`` / ``fail_spread`` / ``fail_background``,
    the share of all samples failing each test (a sample may fail several); the pooled ``mean_colour`` ``[3]``,
    ``colour_share`` (M colours + invalid), and the per-input tensors ``per_input_colours`` / ``per_input_kl`` ``[N]``."""
    if samples.dim() != 5 or samples.shape[2] != 3 or x.dim() != 4 or samples.shape[0] != x.shape[0]:
        raise ValueError(f"samples must be [N, S, 3, H, W] and x [N, 1, H, W] with the same N, got "
                         f"{tuple(samples.shape)} and {tuple(x.shape)}")
    samples = samples.float().cpu()
    inside, outside = (m.cpu().unsqueeze(1) for m in interiors(x))  # [N, 1, 1, H, W]
    n_in = inside.sum((-1, -2)).clamp_min(1)
    mean = (samples * inside).sum((-1, -2)) / n_in  # [N, S, 3]
    spread = ((((samples - mean[..., None, None]) ** 2) * inside).sum((-1, -2)) / n_in).sqrt().mean(-1)  # [N, S]
    bg = task.background_colour().view(1, 1, 3, 1, 1)
    bg_err = ((samples - bg).abs() * outside).sum((-1, -2, -3)) / (3 * outside.sum((-1, -2, -3)).clamp_min(1))
    dist, nearest = torch.cdist(mean, task.colours().expand(len(mean), -1, -1)).min(-1)  # [N, S]
    c = criteria
    fails = {"fail_distance": dist > c.max_distance, "fail_spread": spread > c.max_spread,
             "fail_background": bg_err > c.max_background_error}
    valid = ~(fails["fail_distance"] | fails["fail_spread"] | fails["fail_background"])
    n, s, m = samples.shape[0], samples.shape[1], task.m
    counts = torch.zeros(n, m + 1).scatter_add_(1, torch.where(valid, nearest, m), torch.ones(n, s))
    w = task.probabilities()
    kl = _kl(w, counts, c.alpha)
    colours = (counts[:, :m] > 0).sum(1).float()
    return {"valid": float(valid.float().mean()), "colours": float(colours.mean()), "m": m, "kl": float(kl.mean()),
            "kl_floor": kl_floor(task, s, c.alpha), "background_error": float(bg_err.mean()),
            "sample_std": float(mean.std(1).mean()) if s > 1 else 0.0, "distance": float(dist.mean()),
            "spread": float(spread.mean()), **{k: float(v.float().mean()) for k, v in fails.items()},
            "mean_colour": mean.reshape(-1, 3).mean(0).tolist(),
            "colour_share": (counts.sum(0) / counts.sum()).tolist(), "inputs": n, "samples": s,
            "per_input_colours": colours, "per_input_kl": kl}


@torch.no_grad()
def score_colour_generator(G: nn.Module, x: torch.Tensor, task: ColourTask, n_samples: int = 12, seed: int = 0,
                           chunk: int = 64, criteria: ColourCriteria = ColourCriteria()) -> dict[str, Any]:
    """Draw ``n_samples`` per input from ``G`` (eval mode: BatchNorm's running statistics; noise from a generator
    seeded with ``seed``) and score them with :func:`score_colour_samples`."""
    was = G.training
    G.eval()
    dev = next(iter(G.parameters())).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    samples = torch.cat([sample_k(G, x[i:i + chunk].to(dev), n_samples, gen)[0].float().cpu()
                         for i in range(0, len(x), chunk)])
    G.train(was)
    return score_colour_samples(samples, x, task, criteria)
