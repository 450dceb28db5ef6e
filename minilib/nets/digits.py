"""Networks for the 8x8 scikit-learn digits: a DCGAN-style generator and discriminator (1 channel, or 3 stacked
digits as channels), the digit classifier that labels samples, and the digit-completion MLPs of notebook 12.

Generators follow the generator contract of ARCHITECTURE.md (``G(x, z)``, ``G.noise(n, device, generator)``,
``D(x, y) -> logits [B]``). No BatchNorm in the generators: HMC over z (:mod:`minilib.hmc`) needs the density of
one sample not to depend on the rest of the batch.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import mlp

__all__ = ["DigitGenerator", "DigitDiscriminator", "DigitClassifier", "DigitCompletionG", "DigitCompletionD",
           "DigitCompletionP"]


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
        return self.net(torch.cat([x, y], dim=2).flatten(1)).squeeze(1)  # the whole digit [B, 1, 8, 8] -> [B]


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
