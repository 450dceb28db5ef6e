"""Toy experiments: train one objective on one toy, measure it exactly, cache it.

``run_toy(dataset, objective, seed)`` builds the MLPs of :mod:`minilib.nets.mlp` for a toy of :mod:`minilib.data.toys`,
fits the predictor for proxy MR (``fit_predictor``, Eq. 4 / 5), trains (animation frames through a callback) and
scores the generator with :mod:`minilib.metrics.toy` (:mod:`.toy_eval`). Training uses
:func:`~minilib.experiments.toy_stack.train_stacked`, the algorithm of ``minilib.train.Trainer`` for several runs at
once: :func:`run_many` trains runs that differ only in objective terms and seed as one stack, and a run's result is
the same bit for bit whether it trained alone or in a stack. Results are cached (``$MINILIB_CACHE/toy`` or
``~/.cache/minilib/toy``) under a hash of every setting; a run another process is training is waited for, not repeated.

Regimes (:data:`REGIMES`): a :class:`ToyRegime` holds the networks' sizes, K, steps, weights and a
:class:`~minilib.train.TrainConfig` (``regime.train``, :data:`TOY_ADAM` by default), not MR-GAN's Appendix B optimiser
(AMSGrad, lr 1e-4, weight decay 1e-4, clip 0.5: tuned for images, far too slow for a 2-D toy in a notebook):

* all toys: Adam lr 1e-3 for G and D, betas (0.5, 0.999), no weight decay, AMSGrad or clipping; 2-hidden-layer
  ReLU MLPs (MR-GAN used 2-3 layer MLPs); K = 8 samples per input; D batch 32; G batch 32 inputs x K.
* ``ring``: MR-GAN's ring of 8 (Appendix C, Fig. 4) in a regime where the plain GAN collapses, robustly over seeds:
  8-D latent, 2 x 64 ReLU, K = 16, 3,000 steps, a slow discriminator (Adam lr_d 3e-4, lr_g 1e-3, betas (0.9, 0.999),
  D batch 128, G batch 64 inputs x K) and gradient clipping at 0.02. Measured with ``run_many`` on seeds 0-9: the
  GAN covers 0-1 of 8 modes and GAN+ℓ2 0 (it sits at the ring's centre); GAN + MR1, MR2, pMR1, pMR2 cover 8/8 on
  every seed with KL <= 0.014 and 54-88 % of samples within 3 data std of a mode (medians 67 / 83 / 85 / 80 %);
  every mode is sharp except one of MR1's on seeds 1 and 2 (7/8). Moment weight 1 (0.3 for pMR2: at finite K its expected loss is lower for a symmetric
  collapse onto 4 diagonal modes, 0.158, than for all 8, 0.283, so a heavy weight would pull towards that collapse;
  see notebook 03), ℓ2 weight 10 (the preset's). Coverage comes early (about step 600), sharpness late (MR1
  median 35 % sharp at step 2,000, 71 % at 3,000).
* ``y-shape``: 2-D latent, 600 steps; ℓ2 weight 100 (the Pix2Pix recipe, ℓ1 x 100, the papers' baseline) and
  moment weight 10 (the presets').
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..checkpoints import atomic_save, cache_dir as _cache_root, file_lock
from ..data.toys import ToyDataset, ToyStream, make_dataset
from ..nets.mlp import make_models
from ..objectives import Objective, get_objective
from ..predictor import fit_predictor
from ..train import TrainConfig
from .parallel import map_in_processes
from .toy_eval import evaluate_toy, predictor_moments, sample_frame
from .toy_stack import StackedRun, stack_key, train_stacked

__all__ = ["TOY_ADAM", "toy_adam", "ToyRegime", "REGIMES", "ToyResult", "run_toy", "run_many", "evaluate_toy", "sample_frame",
           "predictor_moments", "cache_dir", "summary_table", "MOMENT_PRESETS", "reproduce_main",
           "regime_objective"]

CACHE_VERSION = 4
CACHED_FRAMES = 30  # every cached run keeps this many frames: a notebook animating it reuses a run trained without

TOY_ADAM = TrainConfig(lr_g=1e-3, lr_d=1e-3, betas=(0.5, 0.999), weight_decay=0.0, amsgrad=False, clip_value=None,
                       batch_size=32, g_batch_size=32, progress=False)
"""The toys' optimiser preset: plain Adam lr 1e-3 (G and D), betas (0.5, 0.999), no weight decay, AMSGrad or
clipping; D batch 32, G batch 32 inputs (x K samples). Use :func:`toy_adam` for a copy with changes."""


def toy_adam(**changes: Any) -> TrainConfig:
    """A copy of :data:`TOY_ADAM` with some fields changed (e.g. ``toy_adam(lr_d=3e-4, seed=1)``)."""
    return dataclasses.replace(TOY_ADAM, **changes)


_TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


@dataclass(frozen=True)
class ToyRegime:
    """Networks, K, length and weights of a toy run, and its optimiser settings ``train`` (a
    :class:`~minilib.train.TrainConfig`; see the module docstring for why it differs from Appendix B).

    ``moment_weight`` / ``rec_weight``: None keeps the preset's weight; ``preset_weights`` overrides the moment
    weight of named presets (e.g. ``(("gan+pmr2", 0.3),)``). :meth:`replace` accepts the fields of both, e.g.
    ``regime.replace(z_dim=16, lr_d=3e-4)``."""

    train: TrainConfig = field(default_factory=toy_adam)
    z_dim: int = 2
    hidden: int = 128
    layers: int = 2
    act: str = "relu"
    k: int = 8
    steps: int = 1000
    moment_weight: float | None = None
    rec_weight: float | None = None
    preset_weights: tuple[tuple[str, float], ...] = ()
    predictor_steps: int = 400
    predictor_lr: float = 3e-3

    def __post_init__(self) -> None:
        pw = self.preset_weights
        if not isinstance(pw, tuple) or not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
                                                and isinstance(p[1], (int, float)) and p[1] >= 0 for p in pw):
            raise ValueError(f"preset_weights must be a tuple of (preset name, weight >= 0) pairs, got {pw!r}")

    def replace(self, **changes: Any) -> "ToyRegime":
        """A copy with fields changed; TrainConfig fields (``lr_g``, ``clip_value``, ...) go to ``train``."""
        own = {f.name for f in dataclasses.fields(self)}
        bad = set(changes) - own - _TRAIN_FIELDS
        if bad:
            raise ValueError(f"unknown regime overrides {sorted(bad)}; expected fields of ToyRegime or TrainConfig")
        train = {k: changes.pop(k) for k in list(changes) if k in _TRAIN_FIELDS and k not in own}
        if train:
            changes["train"] = dataclasses.replace(changes.get("train", self.train), **train)
        return dataclasses.replace(self, **changes)


REGIMES: dict[str, ToyRegime] = {
    "ring": ToyRegime(train=toy_adam(lr_d=3e-4, betas=(0.9, 0.999), clip_value=0.02, batch_size=128, g_batch_size=64),
                      z_dim=8, hidden=64, layers=2, k=16, steps=3000, moment_weight=1.0,
                      preset_weights=(("gan+pmr2", 0.3), ("gan+pmr2-laplace", 0.3))),
    "grid": ToyRegime(z_dim=2, steps=1000, moment_weight=1.0),
    "mixture-1d": ToyRegime(z_dim=1, steps=600, moment_weight=1.0),
    "y-shape": ToyRegime(z_dim=2, steps=600, rec_weight=100.0),
}
"""Default regime per dataset name."""


@dataclass
class ToyResult:
    """What :func:`run_toy` returns: the trained networks, the trainer's history, exact metrics and frames."""

    dataset: ToyDataset
    objective: Objective
    seed: int
    regime: ToyRegime
    G: torch.nn.Module
    P: torch.nn.Module | None
    history: dict[str, list[float]]
    metrics: dict[str, Any]
    frames: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    cached: bool = False
    D: torch.nn.Module | None = None
    """The trained discriminator (None for objectives without a GAN term)."""


