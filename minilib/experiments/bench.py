"""``python -m minilib bench toy|image|hmc``: timings as ratios measured in one run (machines are noisy, so the
figures to quote are ratios and medians). ``bench widgets`` lives with the app (:mod:`minilib.app.bench`).

* ``bench toy`` — a toy training step of each objective relative to a plain GAN step.
* ``bench image`` — an MR / proxy-MR generator step relative to the baseline step at equal generated images.
* ``bench hmc`` — HMC throughput and the cost of a PresGAN generator step relative to a GAN step.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import hmc
from ..data.images import DatasetStream
from ..data.toys import ToyStream, make_dataset
from ..errors import positive_int
from ..nets.digits import DigitDiscriminator, DigitGenerator
from ..nets.mlp import make_models
from ..objectives import get_objective
from ..presgan import NoisyGenerator, make_presgan_trainer, posterior_log_prob
from ..train import TrainConfig, Trainer
from .image_tasks import PROFILES, TASKS, build, task_objective
from .toys import REGIMES, ToyRegime, regime_objective

__all__ = ["bench_toy_main", "bench_image_main", "bench_hmc_main"]


def bench_toy_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib bench toy``: time of a training step of each objective relative to a plain GAN step on the
    same B·K generator samples, measured interleaved in one run; steps per second."""
    ap = argparse.ArgumentParser(prog="python -m minilib bench toy", description=bench_toy_main.__doc__)
    ap.add_argument("--dataset", default="y-shape")
    ap.add_argument("--objectives", default="gan+l2,gan+mr1,gan+mr2,gan+pmr1,gan+pmr2,gan+mr2-laplace,gan+pmr2-laplace")
    ap.add_argument("--steps", type=positive_int, default=100, help="steps per timing round")
    ap.add_argument("--rounds", type=positive_int, default=5)
    ap.add_argument("--threads", type=positive_int, default=1)
    ap.add_argument("--stack", type=positive_int, default=1,
                    help="also time a stack of this many runs (the objectives in turn) against each run alone")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = make_dataset(args.dataset)
    regime = REGIMES.get(ds.name, ToyRegime())
    names = ["gan"] + [n for n in args.objectives.split(",") if n and n != "gan"]
    trainers, streams = {}, {}
    for name in names:
        obj = regime_objective(name, regime)
        G, D, P = make_models(ds, regime.z_dim, regime.hidden, regime.layers, regime.act, seed=0)
        cfg = dataclasses.replace(regime.train, progress=False)
        trainers[name] = Trainer(G, D if obj.uses_discriminator else None, obj, cfg, P=P if obj.needs_predictor else None)
        streams[name] = ToyStream(ds, 0)
        trainers[name].fit(streams[name], 5)  # warm-up
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names:
            tr = trainers[name]
            t0 = time.perf_counter()
            tr.fit(streams[name], tr.step + args.steps)
            times[name].append((time.perf_counter() - t0) / args.steps)
    med = {n: float(torch.tensor(v).median()) for n, v in times.items()}
    bk = regime.train.g_batch_size * regime.k
    print(f"toy step (D + G update) on {ds.name}, G batch {regime.train.g_batch_size} x K={regime.k} = {bk} samples, "
          f"{args.rounds} interleaved rounds of {args.steps} steps, {args.threads} thread(s)\n")
    print("| objective | ms / step | steps / s | relative to GAN |\n|---|---|---|---|")
    for name in names:
        print(f"| {name} | {1e3 * med[name]:.2f} | {1 / med[name]:.0f} | {med[name] / med['gan']:.2f}x |")
    if args.stack > 1:
        _bench_stack(ds, regime, [names[i % len(names)] for i in range(args.stack)], args.steps, args.rounds)
    return 0


def _bench_stack(ds: Any, regime: Any, names: Sequence[str], steps: int, rounds: int) -> None:
    """Per-run time of a training step: the runs in one stack against each alone (interleaved rounds)."""
    from .toy_stack import StackedRun, train_stacked

    def run(name: str, seed: int) -> StackedRun:
        obj = regime_objective(name, regime)
        G, D, P = make_models(ds, regime.z_dim, regime.hidden, regime.layers, regime.act, seed=seed)
        return StackedRun(G, D if obj.uses_discriminator else None, P if obj.needs_predictor else None, obj, seed,
                          ToyStream(ds, seed))

    cfg = dataclasses.replace(regime.train, progress=False)
    stack = [run(n, s) for s, n in enumerate(names)]
    alone = [run(n, s) for s, n in enumerate(names)]
    train_stacked(stack[:1], cfg, 5)  # warm-up
    together, single = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        train_stacked(stack, cfg, steps)
        together.append((time.perf_counter() - t0) / steps / len(stack))
        t0 = time.perf_counter()
        for r in alone:
            train_stacked([r], cfg, steps)
        single.append((time.perf_counter() - t0) / steps / len(alone))
    a, b = float(torch.tensor(single).median()), float(torch.tensor(together).median())
    print(f"\nper run and step, {len(names)} runs ({', '.join(sorted(set(names)))}): alone {1e3 * a:.2f} ms, in one "
          f"stack {1e3 * b:.2f} ms: the stack is {a / b:.2f}x faster per run")



