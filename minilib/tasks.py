"""The papers' image experiments as presets, and the ``train`` / ``bench image`` commands.

A :class:`TaskSpec` is one row of MR-GAN Appendix B: networks, dataset, batch sizes (D and P, G),
samples per input K, loss weights and the D:G update ratio. :func:`build` turns a spec, a profile
and a data folder into networks, datasets and a :class:`~minilib.train.TrainConfig`:

* ``profile="full"``: the paper's sizes (GPU, real data).
* ``profile="smoke"``: tiny widths at reduced resolution with small batches, so a CPU run of a few
  steps exercises exactly the same code (tests, CI, notebooks 08-10 without a GPU).
* ``profile="bench"``: moderate widths at reduced resolution, small batches (``bench image`` timings).

``python -m minilib train --help`` explains the command line; ``train_main`` implements it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import data as D_
from .distributed import barrier, cleanup, init_from_env
from .fixtures import make_celeba, make_cityscapes, make_maps
from .nets import (GLCICDiscriminator, GLCICGenerator, GLCICPredictor, PatchDiscriminator, Pix2PixGenerator,
                   Pix2PixPredictor, SRGANDiscriminator, SRGANGenerator, SRGANPredictor)
from .objectives import Objective, get_objective, preset_names
from .train import TrainConfig, Trainer, TrainingDiverged, atomic_save, fit_predictor, load_checkpoint, sample_k

__all__ = ["TaskSpec", "TASKS", "PROFILES", "Built", "choose_profile", "task_objective", "build", "sample_grid", "train_main", "bench_main"]

PROFILES = ("smoke", "bench", "full")


@dataclass(frozen=True)
class TaskSpec:
    """One experiment of MR-GAN Appendix B (B.2 Pix2Pix, B.3 SRGAN, B.4 GLCIC).

    ``batch_size`` is the D and predictor batch, ``g_batch_size`` the G batch (times ``k`` samples);
    ``d_steps`` : ``g_steps`` is the update ratio; ``rec`` / ``rec_weight`` the baseline's
    reconstruction loss; ``mr_weight`` / ``pmr_weight`` are λ for MR and proxy MR.
    """

    name: str
    kind: str
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

    @property
    def baseline(self) -> str:
        """The paper's baseline objective for this task (``"gan+l1"`` or ``"gan+l2"``)."""
        return f"gan+{self.rec}"


TASKS: dict[str, TaskSpec] = {
    "pix2pix-cityscapes": TaskSpec("pix2pix-cityscapes", "pix2pix", "cityscapes", 16, 8, 10, 1, 1, "l1", 100.0, 10.0, 10.0,
                                   "Cityscapes label colours -> photo, 256x256 (App. B.2)"),
    "pix2pix-maps": TaskSpec("pix2pix-maps", "pix2pix", "maps", 16, 8, 10, 1, 1, "l1", 100.0, 10.0, 10.0,
                             "Maps: map -> aerial photo, 256x256 (App. B.2)"),
    "srgan-celeba": TaskSpec("srgan-celeba", "srgan", "celeba", 32, 8, 24, 1, 5, "l2", 1000.0, 20.0, 2400.0,
                             "CelebA super-resolution 16x16 -> 64x64 (App. B.3)"),
    # the paper found no working MR weight for GLCIC; 100 (the baseline's l2 weight) is our choice
    "glcic-celeba": TaskSpec("glcic-celeba", "glcic", "celeba", 16, 8, 12, 1, 3, "l2", 100.0, 100.0, 1000.0,
                             "CelebA inpainting of a 48-64 px hole, 128x128 (App. B.4)"),
}