def cache_dir() -> Path:
    """Where toy runs are cached: ``$MINILIB_CACHE/toy`` if set, else ``~/.cache/minilib/toy``."""
    return _cache_root("toy")


def regime_objective(objective: str | Objective, regime: ToyRegime) -> Objective:
    """A preset name gets the regime's K and weights; an ``Objective`` is used exactly as given."""
    if isinstance(objective, Objective):
        return objective
    if not isinstance(objective, str):
        raise TypeError(f"objective must be a preset name or an Objective, got {type(objective).__name__}")
    obj = get_objective(objective, k=regime.k)
    changes: dict[str, float] = {}
    if obj.moment is not None and regime.moment_weight is not None:
        changes["moment_weight"] = regime.moment_weight
    if obj.moment is not None and objective in dict(regime.preset_weights):
        changes["moment_weight"] = dict(regime.preset_weights)[objective]
    if obj.rec is not None and obj.gan_weight > 0 and regime.rec_weight is not None:
        changes["rec_weight"] = regime.rec_weight
    return obj.replace(**changes) if changes else obj


def _key(dataset: ToyDataset, obj: Objective, seed: int, regime: ToyRegime, n_eval: int) -> str:
    """Hash of every setting that changes the result (frames do not: they sample with their own RNG)."""
    blob = json.dumps({"v": CACHE_VERSION, "data": dataset.params(), "obj": asdict(obj), "seed": seed,
                       "regime": asdict(regime), "n_eval": n_eval}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _spread(n: int, m: int) -> list[int]:
    """``min(n, m)`` indices spread evenly over ``range(n)`` keeping both ends."""
    if n <= m:
        return list(range(n))
    return sorted({round(i * (n - 1) / (m - 1)) for i in range(m)}) if m > 1 else [n - 1]


def _resolve(dataset: str | ToyDataset, objective: str | Objective, seed: int, steps: int | None,
             regime: ToyRegime | None, frames: int, n_eval: int, overrides: dict) -> tuple:
    """``(dataset, regime, objective, cache path)`` of a :func:`run_toy` call, its arguments checked."""
    ds = make_dataset(dataset) if isinstance(dataset, str) else dataset
    if not isinstance(ds, ToyDataset):
        raise TypeError(f"dataset must be a dataset name or a ToyDataset, got {type(dataset).__name__}")
    regime = (regime or REGIMES.get(ds.name, ToyRegime())).replace(**overrides, **({} if steps is None else {"steps": steps}))
    if not isinstance(regime.steps, int) or regime.steps < 1:
        raise ValueError(f"steps must be a positive int, got {regime.steps!r}")
    if not isinstance(frames, int) or frames < 0:
        raise ValueError(f"frames must be a non-negative int, got {frames!r}")
    obj = regime_objective(objective, regime)
    return ds, regime, obj, cache_dir() / f"{ds.name}-{obj.name}-s{seed}-{_key(ds, obj, seed, regime, n_eval)}.pt"


def _pick_frames(shots: list[dict], frames: int) -> list[dict]:
    """``frames + 1`` of the recorded ``shots`` spread evenly, both ends kept (none for ``frames == 0``)."""
    return [shots[i] for i in _spread(len(shots), frames + 1)] if frames else []


def _cached_state(path: Path, frames: int) -> dict | None:
    """The cached run at ``path`` with its frames spread to ``frames + 1``; None if absent or with fewer frames."""
    state = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
    if state is None or (frames and len(state["frames"]) < frames + 1):
        return None
    state["frames"] = _pick_frames(state["frames"], frames)
    return state


def _load(job: tuple, state: dict) -> ToyResult:
    """A :class:`ToyResult` from a cached state (``job``: a :func:`_resolve` tuple plus seed)."""
    ds, regime, obj, path, seed = job
    G, D, P = make_models(ds, regime.z_dim, regime.hidden, regime.layers, regime.act, seed=seed)
    G.load_state_dict(state["G"])
    if state["P"] is not None:
        P.load_state_dict(state["P"])
    if state.get("D") is not None:
        D.load_state_dict(state["D"])
    return ToyResult(ds, obj, seed, regime, G.eval(), P if state["P"] is not None else None, state["history"],
                     state["metrics"], state["frames"], state["seconds"], cached=True,
                     D=D.eval() if state.get("D") is not None else None)


def _train_stack(jobs: Sequence[tuple], frames: Sequence[int], n_eval: Sequence[int], cache: bool,
                 threads: int | None) -> list[ToyResult]:
    """Train jobs that share a :func:`~minilib.experiments.toy_stack.stack_key` in one stack, measure each, and
    (``cache``) save each; ``seconds`` of a run is its share of the stack's time plus its own predictor's fit."""
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        runs, shots, fits = [], [], []
        for (ds, regime, obj, _, seed), n_frames in zip(jobs, frames):
            n_frames = max(n_frames, CACHED_FRAMES) if cache else n_frames
            G, D, P = make_models(ds, regime.z_dim, regime.hidden, regime.layers, regime.act, seed=seed)
            cfg = dataclasses.replace(regime.train, seed=seed, progress=False, log_every=max(regime.steps // 100, 1))
            t0 = time.perf_counter()
            if obj.needs_predictor:
                fit_predictor(P, ToyStream(ds, 10_000 + seed), ToyStream(ds, 20_000 + seed), dist=obj.moment_dist,
                              steps=regime.predictor_steps, batch_size=128, lr=regime.predictor_lr, config=cfg, patience=None)
            fits.append(time.perf_counter() - t0)
            shot: list[dict] = [sample_frame(G, ds, step=0)] if n_frames else []
            shots.append(shot)
            runs.append(StackedRun(G, D if obj.uses_discriminator else None, P if obj.needs_predictor else None, obj,
                                   seed, ToyStream(ds, seed), callback_every=max(regime.steps // n_frames, 1) if n_frames else 0,
                                   callback=(lambda step, g, shot=shot, ds=ds: shot.append(sample_frame(g, ds, step=step)))
                                   if n_frames else None))
        regime, t0 = jobs[0][1], time.perf_counter()
        train_stacked(runs, dataclasses.replace(regime.train, progress=False, log_every=max(regime.steps // 100, 1)),
                      regime.steps)
        metrics = [evaluate_toy(r.G, job[0], n=n) for r, job, n in zip(runs, jobs, n_eval)]
        share = (time.perf_counter() - t0) / len(jobs)
    finally:
        torch.set_num_threads(old_threads)
    out = []
    for job, r, shot, m, fit, n_frames in zip(jobs, runs, shots, metrics, fits, frames):
        seconds = share + fit
        ds, regime, obj, path, seed = job
        G, D = r.G.eval(), r.D.eval() if r.D is not None else None
        if cache:
            atomic_save({"G": G.state_dict(), "P": r.P.state_dict() if r.P is not None else None, "history": r.history,
                         "metrics": m, "frames": shot, "seconds": seconds,
                         "D": D.state_dict() if D is not None else None}, path)
        out.append(ToyResult(ds, obj, seed, regime, G, r.P, r.history, m, _pick_frames(shot, n_frames), seconds, D=D))
    return out


def _job(spec: dict) -> tuple[tuple, int, int, bool, int | None]:
    """``(job, frames, n_eval, cache, threads)`` of a :func:`run_toy` spec, its arguments checked."""
    s = dict(spec)
    args = [s.pop("dataset"), s.pop("objective"), s.pop("seed", 0), s.pop("steps", None), s.pop("regime", None)]
    frames, n_eval, cache, threads = s.pop("frames", 0), s.pop("n_eval", 2000), s.pop("cache", True), s.pop("threads", 1)
    return (*_resolve(*args, frames, n_eval, s), args[2]), frames, n_eval, cache, threads


def _train_specs(specs: Sequence[dict]) -> list[ToyResult]:
    """Train the uncached specs of one stack (all of the same :func:`stack_key`), each loaded from the cache when
    another process trained it first; every path is locked (in sorted order) while training."""
    parsed = [_job(s) for s in specs]
    if not parsed[0][3]:
        return _train_stack([p[0] for p in parsed], [p[1] for p in parsed], [p[2] for p in parsed], False, parsed[0][4])
    with contextlib.ExitStack() as locks:
        for path in sorted({p[0][3] for p in parsed}):
            locks.enter_context(file_lock(path))
        states = [_cached_state(p[0][3], p[1]) for p in parsed]
        todo = list({p[0][3]: p for p, st in sorted(zip(parsed, states), key=lambda ps: ps[0][1])  # one run per path,
                     if st is None}.values())                                     # with the most frames asked for
        fresh = dict(zip((p[0][3] for p in todo), _train_stack([p[0] for p in todo], [p[1] for p in todo],
                                                                [p[2] for p in todo], True, todo[0][4]))) if todo else {}
    return [fresh[p[0][3]] if st is None else _load(p[0], st) for p, st in zip(parsed, states)]


def run_toy(dataset: str | ToyDataset, objective: str | Objective, seed: int = 0, steps: int | None = None,
            regime: ToyRegime | None = None, frames: int = 0, cache: bool = True, n_eval: int = 2000,
            threads: int | None = 1, **overrides: Any) -> ToyResult:
    """Train ``objective`` on ``dataset`` from ``seed`` and measure it (see the module docstring).

    Args:
        dataset: a name of :data:`minilib.data.toys.DATASETS` or a dataset instance.
        objective: a preset name (gets the regime's K and toy weights) or an ``Objective`` (used as is).
        steps: training steps (default: the regime's). ``regime``: default :data:`REGIMES` [name]; ``overrides``
            replace its fields (e.g. ``z_dim=2``).
        frames: number of animation frames to return (0: none). A cached run keeps at least :data:`CACHED_FRAMES`,
            so a later call that asks for that many frames loads it instead of training it again.
        cache: read / write the on-disk cache. ``threads``: torch intra-op threads while training (restored after).
    Returns:
        a :class:`ToyResult` (``metrics`` from :func:`evaluate_toy`).
    """
    spec = dict(dataset=dataset, objective=objective, seed=seed, steps=steps, regime=regime, frames=frames,
                cache=cache, n_eval=n_eval, threads=threads, **overrides)
    job, frames, *_ = _job(spec)
    state = _cached_state(job[3], frames) if cache else None  # a hit is read without the lock
    return _load(job, state) if state is not None else _train_specs([spec])[0]


MAX_STACK = 12
"""The most runs :func:`run_many` trains in one stack (measured on the ring, one stack in each of two processes on
two cores: about 9 ms a step for a run alone, 6.5 ms per run in a stack of 4, 4-5 ms in stacks of 6 to 12)."""


def _run_stack(specs: list[dict]) -> float:
    """Worker of :func:`run_many`: train one stack of specs into the cache; returns its seconds."""
    return sum(r.seconds for r in _train_specs(specs))


def run_many(specs: Sequence[dict], workers: int | None = None) -> list[ToyResult]:
    """:func:`run_toy` for every spec (a dict of its keyword arguments): the uncached ones are grouped into stacks
    (:mod:`~minilib.experiments.toy_stack`: runs that share everything but the objective's terms and the seed),
    split so that ``workers`` processes (:func:`map_in_processes`; 1 = in this process) get similar shares, and
    trained; then all are loaded from the cache in order. The results are the same as separate :func:`run_toy` calls.
    """
    specs = [dict(s) for s in specs]
    for s in specs:
        if not isinstance(s, dict) or "dataset" not in s or "objective" not in s:
            raise ValueError(f"every spec must be a dict with at least 'dataset' and 'objective', got {s!r}")
        if s.get("cache") is False:
            raise ValueError("run_many needs cache=True (workers hand their results over through the cache)")
    n_workers = max(1, min(2, os.cpu_count() or 1) if workers is None else int(workers))
    stacks: dict[str, list[dict]] = {}
    for s in specs:
        job, frames, *_ = _job(s)
        if _cached_state(job[3], frames) is None and s not in stacks.get(key := stack_key(job[0].params(), job[1], job[2]), []):
            stacks.setdefault(key, []).append(s)
    tasks = []
    for group in stacks.values():  # stacks of at most MAX_STACK runs, of similar sizes, several: a multiple of workers
        parts = -(-len(group) // MAX_STACK)
        size = -(-len(group) // (parts if parts == 1 else n_workers * -(-parts // n_workers)))
        tasks += [group[i:i + size] for i in range(0, len(group), size)]
    while len(tasks) < n_workers and max(map(len, tasks), default=1) > 1:  # a stack for every worker
        big = max(tasks, key=len)
        tasks.remove(big)
        tasks += [big[:len(big) // 2], big[len(big) // 2:]]
    if tasks:  # the costliest first (a step of a stack costs about as much as two more runs in it)
        map_in_processes(_run_stack, tasks, n_workers, cost=lambda t: _job(t[0])[0][1].steps * (len(t) + 2))
    return [run_toy(**s) for s in specs]


def summary_table(results: Sequence[ToyResult], keys: Sequence[str]) -> str:
    """A markdown table: one row per objective, the median over seeds of each metric in ``keys`` and the per-seed values."""
    if not results:
        raise ValueError("results must be a non-empty sequence of ToyResult")
    rows: dict[str, list[ToyResult]] = {}
    for r in results:
        rows.setdefault(r.objective.name, []).append(r)
    head = "| objective | seeds | " + " | ".join(f"{k} (median)" for k in keys) + " | " + " | ".join(f"{k} per seed" for k in keys) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(keys))]
    for name, rs in rows.items():
        med = [float(torch.tensor([float(r.metrics[k]) for r in rs]).median()) for k in keys]
        per = [", ".join(f"{float(r.metrics[k]):.3g}" for r in rs) for k in keys]
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(f"{m:.3g}" for m in med) + " | " + " | ".join(per) + " |")
    return "\n".join(lines)


MOMENT_PRESETS = ["gan+mr1", "gan+mr2", "gan+pmr1", "gan+pmr2",
                  "gan+mr1-laplace", "gan+mr2-laplace", "gan+pmr1-laplace", "gan+pmr2-laplace"]


def reproduce_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib reproduce toy``: the tables (markdown, printed) and figures (``--out``) of notebooks 02-03."""
    ap = argparse.ArgumentParser(prog="python -m minilib reproduce toy", description=reproduce_main.__doc__)
    ap.add_argument("--out", default="runs/toy", help="folder for figures and tables.md")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=None, help="override every regime's steps (e.g. 50 for a smoke run)")
    ap.add_argument("--datasets", default="ring,y-shape")
    ap.add_argument("--objectives", default=None, help="comma-separated presets (default: GAN, ℓ2 baselines + all eight MR)")
    ap.add_argument("--no-cache", action="store_true", help="train everything in this process, write nothing")
    ap.add_argument("--workers", type=int, default=None, help="training processes (default: min(2, cpu count))")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz import plot_toy

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    md = []
    for name in args.datasets.split(","):
        base = ["gan", "gan+l2"] if name != "y-shape" else ["gan", "l2", "gan+l2"]
        objs = args.objectives.split(",") if args.objectives else base + MOMENT_PRESETS
        specs = [dict(dataset=name, objective=o, seed=s, steps=args.steps) for o in objs for s in seeds]
        results = [run_toy(**sp, cache=False) for sp in specs] if args.no_cache else run_many(specs, args.workers)
        keys = ["covered", "sharp_modes", "sharp", "kl"] if results[0].dataset.x_dim == 0 else ["w1", "std_ratio_right", "mean_err"]
        table = summary_table(results, keys)
        md.append(f"## {name}\n\n{table}\n")
        print(f"## {name}\n\n{table}\n", flush=True)
        first = [r for r in results if r.seed == seeds[0]]
        fig, axes = plt.subplots(1, len(first), figsize=(2.6 * len(first), 2.6), dpi=80, squeeze=False)
        for ax, r in zip(axes[0], first):
            f = sample_frame(r.G, r.dataset)
            plot_toy(ax, r.dataset, f["x"], f["y"], title=r.objective.name)
        fig.tight_layout()
        fig.savefig(out / f"{name}_samples.png")
        plt.close(fig)
    (out / "tables.md").write_text("\n".join(md))
    print(f"figures and tables.md written to {out}")
    return 0
