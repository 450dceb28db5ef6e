"""Small MLPs: the toy networks (a generator, a conditional discriminator, a two-headed predictor) and a
Gaussian encoder (the VAE and PresGAN's log-likelihood).

The toys follow the generator contract of ARCHITECTURE.md: ``G(x, z) -> y [B, y_dim]`` with an empty
``x [B, 0]`` for unconditional toys and ``G.noise(n, device, generator)``; ``D(x, y) -> logits [B]``;
``P(x) -> (center, log_dispersion)``. MR-GAN's toys use 2-3 layer ReLU MLPs, PresGAN's ring tanh ones.
No BatchNorm anywhere: HMC over z (:mod:`minilib.hmc`) needs the density of one sample not to depend on
the rest of the batch.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .common import mlp as _mlp

__all__ = ["ToyGenerator", "ToyDiscriminator", "ToyPredictor", "make_models", "GaussianEncoder"]


def _check_n(name: str, n: object) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return n


# --------------------------------------------------------------------------------------------- networks
def _check_dims(**dims: int) -> None:
    for name, v in dims.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")


def _check_input(name: str, t: object, dim: int, b: int | None = None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2 or t.shape[1] != dim or (b is not None and t.shape[0] != b):
        want = f"[{b if b is not None else 'B'}, {dim}]"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    return t


class ToyGenerator(nn.Module):
    """``G(x, z) -> y [B, y_dim]``: an MLP on ``cat(x, z)``; ``G.noise(n)`` draws ``z ~ N(0, I)`` ``[n, z_dim]``.

    MR-GAN's toys use 2-3 layer ReLU MLPs; PresGAN's ring uses tanh (``act="tanh"``).
    """

    def __init__(self, x_dim: int, y_dim: int, z_dim: int = 2, hidden: int = 128, layers: int = 2, act: str = "relu") -> None:
        super().__init__()
        _check_dims(x_dim=x_dim)
        _check_n("y_dim", y_dim)
        _check_n("z_dim", z_dim)
        self.x_dim, self.y_dim, self.z_dim = x_dim, y_dim, z_dim
        self.net = _mlp(x_dim + z_dim, y_dim, hidden, layers, act)

    def noise(self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """``z ~ N(0, I)`` of shape ``[n, z_dim]``."""
        if device is None and generator is not None:
            device = generator.device
        return torch.randn(_check_n("n", n), self.z_dim, device=device, generator=generator)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        z = _check_input("z", z, self.z_dim)
        x = _check_input("x", x, self.x_dim, z.shape[0])
        return self.net(torch.cat([x.to(z.dtype), z], 1))


class ToyDiscriminator(nn.Module):
    """``D(x, y) -> logits [B]``: an MLP on ``cat(x, y)`` (Pix2Pix-style conditional discriminator)."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 128, layers: int = 2, act: str = "relu") -> None:
        super().__init__()
        _check_dims(x_dim=x_dim)
        _check_n("y_dim", y_dim)
        self.x_dim, self.y_dim = x_dim, y_dim
        self.net = _mlp(x_dim + y_dim, 1, hidden, layers, act)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = _check_input("y", y, self.y_dim)
        x = _check_input("x", x, self.x_dim, y.shape[0])
        return self.net(torch.cat([x.to(y.dtype), y], 1)).squeeze(1)


class ToyPredictor(nn.Module):
    """``P(x) -> (center, log_dispersion)``, each ``[B, y_dim]``: the generator's MLP without noise, two heads
    (MR-GAN Eq. 4 / 5: mean and log-variance, or median and log-MAD)."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 128, layers: int = 2, act: str = "relu") -> None:
        super().__init__()
        _check_dims(x_dim=x_dim)
        _check_n("y_dim", y_dim)
        self.x_dim, self.y_dim = x_dim, y_dim
        self.net = _mlp(max(x_dim, 1), 2 * y_dim, hidden, layers, act)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input("x", x, self.x_dim)
        if self.x_dim == 0:  # unconditional: a constant input, so P learns one (center, dispersion)
            x = torch.ones(x.shape[0], 1, device=x.device)
        center, log_disp = self.net(x).chunk(2, dim=1)
        return center, log_disp


def make_models(dataset: Any, z_dim: int = 2, hidden: int = 128, layers: int = 2, act: str = "relu",
                seed: int = 0) -> tuple[ToyGenerator, ToyDiscriminator, ToyPredictor]:
    """``(G, D, P)`` sized for ``dataset`` (a toy of :mod:`minilib.data.toys`: anything with int ``x_dim`` and
    ``y_dim``), initialised from ``torch.manual_seed(seed)``; the global RNG is left as it was."""
    if not all(isinstance(getattr(dataset, a, None), int) for a in ("x_dim", "y_dim")):
        raise TypeError(f"dataset must be a toy dataset with int x_dim and y_dim, got {type(dataset).__name__}")
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        G = ToyGenerator(dataset.x_dim, dataset.y_dim, z_dim, hidden, layers, act)
        D = ToyDiscriminator(dataset.x_dim, dataset.y_dim, hidden, layers, act)
        P = ToyPredictor(dataset.x_dim, dataset.y_dim, hidden, layers, act)
    finally:
        torch.set_rng_state(state)
    return G, D, P



class GaussianEncoder(nn.Module):
    """``E(y) -> (mean, log_std)`` of a diagonal Gaussian q(z | y), each ``[B, nz]`` (VAE encoder, Kingma & Welling 2014).

    ``layers=0`` gives a linear encoder (exact family for a linear-Gaussian generator's posterior mean).
    """

    def __init__(self, in_dim: int, nz: int, hidden: int = 128, layers: int = 2, act: str = "relu") -> None:
        super().__init__()
        self.nz = nz
        self.net = _mlp(in_dim, 2 * nz, hidden, layers, act)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(y.reshape(y.shape[0], -1))
        mean, log_std = h.chunk(2, dim=1)
        return mean, log_std.clamp(-10.0, 5.0)
