"""Realism as a distance between feature distributions: the Fréchet distance between Gaussians fitted to
features (FID with Inception features through pytorch-fid; on digits the digit classifier's feature layer).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, check_int
from .diversity import MissingWeightsError, to_signed_range
from .ndb import _flat

__all__ = ["gaussian_statistics", "frechet_distance", "frechet_distance_features", "digit_frechet_distance", "inception_fid"]


def gaussian_statistics(features: torch.Tensor | np.ndarray, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (float64) of ``features [N, D]``, N ≥ 2."""
    f = _flat(features, name)
    if len(f) < 2:
        raise ConfigError(f"{name} need at least 2 rows for a covariance, got {len(f)}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein²) distance of two Gaussians (Dowson & Landau 1982; FID, Heusel 2017).

    d² = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2}); the matrix root is taken by
    symmetric eigendecomposition, so singular covariances are fine.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    for name, a, want in (("mu1", mu1, (d,)), ("sigma1", s1, (d, d)), ("mu2", mu2, (d,)), ("sigma2", s2, (d, d))):
        if a.shape != want:
            raise ConfigError(f"{name} must have shape {want} (mu [D], sigma [D, D] with mu1's D = {d}), got {a.shape}")
        if not np.isfinite(a).all():
            raise ConfigError(f"{name} must be finite, found NaN or Inf")

    def sqrt_psd(a: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh((a + a.T) / 2)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r1 = sqrt_psd(s1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()  # Tr (Σ1½ Σ2 Σ1½)½
    return float(max(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross, 0.0))


def frechet_distance_features(f1: torch.Tensor | np.ndarray, f2: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N1, D]`` and ``[N2, D]``."""
    s1, s2 = gaussian_statistics(f1, "f1"), gaussian_statistics(f2, "f2")
    if s2[0].shape != s1[0].shape:
        raise ConfigError(f"f2 must have f1's feature size D = {s1[0].shape[0]}, got {s2[0].shape[0]}")
    return frechet_distance(*s1, *s2)


@torch.no_grad()
def digit_frechet_distance(images_a: torch.Tensor, images_b: torch.Tensor, classifier: torch.nn.Module | None = None,
                           seed: int = 0) -> float:
    """Fréchet distance of two sets of digits ``[N, 1, 8, 8]`` in [−1, 1], in the 128-d feature space
    of :func:`minilib.metrics.digits.get_digit_classifier` (the digits' FID)."""
    from .digits import get_digit_classifier

    for name, t in (("images_a", images_a), ("images_b", images_b)):
        to_signed_range(t, "[-1,1]", name)
        if t.dim() != 4 or tuple(t.shape[1:]) != (1, 8, 8):
            raise ConfigError(f"{name} must be digits [N, 1, 8, 8], got {tuple(t.shape)}")
    clf = classifier if classifier is not None else get_digit_classifier(seed)
    return frechet_distance_features(clf.features(images_a.float()), clf.features(images_b.float()))


def inception_fid(images_a: torch.Tensor, images_b: torch.Tensor, input_range: str = "[-1,1]", batch_size: int = 50,
                  device: str | torch.device = "cpu") -> float:
    """FID (Heusel et al. 2017) through ``pytorch-fid``'s TF-Inception pool3 features (2048-d).

    ``images [N, 3, H, W]``. Raises :class:`MissingWeightsError` (with instructions) when the
    package or its Inception weights are missing; they download from GitHub on first use.
    """
    check_int("batch_size", batch_size)
    for name, t in (("images_a", images_a), ("images_b", images_b)):
        to_signed_range(t, input_range, name)
        if t.dim() != 4 or t.shape[1] != 3:
            raise ConfigError(f"{name} must be RGB images [N, 3, H, W], got {tuple(t.shape)}")
    try:
        from pytorch_fid import inception as pfi
    except ImportError as err:
        raise MissingWeightsError("FID needs the pytorch-fid package: pip install pytorch-fid") from err
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(pfi.FID_WEIGHTS_URL)
    if not cached.is_file():
        raise MissingWeightsError(f"FID needs the TF-Inception weights (expected {cached}). On a machine with internet "
                                  f"download {pfi.FID_WEIGHTS_URL} and copy it there (or set TORCH_HOME).")
    net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval().to(device)
    feats = []
    with torch.no_grad():
        for imgs, name in ((images_a, "images_a"), (images_b, "images_b")):
            x01 = (to_signed_range(imgs, input_range, name) + 1) / 2  # pytorch-fid expects [0, 1]
            feats.append(torch.cat([net(x01[i:i + batch_size].to(device))[0].flatten(1).cpu()
                                    for i in range(0, len(x01), batch_size)]))
    return frechet_distance_features(*feats)
