"""Toy worlds with a known truth and a resumable data stream.

Every toy is a *conditional Gaussian mixture*: given x, ``p(y | x) = sum_m w_m(x) N(y; mu_m(x), s(x)^2 I)``.
That one description gives exact samplers, densities, conditional means and standard deviations,
so the metrics (``minilib.metrics.toy``) can measure a generator against the truth:

=============  ======  ======  ====================================================================
name           x_dim   y_dim   p(y | x)
=============  ======  ======  ====================================================================
``mixture-1d`` 0       1       three 1-D Gaussians (unconditional)
``y-shape``    1       1       x ~ U(-1, 1); y = 0 for x < 0, y = +-x for x > 0 (MR-GAN project page)
``ring``       0       2       8 Gaussians on a circle (MR-GAN Appendix C, Fig. 4; PresGAN)
``grid``       0       2       25 Gaussians on a 5 x 5 grid (MSGAN / PacGAN)
=============  ======  ======  ====================================================================

Unconditional toys use an empty x ``[B, 0]`` (the "constant x" of the generator contract, ARCHITECTURE.md). :class:`ToyStream`
feeds a toy to the training loop; the networks that learn them are in :mod:`minilib.nets.mlp`.
"""
from __future__ import annotations

import math

import torch

__all__ = ["ToyDataset", "MixtureToy", "YShape", "mixture_1d", "ring", "grid", "DATASETS", "make_dataset", "ToyStream"]


def _check_n(name: str, n: object) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return n


