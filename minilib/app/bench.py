"""``python -m minilib bench widgets``: N objectives trained at once by the batched engine vs one objective, and
the app's end-to-end rate (training plus live view)."""
from __future__ import annotations

import argparse
import time
from typing import Sequence

import torch

from ..errors import positive_int
from ..objectives import Objective, get_objective
from .engine import MultiConfig, MultiTrainer
from .view import ToyTask
from .widgets import LossComparisonApp

__all__ = ["bench_main"]


# --------------------------------------------------------------------------------------------- bench
def _time_run(objectives: list[Objective], steps: int, cfg: MultiConfig) -> float:
    task = ToyTask("y-shape")
    trainer = MultiTrainer(objectives, task.sampler, task.x_dim, task.y_dim, cfg)
    if not trainer.predictor_ready:
        trainer.fit_predictors()
    trainer.train(5)  # warm-up
    t0 = time.perf_counter()
    trainer.train(steps)
    return time.perf_counter() - t0


def bench_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib bench widgets``: N objectives batched vs one, and the app's end-to-end rate."""
    ap = argparse.ArgumentParser(prog="python -m minilib bench widgets", description=bench_main.__doc__)
    ap.add_argument("--objectives", default="gan,gan+l2,gan+mr2,gan+pmr2", help="comma-separated preset names")
    ap.add_argument("--steps", type=positive_int, default=2000)
    ap.add_argument("--k", type=positive_int, default=8)
    ap.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads")
    ap.add_argument("--hidden", type=positive_int, default=64, help="MLP width (the app's default is 64)")
    ap.add_argument("--no-app", action="store_true", help="skip the end-to-end app run (training + live view)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    objectives = [get_objective(name.strip(), k=args.k) for name in args.objectives.split(",") if name.strip()]
    cfg = MultiConfig(hidden=args.hidden)
    t_all = _time_run(objectives, args.steps, cfg)
    t_one = _time_run(objectives[:1], args.steps, cfg)
    n = len(objectives)
    print(f"| run | objectives | steps | K | seconds | steps/s |\n|---|---|---|---|---|---|")
    print(f"| batched | {n} | {args.steps} | {args.k} | {t_all:.2f} | {args.steps / t_all:.0f} |")
    print(f"| single | 1 | {args.steps} | {args.k} | {t_one:.2f} | {args.steps / t_one:.0f} |")
    print(f"\n{n} objectives at once cost {t_all / t_one:.2f}x one objective "
          f"(one at a time would be {n}x; speed-up {n * t_one / t_all:.2f}x).")
    if not args.no_app:
        app = LossComparisonApp(dataset="y-shape", objectives=objectives, steps=args.steps, k=args.k, hidden=args.hidden)
        t0, c0 = time.perf_counter(), time.process_time()
        app.run(block=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"\napp end to end (Y-shape, {n} objectives, {args.steps} steps, K={args.k}, live view on): "
              f"{wall:.1f} s wall ({cpu:.1f} s CPU), {app.frames_drawn} view updates = "
              f"{app.frames_drawn / wall:.1f} updates/s")
    return 0
