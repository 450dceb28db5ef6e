"""GLCIC completion network with MR-GAN noise inputs, its predictor, and the global + local critic.

Iizuka et al. (2017) "Globally and Locally Consistent Image Completion": an encoder to H/4, six
convs at H/4 of which four are dilated (2, 4, 8, 16), and a decoder back to H. MR-GAN Appendix B.4
concatenates 32-channel Gaussian noise to the inputs of the first and second dilated convs and of
the conv just before them. Inputs are 128x128 in [0, 1]: x ``[B, 4, H, W]`` = RGB with the hole
filled by the training-set mean pixel, plus the hole mask (1 inside) as the 4th channel.

By default the generator's output is pasted into the hole: ``y = x_rgb * (1 - m) + net(x, z) * m``,
so every loss and statistic is mask-aware (the known pixels have zero sample variance). MR2's
Gaussian / Laplace NLL is undefined where the sample variance is 0, so for MR2 build the generator
with ``paste=False`` (full-image output); the discriminator always pastes y into x before judging,
so it sees completed images either way (GLCIC).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .common import LOG_DISPERSION_RANGE, Noise, check_image, check_noise, init_weights, predictor_heads, randn_maps

__all__ = ["CompletionNet", "GLCICGenerator", "GLCICPredictor", "GLCICDiscriminator", "hole_boxes"]


def _cbr(cin: int, cout: int, k: int, s: int = 1, d: int = 1, transpose: bool = False) -> nn.Sequential:
    conv = (nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False) if transpose
            else nn.Conv2d(cin, cout, k, s, d * (k - 1) // 2, dilation=d, bias=False))
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())


class CompletionNet(nn.Module):
    """The completion backbone: ``x [B, 4, S, S]`` (+ 3 noise maps at S/4) -> raw ``[B, out_channels, S, S]``.

    ``width`` scales every layer (64 in the paper: 64-128-256 channels); ``noise_channels=0`` removes
    the noise inputs (for the predictor); ``dilations`` are the four dilated layers' rates.
    """

    NOISY = (5, 6, 7)  # indices in self.mid of: conv before the dilated ones, dilated 1, dilated 2

    def __init__(self, out_channels: int = 3, image_size: int = 128, width: int = 64, noise_channels: int = 32,
                 dilations: tuple[int, ...] = (2, 4, 8, 16)) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        if len(dilations) < 2:
            raise ValueError(f"dilations must hold at least 2 rates (noise goes to the first two), got {dilations}")
        self.image_size, self.noise_channels = image_size, noise_channels
        w1, w2, w4 = width, 2 * width, 4 * width
        self.enc = nn.Sequential(_cbr(4, w1, 5), _cbr(w1, w2, 3, 2), _cbr(w2, w2, 3), _cbr(w2, w4, 3, 2), _cbr(w4, w4, 3))
        nz = noise_channels
        mid = [_cbr(w4 + nz, w4, 3)]  # index 5 of the network: the conv before the dilated ones
        mid += [_cbr(w4 + (nz if i < 2 else 0), w4, 3, d=d) for i, d in enumerate(dilations)]
        mid += [_cbr(w4, w4, 3), _cbr(w4, w4, 3)]
        self.mid = nn.ModuleList(mid)
        self.dec = nn.Sequential(_cbr(w4, w2, 4, transpose=True), _cbr(w2, w2, 3), _cbr(w2, w1, 4, transpose=True),
                                 _cbr(w1, w1 // 2 or 1, 3), nn.Conv2d(w1 // 2 or 1, out_channels, 3, 1, 1))
        init_weights(self)

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """Three ``(C_z, S/4, S/4)`` maps (empty without noise)."""
        s = self.image_size // 4
        return [(self.noise_channels, s, s)] * 3 if self.noise_channels else []

    def forward(self, x: torch.Tensor, z: Noise | None = None) -> torch.Tensor:
        check_image("x", x, 4, self.image_size)
        zs = check_noise(z, self.noise_shapes(), x.shape[0]) if self.noise_channels else ()
        h = self.enc(x)  # [B, 4W, S/4, S/4]
        for i, layer in enumerate(self.mid):
            if zs and i < 3:
                h = torch.cat([h, zs[i].to(h.dtype)], dim=1)  # noise at layers 6, 7, 8 of the network
            h = layer(h)
        return self.dec(h)


def _paste(x: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    mask = x[:, 3:4]
    return x[:, :3] * (1 - mask) + inside * mask  # [B, 3, S, S]


class GLCICGenerator(nn.Module):
    """``G(x, z) -> y [B, 3, S, S]`` in [0, 1]: x ``[B, 4, S, S]`` (masked RGB + mask), z = ``G.noise(B)``
    (3 maps ``[B, 32, S/4, S/4]``); the sigmoid output is pasted into the hole (``paste=False``:
    the whole sigmoid output)."""

    def __init__(self, image_size: int = 128, width: int = 64, noise_channels: int = 32,
                 dilations: tuple[int, ...] = (2, 4, 8, 16), paste: bool = True) -> None:
        super().__init__()
        self.paste = paste
        if noise_channels < 1:
            raise ValueError(f"noise_channels must be >= 1 for a generator, got {noise_channels}")
        self.net = CompletionNet(3, image_size, width, noise_channels, dilations)

    def noise(self, n: int, device: torch.device | str | None = None,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Draw z: three N(0, 1) maps ``[n, 32, S/4, S/4]``."""
        return randn_maps(n, self.net.noise_shapes(), device, generator)

    def forward(self, x: torch.Tensor, z: Noise) -> torch.Tensor:
        out = torch.sigmoid(self.net(x, z))
        return _paste(x, out) if self.paste else out


