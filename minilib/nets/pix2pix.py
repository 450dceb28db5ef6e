"""Pix2Pix U-Net generator with MR-GAN noise inputs, its predictor and the PatchGAN discriminator.

MR-GAN Appendix B.2: the U-Net of Isola et al. (pix2pix) for 256x256 images, 8 stride-2
downsamplings with BatchNorm, and Gaussian noise of 32 channels concatenated to the decoder's
1x1, 2x2 and 4x4 feature maps (the inputs of its three innermost up-sampling blocks).

Layout (``n_down`` levels, channels ``c_i = ngf * min(2**i, 8)``)::

    x -> d0 -> d1 -> ... -> d_{n-1} (bottleneck, 1x1 at 256 / 2**8)
         |     |            |
    y <- u0 <- u1 <- ... <- u_{n-1} <- [noise]      u_i input = [up_{i+1}, d_i] (+ noise for the
                                                     ``noise_levels`` innermost blocks)

Tiny tests use ``image_size=32, n_down=5, ngf=4``; the defaults are the paper's.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import check_int
from .common import Noise, check_image, check_noise, init_weights, predictor_heads, randn_maps

__all__ = ["UNet", "Pix2PixGenerator", "Pix2PixPredictor", "PatchDiscriminator"]


class UNet(nn.Module):
    """U-Net backbone producing a raw (pre-activation) map ``[B, out_channels, S, S]``.

    Args:
        in_channels: channels of x.  out_channels: channels of the raw output.
        image_size: S (a multiple of ``2**n_down``).  n_down: stride-2 downsamplings (8 for 256x256).
        ngf: width of the first layer.  noise_channels: channels of each noise map (0 = none).
        noise_levels: how many innermost decoder blocks receive noise (3: the 1x1, 2x2, 4x4 maps).
        dropout: pix2pix's dropout 0.5 in decoder blocks 1-3 (off by default: the noise is explicit).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        image_size: int = 256,
        n_down: int = 8,
        ngf: int = 64,
        noise_channels: int = 32,
        noise_levels: int = 3,
        dropout: bool = False,
    ) -> None:
        super().__init__()
        if n_down < 2:
            raise ValueError(f"n_down must be >= 2, got {n_down}")
        if image_size % (2**n_down) != 0:
            raise ValueError(f"image_size must be a multiple of 2**n_down = {2**n_down}, got {image_size}")
        if not 0 <= noise_levels <= n_down:
            raise ValueError(f"noise_levels must be in [0, n_down={n_down}], got {noise_levels}")
        if noise_channels < 0:
            raise ValueError(f"noise_channels must be >= 0, got {noise_channels}")
        self.in_channels, self.out_channels, self.image_size, self.n_down = in_channels, out_channels, image_size, n_down
        self.noise_channels = noise_channels
        self.noise_levels = noise_levels if noise_channels > 0 else 0
        ch = [ngf * min(2**i, 8) for i in range(n_down)]
        # convolutions without bias as in pix2pix with BatchNorm (only the output layer has one)
        down: list[nn.Module] = [nn.Conv2d(in_channels, ch[0], 4, 2, 1, bias=False)]
        for i in range(1, n_down):
            layers: list[nn.Module] = [nn.LeakyReLU(0.2), nn.Conv2d(ch[i - 1], ch[i], 4, 2, 1, bias=False)]
            if i < n_down - 1:  # no norm on the 1x1 bottleneck (pix2pix)
                layers.append(nn.BatchNorm2d(ch[i]))
            down.append(nn.Sequential(*layers))
        self.down = nn.ModuleList(down)
        up: list[nn.Module] = []
        for i in range(n_down):
            cin = ch[i] * (1 if i == n_down - 1 else 2) + (noise_channels if self._noisy(i) else 0)
            if i == 0:
                up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(cin, out_channels, 4, 2, 1)))
            else:
                layers = [nn.ReLU(), nn.ConvTranspose2d(cin, ch[i - 1], 4, 2, 1, bias=False), nn.BatchNorm2d(ch[i - 1])]
                if dropout and n_down - 4 < i < n_down - 1:
                    layers.append(nn.Dropout(0.5))
                up.append(nn.Sequential(*layers))
        self.up = nn.ModuleList(up)
        init_weights(self)

    def _noisy(self, i: int) -> bool:
        return self.noise_channels > 0 and i >= self.n_down - self.noise_levels

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """Shapes ``(C_z, s, s)`` of the noise maps, innermost first (1x1, 2x2, 4x4 at the defaults)."""
        s0 = self.image_size // 2**self.n_down
        return [(self.noise_channels, s0 * 2**j, s0 * 2**j) for j in range(self.noise_levels)]

    def forward(self, x: torch.Tensor, z: Noise | None = None, repeat: int = 1) -> torch.Tensor:
        """x ``[B, C_in, S, S]``, z: tuple of ``noise_levels`` maps for ``B·repeat`` samples -> raw
        ``[B·repeat, C_out, S, S]``, the ``repeat`` outputs of input b at rows ``b·repeat ...``.

        The encoder sees no noise, so it runs once per input and its maps are repeated: the same outputs and
        gradients as ``forward(x.repeat_interleave(repeat, 0), z)`` (BatchNorm's batch mean and variance are those of
        the distinct inputs either way), with the encoder's cost paid once instead of ``repeat`` times. Only the
        running variance differs slightly: its n / (n - 1) correction counts the distinct inputs."""
        check_image("x", x, self.in_channels, self.image_size)
        check_int("repeat", repeat)
        zs = check_noise(z, self.noise_shapes(), x.shape[0] * repeat) if self.noise_levels else ()
        skips = []
        h = x
        for block in self.down:
            h = block(h)
            skips.append(h)
        if repeat > 1:
            skips = [t.repeat_interleave(repeat, dim=0) for t in skips]
            h = skips[-1]
        for i in reversed(range(self.n_down)):
            inp = [h] if i == self.n_down - 1 else [h, skips[i]]
            if self._noisy(i):
                inp.append(zs[self.n_down - 1 - i].to(h.dtype))  # [B, C_z, s, s] at this decoder scale
            h = self.up[i](torch.cat(inp, dim=1))
        return h


