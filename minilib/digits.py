"""scikit-learn's 8×8 handwritten digits: the real image data that runs on a CPU.

* :func:`load_digits` — seeded train / val / test split of the 1,797 bundled images, as tensors
  ``[N, 1, 8, 8]`` scaled from the raw 0..16 grey levels to [−1, 1], with labels ``[N]``.
* :class:`DigitClassifier` — a small CNN (two 3×3 convolutions, a 128-d feature layer, 10 logits);
  its feature layer is the space in which :func:`minilib.metrics.images.digit_frechet_distance`
  measures realism (the digits' stand-in for FID's Inception features).
* :func:`get_digit_classifier` — trains it in a few seconds and caches the weights (atomic write),
  so every notebook and test shares the same classifier for a given seed.
* :class:`DigitInpaintingStream` — the conditional task of notebook 12: given the top rows of a
  digit (``x [B, 1, T, 8]``), generate the missing rows (``y [B, 1, 8−T, 8]``). It follows the
  training-stream contract (``next(batch_size) -> (x, y)``, ``state_dict``/``load_state_dict``).
* :class:`DigitCompletionG` / :class:`DigitCompletionD` / :class:`DigitCompletionP` — small MLP
  generator, discriminator and predictor for that task, following the G / D / P contracts.

No download is needed: the images ship inside scikit-learn.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .nets.common import mlp

__all__ = [
    "SPLITS",
    "load_digits",
    "DigitClassifier",
    "train_digit_classifier",
    "get_digit_classifier",
    "classifier_accuracy",
    "split_rows",
    "join_rows",
    "DigitInpaintingStream",
    "DigitCompletionG",
    "DigitCompletionD",
    "DigitCompletionP",
    "default_cache_dir",
    "DigitCompletionRun",
    "train_digit_completion",
]

SPLITS = ("train", "val", "test", "all")
_CLASSIFIER_VERSION = 1  # bump when the architecture or training recipe changes (invalidates caches)


def load_digits(
    split: str = "train", seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images [N, 1, 8, 8] float32 in [-1, 1], labels [N] int64)`` for one split.

    The 1,797 images are permuted with ``seed`` and cut into test (first ``test_fraction``),
    val (next ``val_fraction``) and train (the rest); the three splits are disjoint and their union
    is ``split="all"`` (unshuffled, original order). Pixel ``v`` in 0..16 maps to ``v / 8 − 1``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}")
    from sklearn.datasets import load_digits as _sk_load

    data = _sk_load()
    images = torch.from_numpy(data.images.astype(np.float32)).unsqueeze(1) / 8.0 - 1.0  # [1797, 1, 8, 8]
    labels = torch.from_numpy(data.target.astype(np.int64))
    if split == "all":
        return images, labels
    n = images.shape[0]
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    n_test, n_val = int(round(test_fraction * n)), int(round(val_fraction * n))
    idx = {"test": perm[:n_test], "val": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}[split]
    return images[idx].clone(), labels[idx].clone()


class DigitClassifier(nn.Module):
    """Small CNN for 8×8 digits: conv(1→32) → conv(32→64) → pool → 128-d features → 10 logits.

    ``forward(x [N, 1, 8, 8]) -> logits [N, 10]``; ``features(x) -> [N, 128]`` (post-ReLU
    penultimate layer), the embedding used for Fréchet distances on digits.
    """

    feature_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 4 * 4, self.feature_dim)
        self.head = nn.Linear(self.feature_dim, 10)

    @staticmethod
    def _check(x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a tensor, got {type(x).__name__}")
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"x must have shape [N, 1, 8, 8], got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, 128]`` of images ``x [N, 1, 8, 8]`` in [−1, 1]."""
        self._check(x)
        h = F.relu(self.conv1(x))  # [N, 32, 8, 8]
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # [N, 64, 4, 4]
        return F.relu(self.fc(h.flatten(1)))  # [N, 128]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[N, 10]``."""
        return self.head(self.features(x))


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


def default_cache_dir() -> Path:
    """``$MINILIB_CACHE`` if set, else ``~/.cache/minilib``."""
    return Path(os.environ.get("MINILIB_CACHE", Path.home() / ".cache" / "minilib"))


