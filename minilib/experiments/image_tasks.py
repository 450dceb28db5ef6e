"""The papers' image experiments as data: a :class:`TaskSpec` per experiment, built into networks, datasets and a
:class:`~minilib.train.TrainConfig` by :func:`build`.

A :class:`TaskSpec` is one row of MR-GAN Appendix B (batch sizes, K, loss weights, D:G ratio) and carries its
:class:`ImageFamily`: the networks per profile, the datasets, how to turn tensors into pictures, the smoke
length and its fixture. Adding a task of an existing family is one entry of :data:`TASKS`; a new family is one
:class:`ImageFamily` and one entry, here.

Profiles: ``"full"`` — the paper's sizes (GPU, real data); ``"smoke"`` — tiny widths at reduced resolution
with small batches, so a CPU run of a few steps exercises exactly the same code (tests, CI, notebooks 08-10
without a GPU); ``"bench"`` — moderate widths at reduced resolution (``bench image`` timings).

The colour task (``pix2pix-colours``, notebook 07b) is *procedural*: its data is generated on the fly with an exact
p(y | x) (:mod:`minilib.data.colours`), it needs no dataset folder, and its full profile is a CPU recipe (the smoke
profile is the same networks for fewer rounds); ``evaluate`` adds its exact metrics (:mod:`minilib.metrics.colours`).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data import images as I
from ..data.colours import ColourDataset, ColourTask
from ..data.fixtures import make_celeba, make_cityscapes, make_maps
from ..nets import (GLCICDiscriminator, GLCICGenerator, GLCICPredictor, PatchDiscriminator, Pix2PixGenerator,
                    Pix2PixPredictor, SRGANDiscriminator, SRGANGenerator, SRGANPredictor)
from ..metrics.colours import score_colour_generator
from ..objectives import Objective, get_objective
from ..train import TrainConfig, sample_k

__all__ = ["ImageFamily", "TaskSpec", "TASKS", "PROFILES", "Built", "choose_profile", "task_objective", "build",
           "sample_grid", "get_task", "COLOURS"]

PROFILES = ("smoke", "bench", "full")
ToImage = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
_SMOKE_BATCH = dict(batch_size=4, g_batch_size=2)


@dataclass(frozen=True)
class ImageFamily:
    """How one kind of image experiment is built.

    ``networks(sizes, objective) -> (G, D, P)`` from one profile's ``sizes`` (P: the generator without noise);
    ``datasets(root, sizes, seed) -> (train, val, to_image)`` with ``to_image(x, y) -> (x, y)`` in [0, 1] for
    figures; ``sizes[profile]`` the network and data sizes of each profile ("full" is the paper's);
    ``smoke_steps`` the training rounds of a smoke run (a few seconds on one CPU core); ``mask_channel`` the
    channel of x that marks the hole when diversity is scored inside it (inpainting), else None.
    ``full_steps`` / ``predictor_steps`` / ``predictor_val_every``: ``train``'s defaults in the full profile.
    ``procedural``: the data is generated (no dataset folder, no fixture, no loader threads) and the full profile
    runs on a CPU. ``exact_metrics(G, sizes, seed) -> dict``: scores against a known truth, added by ``evaluate``;
    ``diversity_metric``: ``evaluate``'s default distance ("lpips", or "pixel" where LPIPS adds nothing);
    ``cpu_threads``: torch threads of a CPU run when ``--threads`` is not given (None: torch's choice; tiny networks
    are fastest on one, and much slower on two when another process holds the second core).
    """

    name: str
    networks: Callable[[dict[str, Any], Objective | None], tuple[nn.Module, nn.Module, nn.Module]]
    datasets: Callable[[Path, dict[str, Any], int], tuple[Any, Any, ToImage]]
    sizes: dict[str, dict[str, Any]]
    smoke_steps: int
    mask_channel: int | None = None
    full_steps: int = 100_000
    predictor_steps: int = 20_000
    predictor_val_every: int = 500
    procedural: bool = False
    exact_metrics: Callable[[nn.Module, dict[str, Any], int], dict[str, Any]] | None = None
    diversity_metric: str = "lpips"
    cpu_threads: int | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One experiment of MR-GAN Appendix B (B.2 Pix2Pix, B.3 SRGAN, B.4 GLCIC).

    ``batch_size`` is the D and predictor batch, ``g_batch_size`` the G batch (times ``k`` samples);
    ``d_steps`` : ``g_steps`` is the update ratio; ``rec`` / ``rec_weight`` the baseline's
    reconstruction loss; ``mr_weight`` / ``pmr_weight`` are λ for MR and proxy MR; ``fixture(root)``
    writes a tiny dataset in the real on-disk layout (smoke runs without ``--data``).
    ``train_settings``: :class:`~minilib.train.TrainConfig` fields of this task (else Appendix B's);
    ``preset_objective`` / ``preset_train``: per preset name, :class:`~minilib.objectives.Objective` /
    ``TrainConfig`` fields that :func:`task_objective` / :func:`build` apply (a preset's weights and schedule).
    """

    name: str
    family: ImageFamily
    dataset: str
    batch_size: int
    g_batch_size: int
    k: int
    d_steps: int
    g_steps: int
    rec: str
    rec_weight: float
    mr_weight: float
    pmr_weight: float
    about: str
    fixture: Callable[[Path], Any] | None = field(default=None, compare=False)
    train_settings: dict[str, Any] = field(default_factory=dict, hash=False)
    preset_objective: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)
    preset_train: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)

    @property
    def kind(self) -> str:
        """The family's name (``"pix2pix"``, ``"srgan"``, ``"glcic"``, ...)."""
        return self.family.name

    @property
    def baseline(self) -> str:
        """The paper's baseline objective for this task (``"gan+l1"`` or ``"gan+l2"``)."""
        return f"gan+{self.rec}"

    def settings(self) -> dict[str, Any]:
        """The spec as JSON-ready numbers and names (what a run folder records)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("family", "fixture")}
        return {**out, "kind": self.kind}


# ------------------------------------------------------------------------------------------- families
def _nets(G: type, D: type, P: type, mr2_full_output: bool = False) -> Callable[[dict[str, Any], Objective | None], tuple]:
    """A family's ``networks``: ``G(**sizes["g"])``, ``D(**sizes["d"])`` and ``P`` = G's sizes without noise.

    ``mr2_full_output``: with MR2 the generator outputs the whole image instead of pasting into the hole
    (GLCIC), since MR2's NLL is undefined where the sample variance is 0."""
    def networks(s: dict[str, Any], objective: Objective | None) -> tuple[nn.Module, nn.Module, nn.Module]:
        g = s["g"]
        mr2 = objective is not None and objective.moment == "mr" and objective.moment_order == 2
        extra = {"paste": False} if (mr2_full_output and mr2) else {}
        p = {k: v for k, v in g.items() if k not in ("noise_channels", "noise_levels")}  # P: same network, no noise
        return G(**g, **extra), D(**s["d"]), P(**p)
    return networks


