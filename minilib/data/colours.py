"""A conditional image task whose true distribution is known exactly (notebook 07b).

x is the shape of a scikit-learn digit: the 8×8 image upsampled (bilinear) to ``size``×``size`` and thresholded, a
{−1, 1} mask of one channel. y paints the shape in **one** palette colour, drawn with the palette's weights every
time a pair is drawn, on a fixed background, plus N(0, noise_std²) noise on every pixel and channel (3 channels in
[−1, 1]). So p(y | x) is a mixture of M flat images, one per palette colour, and :meth:`ColourTask.sample_conditional`
draws from it exactly.

The default palette is the three primaries at ±0.8 with equal weights. Its ℓ2 optimum (the per-channel mean,
(−0.27, −0.27, −0.27)) is 1.31 from every colour and its ℓ1 optimum (the per-channel median, (−0.8, −0.8, −0.8))
1.60 from every colour: a generator that regresses to either paints a colour the data never shows. The background
is grey (0.6): not on tanh's asymptote, so a likelihood can reach it with finite weights.

* :class:`ColourTask` — palette, weights, background, noise; :meth:`~ColourTask.shapes` (fixed index split of the
  1,797 digits: train 0–1399, val 1400–1599, test 1600–1796), :meth:`~ColourTask.paint`,
  :meth:`~ColourTask.sample_conditional`, the ℓ1 / ℓ2 optima and their distances to the palette.
* :class:`ColourDataset` — ``len`` and ``item(index, rng)``, so :class:`minilib.data.images.DatasetStream` streams
  it: the colour and the pixel noise come from the per-(seed, epoch, index) generator, so a resumed run draws
  exactly the same pairs.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from .digits import load_digits

__all__ = ["PRIMARIES", "SPLIT_INDICES", "ColourTask", "ColourDataset"]

PRIMARIES = ((0.8, -0.8, -0.8), (-0.8, 0.8, -0.8), (-0.8, -0.8, 0.8))  # red, green, blue in [-1, 1]
SPLIT_INDICES = {"train": (0, 1400), "val": (1400, 1600), "test": (1600, 1797)}  # scikit-learn's digit order


@functools.lru_cache(maxsize=4)
def _all_shapes(size: int, threshold: float) -> torch.Tensor:
    grey = (load_digits("all")[0] + 1) / 2  # [1797, 1, 8, 8], grey level in [0, 1]
    up = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
    return torch.where(up > threshold, 1.0, -1.0)


@dataclass(frozen=True)
class ColourTask:
    """The exact truth of the colour task: y | x paints shape x in colour c ~ Categorical(weights), background
    elsewhere, plus N(0, noise_std²) pixel noise. ``weights`` None means uniform."""

    palette: tuple[tuple[float, float, float], ...] = PRIMARIES
    weights: tuple[float, ...] | None = None
    background: tuple[float, float, float] = (0.6, 0.6, 0.6)
    noise_std: float = 0.02
    size: int = 32
    threshold: float = 0.35

    def __post_init__(self) -> None:
        if len(self.palette) < 2 or any(len(c) != 3 or not all(-1 <= v <= 1 for v in c) for c in self.palette):
            raise ValueError(f"palette must hold >= 2 RGB colours with channels in [-1, 1], got {self.palette}")
        if self.weights is not None and (len(self.weights) != len(self.palette) or not all(w > 0 for w in self.weights)):
            raise ValueError(f"weights must be None or {len(self.palette)} positive numbers, got {self.weights}")
        if len(self.background) != 3 or not self.noise_std >= 0 or self.size < 8 or not 0 < self.threshold < 1:
            raise ValueError("background must be RGB, noise_std >= 0, size >= 8 and threshold in (0, 1); got "
                             f"{self.background}, {self.noise_std}, {self.size}, {self.threshold}")

    @property
    def m(self) -> int:
        """The number of palette colours M."""
        return len(self.palette)

    def colours(self) -> torch.Tensor:
        """The palette ``[M, 3]``."""
        return self._colours.clone()

    def probabilities(self) -> torch.Tensor:
        """The mixture weights ``[M]`` (summing to 1)."""
        return self._cumulative.diff(prepend=torch.zeros(1))

    def background_colour(self) -> torch.Tensor:
        """The background ``[3]``."""
        return self._background.clone()

    @cached_property
    def _colours(self) -> torch.Tensor:
        return torch.tensor(self.palette, dtype=torch.float32)

    @cached_property
    def _background(self) -> torch.Tensor:
        return torch.tensor(self.background, dtype=torch.float32)

    @cached_property
    def _cumulative(self) -> torch.Tensor:
        w = torch.ones(self.m, dtype=torch.float64) if self.weights is None else torch.tensor(self.weights, dtype=torch.float64)
        return (w.cumsum(0) / w.sum()).float()

    def draw_colours(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` palette indices drawn with the weights (inverse CDF of one uniform each)."""
        u = torch.rand(n, generator=generator)
        return torch.searchsorted(self._cumulative, u, right=True).clamp_max(self.m - 1)

    def shapes(self, split: str) -> torch.Tensor:
        """The {−1, 1} masks ``[N, 1, size, size]`` of a split (fixed digit indices, :data:`SPLIT_INDICES`)."""
        if split not in SPLIT_INDICES:
            raise ValueError(f"split must be one of {list(SPLIT_INDICES)}, got {split!r}")
        lo, hi = SPLIT_INDICES[split]
        return _all_shapes(self.size, self.threshold)[lo:hi].clone()

    def paint(self, x: torch.Tensor, colour: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """y ``[B, 3, S, S]``: palette colour ``colour[b]`` inside mask ``x[b]`` (``[B, 1, S, S]``), the background
        outside, plus the pixel noise (drawn from ``generator``)."""
        inside = (x > 0).float()
        bg = self._background.view(1, 3, 1, 1)
        y = torch.randn((x.shape[0], 3, *x.shape[2:]), generator=generator).mul_(self.noise_std).add_(bg)
        return y.addcmul_(inside, self._colours[colour].view(-1, 3, 1, 1) - bg)

    def sample_conditional(self, x: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws of y for each input: x ``[B, 1, S, S]`` -> ``[B, n, 3, S, S]``."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        colour = self.draw_colours(x.shape[0] * n, generator)
        return self.paint(x.repeat_interleave(n, 0), colour, generator).view(x.shape[0], n, 3, *x.shape[2:])

    def l2_optimum(self) -> torch.Tensor:
        """The colour an ℓ2 regression paints inside the shape: the weighted per-channel mean ``[3]``."""
        return self.probabilities() @ self.colours()

    def l1_optimum(self) -> torch.Tensor:
        """The colour an ℓ1 regression paints: the weighted per-channel median ``[3]`` (the smallest value whose
        cumulative weight reaches 1/2; unique for odd M with equal weights)."""
        values, order = self.colours().sort(0)
        cum = self.probabilities()[order].cumsum(0)  # [M, 3]
        first = (cum >= 0.5 - 1e-6).float().argmax(0)
        return values[first, torch.arange(3)]

    def optimum_distances(self) -> dict[str, torch.Tensor]:
        """Euclidean distances ``[M]`` from the ℓ1 and ℓ2 optima to every palette colour."""
        return {"l1": (self.colours() - self.l1_optimum()).norm(dim=1),
                "l2": (self.colours() - self.l2_optimum()).norm(dim=1)}


class ColourDataset(torch.utils.data.Dataset):
    """One split of a :class:`ColourTask` for :class:`~minilib.data.images.DatasetStream`: item ``i`` is shape ``i``
    with a colour and pixel noise drawn from the stream's generator for (seed, epoch, i)."""

    def __init__(self, task: ColourTask, split: str) -> None:
        self.task, self.split = task, split
        self.x = task.shapes(split)

    def __len__(self) -> int:
        return len(self.x)

    def item(self, index: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x [1, S, S], y [3, S, S])`` of shape ``index``, its colour and noise drawn from ``rng``."""
        x = self.x[index]
        return x, self.task.paint(x[None], self.task.draw_colours(1, rng), rng)[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return self.item(index, torch.Generator().manual_seed(index))
