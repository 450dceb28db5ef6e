"""Conditional diversity of image generators: pairwise LPIPS / pixel distances under named protocols.
Mode coverage (NDB / JSD) is in :mod:`minilib.metrics.ndb`, Fréchet distances in :mod:`minilib.metrics.frechet`.

Diversity protocols (``samples`` are ``[B, K, C, H, W]``: K outputs for each of B inputs):

=============  =========  =======  ==================================================  =================
name           samples K  pairs P  pairs                                               source
=============  =========  =======  ==================================================  =================
``mrgan``      20         10       random distinct unordered pairs, fresh per input    MR-GAN §5.2
``bicyclegan`` 20         19       consecutive (0,1), (1,2), … (18,19)                 BicycleGAN
``msgan``      50         50       random distinct unordered pairs, fresh per input    MSGAN App. B
=============  =========  =======  ==================================================  =================

The score is the mean over inputs of the mean distance over that input's pairs, with a Student-t
confidence interval over inputs. LPIPS compares generated outputs *with each other* (conditional
diversity), never with the ground truth. LPIPS needs ImageNet backbone weights that torchvision
downloads on first use; without them :func:`load_lpips` raises :class:`MissingWeightsError` saying
how to obtain them (the LPIPS linear-layer weights themselves ship inside the ``lpips`` package).
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..errors import ConfigError, ConfigTypeError, MissingWeightsError, check_int, check_number, check_same_device, check_tensor

__all__ = [
    "MissingWeightsError", "DiversityProtocol", "DIVERSITY_PROTOCOLS", "DiversityResult",
    "protocol_pairs", "to_signed_range", "pixel_distance", "LPIPSDistance", "load_lpips",
    "pairwise_diversity", "lpips_diversity",
]


# --------------------------------------------------------------------------- diversity protocols
@dataclass(frozen=True)
class DiversityProtocol:
    """How many samples per input, how many pairs, and how pairs are chosen ("random"/"consecutive")."""

    name: str
    num_samples: int
    num_pairs: int
    pairing: str
    source: str = ""

    def __post_init__(self) -> None:
        if self.pairing not in ("random", "consecutive"):
            raise ConfigError(f"pairing must be 'random' or 'consecutive', got {self.pairing!r}")
        check_int("num_samples", self.num_samples, 2)
        check_int("num_pairs", self.num_pairs)
        max_pairs = self.num_samples - 1 if self.pairing == "consecutive" else self.num_samples * (self.num_samples - 1) // 2
        if not 1 <= self.num_pairs <= max_pairs:
            raise ConfigError(f"num_pairs must be in 1..{max_pairs} for num_samples={self.num_samples} ({self.pairing})")


DIVERSITY_PROTOCOLS: dict[str, DiversityProtocol] = {
    "mrgan": DiversityProtocol("mrgan", 20, 10, "random", "MR-GAN (Lee et al. 2019) Sec. 5.2: 10 random pairs of 20"),
    "bicyclegan": DiversityProtocol("bicyclegan", 20, 19, "consecutive", "BicycleGAN (Zhu et al. 2017): 19 consecutive pairs of 20"),
    "msgan": DiversityProtocol("msgan", 50, 50, "random", "MSGAN (Mao et al. 2019) App. B: 50 random pairs of 50"),
}


def _protocol(protocol: str | DiversityProtocol) -> DiversityProtocol:
    if isinstance(protocol, DiversityProtocol):
        return protocol
    if not isinstance(protocol, str) or protocol not in DIVERSITY_PROTOCOLS:
        raise ConfigError(f"protocol must be one of {sorted(DIVERSITY_PROTOCOLS)} or a DiversityProtocol, got {protocol!r}")
    return DIVERSITY_PROTOCOLS[protocol]


def protocol_pairs(protocol: str | DiversityProtocol, generator: torch.Generator | None = None) -> torch.Tensor:
    """Index pairs ``[P, 2]`` (``i < j``) of one input's K samples under ``protocol``.

    Random protocols draw P distinct unordered pairs uniformly without replacement among the
    K(K−1)/2; the consecutive protocol returns (i, i+1) for i < P.
    """
    p = _protocol(protocol)
    if p.pairing == "consecutive":
        i = torch.arange(p.num_pairs)
        return torch.stack([i, i + 1], 1)
    all_pairs = torch.combinations(torch.arange(p.num_samples), 2)  # [K(K-1)/2, 2]
    pick = torch.randperm(all_pairs.shape[0], generator=generator)[: p.num_pairs]
    return all_pairs[pick]


@dataclass
class DiversityResult:
    """Mean pairwise distance over inputs with a confidence interval; ``to_dict()`` for JSON."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    confidence: float
    num_inputs: int
    protocol: str
    num_samples: int
    num_pairs: int
    metric: str
    masked: bool
    per_input: list[float] = field(repr=False)

    def to_dict(self) -> dict:
        """Plain dict (JSON-serialisable)."""
        return asdict(self)