# ------------------------------------------------------------------------------------------- bench
def bench_image_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib bench image``: time of one MR / proxy-MR generator step (B inputs x K samples)
    relative to the baseline step on B*K inputs (the same number of generated images), per task at
    reduced resolution; also generated images per second. The three steps are timed round-robin and
    the minimum over repeats is kept (robust to other processes sharing the CPU)."""
    p = argparse.ArgumentParser(prog="python -m minilib bench image", description=bench_image_main.__doc__)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--profile", choices=PROFILES, default="bench", help="network sizes (default: bench)")
    p.add_argument("--batch", type=positive_int, default=2, help="inputs per MR step (B); the baseline gets B*K")
    p.add_argument("--repeats", type=positive_int, default=10, help="timed steps per objective (min is kept)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    torch.set_num_threads(a.threads)
    rows: list[dict[str, Any]] = []
    print(f"{'task':<20}{'objective':<11}{'B x K':>8}{'ms/step':>10}{'vs base':>9}{'img/s':>9}")
    with tempfile.TemporaryDirectory(prefix="minilib-bench-") as tmp:
        for name in a.tasks:
            spec = TASKS[name]
            root = spec.fixture(Path(tmp) / spec.dataset) if spec.fixture else Path(tmp)  # procedural: no files
            runs = []
            for obj_name in (spec.baseline, "gan+mr2", "gan+pmr2"):
                # every term from the first step (a task's warm-up or GAN delay would time a different step)
                obj = task_objective(spec, obj_name, moment_warmup=0)
                b = build(spec, root, a.profile, a.device, 0, obj, progress=False, gan_start=0)
                bsz = a.batch if obj.moment else a.batch * spec.k
                obj = obj if obj.moment else obj.replace(k=1)
                x, y = DatasetStream(b.train, 0).next(bsz)
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



# ------------------------------------------------------------------------------- benchmark
def bench_hmc_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib bench hmc``: HMC throughput (chains x draws / s) on a small DCGAN-style generator
    (:class:`minilib.nets.digits.DigitGenerator`), with the start gradient of each trajectory recomputed (the
    old path, ``reuse_grad=False``) and reused from the accepted state, on the same posterior and chains;
    and the time of one PresGAN G step relative to a GAN step."""
    ap = argparse.ArgumentParser(prog="python -m minilib bench hmc", description=bench_hmc_main.__doc__)
    ap.add_argument("--chains", type=positive_int, default=64)
    ap.add_argument("--draws", type=positive_int, default=20)
    ap.add_argument("--leapfrog", type=positive_int, default=5)
    ap.add_argument("--steps", type=positive_int, default=10, help="timed G steps per objective")
    ap.add_argument("--threads", type=positive_int, default=1)
    ap.add_argument("--repeats", type=positive_int, default=3, help="HMC timings per path, interleaved; the best is kept")
    args = ap.parse_args(list(argv or []))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    G = NoisyGenerator(DigitGenerator(nz=16, channels=3), (3, 8, 8), sigma_init=0.1, sigma_max=1.0)
    x = torch.zeros(args.chains, 0)
    (z, eps) = G.noise(args.chains)
    with torch.no_grad():
        y = G(x, (z, eps))
    lp = posterior_log_prob(G, x, y)
    best, res = {False: math.inf, True: math.inf}, None
    hmc.sample(lp, z, num_samples=1, burn_in=0, step_size=0.02, num_leapfrog=args.leapfrog, adapt=False)  # warm-up
    for _ in range(max(1, args.repeats)):
        for reuse in (False, True):  # same posterior, same chains (same seed): only the gradient bookkeeping differs
            t = time.perf_counter()
            res = hmc.sample(lp, z, num_samples=args.draws, burn_in=0, step_size=0.02, num_leapfrog=args.leapfrog,
                             adapt=False, generator=torch.Generator().manual_seed(1), reuse_grad=reuse)
            best[reuse] = min(best[reuse], time.perf_counter() - t)
    rate = {k: args.chains * args.draws / v for k, v in best.items()}
    setting = f"{args.chains} chains, {args.draws} draws, {args.leapfrog} leapfrog, accept {res.accept_rate.mean():.2f}"
    rows = [("HMC chains x draws / s, gradient recomputed", f"{rate[False]:.0f}", f"{setting}; {args.leapfrog + 1} log_prob calls per draw"),
            ("HMC chains x draws / s, gradient reused", f"{rate[True]:.0f}", f"{args.leapfrog} log_prob calls per draw"),
            ("HMC reused / recomputed", f"{rate[True] / rate[False]:.2f}x", f"ideal {(args.leapfrog + 1) / args.leapfrog:.2f}x")]
    times = {}
    for name, lam in (("gan", 0.0), ("presgan", 1.0)):
        cfg = TrainConfig(batch_size=64, g_batch_size=8, progress=False, seed=0)
        obj = get_objective("presgan", entropy_weight=lam, k=8)
        tr = make_presgan_trainer(G, DigitDiscriminator(channels=3), obj, cfg)
        data = torch.randn(64, 3, 8, 8).clamp(-1, 1)
        tr.generator_step(x[:8], data[:8])  # warm-up
        t = time.perf_counter()
        for _ in range(args.steps):
            tr.generator_step(x[:8], data[:8])
        times[name] = (time.perf_counter() - t) / args.steps
    rows.append(("GAN G step (s)", f"{times['gan']:.4f}", "8 inputs x K=8 samples, DigitGenerator 3x8x8"))
    rows.append(("PresGAN G step (s)", f"{times['presgan']:.4f}", "entropy term: 2 burn-in + 2 HMC draws, 5 leapfrog"))
    rows.append(("PresGAN / GAN", f"{times['presgan'] / times['gan']:.1f}x", ""))
    print("| quantity | value | setting |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0
