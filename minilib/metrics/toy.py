"""Exact metrics for the toys, whose truth is known.

* :func:`mode_coverage` -- the course's one mode criterion: modes *covered* (a mode holds at least 10 % of its fair
  share of the samples within a stated radius of its centre) and *sharp* (samples within 3 data std of a mode,
  and the modes that hold their share of them), side by side, with both radii, and the KL divergence of the
  nearest-mode histogram to the true weights.
* :func:`mode_stats` -- the same count at one radius (``threshold * std``; the mode-counting protocol of VEEGAN /
  PacGAN / MSGAN's 2-D experiments).
* :func:`wasserstein_1d` -- the exact 1-D Wasserstein-1 distance between two empirical distributions,
  ``W1 = integral |F_a(t) - F_b(t)| dt``; :func:`conditional_w1` applies it per input x.
* :func:`std_ratio` -- generated conditional std divided by the true conditional std, per input.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError, check_number, check_same_device, check_tensor

__all__ = ["assign_modes", "mode_stats", "mode_coverage", "coverage_radius", "wasserstein_1d", "conditional_w1", "std_ratio"]


def _tensor(name: str, t: object, dims: int | None = None, ref: tuple[str, torch.Tensor] | None = None,
            nonempty: bool = True) -> torch.Tensor:
    """A finite tensor (integers allowed: counts and coordinates) as float, on ``ref``'s device if given."""
    check_tensor(name, t, dims=dims, floating=False, nonempty=nonempty)
    if ref is not None:
        check_same_device(ref[0], ref[1], **{name: t})
    if t.device.type == "meta":
        raise ConfigError(f"{name} is on the meta device (shapes only, no values): metrics need values")
    return t.detach().float()