class ToyDataset:
    """A conditional Gaussian mixture ``p(y|x) = sum_m w_m(x) N(mu_m(x), s(x)^2 I)``; subclasses give the parts.

    Subclasses set ``name``, ``x_dim``, ``y_dim`` and implement :meth:`sample_x` and :meth:`components`.
    """

    name: str = "toy"
    x_dim: int = 0
    y_dim: int = 1

    # -- what a subclass provides -----------------------------------------------------------------------
    def sample_x(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Inputs ``[n, x_dim]`` from p(x)."""
        raise NotImplementedError

    def components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixture parts of p(y|x): means ``[B, M, y_dim]``, weights ``[B, M]`` (sum 1), std ``[B]``."""
        raise NotImplementedError

    # -- derived, exact ---------------------------------------------------------------------------------
    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.x_dim:
            raise ValueError(f"x must have shape [B, {self.x_dim}] for {self.name!r}, got {tuple(x.shape)}")
        return x.float()

    def constant_x(self, n: int) -> torch.Tensor:
        """``n`` copies of the empty input ``[n, 0]`` (unconditional toys only)."""
        if self.x_dim != 0:
            raise ValueError(f"{self.name!r} is conditional (x_dim = {self.x_dim}); sample x with sample_x")
        return torch.zeros(_check_n("n", n), 0)

    def sample_conditional(self, x: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws of y from p(y | x) for every input: ``[B, n, y_dim]``."""
        x = self._check_x(x)
        _check_n("n", n)
        means, weights, std = self.components(x)  # [B, M, d], [B, M], [B]
        b = x.shape[0]
        cdf = weights.cumsum(1)  # inverse-CDF draw of the component (cheaper than multinomial)
        u = torch.rand(b, n, generator=generator) * cdf[:, -1:]
        idx = torch.searchsorted(cdf, u, right=True).clamp_max(weights.shape[1] - 1)  # [B, n]
        mu = torch.gather(means, 1, idx.unsqueeze(-1).expand(b, n, self.y_dim))  # [B, n, d]
        eps = torch.randn(b, n, self.y_dim, generator=generator)
        return mu + std.view(b, 1, 1) * eps

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint draws ``(x [n, x_dim], y [n, y_dim])`` from p(x) p(y|x)."""
        x = self.sample_x(_check_n("n", n), generator)
        if self.x_dim == 0:  # one input, n draws: the same random numbers in the same order, p(y) built once
            return x, self.sample_conditional(x[:1], n, generator)[0]
        return x, self.sample_conditional(x, 1, generator)[:, 0]

    def log_prob(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log p(y | x)`` ``[B]`` for x ``[B, x_dim]`` and y ``[B, y_dim]`` (exact mixture density)."""
        x = self._check_x(x)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (x.shape[0], self.y_dim):
            raise ValueError(f"y must have shape [{x.shape[0]}, {self.y_dim}], got {tuple(getattr(y, 'shape', ()))}")
        means, weights, std = self.components(x)
        s = std.view(-1, 1)
        sq = ((y.unsqueeze(1) - means) ** 2).sum(-1)  # [B, M]
        log_n = -0.5 * sq / s**2 - self.y_dim * (torch.log(s) + 0.5 * math.log(2 * math.pi))
        return torch.logsumexp(torch.log(weights.clamp_min(1e-30)) + log_n, dim=1)

    def conditional_mean(self, x: torch.Tensor) -> torch.Tensor:
        """``E[y | x]`` ``[B, y_dim]`` (what an ℓ2-trained model outputs)."""
        means, weights, _ = self.components(self._check_x(x))
        return (weights.unsqueeze(-1) * means).sum(1)

    def conditional_std(self, x: torch.Tensor) -> torch.Tensor:
        """Per-coordinate ``sqrt(Var[y | x])`` ``[B, y_dim]`` (law of total variance)."""
        means, weights, std = self.components(self._check_x(x))
        mean = (weights.unsqueeze(-1) * means).sum(1, keepdim=True)
        between = (weights.unsqueeze(-1) * (means - mean) ** 2).sum(1)  # [B, d]
        return torch.sqrt(between + std.view(-1, 1) ** 2)

    def params(self) -> dict:
        """The settings that define the dataset (used in cache keys)."""
        return {"name": self.name}


class MixtureToy(ToyDataset):
    """Unconditional Gaussian mixture: ``means [M, y_dim]``, ``weights [M]``, isotropic ``std``; x is empty ``[B, 0]``.

    ``modes``, ``weights`` and ``std`` are what mode-counting metrics need.
    """

    def __init__(self, name: str, means: torch.Tensor, weights: torch.Tensor | None = None, std: float = 0.05) -> None:
        means = torch.as_tensor(means, dtype=torch.float32)
        if means.dim() != 2 or means.shape[0] < 1:
            raise ValueError(f"means must be [M, y_dim] with M >= 1, got shape {tuple(means.shape)}")
        m = means.shape[0]
        w = torch.full((m,), 1.0 / m) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        if w.shape != (m,) or (w < 0).any() or abs(float(w.sum()) - 1.0) > 1e-5:
            raise ValueError(f"weights must be {m} non-negative numbers summing to 1, got {w.tolist()}")
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.name, self.x_dim, self.y_dim = name, 0, means.shape[1]
        self.modes, self.weights, self.std = means, w, float(std)

    def sample_x(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.constant_x(n)

    def components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        return self.modes.expand(b, -1, -1), self.weights.expand(b, -1), torch.full((b,), self.std)

    def params(self) -> dict:
        return {"name": self.name, "modes": self.modes.tolist(), "weights": self.weights.tolist(), "std": self.std}


def mixture_1d(means: tuple[float, ...] = (-2.0, 0.0, 2.0), weights: tuple[float, ...] = (0.25, 0.5, 0.25),
               std: float = 0.2) -> MixtureToy:
    """A 1-D mixture of Gaussians (``y_dim = 1``)."""
    return MixtureToy("mixture-1d", torch.tensor(means).view(-1, 1), torch.tensor(weights), std)


def ring(n_modes: int = 8, radius: float = 2.0, std: float = 0.02) -> MixtureToy:
    """``n_modes`` equal Gaussians on a circle of ``radius`` (MR-GAN Fig. 4a; ring of 8)."""
    _check_n("n_modes", n_modes)
    angle = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    means = radius * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return MixtureToy("ring", means.float(), None, std)


def grid(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> MixtureToy:
    """``side x side`` equal Gaussians on a grid centred at 0 (25 modes for ``side = 5``, MSGAN Fig. 3)."""
    _check_n("side", side)
    c = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    means = torch.cartesian_prod(c, c)
    return MixtureToy("grid", means, None, std)


class YShape(ToyDataset):
    """The Y-shape of the MR-GAN project page: ``x ~ U(-1, 1)``; ``y = 0`` for x < 0, ``y = +-x`` (1/2 each) for
    x > 0; plus N(0, noise^2). ``E[y|x] = 0`` everywhere and ``Std[y|x] = sqrt(max(x, 0)^2 + noise^2)``."""

    x_dim, y_dim = 1, 1

    def __init__(self, noise: float = 0.05) -> None:
        if not noise > 0:
            raise ValueError(f"noise must be > 0, got {noise}")
        self.name, self.noise = "y-shape", float(noise)

    def sample_x(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.rand(_check_n("n", n), 1, generator=generator) * 2 - 1

    def components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = x.clamp_min(0.0)  # [B, 1]
        means = torch.stack([pos, -pos], 1)  # [B, 2, 1]; identical (both 0) on the stem
        weights = torch.full((x.shape[0], 2), 0.5)
        return means, weights, torch.full((x.shape[0],), self.noise)

    def params(self) -> dict:
        return {"name": self.name, "noise": self.noise}


DATASETS = {"mixture-1d": mixture_1d, "y-shape": YShape, "ring": ring, "grid": grid}
"""Dataset factories by name (keyword arguments go to the factory)."""


def make_dataset(name: str, **kwargs: object) -> ToyDataset:
    """The toy called ``name`` (one of :data:`DATASETS`)."""
    if name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name](**kwargs)


class ToyStream:
    """Endless seeded batches ``next(batch_size) -> (x, y)`` of a toy, resumable via ``state_dict()`` (the
    trainer's stream contract, ``minilib.train.Stream``)."""

    def __init__(self, dataset: ToyDataset, seed: int = 0) -> None:
        if not isinstance(dataset, ToyDataset):
            raise TypeError(f"dataset must be a ToyDataset, got {type(dataset).__name__}")
        self.dataset, self.seed = dataset, int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch ``(x [batch_size, x_dim], y [batch_size, y_dim])``."""
        return self.dataset.sample(_check_n("batch_size", batch_size), self.generator)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.generator.set_state(state["rng"])
