"""A small DCGAN (Radford et al. 2016) for the unconditional experiments, 64x64 by default.

Unconditional models follow the conditional contract with an empty x: ``G(x, z)`` with x of shape
``[B, 0]`` (ignored except for its batch size), ``D(x, y) -> logits [B]``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .common import check_image, init_weights

__all__ = ["DCGANGenerator", "DCGANDiscriminator"]


def _n_ups(image_size: int) -> int:
    n = image_size.bit_length() - 1
    if image_size < 8 or image_size != 2**n:
        raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
    return n - 2  # 4x4 -> image_size


class DCGANGenerator(nn.Module):
    """``G(x, z) -> y [B, channels, S, S]`` in [-1, 1]; z ``[B, nz]`` ~ N(0, I); x ``[B, 0]`` (unused).

    z is projected to a 4x4 map by a 4x4 transposed conv, then stride-2 transposed convs with
    BatchNorm + ReLU double the size up to S; widths ``ngf * 2**j`` shrink toward the output.
    """

    def __init__(self, nz: int = 100, channels: int = 3, image_size: int = 64, ngf: int = 64) -> None:
        super().__init__()
        if nz < 1:
            raise ValueError(f"nz must be >= 1, got {nz}")
        n = _n_ups(image_size)
        self.nz = nz
        c = ngf * 2 ** (n - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def noise(self, n: int, device: torch.device | str | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw z ``[n, nz]`` ~ N(0, I)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if device is None and generator is not None:
            device = generator.device
        return torch.randn(n, self.nz, device=device, generator=generator)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.nz:
            raise ValueError(f"z must have shape [B, {self.nz}], got {getattr(z, 'shape', type(z).__name__)}")
        if not isinstance(x, torch.Tensor) or x.shape[0] != z.shape[0]:
            raise ValueError(f"x must be a tensor [B, 0] with B = {z.shape[0]} (z's batch), got {getattr(x, 'shape', x)}")
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """``D(x, y) -> logits [B]``: stride-2 4x4 convs with BatchNorm + LeakyReLU(0.2) down to 4x4,
    then a 4x4 conv to one logit; x ``[B, 0]`` is ignored."""

    def __init__(self, channels: int = 3, image_size: int = 64, ndf: int = 64) -> None:
        super().__init__()
        n = _n_ups(image_size)
        self.channels, self.image_size = channels, image_size
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = ndf
        for _ in range(n - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        layers.append(nn.Conv2d(c, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_image("y", y, self.channels, self.image_size)
        return self.net(y).flatten()  # [B]