# network / data sizes per (kind, profile); "full" is the paper's
_SIZES: dict[tuple[str, str], dict[str, Any]] = {
    ("pix2pix", "full"): dict(g=dict(image_size=256, n_down=8, ngf=64, noise_channels=32), d=dict(ndf=64), size=256),
    ("pix2pix", "smoke"): dict(g=dict(image_size=32, n_down=5, ngf=8, noise_channels=8), d=dict(ndf=8), size=32),
    ("pix2pix", "bench"): dict(g=dict(image_size=64, n_down=6, ngf=32, noise_channels=32), d=dict(ndf=32), size=64),
    ("srgan", "bench"): dict(g=dict(lr_size=16, width=32, n_blocks=4, noise_channels=16), d=dict(width=16), size=64),
    ("glcic", "bench"): dict(g=dict(image_size=64, width=16, noise_channels=32), d=dict(image_size=64, width=16),
                             size=64, hole=(24, 32)),
    ("srgan", "full"): dict(g=dict(lr_size=16, width=64, n_blocks=16, noise_channels=16), d=dict(width=64), size=64),
    ("srgan", "smoke"): dict(g=dict(lr_size=8, width=16, n_blocks=2, noise_channels=4), d=dict(width=8), size=32),
    ("glcic", "full"): dict(g=dict(image_size=128, width=64, noise_channels=32), d=dict(image_size=128, width=64),
                            size=128, hole=(48, 64)),
    ("glcic", "smoke"): dict(g=dict(image_size=32, width=8, noise_channels=8), d=dict(image_size=32, width=8),
                             size=32, hole=(12, 16)),
}
_SMOKE_BATCH = dict(batch_size=4, g_batch_size=2)


def choose_profile(data: str | Path | None = None, device: str | None = None) -> tuple[str, str]:
    """``(profile, reason)``: ``$MINILIB_PROFILE`` if set, else ``"full"`` when the device is CUDA and the
    data folder exists, else ``"smoke"`` (DESIGN.md section 5; notebooks 08-10 print the reason)."""
    env = os.environ.get("MINILIB_PROFILE")
    if env:
        if env not in ("smoke", "full"):
            raise ValueError(f"MINILIB_PROFILE must be 'smoke' or 'full', got {env!r}")
        return env, f"MINILIB_PROFILE={env}"
    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if not cuda:
        return "smoke", "no CUDA device: tiny networks on fixture-sized images"
    if data is None or not Path(data).is_dir():
        return "smoke", f"dataset folder {data} not found (see data/README.md)"
    return "full", "CUDA device and dataset found"


def task_objective(spec: TaskSpec, name: str, **overrides: Any) -> Objective:
    """The preset ``name`` with the task's K and Appendix B weights: reconstruction weight for the
    baseline (ℓ1 100 / ℓ2 1000 / ℓ2 100), λ_MR or λ_pMR for the moment terms; ``overrides`` last."""
    obj = get_objective(name)
    changes: dict[str, Any] = {"k": spec.k, "name": f"{spec.name}:{name}"}
    if obj.rec is not None:
        changes["rec_weight"] = spec.rec_weight
    if obj.moment == "mr":
        changes["moment_weight"] = spec.mr_weight
    elif obj.moment == "pmr":
        changes["moment_weight"] = spec.pmr_weight
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


def _networks(kind: str, s: dict[str, Any], g_overrides: dict[str, Any]) -> tuple[nn.Module, nn.Module, nn.Module]:
    g = s["g"]
    p = {k: v for k, v in g.items() if k != "noise_channels"}  # the predictor: same network, no noise
    G, D, P = {"pix2pix": (Pix2PixGenerator, PatchDiscriminator, Pix2PixPredictor),
               "srgan": (SRGANGenerator, SRGANDiscriminator, SRGANPredictor),
               "glcic": (GLCICGenerator, GLCICDiscriminator, GLCICPredictor)}[kind]
    return G(**g, **g_overrides), D(**s["d"]), P(**p)


