"""Train the small toy MLPs of several objectives at once (the engine of the loss-comparison app).

N objectives means N generators, N discriminators and N predictors with identical architectures.
Instead of N training loops, :class:`BatchedMLP` stores the N networks' weights stacked along a leading
dimension and evaluates them with one batched matmul per layer (``torch.baddbmm``), so four objectives
cost about what one does. The slots never interact: every loss is a sum of per-objective terms, and
Adam is element-wise, so slot i follows exactly the trajectory it would follow on its own (tested).

One training round is the one of :class:`minilib.train.Trainer`: ``d_steps`` discriminator updates (real
pairs and one fake sample per input) then ``g_steps`` generator updates with K samples per input and the
weighted terms of each :class:`~minilib.objectives.Objective` (GAN Eq. 2, ℓ1/ℓ2 Eq. 3, MR Eq. 8,
proxy MR Eq. 6, mode seeking MSGAN Eq. 1), computed with the functions of :mod:`minilib.losses`.
Toy defaults (not Appendix B's image settings): Adam lr 1e-3, betas (0.5, 0.999), no weight decay, no
clipping; MLPs 2 x 128 ReLU (as in the toy prototypes).

``python -m minilib bench widgets`` (:func:`bench_main`) times N objectives against one.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from . import losses as L
from .objectives import Objective, get_objective

__all__ = ["BatchedMLP", "MultiConfig", "MultiTrainer", "ToyTask", "bench_main"]

Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class BatchedMLP(nn.Module):
    """N independent MLPs ``in_dim -> hidden (x depth, ReLU) -> out_dim`` evaluated together.

    Weights are ``[N, fan_in, fan_out]``, initialised like ``nn.Linear`` (uniform in +-1/sqrt(fan_in)).
    ``forward(h)`` maps ``[N, M, in_dim]`` (or ``[M, in_dim]``, shared by all N) to ``[N, M, out_dim]``.
    """

    def __init__(self, n: int, in_dim: int, hidden: int, depth: int, out_dim: int,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if n < 1 or in_dim < 0 or hidden < 1 or depth < 1 or out_dim < 1:
            raise ValueError(f"need n >= 1, in_dim >= 0, hidden >= 1, depth >= 1, out_dim >= 1; got "
                             f"n={n}, in_dim={in_dim}, hidden={hidden}, depth={depth}, out_dim={out_dim}")
        dims = [in_dim] + [hidden] * depth + [out_dim]
        self.n, self.in_dim = n, in_dim
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(max(fan_in, 1))
            w = (torch.rand(n, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(n, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() == 2:
            h = h.unsqueeze(0).expand(self.n, *h.shape)  # [N, M, in]
        if h.dim() != 3 or h.shape[0] != self.n or h.shape[2] != self.in_dim:
            raise ValueError(f"h must be [N={self.n}, M, {self.in_dim}] or [M, {self.in_dim}], got {tuple(h.shape)}")
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # [N, M, fan_out]
            if i < last:
                h = torch.relu(h)
        return h


@dataclass
class MultiConfig:
    """Settings shared by all slots (per-objective weights live in each Objective)."""

    lr_g: float = 1e-3
    lr_d: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int = 32  # inputs per D update and per G update (each G input gets K samples)
    d_steps: int = 1
    g_steps: int = 1
    hidden: int = 128
    depth: int = 2
    z_dim: int = 2
    seed: int = 0
    predictor_steps: int = 400

    def __post_init__(self) -> None:
        for name in ("lr_g", "lr_d"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        for name in ("batch_size", "d_steps", "g_steps", "hidden", "depth", "z_dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(self.predictor_steps, int) or self.predictor_steps < 0:
            raise ValueError(f"predictor_steps must be an int >= 0, got {self.predictor_steps!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")


class MultiTrainer:
    """N objectives trained side by side on the same data stream.

    Args:
        objectives: N :class:`Objective` s sharing the same ``k``.
        sampler: ``sampler(n, generator) -> (x [n, x_dim], y [n, y_dim])`` draws training pairs.
        x_dim, y_dim: input and output sizes (``x_dim = 0`` for unconditional toys).
        config: shared settings.
    Every slot sees the same batches and the same noise, so differences between slots come from the
    objectives alone.
    """

    def __init__(self, objectives: Sequence[Objective], sampler: Sampler, x_dim: int, y_dim: int,
                 config: MultiConfig | None = None) -> None:
        objectives = list(objectives)
        if not objectives or not all(isinstance(o, Objective) for o in objectives):
            raise TypeError("objectives must be a non-empty sequence of Objective (see minilib.objectives.get_objective)")
        ks = {o.k for o in objectives}
        if len(ks) != 1:
            raise ValueError(f"objectives must share the same k (samples per input), got {sorted(ks)}")
        if x_dim < 0 or y_dim < 1:
            raise ValueError(f"need x_dim >= 0 and y_dim >= 1, got x_dim={x_dim}, y_dim={y_dim}")
        self.objectives, self.k = objectives, ks.pop()
        self.sampler, self.x_dim, self.y_dim = sampler, x_dim, y_dim
        self.config = cfg = config or MultiConfig()
        n = len(objectives)
        init = torch.Generator().manual_seed(cfg.seed)
        self.G = BatchedMLP(n, x_dim + cfg.z_dim, cfg.hidden, cfg.depth, y_dim, init)
        self.D = BatchedMLP(n, x_dim + y_dim, cfg.hidden, cfg.depth, 1, init)
        self.P = BatchedMLP(n, x_dim, cfg.hidden, cfg.depth, 2 * y_dim, init)
        self.P.requires_grad_(False)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        self.rng = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.history: list[dict[str, list[float]]] = [{"step": []} for _ in objectives]
        self.predictor_ready = not any(o.needs_predictor for o in objectives)

    @property
    def n(self) -> int:
        return len(self.objectives)

    # ----------------------------------------------------------------------------------- networks
    def noise(self, m: int) -> torch.Tensor:
        """``[m, z_dim]`` standard normal noise from the trainer's generator (shared by all slots)."""
        return torch.randn(m, self.config.z_dim, generator=self.rng)

    def sample(self, x: torch.Tensor, k: int | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
        """K samples per input for every slot: ``x [B, x_dim]`` -> ``[N, B, K, y_dim]`` (one batched forward)."""
        k = self.k if k is None else k
        b = x.shape[0]
        z = self.noise(b * k) if z is None else z  # [B·K, z_dim]
        h = torch.cat([x.repeat_interleave(k, dim=0), z], dim=1)  # [B·K, x_dim + z_dim]
        return self.G(h).reshape(self.n, b, k, self.y_dim)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Logits of every slot's D: ``x [M, x_dim]`` with ``y [M, y_dim]`` or ``[N, M, y_dim]`` -> ``[N, M]``."""
        if y.dim() == 2:
            y = y.unsqueeze(0).expand(self.n, *y.shape)
        return self.D(torch.cat([x.unsqueeze(0).expand(self.n, *x.shape), y], dim=2)).squeeze(2)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictors' ``(center, log_dispersion)``, each ``[N, B, y_dim]``."""
        out = self.P(x)
        return out[..., : self.y_dim], out[..., self.y_dim :]

    # ----------------------------------------------------------------------------------- predictor
    def fit_predictors(self, steps: int | None = None, batch_size: int = 256) -> list[float]:
        """Fit each slot's predictor by MLE (Eq. 4 / 5, the slot's ``moment_dist``); keep the weights with
        the lowest validation loss per slot (MR-GAN Appendix B). Returns the best validation loss per slot."""
        steps = self.config.predictor_steps if steps is None else steps
        gen = torch.Generator().manual_seed(self.config.seed + 2)
        xv, yv = self.sampler(2048, gen)
        self.P.requires_grad_(True)
        opt = torch.optim.Adam(self.P.parameters(), lr=1e-3)
        best = [math.inf] * self.n
        best_state = [p.detach().clone() for p in self.P.parameters()]

        def per_slot_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            center, log_disp = self.predict(x)
            return torch.stack([L.mle_loss(center[i], log_disp[i], y, o.moment_dist) for i, o in enumerate(self.objectives)])

        for step in range(steps + 1):
            if step % 25 == 0 or step == steps:
                with torch.no_grad():
                    val = per_slot_loss(xv, yv)
                for i, v in enumerate(val.tolist()):
                    if v < best[i]:
                        best[i] = v
                        for saved, p in zip(best_state, self.P.parameters()):
                            saved[i] = p.detach()[i]
            if step == steps:
                break
            x, y = self.sampler(batch_size, gen)
            opt.zero_grad()
            per_slot_loss(x, y).sum().backward()
            opt.step()
        with torch.no_grad():
            for saved, p in zip(best_state, self.P.parameters()):
                p.copy_(saved)
        self.P.requires_grad_(False)
        self.predictor_ready = True
        return best

    # ----------------------------------------------------------------------------------- updates
    def discriminator_step(self, x: torch.Tensor, y: torch.Tensor) -> list[float]:
        """One D update of every slot on real pairs and one fake sample per input; returns D loss per slot."""
        with torch.no_grad():
            fake = self.sample(x, 1)[:, :, 0]  # [N, B, y_dim]
        b = x.shape[0]
        both = torch.cat([y.unsqueeze(0).expand(self.n, *y.shape), fake], dim=1)  # [N, 2B, y_dim]: one forward
        logits = self.discriminate(torch.cat([x, x], dim=0), both)
        real_logits, fake_logits = logits[:, :b], logits[:, b:]  # [N, B] each
        per_slot = torch.stack([
            L.gan_loss(real_logits[i], True, o.gan_kind) + L.gan_loss(fake_logits[i], False, o.gan_kind)
            for i, o in enumerate(self.objectives)])
        self.opt_d.zero_grad(set_to_none=True)
        per_slot.sum().backward()
        self.opt_d.step()
        return per_slot.tolist()

    def generator_terms(self, x: torch.Tensor, y: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """The weighted terms of each slot's generator loss (as :meth:`Trainer.generator_losses`), keys incl. ``total``."""
        b, k = x.shape[0], self.k
        z = self.noise(b * k)
        samples = self.sample(x, k, z)  # [N, B, K, y_dim]
        needs_d = any(o.gan_weight > 0 for o in self.objectives)
        if needs_d:
            self.D.requires_grad_(False)
            logits = self.discriminate(x.repeat_interleave(k, dim=0), samples.reshape(self.n, b * k, self.y_dim))
            self.D.requires_grad_(True)
        if any(o.needs_predictor for o in self.objectives):
            if not self.predictor_ready:
                self.fit_predictors()
            center, log_disp = self.predict(x)  # [N, B, y_dim]
        zk = z.reshape(b, k, -1)
        half = k // 2
        out = []
        for i, o in enumerate(self.objectives):
            s = samples[i]  # [B, K, y_dim]
            terms: dict[str, torch.Tensor] = {}
            if o.gan_weight > 0:
                terms["gan"] = o.gan_weight * L.gan_loss(logits[i], True, o.gan_kind, generator=True)
            if o.rec is not None and o.rec_weight > 0:
                terms["rec"] = o.rec_weight * L.reconstruction_loss(s, y, 1 if o.rec == "l1" else 2)
            if o.moment == "mr" and o.moment_weight > 0:
                terms["moment"] = o.moment_weight * L.mr_loss(s, y, o.moment_dist, o.moment_order)
            if o.needs_predictor:
                terms["moment"] = o.moment_weight * L.proxy_mr_loss(s, center[i], log_disp[i], o.moment_dist, o.moment_order)
            if o.ms_weight > 0:
                terms["ms"] = o.ms_weight * L.mode_seeking_loss(
                    s[:, :half].reshape(-1, self.y_dim), s[:, half:2 * half].reshape(-1, self.y_dim),
                    zk[:, :half].reshape(b * half, -1), zk[:, half:2 * half].reshape(b * half, -1))
            terms["total"] = sum(terms.values())
            out.append(terms)
        return out

    def generator_step(self, x: torch.Tensor, y: torch.Tensor) -> list[dict[str, float]]:
        """One G update of every slot; returns each slot's terms as floats."""
        terms = self.generator_terms(x, y)
        total = sum(t["total"] for t in terms)
        for i, t in enumerate(terms):
            if not torch.isfinite(t["total"]):
                raise FloatingPointError(f"objective {i} ({self.objectives[i].name}) generator loss became "
                                         f"{t['total'].item()} at step {self.step}: lower its weight or the learning rate")
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        return [{key: v.item() for key, v in t.items()} for t in terms]

    def train_step(self) -> None:
        """One round: ``d_steps`` D updates (if any slot has a GAN term), then ``g_steps`` G updates."""
        cfg = self.config
        d_loss: list[float] = []
        if any(o.gan_weight > 0 for o in self.objectives):
            for _ in range(cfg.d_steps):
                d_loss = self.discriminator_step(*self.sampler(cfg.batch_size, self.rng))
        for _ in range(cfg.g_steps):
            g = self.generator_step(*self.sampler(cfg.batch_size, self.rng))
        self.step += 1
        for i, hist in enumerate(self.history):
            hist["step"].append(float(self.step))
            for key, v in g[i].items():
                hist.setdefault("g_" + key, []).append(v)
            if d_loss and self.objectives[i].gan_weight > 0:
                hist.setdefault("d_loss", []).append(d_loss[i])

    def train(self, steps: int, should_stop: Callable[[], bool] | None = None,
              callback: Callable[["MultiTrainer"], None] | None = None) -> int:
        """Run up to ``steps`` rounds; ``should_stop()`` is checked before each (Pause); ``callback`` after each.
        Returns the number of rounds done."""
        done = 0
        while done < steps and not (should_stop is not None and should_stop()):
            self.train_step()
            done += 1
            if callback is not None:
                callback(self)
        return done


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
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--hidden", type=int, default=64, help="MLP width (the app's default is 64)")
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
        from .widgets import LossComparisonApp

        app = LossComparisonApp(dataset="y-shape", objectives=objectives, steps=args.steps, k=args.k, hidden=args.hidden)
        t0, c0 = time.perf_counter(), time.process_time()
        app.run(block=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"\napp end to end (Y-shape, {n} objectives, {args.steps} steps, K={args.k}, live view on): "
              f"{wall:.1f} s wall ({cpu:.1f} s CPU), {app.frames_drawn} view updates = "
              f"{app.frames_drawn / wall:.1f} updates/s")
    return 0


# --------------------------------------------------------------------------------------------- toy tasks
class ToyTask:
    """A toy of :mod:`minilib.toy` as the app sees it: sampler, reference draws, the slots' samples for the
    views and metrics, and the discriminators on a grid.

    ``kind`` is ``"conditional"`` (y over x), ``"2d"`` (unconditional 2-D scatter) or ``"1d"`` (histogram).
    """

    def __init__(self, name: str, view_points: int = 600) -> None:
        from .toy import make_dataset

        self.dataset = make_dataset(name)
        self.name, self.x_dim, self.y_dim = name, self.dataset.x_dim, self.dataset.y_dim
        self.kind = "conditional" if self.x_dim else ("2d" if self.y_dim == 2 else "1d")
        self.view_points = view_points
        if self.kind == "conditional":
            self.extent = ((-1.0, 1.0), (-1.25, 1.25))
        else:
            modes, pad = self.dataset.modes, 4 * self.dataset.std + 0.5
            lo, hi = float(modes.min()) - pad, float(modes.max()) + pad
            self.extent = ((lo, hi), (lo, hi))
        self._gen = torch.Generator()

    def sampler(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pairs ``(x [n, x_dim], y [n, y_dim])``."""
        return self.dataset.sample(n, generator)

    def reference(self, n: int, seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed true draws for the background of the views."""
        return self.dataset.sample(n, torch.Generator().manual_seed(seed))

    def view_x(self) -> torch.Tensor:
        """Inputs of the view: an even grid of x for conditional toys, empty x otherwise ``[M, x_dim]``."""
        if self.kind == "conditional":
            return torch.linspace(*self.extent[0], self.view_points).unsqueeze(1)
        return torch.zeros(self.view_points * (4 if self.kind == "1d" else 1), 0)

    @torch.no_grad()
    def generate(self, trainer: MultiTrainer) -> torch.Tensor:
        """One sample per view input for every slot: ``[N, M, y_dim]`` (seeded: frames differ only by training)."""
        x = self.view_x()
        z = torch.randn(x.shape[0], trainer.config.z_dim, generator=self._gen.manual_seed(7))
        return trainer.sample(x, 1, z)[:, :, 0]

    @torch.no_grad()
    def d_heatmap(self, trainer: MultiTrainer, size: int = 64) -> torch.Tensor:
        """D(x, y) probabilities on a grid: ``[N, size, size]`` (rows: y / y2, columns: x / y1), ``[N, size]`` for 1-D."""
        (a0, a1), (b0, b1) = self.extent
        u = torch.linspace(a0, a1, size)
        if self.kind == "1d":
            return torch.sigmoid(trainer.discriminate(torch.zeros(size, 0), u.unsqueeze(1)))
        v = torch.linspace(b0, b1, size)
        vv, uu = torch.meshgrid(v, u, indexing="ij")  # [size, size]
        if self.kind == "conditional":
            x, y = uu.reshape(-1, 1), vv.reshape(-1, 1)
        else:
            x, y = torch.zeros(size * size, 0), torch.stack([uu.reshape(-1), vv.reshape(-1)], 1)
        return torch.sigmoid(trainer.discriminate(x, y)).reshape(trainer.n, size, size)

    @torch.no_grad()
    def metrics(self, trainer: MultiTrainer, points: int = 24, k: int = 64) -> list[dict[str, float]]:
        """Exact readouts per slot (:mod:`minilib.metrics.toy`), seeded so frames are comparable.

        Conditional: mean per-x W1 to the true p(y|x) over ``points`` inputs, and the std ratio for x > 0.5 (where
        the Y's branches are apart). Mixtures: modes captured, high-quality fraction, KL of the mode histogram,
        the ratio of generated to true std (and W1 for 1-D).
        """
        from .metrics.toy import conditional_w1, mode_stats, std_ratio, wasserstein_1d

        gen = self._gen.manual_seed(11)
        ds = self.dataset
        if self.kind == "conditional":
            x = torch.linspace(-0.95, 0.95, points).unsqueeze(1)  # [T, 1]
            z = torch.randn(points * k, trainer.config.z_dim, generator=gen)
            samples = trainer.sample(x, k, z)  # [N, T, K, 1]
            truth = ds.sample_conditional(x, 256, gen)  # [T, 256, 1]
            right = x[:, 0] > 0.5
            true_std = ds.conditional_std(x[right])
            return [{"W1": float(conditional_w1(s, truth).mean()),
                     "std ratio": float(std_ratio(s[right], true_std).mean())} for s in samples]
        n = 1000
        x = torch.zeros(n, 0)
        z = torch.randn(n, trainer.config.z_dim, generator=gen)
        samples = trainer.sample(x, 1, z)[:, :, 0]  # [N, n, d]
        truth = ds.sample(4000, gen)[1]  # [4000, d]
        out = []
        for s in samples:
            st = mode_stats(s, ds.modes, ds.weights, ds.std)
            row = {"modes": float(st["modes"]), "hq": st["high_quality"], "kl": st["kl"],
                   "std ratio": float((s.std(0) / truth.std(0)).mean())}
            if self.kind == "1d":
                row["W1"] = float(wasserstein_1d(s[:, 0], truth[:, 0]))
            out.append(row)
        return out
