"""scikit-learn's 8×8 handwritten digits: the real image data that runs on a CPU (no download: the images ship
inside scikit-learn).

* :func:`load_digits` — seeded train / val / test split of the 1,797 bundled images, as tensors
  ``[N, 1, 8, 8]`` scaled from the raw 0..16 grey levels to [−1, 1], with labels ``[N]``.
* :class:`DigitInpaintingStream` — the conditional task of notebook 12: given the top rows of a
  digit (``x [B, 1, T, 8]``), generate the missing rows (``y [B, 1, 8−T, 8]``); :func:`split_rows` /
  :func:`join_rows` cut and glue them.
* :class:`StackedDigitStream` — StackedMNIST in miniature (notebook 06b): three independent digits stacked as
  the channels of one ``[3, 8, 8]`` image, 1,000 modes.

Both streams follow the training-stream contract (``next(batch_size) -> (x, y)``, ``state_dict`` /
``load_state_dict``), so a resumed run draws the same batches.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["SPLITS", "load_digits", "split_rows", "join_rows", "DigitInpaintingStream", "StackedDigitStream"]

SPLITS = ("train", "val", "test", "all")


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



class StackedDigitStream:
    """Unconditional training stream of stacked digits: ``next(B) -> (x [B, 0], y [B, channels, 8, 8])``.

    Each channel is an independent uniform draw from the digits of ``split`` (:func:`load_digits`);
    ``channels=3`` is stacked digits, ``channels=1`` plain digits. ``state_dict`` / ``load_state_dict`` make a
    resumed run draw the same images.
    """

    def __init__(self, split: str = "train", seed: int = 0, channels: int = 3) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (digits) or 3 (stacked digits), got {channels!r}")
        self.images, self.labels = load_digits(split, seed=0)  # [N, 1, 8, 8], [N]
        self.gen = torch.Generator().manual_seed(seed)
        self.channels = channels

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images [n, channels, 8, 8], labels [n, channels])``."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        idx = torch.randint(0, self.images.shape[0], (n, self.channels), generator=self.gen)
        return self.images[idx, 0], self.labels[idx]  # [n, C, 8, 8], [n, C]

    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        y, _ = self.sample(batch_size)
        return torch.zeros(batch_size, 0), y

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