def build(spec: TaskSpec, root: str | Path, profile: str = "smoke", device: str = "cpu", seed: int = 0,
          objective: Objective | None = None, **config_overrides: Any) -> Built:
    """Networks (seeded), train / val datasets from ``root`` and the task's TrainConfig for a profile.

    ``objective`` only matters for GLCIC with MR2: its generator then outputs the full image instead of
    pasting into the hole, since MR2's NLL is undefined where the sample variance is 0."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"spec must be a TaskSpec (e.g. TASKS['srgan-celeba']), got {type(spec).__name__}")
    s = _SIZES[(spec.kind, profile)]
    mr2 = objective is not None and objective.moment == "mr" and objective.moment_order == 2
    torch.manual_seed(seed)
    G, D, P = _networks(spec.kind, s, {"paste": False} if (spec.kind == "glcic" and mr2) else {})
    if spec.kind == "pix2pix":
        train = D_.PairedImages(root, "train", spec.dataset, s["size"], seed=seed)
        val = D_.PairedImages(root, "val", spec.dataset, s["size"], flip=False,
                              stats=(train.mean.flatten().tolist(), train.std.flatten().tolist()), seed=seed)
        mean, std = train.mean, train.std

        def to_image(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return (x.cpu() * std + mean).clamp(0, 1), (y.cpu() + 1) / 2
    elif spec.kind == "srgan":
        train = D_.CelebASR(root, "train", s["size"], seed=seed)
        val = D_.CelebASR(root, "val", s["size"], flip=False, seed=seed)

        def to_image(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return (F.interpolate(x.cpu(), size=y.shape[-2:], mode="nearest") + 1) / 2, (y.cpu() + 1) / 2
    else:
        train = D_.CelebAInpaint(root, "train", s["size"], s["hole"], seed=seed)
        val = D_.CelebAInpaint(root, "val", s["size"], s["hole"], mean_pixel=train.mean_pixel.flatten().tolist(),
                               flip=False, seed=seed)

        def to_image(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x[:, :3].cpu(), y.cpu()
    batches = dict(batch_size=spec.batch_size, g_batch_size=spec.g_batch_size) if profile == "full" else _SMOKE_BATCH
    config = TrainConfig(**{**batches, "d_steps": spec.d_steps, "g_steps": spec.g_steps, "seed": seed, "device": device,
                            "log_every": 10 if profile == "full" else 1, **config_overrides})
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


# ------------------------------------------------------------------------------------------- train
_EPILOG = """examples:
  # a 1-minute CPU try-out on generated fixture images (no download needed):
  python -m minilib train --task srgan-celeba --objective gan+pmr2 --out runs/try --profile smoke
  # the paper's Pix2Pix run on a GPU, after `python -m minilib prepare cityscapes --src ... --dst data/cityscapes`:
  python -m minilib train --task pix2pix-cityscapes --objective gan+pmr2 --data data/cityscapes --out runs/p2p-pmr2
  # continue it after an interruption (same command plus --resume):
  python -m minilib train --task pix2pix-cityscapes --objective gan+pmr2 --data data/cityscapes --out runs/p2p-pmr2 --resume
  # several GPUs: torchrun --nproc_per_node 4 -m minilib train ...

objectives: baseline = gan+l1 (Pix2Pix) or gan+l2 (SRGAN, GLCIC); MR = gan+mr1 / gan+mr2; proxy MR = gan+pmr1 /
gan+pmr2 (a predictor is trained first, to its lowest validation loss); add "-laplace" for the Laplace variants.
Weights and K come from the task (MR-GAN Appendix B). The output folder gets: checkpoint.pt (resumable), predictor.pt (proxy MR), history.json,
run.json (settings) and samples/step_NNNNNN.png (rows: input | truth | predicted mean | predicted dispersion |
sample mean | sample variance | samples). Datasets: see data/README.md."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minilib train", epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Train a conditional GAN of the MR-GAN paper on images.\n\ntasks:\n"
                                            + "\n".join(f"  {n:<20}{t.about}" for n, t in TASKS.items()))
    p.add_argument("--task", required=True, choices=list(TASKS), help="which experiment")
    p.add_argument("--objective", default="gan+pmr2", choices=preset_names(), metavar="NAME",
                   help="loss preset (default gan+pmr2); see minilib.objectives.preset_names()")
    p.add_argument("--data", default=None, help="dataset folder (layout: data/README.md). Optional with --profile "
                   "smoke: tiny fixture images are generated in OUT/fixture")
    p.add_argument("--out", required=True, help="run folder for checkpoints, samples and history")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--profile", choices=("smoke", "full"), default=None,
                   help="full = the paper's networks and batches (GPU); smoke = tiny networks at low resolution "
                        "(CPU, seconds). Default: $MINILIB_PROFILE, else full with CUDA and --data, else smoke")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--steps", type=int, default=None, help="total training rounds (one round = the task's D and G "
                   "updates); default 100000 full, 4 smoke")
    p.add_argument("--predictor-steps", type=int, default=None, help="max predictor steps for proxy MR "
                   "(default 20000 full, 4 smoke; early stop on validation loss)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="rounds between checkpoints (default 500 full, 1 smoke)")
    p.add_argument("--sample-every", type=int, default=None, help="rounds between sample grids (default 1000; smoke: at the end)")
    p.add_argument("--k", type=int, default=None, help="override the task's samples per input K")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)