def assign_modes(samples: torch.Tensor, modes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest mode of every sample: ``samples [N, d]``, ``modes [M, d]`` -> (index ``[N]`` long, distance ``[N]``)."""
    samples = _tensor("samples", samples, 2)
    modes = _tensor("modes", modes, 2, ref=("samples", samples))
    if samples.shape[1] != modes.shape[1]:
        raise ConfigError(f"samples [N, d] and modes [M, d] need the same d, got {samples.shape[1]} and {modes.shape[1]}")
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
    samples = _tensor("samples", samples, 2)
    modes = _tensor("modes", modes, 2, ref=("samples", samples))
    m = modes.shape[0]
    w = torch.full((m,), 1.0 / m) if weights is None else _tensor("weights", weights, 1, ref=("samples", samples))
    if w.shape[0] != m:
        raise ConfigError(f"weights must have one entry per mode ({m}), got {w.shape[0]}")
    if (w < 0).any() or abs(float(w.sum()) - 1.0) > 1e-4:
        raise ConfigError(f"weights must be the modes' probabilities (>= 0, summing to 1), got {w.tolist()}")
    check_number("std", std, low=0.0)
    check_number("threshold", threshold, low=0.0)
    check_number("min_share", min_share, low=0.0, high=1.0, low_open=False, high_open=False)
    idx, d = assign_modes(samples, modes)
    hq = d <= threshold * std
    n = samples.shape[0]
    counts = torch.bincount(idx[hq], minlength=m).float()  # high-quality samples per mode
    captured = int((counts >= torch.clamp(min_share * n * w, min=1.0)).sum())
    q = torch.bincount(idx, minlength=m).float() / n
    kl = float(torch.where(q > 0, q * (torch.log(q.clamp_min(1e-30)) - torch.log(w.clamp_min(1e-30))), 0.0).sum())
    return {"modes": captured, "n_modes": m, "high_quality": float(hq.float().mean()), "kl": kl,
            "counts": [int(c) for c in counts]}


def coverage_radius(modes: torch.Tensor, std: float, sharp_sigmas: float = 3.0) -> float:
    """The default radius of *covered*: a fifth of the smallest distance between two modes, and never less than the
    sharp radius ``sharp_sigmas * std`` (ring of 8, radius 2: modes 1.53 apart, radius 0.31)."""
    modes = _tensor("modes", modes, 2)
    check_number("std", std, low=0.0)
    if modes.shape[0] < 2:
        return float(sharp_sigmas * std)
    d = torch.cdist(modes, modes)
    d_min = float(d[~torch.eye(len(modes), dtype=torch.bool)].min())
    return max(0.2 * d_min, float(sharp_sigmas * std))


def mode_coverage(samples: torch.Tensor, modes: torch.Tensor, weights: torch.Tensor | None = None, std: float = 0.05,
                  radius: float | None = None, min_share: float = 0.1, sharp_sigmas: float = 3.0) -> dict[str, float | list[int]]:
    """The course's one mode criterion, for generated ``samples [N, d]`` against a mixture with ``modes [M, d]``.

    * *covered*: a mode holds at least ``min_share`` of its fair share of the samples (``min_share * N * w_m``)
      within ``radius`` of its centre (default :func:`coverage_radius`): the generator puts mass at the mode.
    * *sharp*: a sample lies within ``sharp_sigmas * std`` of its nearest mode (as close as the data's own samples);
      ``sharp_modes`` counts the modes that hold their ``min_share`` of sharp samples.
    * ``kl``: ``KL(q || w)`` of the nearest-mode histogram ``q`` of all samples (``log M`` for one mode).

    Returns ``{"covered", "sharp_modes", "sharp" (fraction), "kl", "radius", "sharp_radius", "n_modes", "counts"
    (samples within radius, per mode)}``.
    """
    check_number("sharp_sigmas", sharp_sigmas, low=0.0)
    r = coverage_radius(modes, std, sharp_sigmas) if radius is None else check_number("radius", radius, low=0.0)
    wide = mode_stats(samples, modes, weights, std=r, threshold=1.0, min_share=min_share)
    tight = mode_stats(samples, modes, weights, std=std, threshold=sharp_sigmas, min_share=min_share)
    return {"covered": wide["modes"], "sharp_modes": tight["modes"], "sharp": tight["high_quality"], "kl": wide["kl"],
            "radius": float(r), "sharp_radius": float(sharp_sigmas * std), "n_modes": wide["n_modes"],
            "counts": wide["counts"]}


def wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact W1 between the empirical distributions of ``a [..., N]`` and ``b [..., M]`` (batched over ``...``).

    ``W1 = integral |F_a(t) - F_b(t)| dt``, computed on the merged sorted support (N and M may differ).
    Shifting ``a`` by c gives ``W1 = |c|``. Returns ``[...]``.
    """
    for name, t in (("a", a), ("b", b)):
        if isinstance(t, torch.Tensor) and (t.dim() < 1 or t.shape[-1] < 1):
            raise ConfigError(f"{name} must be [..., N] with N >= 1 samples along the last dim, got {tuple(t.shape)}")
    a = _tensor("a", a)
    b = _tensor("b", b, ref=("a", a))
    if a.shape[:-1] != b.shape[:-1]:
        raise ConfigError(f"a [..., N] and b [..., M] need the same leading dims, got {tuple(a.shape)} and {tuple(b.shape)}")
    a_s, b_s = a.sort(-1).values, b.sort(-1).values
    allv = torch.cat([a_s, b_s], -1).sort(-1).values  # [..., N + M]
    gaps = allv[..., 1:] - allv[..., :-1]  # [..., N + M - 1]
    left = allv[..., :-1].contiguous()
    fa = torch.searchsorted(a_s.contiguous(), left, right=True).float() / a.shape[-1]
    fb = torch.searchsorted(b_s.contiguous(), left, right=True).float() / b.shape[-1]
    return ((fa - fb).abs() * gaps).sum(-1)


def conditional_w1(samples: torch.Tensor, true_samples: torch.Tensor) -> torch.Tensor:
    """Per-input W1 between generated and true p(y|x) for 1-D y: ``samples [T, K(, 1)]``, ``true_samples [T, N(, 1)]``
    -> ``[T]`` (the conditional Wasserstein distance)."""
    samples = _tensor("samples", samples)
    true_samples = _tensor("true_samples", true_samples, ref=("samples", samples))
    for name, t in (("samples", samples), ("true_samples", true_samples)):
        if not (t.dim() == 2 or (t.dim() == 3 and t.shape[2] == 1)):
            raise ConfigError(f"{name} must be [T, K] or [T, K, 1] (1-D y), got {tuple(t.shape)}")
    if true_samples.shape[0] != samples.shape[0]:
        raise ConfigError(f"true_samples must have samples' T = {samples.shape[0]} inputs, got {tuple(true_samples.shape)}")
    s = samples.reshape(samples.shape[0], samples.shape[1])
    t = true_samples.reshape(true_samples.shape[0], true_samples.shape[1])
    return wasserstein_1d(s, t)


def std_ratio(samples: torch.Tensor, true_std: torch.Tensor) -> torch.Tensor:
    """Generated conditional std (unbiased, over K) / true conditional std: ``samples [T, K, d]``,
    ``true_std [T, d]`` -> ``[T, d]`` (1 is right; ~0 means the noise is ignored)."""
    samples = _tensor("samples", samples, 3)
    true_std = _tensor("true_std", true_std, 2, ref=("samples", samples))
    if samples.shape[1] < 2:
        raise ConfigError(f"samples needs K >= 2 samples per input for a std, got K = {samples.shape[1]}")
    if true_std.shape != (samples.shape[0], samples.shape[2]):
        raise ConfigError(f"true_std must be [T, d] = {[samples.shape[0], samples.shape[2]]}, got {list(true_std.shape)}")
    if (true_std <= 0).any():
        raise ConfigError("true_std must be > 0 everywhere")
    return samples.std(1) / true_std

