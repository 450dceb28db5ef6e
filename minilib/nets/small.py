"""Tiny networks for CPU experiments: MLPs for 2-D toys and vectors, and convolutional nets for the 8x8
scikit-learn digits (1 channel, or 3 stacked digits as channels).

They follow the unconditional contract (DESIGN.md section 2): ``G(x, z)`` with an empty ``x`` ``[B, 0]``,
``G.noise(n, device, generator)``, ``D(x, y) -> logits [B]``. No BatchNorm anywhere: HMC over z
(minilib.hmc) needs the log density of one sample not to depend on the rest of the batch.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .common import mlp as _mlp

__all__ = ["MLPGenerator", "MLPDiscriminator", "GaussianEncoder", "DigitGenerator", "DigitDiscriminator"]

def _check_batch(x: torch.Tensor, z: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.shape[0] != z.shape[0]:
        raise ValueError(f"x must be a tensor [B, ...] with B = {z.shape[0]} (z's batch), got {getattr(x, 'shape', x)}")


class _Noise:
    nz: int

    def noise(self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw z ``[n, nz]`` ~ N(0, I)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if device is None and generator is not None:
            device = generator.device
        return torch.randn(n, self.nz, device=device, generator=generator)


class MLPGenerator(_Noise, nn.Module):
    """``G(x, z) -> y [B, out_dim]``: an MLP on ``cat(x, z)`` (x ``[B, x_dim]``, ``x_dim = 0`` when unconditional).

    PresGAN's ring experiment uses three tanh layers; MR-GAN's toys ReLU layers.
    """

    def __init__(self, nz: int = 2, out_dim: int = 2, hidden: int = 128, layers: int = 3, act: str = "relu",
                 x_dim: int = 0) -> None:
        super().__init__()
        self.nz, self.x_dim = nz, x_dim
        self.net = _mlp(nz + x_dim, out_dim, hidden, layers, act)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.nz:
            raise ValueError(f"z must have shape [B, {self.nz}], got {getattr(z, 'shape', type(z).__name__)}")
        _check_batch(x, z)
        return self.net(torch.cat([x.reshape(x.shape[0], -1)[:, : self.x_dim].to(z.dtype), z], 1))


class MLPDiscriminator(nn.Module):
    """``D(x, y) -> logits [B]`` for vectors ``y [B, in_dim]`` (and conditioning x ``[B, x_dim]``)."""

    def __init__(self, in_dim: int = 2, hidden: int = 128, layers: int = 3, act: str = "relu", x_dim: int = 0) -> None:
        super().__init__()
        self.x_dim = x_dim
        self.net = _mlp(in_dim + x_dim, 1, hidden, layers, act)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = y.reshape(y.shape[0], -1)
        return self.net(torch.cat([x.reshape(x.shape[0], -1)[:, : self.x_dim].to(y.dtype), y], 1)).squeeze(1)


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


class DigitGenerator(_Noise, nn.Module):
    """``G(x, z) -> y [B, channels, 8, 8]`` in [-1, 1] (tanh): a DCGAN-style generator for 8x8 digits.

    z ``[B, nz]`` -> linear to ``[4·ngf, 2, 2]`` -> two stride-2 4x4 transposed convs (ReLU) -> 3x3 conv, tanh.
    """

    def __init__(self, nz: int = 16, channels: int = 1, ngf: int = 32) -> None:
        super().__init__()
        if not isinstance(nz, int) or nz < 1 or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"nz and channels must be positive ints, got nz={nz!r}, channels={channels!r}")
        self.nz, self.channels, self.ngf = nz, channels, ngf
        self.fc = nn.Linear(nz, 4 * ngf * 2 * 2)
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(4 * ngf, 2 * ngf, 4, 2, 1), nn.ReLU(),  # 4x4
            nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1), nn.ReLU(),  # 8x8
            nn.Conv2d(ngf, channels, 3, 1, 1), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.nz:
            raise ValueError(f"z must have shape [B, {self.nz}], got {getattr(z, 'shape', type(z).__name__)}")
        _check_batch(x, z)
        return self.net(self.fc(z).reshape(-1, 4 * self.ngf, 2, 2))


class DigitDiscriminator(nn.Module):
    """``D(x, y) -> logits [B]`` for ``y [B, channels, 8, 8]``: two stride-2 convs (LeakyReLU 0.2), then linear."""

    def __init__(self, channels: int = 1, ndf: int = 32) -> None:
        super().__init__()
        self.channels = channels
        self.net = nn.Sequential(
            nn.Conv2d(channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2),  # 4x4
            nn.Conv2d(ndf, 2 * ndf, 4, 2, 1), nn.LeakyReLU(0.2),  # 2x2
            nn.Flatten(), nn.Linear(2 * ndf * 4, 1),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not isinstance(y, torch.Tensor) or y.dim() != 4 or tuple(y.shape[1:]) != (self.channels, 8, 8):
            raise ValueError(f"y must have shape [B, {self.channels}, 8, 8], got {getattr(y, 'shape', type(y).__name__)}")
        return self.net(y).squeeze(1)