def get_digit_classifier(seed: int = 0, cache_dir: str | os.PathLike | None = None) -> DigitClassifier:
    """The digit classifier for ``seed``: loaded from ``cache_dir`` or trained and cached there.

    The file name carries the seed and a recipe version; it is written atomically (temporary file
    in the same folder, then ``os.replace``) and read with ``torch.load(weights_only=True)``. A
    corrupt cache file is retrained and overwritten.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
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
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return model


def split_rows(images: torch.Tensor, top_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``images [N, C, H, W] -> (top [N, C, T, W], rest [N, C, H−T, W])`` with T = ``top_rows``."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a [N, C, H, W] tensor, got {getattr(images, 'shape', type(images))}")
    if not 1 <= top_rows < images.shape[2]:
        raise ValueError(f"top_rows must be in 1..{images.shape[2] - 1}, got {top_rows}")
    return images[:, :, :top_rows], images[:, :, top_rows:]


def join_rows(top: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_rows`: stack rows ``[..., T, W]`` and ``[..., H−T, W]`` along the height.

    Works for ``[N, C, ·, W]`` and for K samples ``[N, K, C, ·, W]`` (``top`` is broadcast over K
    when it is ``[N, C, T, W]``).
    """
    if rest.dim() == top.dim() + 1:
        top = top.unsqueeze(1).expand(-1, rest.shape[1], *top.shape[1:])
    if top.shape[:-2] != rest.shape[:-2] or top.shape[-1] != rest.shape[-1]:
        raise ValueError(f"top {tuple(top.shape)} and rest {tuple(rest.shape)} do not fit together")
    return torch.cat([top, rest], dim=-2)


class DigitInpaintingStream:
    """Training stream for digit completion: ``next(B) -> (x [B,1,T,8], y [B,1,8−T,8])``.

    ``x`` holds the top ``top_rows`` rows of a digit from ``images``, ``y`` the rows to complete.
    Batches walk through seeded random permutations (epochs), so the position is two integers and
    a seed: ``state_dict()`` restores it exactly.

    ``dequantize=True`` spreads each of the 17 grey levels of ``y`` uniformly over its bin,
    ``y = (v + u) / 8.5 − 1`` with ``v`` in 0..16, ``u ~ U(0, 1)`` (still in [−1, 1]). Likelihood
    losses (MR2, the predictor's MLE) need it: on discrete data a Gaussian NLL is unbounded below
    (the background is exactly −1, so the variance there collapses to 0 and the loss to −∞).
    """

    def __init__(self, images: torch.Tensor, top_rows: int = 3, seed: int = 0, dequantize: bool = False) -> None:
        if images.dim() != 4 or tuple(images.shape[1:]) != (1, 8, 8):
            raise ValueError(f"images must have shape [N, 1, 8, 8], got {tuple(images.shape)}")
        if not 1 <= top_rows <= 7:
            raise ValueError(f"top_rows must be in 1..7, got {top_rows}")
        self.images, self.top_rows, self.seed, self.dequantize = images, top_rows, seed, dequantize
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.images.shape[0], generator=g)

    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Next ``batch_size`` pairs ``(x, y)``, wrapping into a fresh permutation at each epoch end."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        parts, need = [], batch_size
        noise_seed = (self.seed * 1_000_003 + self.epoch) * 1_000_003 + self.pos  # a function of the position
        while need > 0:
            take = min(need, len(self._perm) - self.pos)
            parts.append(self._perm[self.pos:self.pos + take])
            self.pos += take
            need -= take
            if self.pos == len(self._perm):
                self.epoch, self.pos = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
        x, y = split_rows(self.images[torch.cat(parts)], self.top_rows)
        if self.dequantize:
            u = torch.rand(y.shape, generator=torch.Generator().manual_seed(noise_seed))
            y = ((y + 1) * 8 + u) / 8.5 - 1  # [B, 1, 8-T, 8]
        return x, y

    def state_dict(self) -> dict:
        """Position of the stream: ``{"seed", "epoch", "pos"}``."""
        return {"seed": self.seed, "epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        """Restore a position saved by :meth:`state_dict`."""
        self.seed, self.epoch, self.pos = int(state["seed"]), int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation(self.epoch)


def _mlp(n_in: int, n_out: int, hidden: int, depth: int = 2) -> nn.Sequential:
    return mlp(n_in, n_out, hidden, depth, "leaky_relu")


class DigitCompletionG(nn.Module):
    """Generator ``G(x [B,1,T,8], z [B, z_dim]) -> y [B,1,8−T,8]`` in [−1, 1] (tanh): an MLP on the
    known rows concatenated with the noise (the Pix2Pix / MR-GAN conditional generator, in small)."""

    def __init__(self, top_rows: int = 3, z_dim: int = 16, hidden: int = 256) -> None:
        super().__init__()
        if not 1 <= top_rows <= 7 or z_dim < 1 or hidden < 1:
            raise ValueError(f"need 1 <= top_rows <= 7, z_dim >= 1, hidden >= 1; got {top_rows}, {z_dim}, {hidden}")
        self.top_rows, self.z_dim = top_rows, z_dim
        self.net = _mlp(8 * top_rows + z_dim, 8 * (8 - top_rows), hidden)

    def noise(self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal noise ``[n, z_dim]``."""
        return torch.randn(n, self.z_dim, device=device, generator=generator)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, self.top_rows, 8):
            raise ValueError(f"x must be [B, 1, {self.top_rows}, 8], got {tuple(x.shape)}")
        if z.shape != (x.shape[0], self.z_dim):
            raise ValueError(f"z must be [{x.shape[0]}, {self.z_dim}], got {tuple(z.shape)}")
        out = torch.tanh(self.net(torch.cat([x.flatten(1), z], 1)))  # [B, 8·(8−T)]
        return out.view(-1, 1, 8 - self.top_rows, 8)


