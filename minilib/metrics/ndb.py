"""Mode coverage of image generators: NDB / JSD (Richardson & Weiss 2018; used by MSGAN Table 3).

Training images are clustered by k-means (seeded, cached by content under :func:`minilib.checkpoints.cache_dir`
when asked); NDB counts the bins whose share of generated samples differs significantly (two-proportion
z-test) from the training share, JSD compares the two bin histograms.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import atomic_write
from ..errors import ConfigError, ConfigTypeError, check_int, check_number

__all__ = ["NDBBins", "NDBResult", "fit_ndb_bins", "ndb_jsd", "jensen_shannon"]


# --------------------------------------------------------------------------- NDB / JSD
@dataclass
class NDBBins:
    """k-means bins fitted on training samples: centres ``[K, D]`` and train proportions ``[K]``."""

    centers: np.ndarray
    train_proportions: np.ndarray
    num_train: int
    seed: int

    @property
    def k(self) -> int:
        """Number of bins K."""
        return int(self.centers.shape[0])

    def assign(self, samples: torch.Tensor | np.ndarray) -> np.ndarray:
        """Index of the nearest centre for each sample ``[N, ...] -> [N]``."""
        x = _flat(samples, "samples")
        if x.shape[1] != self.centers.shape[1]:
            raise ConfigError(f"samples have {x.shape[1]} values each, bins were fitted on {self.centers.shape[1]}")
        d = (x ** 2).sum(1)[:, None] - 2 * x @ self.centers.T + (self.centers ** 2).sum(1)[None]  # [N, K]
        return d.argmin(1)

    def proportions(self, samples: torch.Tensor | np.ndarray) -> np.ndarray:
        """Fraction of ``samples`` falling in each bin ``[K]``."""
        return np.bincount(self.assign(samples), minlength=self.k) / len(samples)


def _flat(x: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    """``x [N, ...]`` (tensor or array, N >= 1, finite) as float64 ``[N, D]``; else an error naming ``name``."""
    if isinstance(x, torch.Tensor):
        if x.device.type == "meta":
            raise ConfigError(f"{name} is on the meta device (shapes only, no values)")
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.number):
        raise ConfigTypeError(f"{name} must be a numeric tensor or array [N, ...], got {type(x).__name__}")
    if x.ndim < 2 or len(x) == 0 or x.size == 0:
        raise ConfigError(f"{name} must be a non-empty [N, ...] with at least 2 dims, got shape {x.shape}")
    out = x.reshape(len(x), -1).astype(np.float64)
    if not np.isfinite(out).all():
        raise ConfigError(f"{name} must be finite, found NaN or Inf")
    return out


def fit_ndb_bins(train: torch.Tensor | np.ndarray, k: int, seed: int = 0,
                 cache_dir: str | os.PathLike | None = None) -> NDBBins:
    """k-means (scikit-learn, ``random_state=seed``) with ``k`` bins on ``train [N, ...]``.

    Richardson & Weiss (2018) ask for ≥ 10 training samples per bin (MSGAN uses K ≈ N/20). With
    ``cache_dir`` the centres are cached under a hash of the data, K and seed (atomic write).
    """
    x = _flat(train, "train")
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= len(x):
        raise ConfigError(f"k must be an int in 2..{len(x)} (number of training samples), got {k}")
    path = None
    if cache_dir is not None:
        key = hashlib.sha1(x.tobytes() + f"|{k}|{seed}".encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"ndb_bins_{key}.npy"
        if path.is_file():
            centers = np.load(path)
            bins = NDBBins(centers, np.zeros(k), len(x), seed)
            bins.train_proportions = bins.proportions(x)
            return bins
    from sklearn.cluster import KMeans

    centers = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x).cluster_centers_.astype(np.float64)
    if path is not None:
        atomic_write(path, lambda fh: np.save(fh, centers))
    bins = NDBBins(centers, np.zeros(k), len(x), seed)
    bins.train_proportions = bins.proportions(x)
    return bins


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """JSD(p‖q) = ½KL(p‖m) + ½KL(q‖m), m = (p+q)/2, in nats (0 ≤ JSD ≤ ln 2)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    for name, h in (("p", p), ("q", q)):
        if h.ndim != 1 or not np.isfinite(h).all() or (h < 0).any() or h.sum() <= 0:
            raise ConfigError(f"{name} must be a 1-D histogram of finite non-negative counts with a positive sum, got {h}")
    if p.shape != q.shape:
        raise ConfigError(f"q must have p's shape {p.shape}, got {q.shape}")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    kl = lambda a: float(np.sum(a[a > 0] * np.log(a[a > 0] / m[a > 0])))
    return 0.5 * kl(p) + 0.5 * kl(q)


@dataclass
class NDBResult:
    """NDB (count of statistically different bins, always reported with K) and JSD in nats."""

    ndb: int
    k: int
    ndb_over_k: float
    jsd: float
    different_bins: list[int]
    sample_proportions: list[float] = field(repr=False)

    def to_dict(self) -> dict:
        """Plain dict (JSON-serialisable)."""
        return asdict(self)


def ndb_jsd(bins: NDBBins, samples: torch.Tensor | np.ndarray, alpha: float = 0.05) -> NDBResult:
    """Number of statistically different bins and JSD (Richardson & Weiss 2018, Sec. 3).

    Each bin's train proportion P and sample proportion Q are compared with a two-proportion
    z-test, z = (P − Q) / sqrt(p̄(1 − p̄)(1/N_train + 1/N_samples)) with pooled p̄; a bin counts
    when its two-sided p-value is below ``alpha``.
    """
    check_number("alpha", alpha, low=0.0, high=1.0)
    if not isinstance(bins, NDBBins):
        raise ConfigTypeError(f"bins must be the NDBBins of fit_ndb_bins, got {type(bins).__name__}")
    from scipy import stats

    n_s = len(_flat(samples, "samples"))
    q = bins.proportions(samples)
    p, n_t = bins.train_proportions, bins.num_train
    pooled = (p * n_t + q * n_s) / (n_t + n_s)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_s))
    z = np.divide(p - q, se, out=np.zeros_like(se), where=se > 0)
    diff = np.flatnonzero(2 * stats.norm.sf(np.abs(z)) < alpha)
    return NDBResult(len(diff), bins.k, len(diff) / bins.k, jensen_shannon(p, q), diff.tolist(), q.tolist())
