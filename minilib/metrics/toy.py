"""Exact metrics for the toys, whose truth is known (DESIGN.md section 7).

* :func:`mode_stats` -- modes captured, high-quality fraction (within ``3 sigma`` of a mode) and the KL
  divergence of the mode histogram to the true weights (the mode-counting protocol of VEEGAN / PacGAN /
  MSGAN's 2-D experiments).
* :func:`wasserstein_1d` -- the exact 1-D Wasserstein-1 distance between two empirical distributions,
  ``W1 = integral |F_a(t) - F_b(t)| dt``; :func:`conditional_w1` applies it per input x.
* :func:`std_ratio` -- generated conditional std divided by the true conditional std, per input.
"""
from __future__ import annotations

import torch

__all__ = ["assign_modes", "mode_stats", "wasserstein_1d", "conditional_w1", "std_ratio"]


def _tensor(name: str, t: object, dims: int | None = None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if dims is not None and t.dim() != dims:
        raise ValueError(f"{name} must have {dims} dims, got shape {tuple(t.shape)}")
    return t.detach().float()


def assign_modes(samples: torch.Tensor, modes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest mode of every sample: ``samples [N, d]``, ``modes [M, d]`` -> (index ``[N]`` long, distance ``[N]``)."""
    samples, modes = _tensor("samples", samples, 2), _tensor("modes", modes, 2)
    if samples.shape[1] != modes.shape[1]:
        raise ValueError(f"samples [N, d] and modes [M, d] need the same d, got {samples.shape[1]} and {modes.shape[1]}")
    dist = torch.cdist(samples, modes)  # [N, M]
    d, idx = dist.min(1)
    return idx, d


def mode_stats(samples: torch.Tensor, modes: torch.Tensor, weights: torch.Tensor | None = None, std: float = 0.05,
               threshold: float = 3.0, min_share: float = 0.1) -> dict[str, float | list[int]]:
    """Mode-capture statistics of generated ``samples [N, d]`` against a mixture with ``modes [M, d]``.

    * A sample is *high quality* when it lies within ``threshold * std`` (Euclidean) of its nearest mode.
    * A mode is *captured* when it holds at least ``min_share`` of the high-quality samples it would get under
      the true weights (``count_m >= min_share * N * w_m``), so a few stray samples do not count as coverage.
    * ``kl`` is ``KL(q || w) = sum_m q_m log(q_m / w_m)``, with ``q`` the histogram of nearest-mode assignments
      of *all* samples (finite for a collapsed sampler: one mode of 8 gives ``log 8``).

    Returns ``{"modes": captured count, "n_modes": M, "high_quality": fraction, "kl": float, "counts": [M]}``.
    """
    samples, modes = _tensor("samples", samples, 2), _tensor("modes", modes, 2)
    m = modes.shape[0]
    w = torch.full((m,), 1.0 / m) if weights is None else _tensor("weights", weights, 1)
    if w.shape[0] != m:
        raise ValueError(f"weights must have one entry per mode ({m}), got {w.shape[0]}")
    if not std > 0 or not threshold > 0 or not 0 <= min_share <= 1:
        raise ValueError(f"need std > 0, threshold > 0 and 0 <= min_share <= 1, got {std}, {threshold}, {min_share}")
    if samples.shape[0] < 1:
        raise ValueError("samples must hold at least one sample")
    idx, d = assign_modes(samples, modes)
    hq = d <= threshold * std
    n = samples.shape[0]
    counts = torch.bincount(idx[hq], minlength=m).float()  # high-quality samples per mode
    captured = int((counts >= torch.clamp(min_share * n * w, min=1.0)).sum())
    q = torch.bincount(idx, minlength=m).float() / n
    kl = float(torch.where(q > 0, q * (torch.log(q.clamp_min(1e-30)) - torch.log(w.clamp_min(1e-30))), 0.0).sum())
    return {"modes": captured, "n_modes": m, "high_quality": float(hq.float().mean()), "kl": kl,
            "counts": [int(c) for c in counts]}


def wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact W1 between the empirical distributions of ``a [..., N]`` and ``b [..., M]`` (batched over ``...``).

    ``W1 = integral |F_a(t) - F_b(t)| dt``, computed on the merged sorted support (N and M may differ).
    Shifting ``a`` by c gives ``W1 = |c|``. Returns ``[...]``.
    """
    a, b = _tensor("a", a), _tensor("b", b)
    if a.dim() < 1 or b.dim() < 1 or a.shape[:-1] != b.shape[:-1]:
        raise ValueError(f"a [..., N] and b [..., M] need the same leading dims, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[-1] < 1 or b.shape[-1] < 1:
        raise ValueError("a and b need at least one sample each along the last dim")
    a_s, b_s = a.sort(-1).values, b.sort(-1).values
    allv = torch.cat([a_s, b_s], -1).sort(-1).values  # [..., N + M]
    gaps = allv[..., 1:] - allv[..., :-1]  # [..., N + M - 1]
    left = allv[..., :-1].contiguous()
    fa = torch.searchsorted(a_s.contiguous(), left, right=True).float() / a.shape[-1]
    fb = torch.searchsorted(b_s.contiguous(), left, right=True).float() / b.shape[-1]
    return ((fa - fb).abs() * gaps).sum(-1)


def conditional_w1(samples: torch.Tensor, true_samples: torch.Tensor) -> torch.Tensor:
    """Per-input W1 between generated and true p(y|x) for 1-D y: ``samples [T, K(, 1)]``, ``true_samples [T, N(, 1)]``
    -> ``[T]`` (the conditional Wasserstein distance of DESIGN.md section 7)."""
    samples, true_samples = _tensor("samples", samples), _tensor("true_samples", true_samples)
    for name, t in (("samples", samples), ("true_samples", true_samples)):
        if not (t.dim() == 2 or (t.dim() == 3 and t.shape[2] == 1)):
            raise ValueError(f"{name} must be [T, K] or [T, K, 1] (1-D y), got {tuple(t.shape)}")
    s = samples.reshape(samples.shape[0], samples.shape[1])
    t = true_samples.reshape(true_samples.shape[0], true_samples.shape[1])
    return wasserstein_1d(s, t)


def std_ratio(samples: torch.Tensor, true_std: torch.Tensor) -> torch.Tensor:
    """Generated conditional std (unbiased, over K) / true conditional std: ``samples [T, K, d]``,
    ``true_std [T, d]`` -> ``[T, d]`` (1 is right; ~0 means the noise is ignored)."""
    samples, true_std = _tensor("samples", samples, 3), _tensor("true_std", true_std, 2)
    if samples.shape[1] < 2:
        raise ValueError(f"samples needs K >= 2 samples per input for a std, got K = {samples.shape[1]}")
    if true_std.shape != (samples.shape[0], samples.shape[2]):
        raise ValueError(f"true_std must be [T, d] = {[samples.shape[0], samples.shape[2]]}, got {list(true_std.shape)}")
    if (true_std <= 0).any():
        raise ValueError("true_std must be > 0 everywhere")
    return samples.std(1) / true_std