def _fixture(spec: TaskSpec, out: Path) -> Path:
    root = out / "fixture" / spec.dataset
    if not root.exists():
        {"cityscapes": make_cityscapes, "maps": make_maps, "celeba": make_celeba}[spec.dataset](root)
    return root


def train_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib train ...``: build the task, fit the predictor for proxy MR, train, checkpoint,
    write sample grids and history; ``--resume`` continues exactly. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parser().parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    info = init_from_env(device)
    say = (lambda *m: print(*m, flush=True)) if info.is_main else (lambda *m: None)
    profile = a.profile
    if profile is None:
        profile, why = choose_profile(a.data if a.data else None, info.device)
        say(f"profile: {profile} ({why})")
    spec, out = TASKS[a.task], Path(a.out)
    full = profile == "full"
    steps = a.steps if a.steps is not None else (100_000 if full else 4)
    ckpt = out / "checkpoint.pt"
    if ckpt.exists() and not a.resume:
        say(f"error: {out} already holds a run; pass --resume to continue it or choose another --out")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if a.data is None:
        if full:
            say(f"error: --data is required with --profile full (the {spec.dataset} folder; see data/README.md)")
            return 2
        if info.is_main:
            _fixture(spec, out)
        barrier()
    root = Path(a.data) if a.data else out / "fixture" / spec.dataset
    objective = task_objective(spec, a.objective, **({"k": a.k} if a.k else {}))
    try:
        b = build(spec, root, profile, info.device, a.seed, objective, progress=not a.no_progress)
    except D_.DataError as e:
        say(f"error: {e}")
        return 2
    stream = D_.DatasetStream(b.train, a.seed, rank=info.rank, world_size=info.world_size, workers=4 if full else 0)
    if info.is_main:
        _write_json(out / "run.json", {"argv": argv, "data": str(root), "task": asdict(spec), "profile": profile,
                                       "objective": asdict(objective), "config": asdict(b.config), "steps": steps})
    P = None
    if objective.needs_predictor:
        P, ppath = b.P, out / "predictor.pt"
        if not ppath.exists():  # every rank fits (no long barrier under DDP); rank 0's weights are used
            say(f"training the predictor ({objective.moment_dist} MLE) to its lowest validation loss ...")
            res = fit_predictor(P, D_.DatasetStream(b.train, a.seed + 1), D_.DatasetStream(b.val, a.seed + 2, shuffle=False),
                                dist=objective.moment_dist, steps=a.predictor_steps or (20_000 if full else 4),
                                batch_size=b.config.batch_size, val_every=500 if full else 2, config=b.config,
                                progress=not a.no_progress)
            if info.is_main:
                atomic_save({"P": P.state_dict(), "best_val": res["best_val"], "best_step": res["best_step"]}, ppath)
            say(f"predictor: best validation NLL {res['best_val']:.4f} at step {res['best_step']}")
        barrier()
        P.load_state_dict(load_checkpoint(ppath, info.device)["P"])
    trainer = Trainer(b.G, b.D if objective.uses_discriminator else None, objective, b.config, P=P)
    if a.resume and ckpt.exists():
        trainer.load(ckpt, stream)
        say(f"resumed from {ckpt} at step {trainer.step}")
    (out / "samples").mkdir(exist_ok=True)
    vx, vy = D_.DatasetStream(b.val, a.seed + 3, shuffle=False).next(min(4, len(b.val)))
    vx = vx.to(trainer.device)

    def snapshot(t: Trainer) -> None:
        if not info.is_main:
            return
        from torchvision.utils import save_image

        grid = sample_grid(t.G_core, vx, vy, objective.k, b.to_image, t.P,
                           generator=torch.Generator(t.device).manual_seed(a.seed))
        save_image(grid, out / "samples" / f"step_{t.step:06d}.png")
        _write_json(out / "history.json", t.history)

    every = a.sample_every or (1000 if full else steps)
    try:
        trainer.fit(stream, steps, callback=snapshot, callback_every=every, checkpoint=ckpt,
                    checkpoint_every=a.checkpoint_every or (500 if full else 1))
    except TrainingDiverged as e:
        say(f"error: {e}\nlast good checkpoint: {ckpt if ckpt.exists() else 'none yet'}")
        return 1
    finally:
        cleanup()
    if info.is_main:
        _write_json(out / "history.json", trainer.history)
        if trainer.step % every:
            snapshot(trainer)
    say(f"done: {trainer.step} rounds of {objective.describe()}; outputs in {out}")
    return 0


