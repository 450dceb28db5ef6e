"""Pieces shared by the image networks: input checks, noise maps, predictor heads, weight init.

A *generator* here is ``G(x, z) -> y`` with ``G.noise(n, device, generator) -> z``; a *predictor* is
the same architecture without noise whose last layer has ``2 * C`` channels, split by
:func:`predictor_heads` into a centre (passed through the generator's output activation) and a
log-dispersion clamped to ``[-6, 0]`` as in the official MR-GAN configurations.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

__all__ = [
    "LOG_DISPERSION_RANGE",
    "check_image",
    "check_noise",
    "randn_maps",
    "predictor_heads",
    "init_weights",
    "ACTIVATIONS",
    "mlp",
]

LOG_DISPERSION_RANGE = (-6.0, 0.0)

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": lambda: nn.LeakyReLU(0.2)}


def mlp(d_in: int, d_out: int, hidden: int, layers: int, act: str = "relu") -> nn.Sequential:
    """``layers`` hidden layers of width ``hidden`` with activation ``act`` (relu, tanh, leaky_relu 0.2), then a
    linear output: ``[N, d_in] -> [N, d_out]``. ``layers=0`` is a single linear map. Used by the toy MLPs,
    the small PresGAN networks and the digit-completion networks."""
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {sorted(ACTIVATIONS)}, got {act!r}")
    for name, v in (("d_in", d_in), ("d_out", d_out), ("hidden", hidden)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not isinstance(layers, int) or isinstance(layers, bool) or layers < 0:
        raise ValueError(f"layers must be a non-negative int (hidden layers), got {layers!r}")
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), ACTIVATIONS[act]()]
        d = hidden
    mods.append(nn.Linear(d, d_out))
    return nn.Sequential(*mods)

Noise = torch.Tensor | tuple[torch.Tensor, ...]


def check_image(name: str, t: object, channels: int, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Check that ``t`` is a float tensor ``[B, channels, H, W]`` (and ``H, W == size`` if given)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, {channels}, H, W], got {type(t).__name__}")
    if t.dim() != 4 or t.shape[1] != channels:
        raise ValueError(f"{name} must have shape [B, {channels}, H, W], got {tuple(t.shape)}")
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(t.shape[2:]) != hw:
            raise ValueError(f"{name} must be {hw[0]}x{hw[1]} pixels, got {tuple(t.shape[2:])}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    return t


def check_noise(z: object, shapes: Sequence[tuple[int, ...]], batch: int) -> tuple[torch.Tensor, ...]:
    """Check a multi-scale noise tuple: one tensor ``[batch, *shape]`` per entry of ``shapes``."""
    if isinstance(z, torch.Tensor):
        z = (z,)
    if not isinstance(z, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in z):
        raise TypeError(f"z must be a tuple of {len(shapes)} tensors (from G.noise), got {type(z).__name__}")
    if len(z) != len(shapes):
        raise ValueError(f"z must hold {len(shapes)} noise tensors (from G.noise), got {len(z)}")
    for i, (t, s) in enumerate(zip(z, shapes)):
        if tuple(t.shape) != (batch, *s):
            raise ValueError(f"z[{i}] must have shape {(batch, *s)}, got {tuple(t.shape)}")
    return tuple(z)


def randn_maps(
    n: int,
    shapes: Sequence[tuple[int, ...]],
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, ...]:
    """Draw independent N(0, 1) tensors ``[n, *shape]`` for each shape (MR-GAN App. B noise inputs)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (number of noise draws), got {n!r}")
    if device is None and generator is not None:
        device = generator.device
    return tuple(torch.randn((n, *s), device=device, generator=generator) for s in shapes)


def predictor_heads(
    raw: torch.Tensor, channels: int, activation: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``raw [B, 2C, H, W]`` into ``center = activation(raw[:, :C])`` and
    ``log_dispersion = clamp(raw[:, C:], -6, 0)`` (each ``[B, C, H, W]``; MR-GAN Eq. 4-5 predictor)."""
    if raw.shape[1] != 2 * channels:
        raise ValueError(f"raw must have 2*{channels} channels, got {raw.shape[1]}")
    center = activation(raw[:, :channels])
    log_dispersion = raw[:, channels:].clamp(*LOG_DISPERSION_RANGE)
    return center, log_dispersion


def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """DCGAN / pix2pix initialisation: conv weights ~ N(0, std), norm weights ~ N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module
