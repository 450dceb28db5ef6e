"""Every loss of the three papers as a pure tensor function.

Conventions:

* ``samples`` holds K generator samples per input: ``[B, K, *event]``; the ground truth ``y`` and the
  predictor's outputs are ``[B, *event]``.
* Gaussian statistics are the mean and the *unbiased* variance (divide by K - 1); Laplace statistics
  are the median (``torch.median``: the lower middle value for even K) and the mean absolute deviation
  (MAD) around it (divide by K).
* Every loss is a mean over elements (batch and event dimensions), so its scale does not depend on
  the image size or batch size.
* Names: MR = MCMLE and proxy MR = MLMM (the review version of the MR-GAN paper uses the latter).

Bad input raises ``ValueError`` or ``TypeError`` (:mod:`minilib.errors` subclasses) naming the argument and what
was expected: wrong shapes, K too small, empty or integer tensors, tensors on different devices. NaN / Inf inputs are
refused when they are CPU tensors; on an accelerator that check would cost a device sync on every training step, so
there a non-finite input gives a non-finite loss and :class:`minilib.train.Trainer` stops the run (keeping the last
good checkpoint).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import ConfigError, ConfigTypeError, check_number, check_same_device, check_tensor

__all__ = [
    "DISTS",
    "GAN_KINDS",
    "sample_moments",
    "mle_loss",
    "mr_loss",
    "proxy_mr_loss",
    "mode_seeking_loss",
    "reconstruction_loss",
    "gan_loss",
]

DISTS = ("gaussian", "laplace")
GAN_KINDS = ("nonsaturating", "lsgan", "hinge")


# --------------------------------------------------------------------------------------------- checks
def _check_dist(dist: str) -> str:
    if dist not in DISTS:
        raise ConfigError(f"dist must be one of {DISTS}, got {dist!r}")
    return dist


def _check_order(order: int) -> int:
    if order not in (1, 2) or isinstance(order, bool):
        raise ConfigError(f"order must be 1 (first moment) or 2 (first and second moments), got {order!r}")
    return order


def _check_tensor(name: str, t: object, min_dims: int | None = None) -> torch.Tensor:
    """A non-empty floating tensor; NaN / Inf refused on CPU (on an accelerator that would cost a device sync per
    step: a non-finite input there gives a non-finite loss, which the Trainer's guard stops on)."""
    return check_tensor(name, t, min_dims=min_dims, finite="cpu")


def _check_samples(samples: torch.Tensor, min_k: int) -> torch.Tensor:
    if not isinstance(samples, torch.Tensor):
        raise ConfigTypeError(f"samples must be a torch.Tensor [B, K, *event], got {type(samples).__name__}")
    if samples.dim() < 2:
        raise ConfigError(f"samples must be [B, K, *event] (at least 2 dims), got shape {tuple(samples.shape)}")
    if samples.shape[1] < min_k:
        raise ConfigError(
            f"samples needs K >= {min_k} samples per input along dim 1 for this statistic, "
            f"got K = {samples.shape[1]} (shape {tuple(samples.shape)})"
        )
    return _check_tensor("samples", samples)


def _check_like(name: str, t: object, ref_name: str, ref: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``t`` is a tensor of ``shape`` on ``ref``'s device (then the checks of :func:`_check_tensor`)."""
    if not isinstance(t, torch.Tensor):
        raise ConfigTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise ConfigError(f"{name} must have the shape of {ref_name} {tuple(shape)}, got {tuple(t.shape)}")
    check_same_device(ref_name, ref, **{name: t})
    return _check_tensor(name, t)


# --------------------------------------------------------------------------------------------- moments
def sample_moments(samples: torch.Tensor, dist: str = "gaussian") -> tuple[torch.Tensor, torch.Tensor]:
    """Sample centre and dispersion over the K samples of each input (MR-GAN Eq. 7).

    Args:
        samples: ``[B, K, *event]`` generator samples, K >= 2.
        dist: ``"gaussian"`` -> (mean, unbiased variance); ``"laplace"`` -> (median, MAD around the median).

    Returns:
        ``(center, dispersion)``, each ``[B, *event]``.
    """
    _check_dist(dist)
    _check_samples(samples, 2)
    if dist == "gaussian":
        return samples.mean(dim=1), samples.var(dim=1, unbiased=True)
    median = samples.median(dim=1).values  # [B, *event]; lower middle value for even K
    mad = (samples - median.unsqueeze(1)).abs().mean(dim=1)
    return median, mad


def _spread_median(samples: torch.Tensor, target: torch.Tensor, median: torch.Tensor) -> torch.Tensor:
    """The papers' Laplace trick (Alg. 3, 4, 7, 8): constant targets t_i = ỹ_i + (target - m̃).

    A loss between ``t_i`` and ``ỹ_i`` has the value of the loss between ``target`` and the median
    ``m̃``, but its gradient reaches every sample equally, not only the median sample.
    Returns ``t`` of shape ``[B, K, *event]`` (detached).
    """
    return (samples + (target - median).unsqueeze(1)).detach()


# --------------------------------------------------------------------------------------------- MLE
def mle_loss(center: torch.Tensor, log_dispersion: torch.Tensor, y: torch.Tensor, dist: str = "gaussian") -> torch.Tensor:
    """Predictor negative log-likelihood without constants (MR-GAN Eq. 4 and Eq. 5).

    Gaussian: ``(y - mu)^2 / (2 sigma^2) + 0.5 log sigma^2`` with ``log_dispersion = log sigma^2``.
    Laplace:  ``|y - m| / b + log b`` with ``log_dispersion = log b`` (b the MAD).

    Args:
        center, log_dispersion, y: ``[B, *event]`` each.
    Returns: scalar mean over elements.
    """
    _check_dist(dist)
    _check_tensor("y", y)
    _check_like("center", center, "y", y, y.shape)
    _check_like("log_dispersion", log_dispersion, "y", y, y.shape)
    if dist == "gaussian":
        return (0.5 * (y - center) ** 2 * torch.exp(-log_dispersion) + 0.5 * log_dispersion).mean()
    return ((y - center).abs() * torch.exp(-log_dispersion) + log_dispersion).mean()


# --------------------------------------------------------------------------------------------- MR
def mr_loss(
    samples: torch.Tensor, y: torch.Tensor, dist: str = "gaussian", order: int = 2, min_dispersion: float = 1e-6,
    noise_variance: float = 0.0, unbiased_precision: bool = False,
) -> torch.Tensor:
    """Moment reconstruction loss MR1 / MR2 (= MCMLE1 / MCMLE1/2), MR-GAN Eq. 8 and Algorithms 5-8.

    Gaussian, order 1 (Alg. 5): ``(y - mu~)^2``.
    Gaussian, order 2 (Alg. 6): ``(y - mu~)^2 / (2 sigma~^2) + 0.5 log sigma~^2`` (sample mean, unbiased variance).
    Laplace,  order 1 (Alg. 7): ``|t_i - y~_i|`` with ``t_i = detach(y~_i + (y - m~))``: value ``|y - m~|``.
    Laplace,  order 2 (Alg. 8): ``|t_i - y~_i| / b~ + log b~`` (b~ the sample MAD).

    Args:
        samples: ``[B, K, *event]``; K >= 2 (K >= 1 for Gaussian order 1).
        y: ``[B, *event]`` ground truth.
        min_dispersion: floor on the sample variance / MAD of order 2. Where all K samples coincide (a
            collapsed generator, or pixels a network copies from its input) the Gaussian/Laplace NLL would be
            NaN or infinite; the floor keeps it finite (and large). It never binds for spread-out samples.
        noise_variance: Gaussian order 2 only: the known variance of the data's observation noise, *added* to the
            sample variance (the model is y = G(x, z) + ε, ε ~ N(0, noise_variance)). Unlike the floor it keeps the
            variance's gradient, and it bounds the loss where the K samples agree.
        unbiased_precision: Gaussian order 2 only: divide the K samples' sum of squares by K - 3 instead of K - 1.
            For Gaussian samples E[1 / s²] = (K-1)/(K-3) / σ² with the unbiased s², so the plain loss is minimised
            by a spread (K-1)/(K-3) times the data's (1.4x at K = 8); with K - 3, E[1 / variance] = 1 / σ² (K >= 4).
    Returns: scalar mean over elements (and over the K targets for Laplace).
    """
    check_number("min_dispersion", min_dispersion, low=0.0, low_open=False)
    check_number("noise_variance", noise_variance, low=0.0, low_open=False)
    _check_dist(dist)
    _check_order(order)
    if dist == "laplace" and (noise_variance or unbiased_precision):
        raise ConfigError("noise_variance and unbiased_precision apply to the Gaussian MR only, got dist='laplace'")
    k_min = 4 if (unbiased_precision and order == 2) else 1 if (dist == "gaussian" and order == 1) else 2
    _check_samples(samples, k_min)
    _check_like("y", y, "samples[:, 0]", samples, samples[:, 0].shape)
    if dist == "gaussian":
        mean = samples.mean(dim=1)  # [B, *event]
        if order == 1:
            return ((y - mean) ** 2).mean()
        k = samples.shape[1]
        var = samples.var(dim=1, unbiased=True) * ((k - 1) / (k - 3) if unbiased_precision else 1.0)
        var = (var + noise_variance).clamp_min(min_dispersion)
        return (0.5 * (y - mean) ** 2 / var + 0.5 * torch.log(var)).mean()
    median, mad = sample_moments(samples, "laplace")
    t = _spread_median(samples, y, median)  # [B, K, *event]
    abs_err = (t - samples).abs()  # equals |y - m~| for every sample
    if order == 1:
        return abs_err.mean()
    mad = mad.clamp_min(min_dispersion)
    return (abs_err / mad.unsqueeze(1) + torch.log(mad).unsqueeze(1)).mean()


def proxy_mr_loss(
    samples: torch.Tensor,
    pred_center: torch.Tensor,
    pred_log_dispersion: torch.Tensor | None = None,
    dist: str = "gaussian",
    order: int = 2,
) -> torch.Tensor:
    """Proxy moment reconstruction loss pMR1 / pMR2 (= MLMM1 / MLMM1/2), MR-GAN Eq. 6, Algorithms 1-4.

    The predictor's outputs are targets: they are treated as constants (the predictor is trained
    beforehand and frozen), so no gradient flows into them.

    Gaussian, order 1 (Alg. 1): ``(mu^ - mu~)^2``.
    Gaussian, order 2 (Alg. 2): ``(mu^ - mu~)^2 + (sigma^2 - sigma~^2)^2``, ``sigma^2 = exp(pred_log_dispersion)``.
    Laplace,  order 1 (Alg. 3): ``(t_i - y~_i)^2`` with ``t_i = detach(y~_i + (m^ - m~))``: value ``(m^ - m~)^2``.
    Laplace,  order 2 (Alg. 4): ``(t_i - y~_i)^2 + (b^ - b~)^2``, ``b^ = exp(pred_log_dispersion)``.

    Each moment term is a mean over elements; order 2 adds the two terms.

    Args:
        samples: ``[B, K, *event]``.
        pred_center, pred_log_dispersion: ``[B, *event]`` predictor outputs (log-variance or log-MAD);
            ``pred_log_dispersion`` may be ``None`` for order 1.
    Returns: scalar.
    """
    _check_dist(dist)
    _check_order(order)
    _check_samples(samples, 1 if (dist == "gaussian" and order == 1) else 2)
    event_shape = samples[:, 0].shape
    _check_like("pred_center", pred_center, "samples[:, 0]", samples, event_shape)
    if order == 2:
        if pred_log_dispersion is None:
            raise ConfigError("pred_log_dispersion is required for order=2 (second-moment matching)")
        _check_like("pred_log_dispersion", pred_log_dispersion, "samples[:, 0]", samples, event_shape)
    pred_center = pred_center.detach()
    if dist == "gaussian":
        first = ((pred_center - samples.mean(dim=1)) ** 2).mean()
        if order == 1:
            return first
        var = samples.var(dim=1, unbiased=True)
        return first + ((torch.exp(pred_log_dispersion.detach()) - var) ** 2).mean()
    median, mad = sample_moments(samples, "laplace")
    t = _spread_median(samples, pred_center, median)
    first = ((t - samples) ** 2).mean()
    if order == 1:
        return first
    return first + ((torch.exp(pred_log_dispersion.detach()) - mad) ** 2).mean()


# --------------------------------------------------------------------------------------------- others
def _flat_noise(z: torch.Tensor | Sequence[torch.Tensor], name: str, ref: torch.Tensor) -> torch.Tensor:
    """Noise (a tensor ``[N, ...]`` or a tuple of them) as ``[N, D]``, on ``y1``'s (``ref``) device."""
    parts = [z] if isinstance(z, torch.Tensor) else list(z) if isinstance(z, (tuple, list)) else None
    if not parts or not all(isinstance(t, torch.Tensor) for t in parts):
        raise ConfigTypeError(f"{name} must be a tensor or a non-empty tuple of tensors (multi-scale noise), got "
                              f"{type(z).__name__}{' (empty)' if isinstance(z, (tuple, list)) and not z else ''}")
    for t in parts:
        if t.dim() < 1 or t.shape[0] != parts[0].shape[0]:
            raise ConfigError(f"{name}'s noise maps must share their batch size (dim 0), got "
                              f"{[tuple(p.shape) for p in parts]}")
        check_same_device("y1", ref, **{name: t})
        _check_tensor(name, t)
    return torch.cat([t.reshape(t.shape[0], -1) for t in parts], dim=1)


def mode_seeking_loss(
    y1: torch.Tensor,
    y2: torch.Tensor,
    z1: torch.Tensor | Sequence[torch.Tensor],
    z2: torch.Tensor | Sequence[torch.Tensor],
    eps: float = 1e-5,
) -> torch.Tensor:
    """MSGAN's mode-seeking regulariser (MSGAN Eq. 1 as implemented by its authors).

    ``1 / (mean|y1 - y2| / mean|z1 - z2| + eps)``: minimising it maximises the ratio of the distance
    between two outputs to the distance between the latent codes that made them.

    Args:
        y1, y2: ``[B, *event]`` outputs for the same inputs and two noise draws.
        z1, z2: the two noise draws (tensors ``[B, ...]`` or tuples of them for multi-scale noise); they must
            differ: with ``z1 == z2`` the ratio is undefined (a ``ValueError`` on CPU; on an accelerator, where the
            test would cost a device sync, the loss is NaN and the Trainer's guard stops).
        eps: keeps the loss finite when the outputs coincide.
    Returns: scalar.
    """
    _check_tensor("y1", y1)
    _check_like("y2", y2, "y1", y1, y1.shape)
    if z1 is z2:
        raise ConfigError("z1 and z2 are the same tensor: mode seeking needs two different noise draws")
    f1, f2 = _flat_noise(z1, "z1", y1), _flat_noise(z2, "z2", y1)
    if f1.shape != f2.shape:
        raise ConfigError(f"z2 must have the shape of z1 {tuple(f1.shape)}, got {tuple(f2.shape)}")
    check_number("eps", eps, low=0.0)
    z_dist = (f1 - f2).abs().mean()
    if z_dist.device.type == "cpu" and not bool(z_dist > 0):
        raise ConfigError("z1 and z2 are equal: mode seeking needs two different noise draws (the ratio "
                          "|y1 - y2| / |z1 - z2| is undefined)")
    ratio = (y1 - y2).abs().mean() / z_dist
    return torch.where(z_dist > 0, 1.0 / (ratio + eps), torch.full_like(ratio, math.nan))


def reconstruction_loss(pred: torch.Tensor, y: torch.Tensor, p: int = 1) -> torch.Tensor:
    """ℓ1 (``p=1``) or ℓ2 (``p=2``, squared error) reconstruction loss, MR-GAN Eq. 3. Mean over elements.

    ``pred`` may be ``[B, *event]`` or ``[B, K, *event]`` (every sample compared with its ``y``).
    """
    _check_tensor("pred", pred)
    _check_tensor("y", y)
    check_same_device("pred", pred, y=y)
    if p not in (1, 2) or isinstance(p, bool):
        raise ConfigError(f"p must be 1 (ℓ1) or 2 (ℓ2), got {p!r}")
    if pred.shape != y.shape:
        if pred.dim() == y.dim() + 1 and pred.shape[0] == y.shape[0] and pred.shape[2:] == y.shape[1:]:
            y = y.unsqueeze(1)  # [B, 1, *event] broadcast over the K samples
        else:
            raise ConfigError(f"pred must be [B, *event] or [B, K, *event] matching y {tuple(y.shape)}, got {tuple(pred.shape)}")
    diff = pred - y
    return diff.abs().mean() if p == 1 else (diff**2).mean()


def gan_loss(logits: torch.Tensor, real: bool, kind: str = "nonsaturating", generator: bool = False) -> torch.Tensor:
    """Adversarial loss on discriminator logits (MR-GAN Eq. 2), mean over elements.

    How each side calls it:

    * discriminator: ``gan_loss(D(x, y), True) + gan_loss(D(x, G(x, z)), False)``;
    * generator: ``gan_loss(D(x, G(x, z)), True, generator=True)``.

    Kinds:

    * ``"nonsaturating"`` (default, the papers' choice): binary cross-entropy with target 1 (real) or 0 (fake);
      for the generator this is ``-log D(x, G(x, z))`` (the non-saturating loss of Goodfellow 2016).
    * ``"lsgan"``: squared error to 1 (real) or 0 (fake); the generator also targets 1.
    * ``"hinge"``: discriminator ``relu(1 - logits)`` for real, ``relu(1 + logits)`` for fake; the generator
      uses ``-logits`` (requires ``real=True``).
    """
    _check_tensor("logits", logits)
    if kind not in GAN_KINDS:
        raise ConfigError(f"kind must be one of {GAN_KINDS}, got {kind!r}")
    if not isinstance(real, bool):
        raise ConfigTypeError(f"real must be a bool (True: label 'real'), got {type(real).__name__}")
    if generator and not real:
        raise ConfigError("real must be True when generator=True: the generator wants its samples judged real")
    if kind == "nonsaturating":
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)
    if kind == "lsgan":
        return ((logits - (1.0 if real else 0.0)) ** 2).mean()
    if generator:
        return (-logits).mean()
    return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()