def _pix2pix_data(root: Path, s: dict[str, Any], seed: int, dataset: str) -> tuple[Any, Any, ToImage]:
    train = I.PairedImages(root, "train", dataset, s["size"], seed=seed)
    val = I.PairedImages(root, "val", dataset, s["size"], flip=False,
                         stats=(train.mean.flatten().tolist(), train.std.flatten().tolist()), seed=seed)
    mean, std = train.mean, train.std

    def to_image(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x.cpu() * std + mean).clamp(0, 1), (y.cpu() + 1) / 2
    return train, val, to_image


def _srgan_data(root: Path, s: dict[str, Any], seed: int) -> tuple[Any, Any, ToImage]:
    train = I.CelebASR(root, "train", s["size"], seed=seed)
    val = I.CelebASR(root, "val", s["size"], flip=False, seed=seed)

    def to_image(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (F.interpolate(x.cpu(), size=y.shape[-2:], mode="nearest") + 1) / 2, (y.cpu() + 1) / 2
    return train, val, to_image


def _glcic_data(root: Path, s: dict[str, Any], seed: int) -> tuple[Any, Any, ToImage]:
    train = I.CelebAInpaint(root, "train", s["size"], s["hole"], seed=seed)
    val = I.CelebAInpaint(root, "val", s["size"], s["hole"], mean_pixel=train.mean_pixel.flatten().tolist(),
                          flip=False, seed=seed)

    def to_image(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, :3].cpu(), y.cpu()
    return train, val, to_image


PIX2PIX = ImageFamily(
    "pix2pix", _nets(Pix2PixGenerator, PatchDiscriminator, Pix2PixPredictor),
    lambda root, s, seed: _pix2pix_data(root, s, seed, s["dataset"]),
    sizes={"full": dict(g=dict(image_size=256, n_down=8, ngf=64, noise_channels=32), d=dict(ndf=64), size=256),
           "smoke": dict(g=dict(image_size=32, n_down=5, ngf=8, noise_channels=8), d=dict(ndf=8), size=32),
           "bench": dict(g=dict(image_size=64, n_down=6, ngf=32, noise_channels=32), d=dict(ndf=32), size=64)},
    smoke_steps=8)
SRGAN = ImageFamily(
    "srgan", _nets(SRGANGenerator, SRGANDiscriminator, SRGANPredictor), _srgan_data,
    sizes={"full": dict(g=dict(lr_size=16, width=64, n_blocks=16, noise_channels=16), d=dict(width=64), size=64),
           "smoke": dict(g=dict(lr_size=8, width=16, n_blocks=2, noise_channels=4), d=dict(width=8), size=32),
           "bench": dict(g=dict(lr_size=16, width=32, n_blocks=4, noise_channels=16), d=dict(width=16), size=64)},
    smoke_steps=3)
GLCIC = ImageFamily(
    "glcic", _nets(GLCICGenerator, GLCICDiscriminator, GLCICPredictor, mr2_full_output=True), _glcic_data,
    sizes={"full": dict(g=dict(image_size=128, width=64, noise_channels=32), d=dict(image_size=128, width=64),
                        size=128, hole=(48, 64)),
           "smoke": dict(g=dict(image_size=32, width=8, noise_channels=8), d=dict(image_size=32, width=8),
                         size=32, hole=(12, 16)),
           "bench": dict(g=dict(image_size=64, width=16, noise_channels=32), d=dict(image_size=64, width=16),
                         size=64, hole=(24, 32))},
    smoke_steps=6, mask_channel=3)

def _colour_data(root: Path, s: dict[str, Any], seed: int) -> tuple[Any, Any, ToImage]:
    task = ColourTask(size=s["size"])  # generated on the fly: no folder (root is not read)

    def to_image(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ((x.cpu() + 1) / 2).expand(-1, 3, -1, -1), (y.cpu() + 1) / 2  # the mask in grey, y in [0, 1]
    return ColourDataset(task, "train"), ColourDataset(task, "val"), to_image


def _colour_metrics(G: nn.Module, s: dict[str, Any], seed: int) -> dict[str, Any]:
    """The exact metrics on every test shape, 12 samples each (:mod:`minilib.metrics.colours`)."""
    task = ColourTask(size=s["size"])
    r = score_colour_generator(G, task.shapes("test"), task, n_samples=12, seed=seed)
    return {**{k: v for k, v in r.items() if not k.startswith("per_input")}, "split": "test"}


# the CPU recipe: one size for every profile (smoke = fewer rounds); noise of 8 channels enters only at the 1x1
# bottleneck (a global code, as the colour is a global choice); D's receptive field (34 px) covers the image
_COLOUR_SIZES = dict(g=dict(in_channels=1, out_channels=3, image_size=32, n_down=5, ngf=8, noise_channels=8, noise_levels=1),
                     d=dict(in_channels=1, out_channels=3, ndf=16, n_layers=2), size=32)
COLOURS = ImageFamily(
    "colours", _nets(Pix2PixGenerator, PatchDiscriminator, Pix2PixPredictor), _colour_data,
    sizes={"full": _COLOUR_SIZES, "smoke": _COLOUR_SIZES, "bench": _COLOUR_SIZES}, smoke_steps=20,
    full_steps=400, predictor_steps=300, predictor_val_every=50, procedural=True, exact_metrics=_colour_metrics,
    diversity_metric="pixel", cpu_threads=1)

TASKS: dict[str, TaskSpec] = {
    "pix2pix-cityscapes": TaskSpec("pix2pix-cityscapes", PIX2PIX, "cityscapes", 16, 8, 10, 1, 1, "l1", 100.0, 10.0, 10.0,
                                   "Cityscapes label colours -> photo, 256x256 (App. B.2)", make_cityscapes),
    "pix2pix-maps": TaskSpec("pix2pix-maps", PIX2PIX, "maps", 16, 8, 10, 1, 1, "l1", 100.0, 10.0, 10.0,
                             "Maps: map -> aerial photo, 256x256 (App. B.2)", make_maps),
    "srgan-celeba": TaskSpec("srgan-celeba", SRGAN, "celeba", 32, 8, 24, 1, 5, "l2", 1000.0, 20.0, 2400.0,
                             "CelebA super-resolution 16x16 -> 64x64 (App. B.3)", make_celeba),
    # the paper found no working MR weight for GLCIC; 100 (the baseline's l2 weight) is our choice
    "glcic-celeba": TaskSpec("glcic-celeba", GLCIC, "celeba", 16, 8, 12, 1, 3, "l2", 100.0, 100.0, 1000.0,
                             "CelebA inpainting of a 48-64 px hole, 128x128 (App. B.4)", make_celeba),
    # not a paper's task: a known answer on a CPU. Adam 1e-3 (G and D), no weight decay / AMSGrad / clipping, lr
    # decay from half-way; pMR2 trains 100 rounds without the GAN first, and MR2 is the repaired one (the data's
    # pixel-noise variance added, K - 3 precision, MR1 for 100 rounds): notebook 07b says why each is needed
    "pix2pix-colours": TaskSpec(
        "pix2pix-colours", COLOURS, "colours", 16, 4, 8, 1, 1, "l1", 100.0, 0.3, 10.0,
        "digit shape -> the shape in one of 3 colours, 32x32: exact p(y|x), CPU (notebook 07b)",
        train_settings=dict(lr_g=1e-3, lr_d=1e-3, betas=(0.5, 0.999), weight_decay=0.0, amsgrad=False, clip_value=None,
                            lr_decay_from=0.5),
        preset_objective={"l1": dict(rec_weight=1.0), "gan+mr1": dict(moment_weight=10.0),
                          "gan+mr2": dict(noise_variance=ColourTask().noise_std ** 2, unbiased_precision=True,
                                          moment_warmup=100)},
        preset_train={"gan+pmr2": dict(gan_start=100)}),
}
"""Every image task by name; ``python -m minilib train --task``, ``evaluate`` and ``bench image`` read it."""


def get_task(task: str | TaskSpec) -> TaskSpec:
    """The :class:`TaskSpec` called ``task`` (a spec is returned as is)."""
    if isinstance(task, TaskSpec):
        return task
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)} or a TaskSpec, got {task!r}")
    return TASKS[task]