class GLCICPredictor(nn.Module):
    """``P(x) -> (center, log_dispersion)`` each ``[B, 3, S, S]``: the completion net without noise.

    The centre is pasted into the hole like the generator's output; outside the hole the pixels are
    known, so the log-dispersion there is the lower clamp -6.
    """

    def __init__(self, image_size: int = 128, width: int = 64, dilations: tuple[int, ...] = (2, 4, 8, 16)) -> None:
        super().__init__()
        self.net = CompletionNet(6, image_size, width, 0, dilations)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        center, log_d = predictor_heads(self.net(x), 3, torch.sigmoid)
        mask = x[:, 3:4] > 0.5
        return _paste(x, center), torch.where(mask, log_d, torch.full_like(log_d, LOG_DISPERSION_RANGE[0]))


def hole_boxes(mask: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners ``(top [B], left [B])`` of ``size x size`` windows centred on each hole's
    bounding box and clamped inside the image; mask ``[B, 1, H, W]`` (1 in the hole)."""
    b, _, h, w = mask.shape
    m = mask[:, 0] > 0.5
    rows, cols = m.any(dim=2), m.any(dim=1)  # [B, H], [B, W]

    def centre(any_: torch.Tensor, n: int) -> torch.Tensor:
        idx = torch.arange(n, device=mask.device).expand_as(any_)
        lo = torch.where(any_, idx, n).amin(dim=1)
        hi = torch.where(any_, idx, -1).amax(dim=1)
        return torch.where(any_.any(dim=1), (lo + hi + 1) // 2, torch.full_like(lo, n // 2))

    top = (centre(rows, h) - size // 2).clamp(0, h - size)
    left = (centre(cols, w) - size // 2).clamp(0, w - size)
    return top, left


def _conv_stack(cin: int, width: int, size: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    c, s, i = cin, size, 0
    while s > 4:
        c_next = width * min(2**i, 8)
        layers += [nn.Conv2d(c, c_next, 5, 2, 2, bias=False), nn.BatchNorm2d(c_next), nn.ReLU()]
        c, s, i = c_next, s // 2, i + 1
    layers += [nn.Flatten(), nn.Linear(c * s * s, 1024), nn.ReLU()]
    return nn.Sequential(*layers), c


class GLCICDiscriminator(nn.Module):
    """Global + local critic ``D(x, y) -> logits [B]``.

    The global branch sees the whole ``y [B, 3, S, S]``; the local branch sees the ``S/2`` window
    around the hole, located from the mask channel of ``x [B, 4, S, S]``. Each branch is a stack of
    5x5 stride-2 convs down to 4x4 and a 1024-unit layer; their concatenation goes to one logit.
    y is first pasted into x's hole (a no-op for real images and pasted samples).
    """

    def __init__(self, image_size: int = 128, width: int = 64, local_size: int | None = None) -> None:
        super().__init__()
        self.image_size = image_size
        self.local_size = local_size or image_size // 2
        if not 4 <= self.local_size <= image_size:
            raise ValueError(f"local_size must be in [4, image_size={image_size}], got {self.local_size}")
        self.global_net, _ = _conv_stack(3, width, image_size)
        self.local_net, _ = _conv_stack(3, width, self.local_size)
        self.head = nn.Linear(2048, 1)
        init_weights(self)

    def crop_local(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The ``[B, 3, L, L]`` windows of y around each hole of x's mask (differentiable gather)."""
        L = self.local_size
        top, left = hole_boxes(x[:, 3:4], L)
        ar = torch.arange(L, device=y.device)
        rows = (top[:, None] + ar)[:, None, :, None]  # [B, 1, L, 1]
        cols = (left[:, None] + ar)[:, None, None, :]  # [B, 1, 1, L]
        bidx = torch.arange(y.shape[0], device=y.device)[:, None, None, None]
        cidx = torch.arange(y.shape[1], device=y.device)[None, :, None, None]
        return y[bidx, cidx, rows, cols]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_image("x", x, 4, self.image_size)
        check_image("y", y, 3, self.image_size)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}")
        y = _paste(x.to(y.dtype), y)  # [B, 3, S, S]: completed image
        feats = torch.cat([self.global_net(y), self.local_net(self.crop_local(x, y))], dim=1)  # [B, 2048]
        return self.head(feats).squeeze(1)
