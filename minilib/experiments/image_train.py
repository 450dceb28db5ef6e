"""``python -m minilib train``: train an image task of :mod:`minilib.experiments.image_tasks` into a run folder
(:mod:`minilib.experiments.runs`): fit the predictor for proxy MR, train with checkpoints, sample grids and
history; ``--resume`` continues exactly where a run stopped. ``python -m minilib train --help`` explains it."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from ..checkpoints import load_checkpoint
from ..data.images import DatasetStream
from ..errors import (CheckpointError, ConfigError, DataError, debug_enabled, device_arg, nonnegative_int,
                      output_folder, positive_int)
from ..objectives import Objective, objective_record, preset_names
from ..predictor import fit_predictor
from ..train import Trainer, TrainingDiverged
from .distributed import barrier, cleanup, init_from_env
from .image_tasks import TASKS, TaskSpec, build, choose_profile, sample_grid, task_objective
from .runs import RunFolder

__all__ = ["train_main"]


def _fixture(spec: TaskSpec, run: RunFolder) -> Path:
    """The run's own tiny dataset in the real layout (smoke runs without ``--data``), generated once: into a
    temporary folder renamed into place when complete, so a kill mid-way leaves no half dataset behind."""
    root = run.fixture(spec.dataset)
    if not root.exists():
        if spec.fixture is None:
            raise ConfigError(f"--data: task {spec.name!r} has no fixture to generate; pass its dataset folder")
        tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        spec.fixture(tmp)
        os.replace(tmp, root)
    return root


def _check_resume(a: argparse.Namespace, run: RunFolder, spec: TaskSpec, profile: str, objective: Objective) -> None:
    """Refuse (before anything is written) to continue a run with other settings, naming the flag that differs.

    The checkpoint is the authority on the objective and seed; ``run.json`` on the task and profile."""
    out = run.path
    meta = run.settings() if run.settings_file.is_file() else None
    ck = load_checkpoint(run.checkpoint, "cpu", mmap=True) if run.checkpoint.is_file() else {}

    def refuse(flag: str, was: object, now: object) -> None:
        raise ConfigError(f"{flag}: the run in {out} was trained with {was}, not {now}; resume it with the same "
                          f"{flag}, or train into another --out")

    if meta is not None and meta["task"].get("name") != spec.name:
        refuse("--task", meta["task"].get("name"), spec.name)
    if meta is not None and meta.get("profile") != profile:
        refuse("--profile", meta.get("profile"), profile)
    trained = ck.get("objective") or (meta or {}).get("objective")
    trained = None if trained is None else objective_record(trained)
    if trained is not None and trained != asdict(objective):
        if trained.get("name") != objective.name:
            refuse("--objective", str(trained.get("name")).split(":")[-1], objective.name.split(":")[-1])
        if trained.get("k") != objective.k:
            refuse("--k", f"K = {trained.get('k')}", f"K = {objective.k}")
        raise ConfigError(f"--objective: the run in {out} was trained with {trained}, not {asdict(objective)}")
    seed = ck.get("stream", {}).get("seed", (meta or {}).get("config", {}).get("seed"))
    if seed is not None and seed != a.seed:
        refuse("--seed", seed, a.seed)


# ------------------------------------------------------------------------------------------- train
_EPILOG = """examples:
  # the exact-truth colour task: a CPU run of its full recipe (about half a minute; notebook 07b), then its metrics:
  python -m minilib train --task pix2pix-colours --objective gan+pmr2 --out runs/colours-pmr2
  python -m minilib evaluate --run runs/colours-pmr2
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
                   "smoke: tiny fixture images are generated in OUT/fixture; not used by pix2pix-colours (generated)")
    p.add_argument("--out", required=True, type=output_folder,
                   help="run folder for checkpoints, samples and history (created if needed)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--profile", choices=("smoke", "full"), default=None,
                   help="full = the paper's networks and batches (GPU); smoke = tiny networks at low resolution "
                        "(CPU, seconds). Default: $MINILIB_PROFILE, else full with CUDA and --data (pix2pix-colours: always), "
                        "else smoke")
    p.add_argument("--device", type=device_arg, default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--steps", type=positive_int, default=None, help="total training rounds (one round = the task's D "
                   "and G updates); default 100000 full (pix2pix-colours: 400), 4 smoke")
    p.add_argument("--predictor-steps", type=positive_int, default=None, help="max predictor steps for proxy MR "
                   "(default 20000 full (pix2pix-colours: 300), 4 smoke; early stop on validation loss)")
    p.add_argument("--checkpoint-every", type=positive_int, default=None,
                   help="rounds between checkpoints (default 500 full, 1 smoke)")
    p.add_argument("--sample-every", type=positive_int, default=None,
                   help="rounds between sample grids (default 1000; smoke: at the end)")
    p.add_argument("--k", type=positive_int, default=None, help="override the task's samples per input K")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice; pix2pix-colours on a CPU: 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def train_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib train ...``: build the task, fit the predictor for proxy MR, train, checkpoint,
    write sample grids and history; ``--resume`` continues exactly. Returns the exit status.

    Every flag, the data and (with ``--resume``) the run's compatibility are checked before anything is written:
    a refused run leaves the folder as it was. Errors the user can fix raise a
    :class:`~minilib.errors.MinilibError` (``python -m minilib`` prints it and exits 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parser().parse_args(argv)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = a.threads or (TASKS[a.task].family.cpu_threads if device == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    info = init_from_env(device)
    say = (lambda *m: print(*m, flush=True)) if info.is_main else (lambda *m: None)
    spec, out = TASKS[a.task], Path(a.out)
    family, profile = spec.family, a.profile
    if profile is None:
        profile, why = choose_profile(a.data if a.data else None, info.device, spec)
        say(f"profile: {profile} ({why})")
    run = RunFolder(out)
    full = profile == "full"
    steps = a.steps if a.steps is not None else (family.full_steps if full else 4)
    ckpt = run.checkpoint
    if ckpt.exists() and not a.resume:
        say(f"error: {out} already holds a run; pass --resume to continue it or choose another --out")
        return 2
    if a.data is None and full and not family.procedural:
        say(f"error: --data is required with --profile full (the {spec.dataset} folder; see data/README.md)")
        return 2
    try:
        objective = task_objective(spec, a.objective, **({"k": a.k} if a.k is not None else {}))
    except ValueError as e:
        raise ConfigError(f"--k {a.k}: {e}" if a.k is not None else f"--objective {a.objective}: {e}") from e
    if a.resume:
        _check_resume(a, run, spec, profile, objective)
    if objective.needs_predictor and run.predictor.exists():
        run.load_predictor(objective, "cpu")  # refuses a predictor fitted for another distribution
    # validated: from here on the run folder changes
    out.mkdir(parents=True, exist_ok=True)
    if info.is_main:
        for p in run.remove_leftovers():
            say(f"removed {p.name} (left by an interrupted run)")
    if a.data is None and not family.procedural:
        if info.is_main:
            _fixture(spec, run)
        barrier()
    root = Path(a.data) if a.data else run.fixture(spec.dataset)
    try:
        b = build(spec, root, profile, info.device, a.seed, objective, progress=not a.no_progress)
        vx, vy = DatasetStream(b.val, a.seed + 3, shuffle=False).next(min(4, len(b.val)))
    except DataError as e:
        if debug_enabled():
            raise
        hint = f" (delete {root} to generate the fixture again)" if a.data is None else ""
        say(f"error: {e}{hint}")
        return 2
    stream = DatasetStream(b.train, a.seed, rank=info.rank, world_size=info.world_size,
                           workers=4 if full and not family.procedural else 0)
    if info.is_main:
        run.write_settings(argv=argv, data=Path(a.data) if a.data else None, spec=spec, profile=profile,
                           objective=objective, config=b.config, steps=steps)
    P = None
    if objective.needs_predictor:
        P, ppath = b.P, run.predictor
        if not ppath.exists():  # every rank fits (no long barrier under DDP); rank 0's weights are used
            say(f"training the predictor ({objective.moment_dist} MLE) to its lowest validation loss ...")
            res = fit_predictor(P, DatasetStream(b.train, a.seed + 1), DatasetStream(b.val, a.seed + 2, shuffle=False),
                                dist=objective.moment_dist, steps=a.predictor_steps or (family.predictor_steps if full else 4),
                                batch_size=b.config.batch_size, val_every=family.predictor_val_every if full else 2, config=b.config,
                                progress=not a.no_progress)
            if info.is_main:
                run.save_predictor(P, objective, res)
            say(f"predictor: best validation NLL {res['best_val']:.4f} at step {res['best_step']}")
        barrier()
        try:
            P.load_state_dict(run.load_predictor(objective, info.device)["P"])
        except RuntimeError as e:
            raise CheckpointError(f"{ppath} does not fit the {spec.name} {profile} predictor ({str(e).splitlines()[0]}); "
                                  "delete it to fit a new one") from e
    trainer = Trainer(b.G, b.D if objective.uses_discriminator else None, objective, b.config, P=P)
    if a.resume and ckpt.exists():
        trainer.load(ckpt, stream)
        say(f"resumed from {ckpt} at step {trainer.step}")
    run.samples.mkdir(exist_ok=True)
    vx = vx.to(trainer.device)

    def snapshot(t: Trainer) -> None:
        if not info.is_main:
            return
        from torchvision.utils import save_image

        grid = sample_grid(t.G_core, vx, vy, objective.k, b.to_image, t.P,
                           generator=torch.Generator(t.device).manual_seed(a.seed))
        save_image(grid, run.samples / f"step_{t.step:06d}.png")
        run.write_history(t.history)

    every = a.sample_every or (1000 if full else steps)
    try:
        trainer.fit(stream, steps, callback=snapshot, callback_every=every, checkpoint=ckpt,
                    checkpoint_every=a.checkpoint_every or (500 if full else 1))
    except TrainingDiverged as e:
        if debug_enabled():
            raise
        say(f"error: {e}\nlast good checkpoint: {ckpt if ckpt.exists() else 'none yet'}")
        return 1
    except DataError as e:
        if debug_enabled():
            raise
        say(f"error: {e}\ntraining stopped at round {trainer.step}; last checkpoint: "
            f"{ckpt if ckpt.exists() else 'none yet'} (fix the file, then continue with --resume)")
        return 2
    finally:
        cleanup()
    if info.is_main:
        run.write_history(trainer.history)
        if trainer.step % every:
            snapshot(trainer)
    say(f"done: {trainer.step} rounds of {objective.describe()}; outputs in {out}")
    return 0