def choose_profile(data: str | Path | None = None, device: str | None = None,
                   spec: TaskSpec | None = None) -> tuple[str, str]:
    """``(profile, reason)``: ``$MINILIB_PROFILE`` if set, else ``"full"`` for a procedural task (``spec``) or when
    the device is CUDA and the data folder exists, else ``"smoke"`` (notebooks 08-10 print
    the reason)."""
    env = os.environ.get("MINILIB_PROFILE")
    if env:
        if env not in ("smoke", "full"):
            raise ValueError(f"MINILIB_PROFILE must be 'smoke' or 'full', got {env!r}")
        return env, f"MINILIB_PROFILE={env}"
    if spec is not None and spec.family.procedural:
        return "full", "generated data: the full profile runs on a CPU"
    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if not cuda:
        return "smoke", "no CUDA device: tiny networks on fixture-sized images"
    if data is None or not Path(data).is_dir():
        return "smoke", f"dataset folder {data} not found (see data/README.md)"
    return "full", "CUDA device and dataset found"


def task_objective(spec: TaskSpec, name: str, **overrides: Any) -> Objective:
    """The preset ``name`` with the task's K and Appendix B weights: reconstruction weight for the
    baseline (ℓ1 100 / ℓ2 1000 / ℓ2 100), λ_MR or λ_pMR for the moment terms, then the task's settings for this
    preset (``spec.preset_objective``); ``overrides`` last."""
    obj = get_objective(name)
    changes: dict[str, Any] = {"k": spec.k, "name": f"{spec.name}:{name}"}
    if obj.rec is not None:
        changes["rec_weight"] = spec.rec_weight
    if obj.moment == "mr":
        changes["moment_weight"] = spec.mr_weight
    elif obj.moment == "pmr":
        changes["moment_weight"] = spec.pmr_weight
    changes.update(spec.preset_objective.get(name, {}))
    changes.update(overrides)
    return obj.replace(**changes)