def to_signed_range(images: torch.Tensor, input_range: str = "[-1,1]", name: str = "samples") -> torch.Tensor:
    """Check that ``images`` (floating, finite, non-empty) lie in ``input_range`` ("[-1,1]" or "[0,1]") and return
    them in [−1, 1]."""
    ranges = {"[-1,1]": (-1.0, 1.0), "[0,1]": (0.0, 1.0)}
    if input_range not in ranges:
        raise ConfigError(f"input_range must be one of {list(ranges)}, got {input_range!r}")
    check_tensor(name, images)  # NaN would pass a min / max test
    lo, hi = ranges[input_range]
    mn, mx = float(images.min()), float(images.max())
    if mn < lo - 1e-3 or mx > hi + 1e-3:
        raise ConfigError(f"{name} must lie in {input_range} (got min {mn:.3f}, max {mx:.3f}); "
                         f"pass input_range='[0,1]' for images in [0, 1]")
    return images * 2 - 1 if input_range == "[0,1]" else images


def _masked_mean(dist_map: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``dist_map [N, C, H, W]`` over C,H,W, or over the pixels where ``mask [N,1,H,W]`` is 1."""
    if mask is None:
        return dist_map.flatten(1).mean(1)
    m = mask.to(dist_map.dtype).expand(-1, dist_map.shape[1], -1, -1)
    return (dist_map * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1e-12)


def pixel_distance(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, p: int = 1) -> torch.Tensor:
    """Mean |a−b|^p per image: ``a, b [N, C, H, W] -> [N]``, over the hole if ``mask [N,1,H,W]`` (0/1, a 1 in
    every image)."""
    if p not in (1, 2) or isinstance(p, bool):
        raise ConfigError(f"p must be 1 or 2, got {p}")
    check_tensor("a", a, dims=4)
    check_tensor("b", b, dims=4)
    if b.shape != a.shape:
        raise ConfigError(f"b must have a's shape {tuple(a.shape)}, got {tuple(b.shape)}")
    check_same_device("a", a, b=b)
    if mask is not None:
        mask = _check_mask(mask, a.shape[0], a.shape[2], a.shape[3])
        check_same_device("a", a, mask=mask)
    return _masked_mean((a - b).abs().pow(p), mask)


pixel_distance.name = "pixel-l1"


class LPIPSDistance:
    """Callable ``(a, b, mask=None) -> [N]`` LPIPS distances of images in [−1, 1] (Zhang et al. 2018).

    With a mask, LPIPS's spatial map (each layer's distance upsampled to the image size and
    summed over layers) is averaged over the masked pixels only.
    """

    def __init__(self, model: torch.nn.Module, net: str, version: str, random_backbone: bool = False) -> None:
        self.model, self.net, self.version, self.random_backbone = model, net, version, random_backbone

    @property
    def name(self) -> str:
        """e.g. ``lpips-alex-v0.1`` (``+RANDOM-backbone`` when the backbone is untrained)."""
        return f"lpips-{self.net}-v{self.version}" + ("+RANDOM-backbone" if self.random_backbone else "")

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        a, b = a.to(dev), b.to(dev)
        if mask is None:
            self.model.spatial = False
            return self.model(a, b).flatten().float().cpu()
        self.model.spatial = True
        try:
            return _masked_mean(self.model(a, b).float(), mask.to(dev)).cpu()  # map [N, 1, H, W]
        finally:
            self.model.spatial = False


_BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


def load_lpips(net: str = "alex", version: str = "0.1", backbone_weights: str | os.PathLike | None = None,
               random_backbone: bool = False, device: str | torch.device = "cpu") -> LPIPSDistance:
    """An :class:`LPIPSDistance` for backbone ``net`` ("alex", "vgg", "squeeze") and LPIPS ``version``.

    Backbone weights come from ``backbone_weights`` (a torchvision state-dict file) or torch hub's
    cache; if neither exists :class:`MissingWeightsError` explains how to get them.
    ``random_backbone=True`` skips them: the numbers are then meaningless (plumbing tests only).
    """
    if net not in _BACKBONES:
        raise ConfigError(f"net must be one of {sorted(_BACKBONES)}, got {net!r}")
    if version not in ("0.0", "0.1"):
        raise ConfigError(f"version must be '0.0' or '0.1', got {version!r}")
    if backbone_weights is not None and not Path(backbone_weights).is_file():
        raise MissingWeightsError(f"backbone_weights file {backbone_weights} does not exist")
    import lpips
    import torchvision

    url = getattr(torchvision.models, _BACKBONES[net]).IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    use_file = backbone_weights is not None or random_backbone
    if not use_file and not cached.is_file():
        raise MissingWeightsError(
            f"LPIPS-{net} needs torchvision's ImageNet backbone weights, which are not on this machine "
            f"(expected {cached}). On a machine with internet run\n"
            f"  python -c \"import torchvision; torchvision.models.{_BACKBONES[net].replace('_Weights', '').lower()}"
            f"(weights='IMAGENET1K_V1')\"\nand copy the file (from {url}) to {cached} "
            f"(or set TORCH_HOME), or pass backbone_weights=<path to that file>.")
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, version=version, pnet_rand=use_file, verbose=False)
    if backbone_weights is not None:
        state = torch.load(backbone_weights, map_location="cpu", weights_only=True)
        # the lpips trunk re-groups torchvision's `features.<i>` modules into slices: slice<k>.<i>
        own = {n: re.sub(r"^slice\d+\.", "features.", n) for n, _ in model.net.named_parameters()}
        missing = [v for v in own.values() if v not in state]
        if missing:
            raise ConfigError(f"backbone_weights is not a torchvision {net} state dict (missing {missing[:3]})")
        model.net.load_state_dict({n: state[k] for n, k in own.items()}, strict=False)
    model.eval().to(device)
    for prm in model.parameters():
        prm.requires_grad_(False)
    return LPIPSDistance(model, net, version, random_backbone and backbone_weights is None)


def _check_mask(mask: torch.Tensor | None, b: int, h: int, w: int) -> torch.Tensor | None:
    """``mask`` as ``[B, 1, H, W]`` floats, 0/1 with a 1 in every image (an all-zero mask has no distance)."""
    if mask is None:
        return None
    check_tensor("mask", mask, floating=False)
    if mask.device.type == "meta":
        raise ConfigError("mask is on the meta device (shapes only, no values)")
    m = mask.float()
    while m.dim() < 4:
        m = m.unsqueeze(0)
    if m.dim() != 4 or m.shape[1] != 1 or tuple(m.shape[2:]) != (h, w) or m.shape[0] not in (1, b):
        raise ConfigError(f"mask must be [H, W], [1, H, W] or [B, 1, H, W] with H, W = {h}, {w}; got {tuple(mask.shape)}")
    if not ((m == 0) | (m == 1)).all() or (m.flatten(1).sum(1) == 0).any():
        raise ConfigError("mask must be 0/1 with at least one 1 (the hole) per input")
    return m.expand(b, -1, -1, -1)


def pairwise_diversity(samples: torch.Tensor, protocol: str | DiversityProtocol = "mrgan",
                       distance: Callable[..., torch.Tensor] = pixel_distance, mask: torch.Tensor | None = None,
                       seed: int = 0, confidence: float = 0.95, chunk: int = 256, metric: str | None = None) -> DiversityResult:
    """Conditional diversity of ``samples [B, K, C, H, W]`` under a named protocol.

    For input b, the protocol's pairs (i, j) of its K samples are scored with
    ``distance(a [N,C,H,W], b [N,C,H,W], mask) -> [N]``; the input's score is their mean; the
    result is the mean over inputs ± a Student-t interval (MR-GAN Table 1's "diversity").
    ``mask`` (1 = hole) restricts the score to the inpainted region.
    """
    p = _protocol(protocol)
    if isinstance(samples, torch.Tensor) and samples.dim() != 5:
        raise ConfigError(f"samples must be a [B, K, C, H, W] tensor, got shape {tuple(samples.shape)}")
    check_tensor("samples", samples)
    bsz, k, _, h, w = samples.shape
    if k != p.num_samples:
        raise ConfigError(f"protocol {p.name!r} needs K={p.num_samples} samples per input, got K={k}")
    check_number("confidence", confidence, low=0.0, high=1.0)
    check_int("chunk", chunk)
    if not callable(distance):
        raise ConfigTypeError(f"distance must be a function (a, b, mask) -> [N], got {type(distance).__name__}")
    m = _check_mask(mask, bsz, h, w)
    if m is not None:
        check_same_device("samples", samples, mask=m)
    gen = torch.Generator().manual_seed(seed)
    pairs = torch.stack([protocol_pairs(p, gen) for _ in range(bsz)])  # [B, P, 2]
    rows = torch.arange(bsz)[:, None].expand(-1, p.num_pairs).reshape(-1)  # [B*P]
    first, second = pairs[..., 0].reshape(-1), pairs[..., 1].reshape(-1)
    dists = []
    for s in range(0, rows.numel(), chunk):
        r = rows[s:s + chunk]
        args = (samples[r, first[s:s + chunk]], samples[r, second[s:s + chunk]])  # [n, C, H, W] each
        dists.append(distance(*args, mask=None if m is None else m[r]).float().reshape(-1))
    per_input = torch.cat(dists).reshape(bsz, p.num_pairs).mean(1).double()  # [B]
    mean = float(per_input.mean())
    std = float(per_input.std()) if bsz > 1 else 0.0
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, bsz - 1)) * std / bsz ** 0.5 if bsz > 1 else float("nan")
    name = metric or getattr(distance, "name", getattr(distance, "__name__", "distance"))
    return DiversityResult(mean, std, mean - half, mean + half, confidence, bsz, p.name, p.num_samples,
                           p.num_pairs, name, m is not None, per_input.tolist())


def lpips_diversity(samples: torch.Tensor, protocol: str | DiversityProtocol = "mrgan", *, net: str = "alex",
                    version: str = "0.1", input_range: str = "[-1,1]", mask: torch.Tensor | None = None,
                    seed: int = 0, lpips_model: LPIPSDistance | None = None, backbone_weights: str | None = None,
                    device: str | torch.device = "cpu") -> DiversityResult:
    """LPIPS diversity (MR-GAN Table 1, MSGAN Tables 3–6) of ``samples [B, K, C, H, W]``.

    ``net``/``version`` pick the LPIPS model (recorded in the result's ``metric``); ``input_range``
    is checked and [0, 1] images are converted; ``mask`` scores the hole only. Pass a prebuilt
    ``lpips_model`` (see :func:`load_lpips`) to reuse it; its net/version must match.
    """
    x = to_signed_range(samples, input_range)
    if lpips_model is None:
        lpips_model = load_lpips(net, version, backbone_weights=backbone_weights, device=device)
    elif (lpips_model.net, lpips_model.version) != (net, version):
        raise ValueError(f"lpips_model is {lpips_model.net} v{lpips_model.version} but net={net!r}, version={version!r}")
    return pairwise_diversity(x, protocol, lpips_model, mask=mask, seed=seed, chunk=64, metric=lpips_model.name)