# ------------------------------------------------------------------------------------------- bench
def bench_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib bench image``: time of one MR / proxy-MR generator step (B inputs x K samples)
    relative to the baseline step on B*K inputs (the same number of generated images), per task at
    reduced resolution; also generated images per second. The three steps are timed round-robin and
    the minimum over repeats is kept (robust to other processes sharing the CPU)."""
    p = argparse.ArgumentParser(prog="python -m minilib bench image", description=bench_main.__doc__)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--profile", choices=PROFILES, default="bench", help="network sizes (default: bench)")
    p.add_argument("--batch", type=int, default=2, help="inputs per MR step (B); the baseline gets B*K")
    p.add_argument("--repeats", type=int, default=10, help="timed steps per objective (min is kept)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    torch.set_num_threads(a.threads)
    import tempfile

    rows: list[dict[str, Any]] = []
    print(f"{'task':<20}{'objective':<11}{'B x K':>8}{'ms/step':>10}{'vs base':>9}{'img/s':>9}")
    with tempfile.TemporaryDirectory(prefix="minilib-bench-") as tmp:
        for name in a.tasks:
            spec = TASKS[name]
            root = _fixture(spec, Path(tmp))
            runs = []
            for obj_name in (spec.baseline, "gan+mr2", "gan+pmr2"):
                obj = task_objective(spec, obj_name)
                b = build(spec, root, a.profile, a.device, 0, obj, progress=False)
                bsz = a.batch if obj.moment else a.batch * spec.k
                obj = obj if obj.moment else obj.replace(k=1)
                x, y = D_.DatasetStream(b.train, 0).next(bsz)
                tr = Trainer(b.G, b.D, obj, b.config, P=b.P.eval() if obj.needs_predictor else None)
                tr.generator_step(x, y)  # warm-up
                runs.append((obj_name, obj, bsz, tr, x, y, []))
            for _ in range(a.repeats):
                for *_, tr, x, y, times in runs:
                    t0 = time.perf_counter()
                    tr.generator_step(x, y)
                    if tr.cuda:
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
            base = min(runs[0][-1])
            for obj_name, obj, bsz, *_, times in runs:
                sec = min(times)
                row = dict(task=name, objective=obj_name, batch=bsz, k=obj.k, ms=sec * 1e3, ratio=sec / base,
                           images_per_s=bsz * obj.k / sec)
                rows.append(row)
                print(f"{name:<20}{obj_name:<11}{f'{bsz}x{obj.k}':>8}{row['ms']:>10.1f}{row['ratio']:>9.3f}"
                      f"{row['images_per_s']:>9.1f}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0