@dataclass
class Built:
    """Everything :func:`build` makes for one run."""

    G: nn.Module
    D: nn.Module
    P: nn.Module
    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    config: TrainConfig
    to_image: Any  # (x, y-like) -> images in [0, 1] for grids



def build(spec: TaskSpec, root: str | Path, profile: str = "smoke", device: str = "cpu", seed: int = 0,
          objective: Objective | None = None, **config_overrides: Any) -> Built:
    """Networks (seeded), train / val datasets from ``root`` and the task's TrainConfig for a profile.

    ``objective`` lets the family adapt its networks to it (GLCIC with MR2: see :func:`_nets`); a preset's
    schedule (``spec.preset_train``, found by the preset name that :func:`task_objective` gives it) applies to
    the config, and ``config_overrides`` last."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"spec must be a TaskSpec (e.g. TASKS['srgan-celeba']), got {type(spec).__name__}")
    s = {**spec.family.sizes[profile], "dataset": spec.dataset}
    torch.manual_seed(seed)
    G, D, P = spec.family.networks(s, objective)
    train, val, to_image = spec.family.datasets(Path(root), s, seed)
    batches = dict(batch_size=spec.batch_size, g_batch_size=spec.g_batch_size) if profile == "full" else _SMOKE_BATCH
    preset = spec.preset_train.get(objective.name.split(":")[-1], {}) if objective is not None else {}
    config = TrainConfig(**{**batches, "d_steps": spec.d_steps, "g_steps": spec.g_steps, "seed": seed, "device": device,
                            "log_every": 10 if profile == "full" else 1, **spec.train_settings, **preset,
                            **config_overrides})
    return Built(G, D, P, train, val, config, to_image)


def sample_grid(G: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, to_image: Any,
                P: nn.Module | None = None, n_samples: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """A figure like the MR-GAN paper's: one row per input, columns ``input | ground truth |
    predicted mean | predicted dispersion | sample mean | sample variance | n_samples samples``
    (predictor columns only with P). Variances are scaled by the grid's maximum and shown in grey.
    x ``[B, ...]``, y ``[B, C, H, W]`` -> image ``[3, H_grid, W_grid]`` in [0, 1]."""
    from torchvision.utils import make_grid

    was = G.training
    G.eval()
    with torch.no_grad():
        samples, _ = sample_k(G, x, max(k, n_samples, 2), generator)  # [B, K, C, H, W]
        xi, yi = to_image(x, y)
        img = lambda t: to_image(x, t)[1]  # noqa: E731 - y-space -> [0, 1]
        cols = [xi, yi]
        var_cols = [samples.float().var(1).cpu()]
        if P is not None:
            center, log_d = P(x)
            cols += [img(center), None]
            var_cols.insert(0, log_d.float().exp().cpu())
        cols += [img(samples.mean(1)), None] + [img(samples[:, j]) for j in range(n_samples)]
    G.train(was)
    vmax = max(float(v.max()) for v in var_cols) or 1.0
    greys = iter([(v.mean(1, keepdim=True) / vmax).clamp(0, 1).expand(-1, 3, -1, -1) for v in var_cols])
    cols = [c if c is not None else next(greys) for c in cols]
    tiles = torch.stack(cols, dim=1).flatten(0, 1)  # [B * n_cols, 3, H, W], row-major
    return make_grid(tiles, nrow=len(cols), padding=2, pad_value=1.0)
