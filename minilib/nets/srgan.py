"""SRGAN generator (16x16 -> 64x64) with MR-GAN noise inputs, its predictor and its discriminator.

MR-GAN Appendix B.3 (after Ledig et al.'s SRResNet): a 9x9 conv, ``n_blocks`` residual blocks
(conv-BN-PReLU-conv-BN + skip), a conv-BN with a long skip, two x2 pixel-shuffle upsamplers and a
9x9 output conv. A Gaussian noise map of 16 channels is concatenated to the *input* of every
residual block (the skip still adds the block's 64-channel input); x and y are in [-1, 1].
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import Noise, check_image, check_noise, init_weights, predictor_heads, randn_maps

__all__ = ["SRResNet", "SRGANGenerator", "SRGANPredictor", "SRGANDiscriminator"]


class _ResBlock(nn.Module):
    def __init__(self, width: int, noise_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width + noise_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
        )

    def forward(self, h: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        inp = h if z is None else torch.cat([h, z.to(h.dtype)], dim=1)  # [B, width + C_z, s, s]
        return h + self.body(inp)


class SRResNet(nn.Module):
    """SRResNet backbone: ``[B, C, s, s] -> raw [B, out_channels, s*scale, s*scale]``.

    Args: in/out channels; lr_size s (16); scale (4, a power of two); width (64); n_blocks (16);
    noise_channels per residual block input (16; 0 = none, for the predictor).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, lr_size: int = 16, scale: int = 4,
                 width: int = 64, n_blocks: int = 16, noise_channels: int = 16) -> None:
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"scale must be a power of two >= 2, got {scale}")
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        self.in_channels, self.lr_size, self.noise_channels, self.n_blocks = in_channels, lr_size, noise_channels, n_blocks
        self.head = nn.Sequential(nn.Conv2d(in_channels, width, 9, 1, 4), nn.PReLU())
        self.blocks = nn.ModuleList(_ResBlock(width, noise_channels) for _ in range(n_blocks))
        self.mid = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width))
        ups: list[nn.Module] = []
        for _ in range(scale.bit_length() - 1):
            ups += [nn.Conv2d(width, width * 4, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU()]
        self.up = nn.Sequential(*ups)
        self.tail = nn.Conv2d(width, out_channels, 9, 1, 4)
        init_weights(self)

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """One ``(C_z, s, s)`` noise map per residual block (empty without noise)."""
        if self.noise_channels == 0:
            return []
        return [(self.noise_channels, self.lr_size, self.lr_size)] * self.n_blocks

    def forward(self, x: torch.Tensor, z: Noise | None = None) -> torch.Tensor:
        check_image("x", x, self.in_channels, self.lr_size)
        zs = check_noise(z, self.noise_shapes(), x.shape[0]) if self.noise_channels else [None] * self.n_blocks
        h0 = self.head(x)  # [B, W, s, s]
        h = h0
        for block, zi in zip(self.blocks, zs):
            h = block(h, zi)
        h = self.mid(h) + h0
        return self.tail(self.up(h))  # [B, C_out, s*scale, s*scale]


class SRGANGenerator(nn.Module):
    """``G(x, z) -> y``: x ``[B, 3, 16, 16]`` in [-1, 1], z = ``G.noise(B)`` (``n_blocks`` maps
    ``[B, 16, 16, 16]``) -> y ``[B, 3, 64, 64]`` in [-1, 1] (tanh)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, lr_size: int = 16, scale: int = 4,
                 width: int = 64, n_blocks: int = 16, noise_channels: int = 16) -> None:
        super().__init__()
        if noise_channels < 1:
            raise ValueError(f"noise_channels must be >= 1 for a generator, got {noise_channels}")
        self.net = SRResNet(in_channels, out_channels, lr_size, scale, width, n_blocks, noise_channels)

    def noise(self, n: int, device: torch.device | str | None = None,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Draw z: one N(0, 1) map ``[n, noise_channels, lr_size, lr_size]`` per residual block."""
        return randn_maps(n, self.net.noise_shapes(), device, generator)

    def forward(self, x: torch.Tensor, z: Noise) -> torch.Tensor:
        return torch.tanh(self.net(x, z))


class SRGANPredictor(nn.Module):
    """``P(x) -> (center, log_dispersion)`` each ``[B, 3, 64, 64]``: SRResNet without noise, two heads."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, lr_size: int = 16, scale: int = 4,
                 width: int = 64, n_blocks: int = 16) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.net = SRResNet(in_channels, 2 * out_channels, lr_size, scale, width, n_blocks, noise_channels=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return predictor_heads(self.net(x), self.out_channels, torch.tanh)


class SRGANDiscriminator(nn.Module):
    """SRGAN discriminator ``D(x, y) -> logits [B]``: 8 conv-BN-LeakyReLU layers (strides 1,2,...),
    global average pool, 1x1 convs to 1024 and 1.

    SRGAN's D sees only y; with ``conditional=True`` it also sees x upsampled (nearest) to y's size.
    """

    def __init__(self, channels: int = 3, width: int = 64, conditional: bool = False) -> None:
        super().__init__()
        self.channels, self.conditional = channels, conditional
        cin = channels * (2 if conditional else 1)
        layers: list[nn.Module] = [nn.Conv2d(cin, width, 3, 1, 1), nn.LeakyReLU(0.2)]
        c = width
        for i in range(1, 8):
            c_next = width * 2 ** (i // 2)
            layers += [nn.Conv2d(c, c_next, 3, 2 if i % 2 else 1, 1, bias=False), nn.BatchNorm2d(c_next), nn.LeakyReLU(0.2)]
            c = c_next
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, width * 16, 1), nn.LeakyReLU(0.2), nn.Conv2d(width * 16, 1, 1)]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_image("y", y, self.channels)
        check_image("x", x, self.channels)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}")
        h = y
        if self.conditional:
            h = torch.cat([y, F.interpolate(x.to(y.dtype), size=y.shape[2:], mode="nearest")], dim=1)
        return self.net(h).flatten()  # [B]
