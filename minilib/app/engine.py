"""The app's engine: train the small toy MLPs of several objectives at once (notebook 04).

N objectives means N generators, N discriminators and N predictors with identical architectures.
Instead of N training loops, :class:`BatchedMLP` stores the N networks' weights stacked along a leading
dimension and evaluates them with one batched matmul per layer (``torch.baddbmm``), so four objectives
cost about what one does. The slots never interact: every loss is a sum of per-objective terms, and
Adam is element-wise, so slot i follows exactly the trajectory it would follow on its own (tested).

One training round is the one of :class:`minilib.train.Trainer`: ``d_steps`` discriminator updates (real
pairs and one fake sample per input) then ``g_steps`` generator updates with K samples per input and the
weighted terms of each :class:`~minilib.objectives.Objective`, computed by the same
:func:`minilib.objectives.generator_terms` the Trainer calls. Toy defaults (not Appendix B's image settings):
the toys' optimiser preset (:data:`minilib.experiments.toys.TOY_ADAM`: Adam lr 1e-3, betas (0.5, 0.999), no
weight decay, no clipping); MLPs 2 x 128 ReLU.

``python -m minilib bench widgets`` (:mod:`minilib.app.bench`) times N objectives against one.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from .. import losses as L
from ..errors import NonFiniteError, TrainingDiverged
from ..experiments.toy_stack import stacked_forward
from ..experiments.toys import toy_adam
from ..objectives import Objective, generator_terms
from ..predictor import fit_predictor
from ..train import TrainConfig, make_optimizer

__all__ = ["BatchedMLP", "MultiConfig", "MultiTrainer"]

_RELU = nn.ReLU()
Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class _SlotPredictors(nn.Module):
    """The N stacked predictors as ``P(x) -> (center, log_dispersion)`` (each ``[N, B, y_dim]``) for the core loop."""

    def __init__(self, trainer: "MultiTrainer") -> None:
        super().__init__()
        self.P, self.predict = trainer.P, trainer.predict

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.predict(x)


class _SamplerStream:
    """A sampler ``(n, generator) -> (x, y)`` as a training stream (``next``, ``state_dict``, ``load_state_dict``)."""

    def __init__(self, sampler: Sampler, seed: int) -> None:
        self.sampler, self.gen = sampler, torch.Generator().manual_seed(seed)

    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sampler(batch_size, self.gen)

    def state_dict(self) -> dict:
        return {"rng": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["rng"])


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
        return stacked_forward([p for wb in zip(self.weights, self.biases) for p in wb], h, _RELU)  # [N, M, out]


@dataclass
class MultiConfig:
    """Settings shared by all slots (per-objective weights live in each Objective): the optimiser, batches, D:G
    ratio and seed in ``train`` (a :class:`~minilib.train.TrainConfig`, the toys' :data:`TOY_ADAM` by default;
    ``batch_size`` inputs per D update, ``g_batch_size`` per G update, each with K samples), the MLPs' size, the
    noise dimension and the predictor's fitting steps."""

    train: TrainConfig = field(default_factory=toy_adam)
    hidden: int = 128
    depth: int = 2
    z_dim: int = 2
    predictor_steps: int = 400

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"train must be a TrainConfig (e.g. minilib.experiments.toys.toy_adam()), got {type(self.train).__name__}")
        for name in ("hidden", "depth", "z_dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(self.predictor_steps, int) or self.predictor_steps < 0:
            raise ValueError(f"predictor_steps must be an int >= 0, got {self.predictor_steps!r}")


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
        init = torch.Generator().manual_seed(cfg.train.seed)
        self.G = BatchedMLP(n, x_dim + cfg.z_dim, cfg.hidden, cfg.depth, y_dim, init)
        self.D = BatchedMLP(n, x_dim + y_dim, cfg.hidden, cfg.depth, 1, init)
        self.P = BatchedMLP(n, x_dim, cfg.hidden, cfg.depth, 2 * y_dim, init)
        self.P.requires_grad_(False)
        self.opt_g = make_optimizer(self.G.parameters(), cfg.train.lr_g, cfg.train)
        self.opt_d = make_optimizer(self.D.parameters(), cfg.train.lr_d, cfg.train)
        self.rng = torch.Generator().manual_seed(cfg.train.seed + 1)
        self.step = 0
        self.history: list[dict[str, list[float]]] = [{"step": []} for _ in objectives]
        self.predictor_ready = not any(o.needs_predictor for o in objectives)

    @property
    def n(self) -> int:
        return len(self.objectives)

    def _clip(self, module: nn.Module) -> None:
        if self.config.train.clip_value is not None:
            nn.utils.clip_grad_value_(module.parameters(), self.config.train.clip_value)

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
        """Fit each slot's predictor by MLE (Eq. 4 / 5, the slot's ``moment_dist``) with the core loop
        (:func:`minilib.predictor.fit_predictor`, all slots at once); each slot keeps the weights with its lowest
        validation loss (MR-GAN Appendix B). Returns the best validation loss per slot."""
        steps = self.config.predictor_steps if steps is None else steps
        seed = self.config.train.seed
        self.P.requires_grad_(True)
        try:
            if steps > 0:
                res = fit_predictor(_SlotPredictors(self), _SamplerStream(self.sampler, seed + 2), _SamplerStream(self.sampler, seed + 3),
                                    dist=[o.moment_dist for o in self.objectives], steps=steps, batch_size=batch_size,
                                    val_every=25, val_batches=8, patience=None, lr=1e-3, slots=self.n,
                                    config=dataclasses.replace(self.config.train, betas=(0.9, 0.999), clip_value=None))
                best = res["best_val"]
            else:
                best = [math.nan] * self.n
        finally:
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
        self._clip(self.D)
        self.opt_d.step()
        return per_slot.tolist()

    def generator_terms(self, x: torch.Tensor, y: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """The weighted terms of each slot's generator loss, keys incl. ``total``: one batched forward of every
        slot's G (and D, P), then :func:`minilib.objectives.generator_terms` per slot (as the Trainer does)."""
        b, k = x.shape[0], self.k
        z = self.noise(b * k)
        samples = self.sample(x, k, z)  # [N, B, K, y_dim]
        logits = center = log_disp = None
        if any(o.gan_weight > 0 for o in self.objectives):
            self.D.requires_grad_(False)
            logits = self.discriminate(x.repeat_interleave(k, dim=0), samples.reshape(self.n, b * k, self.y_dim))  # [N, B·K]
            self.D.requires_grad_(True)
        if any(o.needs_predictor for o in self.objectives):
            if not self.predictor_ready:
                self.fit_predictors()
            center, log_disp = self.predict(x)  # [N, B, y_dim]
        return [generator_terms(o, samples[i], y, z=z, logits=None if logits is None else logits[i],
                                center=None if center is None else center[i],
                                log_dispersion=None if log_disp is None else log_disp[i])
                for i, o in enumerate(self.objectives)]

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
        self._clip(self.G)
        self.opt_g.step()
        return [{key: v.item() for key, v in t.items()} for t in terms]

    def train_step(self) -> None:
        """One round: ``d_steps`` D updates (if any slot has a GAN term), then ``g_steps`` G updates."""
        cfg = self.config.train
        d_loss: list[float] = []
        try:  # the losses refuse NaN / Inf inputs (CPU): as a NaN loss, the run diverged
            if any(o.gan_weight > 0 for o in self.objectives):
                for _ in range(cfg.d_steps):
                    d_loss = self.discriminator_step(*self.sampler(cfg.batch_size, self.rng))
            for _ in range(cfg.g_steps):
                g = self.generator_step(*self.sampler(cfg.g_batch_size, self.rng))
        except NonFiniteError as e:
            names = ", ".join(o.name for o in self.objectives)
            raise TrainingDiverged(f"a loss input became nan or inf at step {self.step} ({e}); objectives: {names}: "
                                   "lower a weight or the learning rate") from e
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
