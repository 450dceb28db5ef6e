"""Closed forms for the loss-mismatch lesson of notebook 01: why ℓ1 / ℓ2 and the GAN loss want different
generators, and why MR's optimum agrees with the GAN's.

Everything here is 1-D and exact where it can be:

* :class:`Mixture1D` is a mixture of Gaussians whose components may have zero width (point masses),
  so "a generator that always outputs the mean" and the two-point distribution of MR-GAN Appendix F
  are ordinary objects with closed-form mean, variance, CDF, median interval and E|Y - c|.
* :func:`gan_value` is the GAN objective (MR-GAN Eq. 2) at the optimal discriminator
  D* = p / (p + q): ``-log 4 + 2 JSD(p || q)`` (Goodfellow et al. 2014, Theorem 1).
* :func:`population_losses` gives the population (K -> infinity) values of ℓ1, ℓ2, MR and proxy MR for
  a data distribution p and a generator distribution q (MR-GAN section 4.4, Eq. 9-13);
  :func:`monte_carlo_losses` evaluates the library's losses at a finite K on the same pair.

The bias-variance decomposition and the maximum-likelihood fits of the same notebook are in
:mod:`minilib.course.bias_variance`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch

from ..losses import mr_loss, proxy_mr_loss, reconstruction_loss

__all__ = ["Mixture1D", "expected_abs_diff", "expected_sq_diff", "jensen_shannon", "gan_value", "optimal_discriminator",
           "discriminator_value", "l1_gap", "population_losses", "monte_carlo_losses"]

_F64 = torch.float64
_TOL = 1e-12


def _abs_normal_mean(d: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """E|N(d, s^2)| elementwise (folded normal mean); s = 0 gives |d|."""
    safe = torch.where(s > 0, s, torch.ones_like(s))
    folded = safe * math.sqrt(2 / math.pi) * torch.exp(-0.5 * (d / safe) ** 2) + d * (1 - 2 * torch.special.ndtr(-d / safe))
    return torch.where(s > 0, folded, d.abs())


@dataclass(frozen=True)
class Mixture1D:
    """A 1-D mixture ``sum_i w_i N(mu_i, sigma_i^2)``; ``sigma_i = 0`` makes component i a point mass.

    Args:
        weights: positive, summing to 1 (within 1e-9).
        means: component means.
        stds: component standard deviations, >= 0.
    """

    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("weights", "means", "stds"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or not all(isinstance(v, (int, float)) for v in value):
                raise TypeError(f"{name} must be a tuple of numbers, got {value!r}")
            if not all(math.isfinite(v) for v in value):
                raise ValueError(f"{name} must be finite, got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        n = len(self.weights)
        if n == 0 or len(self.means) != n or len(self.stds) != n:
            raise ValueError(
                f"weights, means and stds must be non-empty and of equal length, got "
                f"{len(self.weights)}, {len(self.means)}, {len(self.stds)}"
            )
        if min(self.weights) <= 0 or abs(sum(self.weights) - 1) > 1e-9:
            raise ValueError(f"weights must be positive and sum to 1, got {self.weights}")
        if min(self.stds) < 0:
            raise ValueError(f"stds must be >= 0 (0 = point mass), got {self.stds}")

    def _t(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (torch.tensor(self.weights, dtype=_F64), torch.tensor(self.means, dtype=_F64),
                torch.tensor(self.stds, dtype=_F64))

    @property
    def mean(self) -> float:
        """E[Y]."""
        return sum(w * m for w, m in zip(self.weights, self.means))

    @property
    def variance(self) -> float:
        """Var[Y] = sum_i w_i (sigma_i^2 + mu_i^2) - E[Y]^2."""
        second = sum(w * (s * s + m * m) for w, m, s in zip(self.weights, self.means, self.stds))
        return max(second - self.mean ** 2, 0.0)

    @property
    def atoms(self) -> dict[float, float]:
        """Point masses ``{location: mass}`` (components with std 0, merged by location)."""
        out: dict[float, float] = {}
        for w, m, s in zip(self.weights, self.means, self.stds):
            if s == 0:
                out[m] = out.get(m, 0.0) + w
        return out

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` independent draws, float64 tensor ``[n]``."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        w, m, s = self._t()
        idx = torch.multinomial(w, n, replacement=True, generator=generator)  # [n]
        return m[idx] + s[idx] * torch.randn(n, dtype=_F64, generator=generator)

    def pdf(self, y: torch.Tensor) -> torch.Tensor:
        """Density of the continuous part (point masses excluded), same shape as ``y``."""
        w, m, s = self._t()
        keep = s > 0
        y = torch.as_tensor(y, dtype=_F64).unsqueeze(-1)  # [..., 1]
        w, m, s = w[keep], m[keep], s[keep]
        dens = w * torch.exp(-0.5 * ((y - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))  # [..., C]
        return dens.sum(-1)

    def cdf(self, y: torch.Tensor) -> torch.Tensor:
        """P(Y <= y) (right-continuous; point masses are steps), same shape as ``y``."""
        w, m, s = self._t()
        y = torch.as_tensor(y, dtype=_F64).unsqueeze(-1)  # [..., 1]
        safe = torch.where(s > 0, s, torch.ones_like(s))
        comp = torch.where(s > 0, torch.special.ndtr((y - m) / safe), (y >= m).to(_F64))
        return (w * comp).sum(-1)

    def abs_dev(self, c: torch.Tensor | float) -> torch.Tensor:
        """E|Y - c| in closed form (the ℓ1 loss of the constant prediction c), same shape as ``c``."""
        w, m, s = self._t()
        c = torch.as_tensor(c, dtype=_F64).unsqueeze(-1)
        return (w * _abs_normal_mean(m - c, s.expand_as(m - c))).sum(-1)

    def _bracket(self) -> tuple[float, float]:
        spread = max(self.stds) * 12 + 1.0
        return min(self.means) - spread, max(self.means) + spread

    def _cdf_scalar(self, c: float) -> float:
        return sum(w * (0.5 * math.erfc((m - c) / (s * math.sqrt(2))) if s > 0 else float(c >= m))
                   for w, m, s in zip(self.weights, self.means, self.stds))

    def median_interval(self) -> tuple[float, float]:
        """The set [a, b] of minimisers of E|Y - c| (MR-GAN Appendix F, Eq. 19): F(a-) <= 1/2 <= F(b)."""
        return self._median_interval

    @cached_property
    def _median_interval(self) -> tuple[float, float]:
        lo0, hi0 = self._bracket()

        def search(pred: Callable[[float], bool]) -> float:
            lo, hi = lo0, hi0
            for _ in range(120):  # bracket width / 2^120: below float64 resolution
                mid = 0.5 * (lo + hi)
                lo, hi = (lo, mid) if pred(mid) else (mid, hi)
            return hi

        a = search(lambda c: self._cdf_scalar(c) >= 0.5 - _TOL)
        b = search(lambda c: self._cdf_scalar(c) > 0.5 + _TOL)
        for loc in self.atoms:  # bisection lands within ~1e-15 of an atom: snap to it exactly
            a = loc if abs(a - loc) < 1e-9 else a
            b = loc if abs(b - loc) < 1e-9 else b
        return a, max(a, b)

    @property
    def median(self) -> float:
        """Midpoint of :meth:`median_interval` (the median itself when it is unique)."""
        a, b = self.median_interval()
        return 0.5 * (a + b)

    @property
    def mad(self) -> float:
        """Mean absolute deviation around the median, E|Y - median|: the Laplace dispersion b."""
        return float(self.abs_dev(self.median))

    def scaled(self, s: float, center: float | None = None) -> "Mixture1D":
        """Law of ``center + s (Y - center)`` (default centre: the mean). ``s = 0`` is a point mass."""
        if not isinstance(s, (int, float)) or s < 0:
            raise ValueError(f"s must be a number >= 0, got {s!r}")
        c = self.mean if center is None else float(center)
        return Mixture1D(self.weights, tuple(c + s * (m - c) for m in self.means), tuple(s * sd for sd in self.stds))


def _check_mix(name: str, p: object) -> Mixture1D:
    if not isinstance(p, Mixture1D):
        raise TypeError(f"{name} must be a Mixture1D, got {type(p).__name__}")
    return p


def expected_abs_diff(p: Mixture1D, q: Mixture1D) -> float:
    """E|X - Y| for independent X ~ p, Y ~ q (closed form: X - Y is a Gaussian mixture)."""
    _check_mix("p", p), _check_mix("q", q)
    wp, mp, sp = p._t()
    wq, mq, sq = q._t()
    d = mp[:, None] - mq[None, :]  # [Cp, Cq]
    s = torch.sqrt(sp[:, None] ** 2 + sq[None, :] ** 2)
    return float((wp[:, None] * wq[None, :] * _abs_normal_mean(d, s)).sum())


def expected_sq_diff(p: Mixture1D, q: Mixture1D) -> float:
    """E(X - Y)^2 = Var p + Var q + (E p - E q)^2 for independent X ~ p, Y ~ q (ℓ2 loss, Eq. 16-17)."""
    _check_mix("p", p), _check_mix("q", q)
    return p.variance + q.variance + (p.mean - q.mean) ** 2


def _grid(p: Mixture1D, q: Mixture1D, n: int) -> torch.Tensor:
    comps = [(m, s) for d in (p, q) for m, s in zip(d.means, d.stds) if s > 0]
    if not comps:
        return torch.zeros(0, dtype=_F64)
    lo = min(m - 12 * s for m, s in comps)
    hi = max(m + 12 * s for m, s in comps)
    return torch.linspace(lo, hi, n, dtype=_F64)


def jensen_shannon(p: Mixture1D, q: Mixture1D, grid_size: int = 20001) -> float:
    """JSD(p || q) in nats, in [0, log 2].

    Point masses are handled exactly (an atom that the other law lacks contributes ``mass * log 2 / 2``);
    the continuous parts are integrated by the trapezoid rule on ``grid_size`` points over +-12 sigma.
    """
    _check_mix("p", p), _check_mix("q", q)
    if grid_size < 101:
        raise ValueError(f"grid_size must be >= 101, got {grid_size}")
    total = 0.0
    ap, aq = p.atoms, q.atoms
    for loc in set(ap) | set(aq):
        a, b = ap.get(loc, 0.0), aq.get(loc, 0.0)
        total += 0.5 * sum(u * math.log(2 * u / (a + b)) for u in (a, b) if u > 0)
    y = _grid(p, q, grid_size)
    if y.numel():
        fp, fq = p.pdf(y), q.pdf(y)
        mix = fp + fq
        integrand = 0.5 * (torch.xlogy(fp, 2 * fp / mix.clamp_min(1e-300)) + torch.xlogy(fq, 2 * fq / mix.clamp_min(1e-300)))
        total += float(torch.trapezoid(integrand, y))
    return min(max(total, 0.0), math.log(2))


def gan_value(p: Mixture1D, q: Mixture1D, grid_size: int = 20001) -> float:
    """max_D of the GAN objective (MR-GAN Eq. 2) for data p and generator q: ``-log 4 + 2 JSD(p || q)``.

    It is minimal (``-log 4``) exactly when q = p (Goodfellow et al. 2014, Theorem 1).
    """
    return -math.log(4) + 2 * jensen_shannon(p, q, grid_size)


def optimal_discriminator(p: Mixture1D, q: Mixture1D, y: torch.Tensor) -> torch.Tensor:
    """D*(y) = p(y) / (p(y) + q(y)) on the continuous parts, same shape as ``y`` (1/2 where both vanish)."""
    fp, fq = _check_mix("p", p).pdf(y), _check_mix("q", q).pdf(y)
    total = fp + fq
    return torch.where(total > 0, fp / total.clamp_min(1e-300), torch.full_like(total, 0.5))


def discriminator_value(p: Mixture1D, q: Mixture1D, d: Callable[[torch.Tensor], torch.Tensor],
                        grid_size: int = 20001) -> torch.Tensor:
    """V(D, G) = E_p log D(y) + E_q log(1 - D(y)) (MR-GAN Eq. 2) by quadrature, differentiable in ``d``.

    Only for laws without point masses. ``d`` maps a float64 grid ``[N]`` to probabilities ``[N]``.
    """
    if p.atoms or q.atoms:
        raise ValueError("discriminator_value needs p and q without point masses (stds > 0)")
    y = _grid(p, q, grid_size)
    dy = d(y)
    if not isinstance(dy, torch.Tensor) or dy.shape != y.shape:
        raise ValueError(f"d must return a tensor of shape {tuple(y.shape)}, got {getattr(dy, 'shape', type(dy))}")
    dy = dy.clamp(1e-300, 1 - 2.0 ** -53)  # D* rounds to exactly 0 / 1 where one density underflows
    integrand = torch.xlogy(p.pdf(y), dy) + torch.xlogy(q.pdf(y), 1 - dy)
    return torch.trapezoid(integrand, y)


def l1_gap(p: Mixture1D) -> float:
    """ℓ1 loss of the data-matching generator minus the best ℓ1 loss: E|Y - Y'| - E|Y - median|.

    Zero exactly when every point of the support lies in the median interval (MR-GAN Appendix F),
    e.g. y = +-1 with probability 1/2 each; positive otherwise.
    """
    return expected_abs_diff(p, p) - p.mad


def population_losses(p: Mixture1D, q: Mixture1D) -> dict[str, float]:
    """Population values (K -> infinity, perfect predictor) of each objective for data p, generator q.

    Keys: ``gan`` (Eq. 2 at D*), ``l2`` / ``l1`` (Eq. 3, y^ ~ q independent of y),
    ``mr1`` = E(y - E q)^2, ``mr2`` = Gaussian NLL of y under (E q, Var q) (Eq. 8), ``pmr1`` = (E q - E p)^2,
    ``pmr2`` = pmr1 + (Var q - Var p)^2 (Eq. 6), and the Laplace analogues ``mr1-laplace`` = E|y - med q|,
    ``mr2-laplace`` = E|y - med q| / b_q + log b_q, ``pmr1-laplace``, ``pmr2-laplace`` with (median, MAD).
    The NLLs omit constants exactly as :func:`minilib.losses.mr_loss` does; a point mass gives ``inf``.
    """
    _check_mix("p", p), _check_mix("q", q)
    mr1 = p.variance + (p.mean - q.mean) ** 2
    mr2 = math.inf if q.variance == 0 else 0.5 * mr1 / q.variance + 0.5 * math.log(q.variance)
    l1_center = float(p.abs_dev(q.median))
    b_q = q.mad
    return {
        "gan": gan_value(p, q),
        "l2": expected_sq_diff(p, q),
        "l1": expected_abs_diff(p, q),
        "mr1": mr1,
        "mr2": mr2,
        "pmr1": (q.mean - p.mean) ** 2,
        "pmr2": (q.mean - p.mean) ** 2 + (q.variance - p.variance) ** 2,
        "mr1-laplace": l1_center,
        "mr2-laplace": math.inf if b_q == 0 else l1_center / b_q + math.log(b_q),
        "pmr1-laplace": (q.median - p.median) ** 2,
        "pmr2-laplace": (q.median - p.median) ** 2 + (b_q - p.mad) ** 2,
    }


def monte_carlo_losses(p: Mixture1D, q: Mixture1D, k: int, n: int = 20000,
                       generator: torch.Generator | None = None) -> dict[str, float]:
    """The library's losses at finite K: n inputs, y ~ p and K generator samples ~ q each.

    Keys ``l1``, ``l2`` (:func:`reconstruction_loss` on every sample), ``mr1``, ``mr2`` (:func:`mr_loss`),
    ``pmr1``, ``pmr2`` (:func:`proxy_mr_loss` with the true moments of p as a perfect predictor) and their
    ``-laplace`` versions. Samples are ``[n, K]``; finite K adds a ``Var q / K`` term to MR1 / pMR1.
    """
    _check_mix("p", p), _check_mix("q", q)
    if not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an int >= 2 (variances need two samples), got {k!r}")
    y = p.sample(n, generator)  # [n]
    samples = q.sample(n * k, generator).view(n, k)  # [n, K]
    out = {"l1": reconstruction_loss(samples, y, 1), "l2": reconstruction_loss(samples, y, 2)}
    for dist, center, disp, suffix in (("gaussian", p.mean, p.variance, ""), ("laplace", p.median, p.mad, "-laplace")):
        c = torch.full_like(y, center)
        log_disp = torch.full_like(y, math.log(disp))
        for order in (1, 2):
            out[f"mr{order}{suffix}"] = mr_loss(samples, y, dist, order)
            out[f"pmr{order}{suffix}"] = proxy_mr_loss(samples, c, log_disp, dist, order)
    return {key: float(v) for key, v in out.items()}
