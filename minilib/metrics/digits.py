"""Metrics on the 8x8 scikit-learn digits: a trained digit classifier, and StackedMNIST's mode counting.

* :func:`get_digit_classifier` trains :class:`~minilib.nets.digits.DigitClassifier` in a few seconds and caches
  the weights (atomic write under :func:`minilib.checkpoints.cache_dir`), so every notebook and test shares the
  same classifier for a given seed; :func:`classifier_accuracy` checks it. Its feature layer is the space in
  which :func:`minilib.metrics.frechet.digit_frechet_distance` measures realism (the digits' stand-in for FID).
* Stacked digits (StackedMNIST, Metz et al. 2017; PresGAN Section 5): three digits stacked as channels give
  10^3 = 1,000 modes; :func:`stacked_labels` labels each channel with the classifier and
  :func:`stacked_mode_stats` counts the modes covered and KL(generated || true).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoints import atomic_save, cache_dir as _cache_dir
from ..data.digits import load_digits
from ..nets.digits import DigitClassifier

__all__ = ["train_digit_classifier", "get_digit_classifier", "classifier_accuracy", "NUM_MODES", "stacked_labels",
           "true_label_distribution", "ModeStats", "stacked_mode_stats"]

_CLASSIFIER_VERSION = 1  # bump when the architecture or training recipe changes (invalidates caches)
NUM_MODES = 1000


def _shift_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to one pixel (background −1 fills the border). [N,1,8,8] -> same."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)  # [N, 1, 10, 10]
    shifted = torch.stack([padded[:, :, dy:dy + 8, dx:dx + 8] for dy in range(3) for dx in range(3)])  # [9, N, 1, 8, 8]
    which = torch.randint(0, 9, (x.shape[0],), generator=gen)  # [N]
    return shifted[which, torch.arange(x.shape[0])]


def train_digit_classifier(seed: int = 0, epochs: int = 20, batch_size: int = 64, lr: float = 2e-3) -> DigitClassifier:
    """Train a :class:`DigitClassifier` on ``load_digits("train", seed)`` with Adam and ±1 px shifts.

    Keeps the weights with the best validation accuracy. Deterministic for a given seed on CPU.
    A few seconds on one core. Returns the model in eval mode with gradients disabled.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs, batch_size must be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_tr, y_tr = load_digits("train", seed)
    x_va, y_va = load_digits("val", seed)
    model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_state = -1.0, None
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(x_tr.shape[0], generator=gen)
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            xb = _shift_augment(x_tr[idx], gen)
            loss = F.cross_entropy(model(xb), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        acc = classifier_accuracy(model, x_va, y_va)
        if acc > best:
            best, best_state = acc, {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return _freeze(model)


def _freeze(model: DigitClassifier) -> DigitClassifier:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def classifier_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images [N, 1, 8, 8]`` whose argmax logit equals ``labels [N]``."""
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"images and labels must have the same length, got {images.shape[0]} and {labels.shape[0]}")
    was_training = model.training
    model.eval()
    pred = model(images).argmax(1)
    model.train(was_training)
    return float((pred == labels).float().mean())


def get_digit_classifier(seed: int = 0, cache_dir: str | os.PathLike | None = None) -> DigitClassifier:
    """The digit classifier for ``seed``: loaded from ``cache_dir`` or trained and cached there.

    The file name carries the seed and a recipe version; it is written atomically (temporary file
    in the same folder, then a rename) and read with ``torch.load(weights_only=True)``. A
    corrupt cache file is retrained and overwritten.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    folder = Path(cache_dir) if cache_dir is not None else _cache_dir()
    tag = hashlib.sha1(f"digits-cnn-v{_CLASSIFIER_VERSION}".encode()).hexdigest()[:8]
    path = folder / f"digit_classifier_seed{seed}_{tag}.pt"
    model = DigitClassifier()
    if path.is_file():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return _freeze(model)
        except Exception:  # corrupt or stale file: retrain below
            pass
    model = train_digit_classifier(seed)
    atomic_save(model.state_dict(), path)
    return model



@torch.no_grad()
def stacked_labels(classifier: nn.Module, images: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    """Mode index ``100 d0 + 10 d1 + d2`` ``[N]`` of images ``[N, 3, 8, 8]`` (each channel classified alone)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != (3, 8, 8):
        raise ValueError(f"images must have shape [N, 3, 8, 8], got {getattr(images, 'shape', type(images).__name__)}")
    out = []
    for chunk in images.split(batch):
        digits = classifier(chunk.reshape(-1, 1, 8, 8)).argmax(1).reshape(-1, 3)  # [n, 3]
        out.append(digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2])
    return torch.cat(out)


def true_label_distribution(labels: torch.Tensor) -> torch.Tensor:
    """``[1000]`` the exact mode distribution of the stream: the outer product of the digit frequencies of ``labels``."""
    freq = torch.bincount(labels, minlength=10).double()
    freq = freq / freq.sum()
    return (freq[:, None, None] * freq[None, :, None] * freq[None, None, :]).reshape(-1)


@dataclass
class ModeStats:
    """``modes``: label triples with at least one sample; ``kl``: KL(generated || true) over the 1,000 modes (nats)."""

    modes: int
    kl: float
    num_samples: int


def stacked_mode_stats(labels: torch.Tensor, true_dist: torch.Tensor) -> ModeStats:
    """Modes covered and KL(p_gen || p_true) from mode indices ``[N]`` (PresGAN Table 2, after Srivastava et al. 2017;
    the paper's KL compares the classifier's mean soft outputs on generated and real test images, this one the hard
    labels' histogram with the exact ``true_dist``)."""
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.numel() == 0:
        raise ValueError("labels must be a non-empty 1-D tensor of mode indices")
    if true_dist.shape != (NUM_MODES,) or not (true_dist > 0).all():
        raise ValueError(f"true_dist must be a positive [{NUM_MODES}] distribution")
    counts = torch.bincount(labels, minlength=NUM_MODES).double()
    p = counts / counts.sum()
    nz = p > 0
    kl = (p[nz] * (p[nz] / true_dist[nz]).log()).sum().item()
    return ModeStats(int(nz.sum()), kl, labels.numel())