class Pix2PixGenerator(nn.Module):
    """``G(x, z) -> y`` in [-1, 1]: the U-Net with noise at the decoder's innermost maps (MR-GAN B.2).

    x ``[B, in_channels, S, S]`` (normalised per channel), z = ``G.noise(B)`` (tuple of 3 maps
    ``[B, 32, s, s]``, s = 1, 2, 4 at the defaults) -> y ``[B, out_channels, S, S]``. ``G(x, z, repeat=k)`` with
    z for ``B·k`` samples gives k samples per input and encodes each input once.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, image_size: int = 256, n_down: int = 8,
                 ngf: int = 64, noise_channels: int = 32, noise_levels: int = 3, dropout: bool = False) -> None:
        super().__init__()
        if noise_channels < 1 or noise_levels < 1:
            raise ValueError("a generator needs noise: noise_channels and noise_levels must be >= 1 "
                             f"(got {noise_channels}, {noise_levels}); use Pix2PixPredictor for no noise")
        self.net = UNet(in_channels, out_channels, image_size, n_down, ngf, noise_channels, noise_levels, dropout)

    def noise(self, n: int, device: torch.device | str | None = None,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Draw z: a tuple of N(0, 1) maps ``[n, noise_channels, s, s]``, innermost first."""
        return randn_maps(n, self.net.noise_shapes(), device, generator)

    encodes_once = True
    """``forward(x, z, repeat=k)`` draws k samples per input with one encoder pass (:func:`minilib.train.sample_k`)."""

    def forward(self, x: torch.Tensor, z: Noise, repeat: int = 1) -> torch.Tensor:
        return torch.tanh(self.net(x, z, repeat))


class Pix2PixPredictor(nn.Module):
    """``P(x) -> (center, log_dispersion)``, each ``[B, out_channels, S, S]``: the same U-Net without
    noise and with two heads (centre through tanh, log-dispersion clamped to [-6, 0]; MR-GAN Eq. 4-5)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, image_size: int = 256, n_down: int = 8,
                 ngf: int = 64) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.net = UNet(in_channels, 2 * out_channels, image_size, n_down, ngf, noise_channels=0, noise_levels=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return predictor_heads(self.net(x), self.out_channels, torch.tanh)


class PatchDiscriminator(nn.Module):
    """PatchGAN ``D(x, y) -> logits [B, P, P]`` on the concatenated pair (70x70 patches at n_layers=3).

    x ``[B, in_channels, S, S]``, y ``[B, out_channels, S, S]``; P = 30 for S = 256.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.in_channels, self.out_channels = in_channels, out_channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels + out_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = ndf
        for i in range(1, n_layers + 1):
            c_next = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(c, c_next, 4, stride, 1, bias=False), nn.BatchNorm2d(c_next), nn.LeakyReLU(0.2)]
            c = c_next
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_image("x", x, self.in_channels)
        check_image("y", y, self.out_channels, tuple(x.shape[2:]))
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}")
        return self.net(torch.cat([x, y.to(x.dtype)], dim=1)).squeeze(1)  # [B, P, P]