class DigitCompletionD(nn.Module):
    """Discriminator ``D(x [B,1,T,8], y [B,1,8−T,8]) -> logits [B]`` on the whole completed digit."""

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.net = _mlp(64, 1, hidden)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(join_rows(x, y).flatten(1)).squeeze(1)  # [B]


class DigitCompletionP(nn.Module):
    """Predictor ``P(x [B,1,T,8]) -> (center, log_dispersion)``, each ``[B,1,8−T,8]`` (MR-GAN Eq. 4/5):
    the generator's MLP without noise, with two heads."""

    def __init__(self, top_rows: int = 3, hidden: int = 256) -> None:
        super().__init__()
        self.top_rows = top_rows
        self.net = _mlp(8 * top_rows, 2 * 8 * (8 - top_rows), hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, self.top_rows, 8):
            raise ValueError(f"x must be [B, 1, {self.top_rows}, 8], got {tuple(x.shape)}")
        center, log_disp = self.net(x.flatten(1)).view(-1, 2, 1, 8 - self.top_rows, 8).unbind(1)
        return torch.tanh(center), log_disp.clamp(-12.0, 4.0)


@dataclass
class DigitCompletionRun:
    """A trained digit-completion model: G (eval mode), the trainer (history), P if used, seconds taken."""

    G: DigitCompletionG
    trainer: Any
    P: DigitCompletionP | None
    seconds: float


def train_digit_completion(objective: Any, steps: int = 1000, seed: int = 0, top_rows: int = 3, lr: float = 1e-3,
                           predictor_steps: int = 1500, progress: bool = False) -> DigitCompletionRun:
    """Train G (and D, and P for proxy MR) on ``load_digits("train", seed)`` for one objective.

    ``objective`` is a preset name or an :class:`~minilib.objectives.Objective`. Targets are
    dequantized (see :class:`DigitInpaintingStream`). Settings differ from MR-GAN Appendix B only
    where the tiny MLPs allow: lr 1e-3 (not 1e-4) and no weight decay, so a run takes ~10–30 s
    on one CPU core; gradient clipping 0.5 and AMSGrad are kept. P is fitted first with the
    MLE loss on the val split for early stopping (Appendix B). Deterministic for a given seed.
    """
    from minilib.objectives import Objective, get_objective
    from minilib.train import TrainConfig, Trainer, fit_predictor

    obj = get_objective(objective) if isinstance(objective, str) else objective
    if not isinstance(obj, Objective):
        raise TypeError(f"objective must be a preset name or an Objective, got {type(objective).__name__}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    train, _ = load_digits("train", seed)
    val, _ = load_digits("val", seed)
    config = TrainConfig(lr_g=lr, lr_d=lr, weight_decay=0.0, batch_size=64, g_batch_size=32, seed=seed, progress=progress)
    G, D = DigitCompletionG(top_rows), DigitCompletionD()
    P = None
    if obj.needs_predictor:
        P = DigitCompletionP(top_rows)
        fit_predictor(P, DigitInpaintingStream(train, top_rows, seed, dequantize=True),
                      DigitInpaintingStream(val, top_rows, seed + 1, dequantize=True), dist=obj.moment_dist,
                      steps=predictor_steps, batch_size=64, val_every=100, patience=5, config=config)
    trainer = Trainer(G, D if obj.uses_discriminator else None, obj, config, P=P)
    trainer.fit(DigitInpaintingStream(train, top_rows, seed, dequantize=True), steps)
    G.eval()
    return DigitCompletionRun(G, trainer, P, time.perf_counter() - t0)
