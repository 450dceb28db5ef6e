"""One training loop for every objective and every network.

* :func:`sample_k` draws K samples per input with one batched forward of size B·K.
* :class:`Trainer` owns G, D, the optional frozen predictor P, their optimisers and the state needed for exact
  resume. One *step* is a round of ``config.d_steps`` discriminator updates followed by ``config.g_steps`` generator
  updates (Pix2Pix 1:1, SRGAN 1:5, GLCIC 1:3); :func:`schedule_lr` sets the learning rates of a step.
* The generator's loss terms come from :func:`minilib.objectives.generator_terms` (the one place they are assembled);
  checkpoints are written with :mod:`minilib.checkpoints`; P is fitted beforehand by :func:`minilib.predictor.fit_predictor`.

Data comes from a *stream*: any object with ``next(batch_size) -> (x, y)`` and ``state_dict()`` / ``load_state_dict()``
(toy samplers and image datasets both provide one), so the loop makes no assumption about the task. Defaults are
MR-GAN Appendix B: AMSGrad, lr 1e-4, betas (0.5, 0.999), weight decay 1e-4, gradient clipping by value 0.5.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn

from . import losses as L
from .checkpoints import atomic_save, load_checkpoint, nonfinite_tensors, restore_rng, save_rng, to_cpu
from .errors import (CheckpointError, ConfigError, ConfigTypeError, NonFiniteError, TrainingDiverged, check_device, check_int,
                     check_number)
from .objectives import Objective, generator_terms, objective_record

__all__ = ["Stream", "TrainConfig", "Trainer", "TrainingDiverged", "sample_k", "make_optimizer", "schedule_lr"]

Noise = torch.Tensor | tuple[torch.Tensor, ...]


class Stream(Protocol):
    """What the trainer needs from data: batches and a resumable position."""
    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class TrainConfig:
    """Optimisation settings (defaults: MR-GAN Appendix B; toys override some and say so).

    ``batch_size`` is the discriminator's (and predictor's) batch; ``g_batch_size`` the number of
    inputs per generator update, each expanded to ``objective.k`` samples. ``lr_decay_from``: both learning rates
    are constant for that fraction of :meth:`Trainer.fit`'s rounds, then fall linearly to 0 (pix2pix's schedule;
    1.0: constant). ``gan_start``: rounds with neither D updates nor the GAN term (the other terms act alone first).
    """

    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-4
    amsgrad: bool = True
    clip_value: float | None = 0.5
    batch_size: int = 16
    g_batch_size: int = 8
    d_steps: int = 1
    g_steps: int = 1
    seed: int = 0
    device: str = "cpu"
    amp: bool = True  # bf16 autocast, only ever used on CUDA
    channels_last: bool = True  # only ever used on CUDA for 4-D tensors
    log_every: int = 10
    progress: bool = True
    lr_decay_from: float = 1.0
    gan_start: int = 0

    def __post_init__(self) -> None:
        for name in ("lr_g", "lr_d"):
            check_number(name, getattr(self, name), low=0.0)
        for name in ("batch_size", "g_batch_size", "d_steps", "g_steps", "log_every"):
            check_int(name, getattr(self, name))
        check_number("weight_decay", self.weight_decay, low=0.0, low_open=False)
        check_number("lr_decay_from", self.lr_decay_from, low=0.0, high=1.0, low_open=False, high_open=False)
        check_int("gan_start", self.gan_start, 0)
        if self.clip_value is not None:
            check_number("clip_value", self.clip_value, low=0.0)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
        self.betas = tuple(float(b) for b in self.betas)


def make_optimizer(params: Any, lr: float, config: TrainConfig) -> torch.optim.Optimizer:
    """AMSGrad-Adam with the config's betas and weight decay (Appendix B)."""
    return torch.optim.Adam(params, lr=lr, betas=config.betas, weight_decay=config.weight_decay, amsgrad=config.amsgrad)


def schedule_lr(config: TrainConfig, step: int, total: int, opt_g: Any, opt_d: Any = None) -> None:
    """Both learning rates at ``step`` of ``total`` rounds (a function of the step only, so resuming keeps the schedule):
    constant up to ``config.lr_decay_from * total``, then linear to 0 (pix2pix)."""
    start = config.lr_decay_from * total
    if start < total:
        factor = 1.0 if step < start else max(0.0, (total - step) / (total - start))
        for opt, lr in ((opt_g, config.lr_g), (opt_d, config.lr_d)):
            for group in opt.param_groups if opt is not None else ():
                group["lr"] = lr * factor


# ----------------------------------------------------------------------------------------- sampling
def sample_k(G: nn.Module, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, Noise]:
    """K samples per input from one batched forward (the generator contract of ARCHITECTURE.md).

    Args:
        G: a generator ``G(x, z)`` with ``G.noise(n, device, generator)`` (may be wrapped in DDP).
        x: ``[B, *x_shape]`` inputs (``[B, 0]`` for unconditional models); k: samples per input.
    Returns:
        ``samples`` ``[B, K, *event]`` and the flat noise ``z`` (``[B·K, ...]`` or a tuple of such), with the
        K samples of input b at rows ``b·K ... b·K + K - 1``. ``encodes_once`` generators get ``G(x, z, repeat=K)``.
    """
    check_int("k", k)
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise ConfigError(f"x must be a tensor [B, ...], got {type(x).__name__}")
    core = G.module if hasattr(G, "module") else G
    b = x.shape[0]
    z = core.noise(b * k, device=x.device, generator=generator)
    # [B·K, *event]; an encoder that sees no noise runs once per input (called through the wrapper: DDP still syncs)
    y = G(x, z, repeat=k) if k > 1 and getattr(core, "encodes_once", False) else G(x.repeat_interleave(k, dim=0), z)
    return y.reshape(b, k, *y.shape[1:]), z


def _unwrap(m: nn.Module | None) -> nn.Module | None:
    return m.module if (m is not None and hasattr(m, "module")) else m


def _to_device(t: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    t = t.to(device, non_blocking=True)
    return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t


# ----------------------------------------------------------------------------------------- trainer
ExtraLoss = Callable[["Trainer", torch.Tensor, torch.Tensor, torch.Tensor, Noise], dict[str, torch.Tensor]]


class Trainer:
    """Trains G (and D) for one :class:`~minilib.objectives.Objective`.

    Args:
        G: generator ``G(x, z)`` with ``G.noise``. D: discriminator ``D(x, y) -> logits``; may be ``None`` when
            ``objective.gan_weight == 0``.
        objective: which terms and weights. config: optimisation settings.
        P: a trained predictor ``P(x) -> (center, log_dispersion)``; required for proxy MR; frozen here.
        extra_loss: optional hook ``extra_loss(trainer, x, y, samples, z) -> {name: weighted loss}`` added to the
            generator loss (PresGAN's entropy term uses it).
        transform_real: optional map applied to real ``y`` before the discriminator sees it (PresGAN noises it).

    When ``torch.distributed`` is initialised, G and D are wrapped in DistributedDataParallel; each rank
    draws different noise (seed + rank) and should read its own shard of the data.
    """

    def __init__(self, G: nn.Module, D: nn.Module | None, objective: Objective, config: TrainConfig | None = None,
                 P: nn.Module | None = None, extra_loss: ExtraLoss | None = None,
                 transform_real: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if not isinstance(objective, Objective):
            raise ConfigTypeError(f"objective must be an Objective (see minilib.objectives.get_objective), got {type(objective).__name__}")
        self.config = config = config or TrainConfig()
        if objective.uses_discriminator and D is None:
            raise ValueError(f"D is required: objective {objective.name!r} has gan_weight = {objective.gan_weight}")
        if objective.needs_predictor and P is None:
            raise ValueError(f"P is required: objective {objective.name!r} uses proxy MR (train one with fit_predictor)")
        if config.gan_start and not (objective.rec or objective.moment or objective.ms_weight):
            raise ConfigError(f"config.gan_start = {config.gan_start}: objective {objective.name!r} has no term besides "
                              "the GAN one to train with before the GAN starts")
        if not hasattr(_unwrap(G), "noise"):
            raise TypeError("G must have a noise(n, device, generator) method (the generator contract)")
        self.objective = objective
        self.device = check_device("config.device", config.device)
        self.cuda = self.device.type == "cuda"
        self.use_amp = config.amp and self.cuda
        self.channels_last = config.channels_last and self.cuda
        fmt = {"memory_format": torch.channels_last} if self.channels_last else {}
        self.G = G.to(self.device, **fmt)
        self.D = D.to(self.device, **fmt) if D is not None else None
        self.P = P.to(self.device, **fmt).eval().requires_grad_(False) if P is not None else None
        self.extra_loss = extra_loss
        self.transform_real = transform_real
        self.rank = 0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.rank = torch.distributed.get_rank()
            ids = [self.device.index] if self.cuda else None
            self.G = DDP(self.G, device_ids=ids)
            if self.D is not None:
                self.D = DDP(self.D, device_ids=ids)
        self.opt_g = make_optimizer(_unwrap(self.G).parameters(), config.lr_g, config)
        self.opt_d = make_optimizer(_unwrap(self.D).parameters(), config.lr_d, config) if self.D is not None else None
        self.noise_gen = torch.Generator(device=self.device).manual_seed(config.seed * 1000 + self.rank)
        self.step = 0
        self.history: dict[str, list[float]] = {"step": []}
        self._pending: dict[str, list[float]] = {}

    # -- helpers --------------------------------------------------------------------------------
    @property
    def G_core(self) -> nn.Module:
        """The generator without a DDP wrapper."""
        return _unwrap(self.G)

    @property
    def D_core(self) -> nn.Module | None:
        return _unwrap(self.D)

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.use_amp) if self.cuda else torch.autocast("cpu", enabled=False)

    def _clip(self, module: nn.Module) -> None:
        if self.config.clip_value is not None:
            nn.utils.clip_grad_value_(module.parameters(), self.config.clip_value)

    _ADVICE = ("training stopped; the last checkpoint written before this step is kept. Lower the learning rate or "
               "the term's weight, or check the data.")

    def _check_finite(self, name: str, value: torch.Tensor, step: int) -> None:
        if not torch.isfinite(value).all():
            raise TrainingDiverged(f"loss {name!r} became {value.item()} at step {step}: {self._ADVICE}")

    def check_weights(self) -> None:
        """Raise :class:`TrainingDiverged` if a parameter or buffer of G or D holds NaN / Inf (one device sync): losses
        can stay finite while a network diverges (BatchNorm ``running_var`` at Inf makes eval samples constant)."""
        bad = nonfinite_tensors(G=self.G_core, D=self.D_core)
        if bad:
            raise TrainingDiverged(f"{', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''} became nan or inf at step "
                                   f"{self.step} (the losses may still be finite): {self._ADVICE}")

    def _record(self, values: dict[str, torch.Tensor | float]) -> None:
        for key, v in values.items():
            self._pending.setdefault(key, []).append(float(v))

    def log(self, **values: float) -> None:
        """Append values (e.g. metrics from a callback) to the history at the current step."""
        for key, v in values.items():
            self.history.setdefault(key, []).append(float(v))
            self.history.setdefault(key + "_step", []).append(float(self.step))

    # -- one update of each network ------------------------------------------------------------------
    def discriminator_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One D update on real pairs (x, y) and fake pairs (x, G(x, z)), one sample per input."""
        if self.D is None:
            return {}
        x, y = _to_device(x, self.device, self.channels_last), _to_device(y, self.device, self.channels_last)
        kind = self.objective.gan_kind
        self.D_core.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with torch.no_grad(), self._autocast():
            fake = sample_k(self.G_core, x, 1, self.noise_gen)[0][:, 0]
        real = self.transform_real(y) if self.transform_real is not None else y
        # two backward passes (gradients accumulate): identical to one on the sum, and DDP-friendly
        with self._autocast():
            loss_real = L.gan_loss(self.D(x, real).float(), True, kind)
        self._check_finite("d_real", loss_real.detach(), self.step)
        loss_real.backward()
        with self._autocast():
            loss_fake = L.gan_loss(self.D(x, fake.detach()).float(), False, kind)
        self._check_finite("d_fake", loss_fake.detach(), self.step)
        loss_fake.backward()
        self._clip(self.D_core)
        self.opt_d.step()
        out = {"d_real": loss_real.item(), "d_fake": loss_fake.item()}
        self._record(out)
        return out

    def generator_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every weighted term of the generator loss for a batch (x on device). Keys: term names + ``"total"``.

        Draws K samples per input in one forward, asks D and P for what the objective needs, and lets
        :func:`~minilib.objectives.generator_terms` weigh the terms; ``extra_loss`` terms are added last."""
        obj, adversarial = self.objective, self.step >= self.config.gan_start
        b, k = x.shape[0], obj.k
        with self._autocast():
            samples, z = sample_k(self.G, x, k, self.noise_gen)  # [B, K, *event]
        logits = center = log_disp = None
        if obj.gan_weight > 0 and adversarial:
            self.D_core.requires_grad_(False)  # no D gradients during the G update
            with self._autocast():
                logits = self.D_core(x.repeat_interleave(k, dim=0), samples.reshape(b * k, *samples.shape[2:]))
        if obj.needs_predictor:
            with torch.no_grad(), self._autocast():
                center, log_disp = self.P(x)
        terms = generator_terms(obj, samples, y, logits=logits, center=center, log_dispersion=log_disp, z=z,
                                step=self.step, adversarial=adversarial)
        if self.extra_loss is not None:
            terms.pop("total")
            terms.update(self.extra_loss(self, x, y, samples, z))
            terms["total"] = sum(terms.values())
        return terms

    def generator_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One G update: K samples per input in one batched forward, the weighted terms, clip, step."""
        x, y = _to_device(x, self.device, self.channels_last), _to_device(y, self.device, self.channels_last)
        self.opt_g.zero_grad(set_to_none=True)
        terms = self.generator_losses(x, y)
        for name, value in terms.items():
            self._check_finite("g_" + name, value.detach(), self.step)
        terms["total"].backward()
        self._clip(self.G_core)
        self.opt_g.step()
        project = getattr(self.G_core, "project_", None)
        if project is not None:  # parameter constraints, e.g. PresGAN's sigma range
            project()
        out = {"g_" + name: v.item() for name, v in terms.items()}
        self._record(out)
        return out

    def train_step(self, stream: Stream) -> None:
        """One round: ``d_steps`` D updates (none before ``config.gan_start``), then ``g_steps`` G updates; advances
        ``self.step``."""
        cfg = self.config
        self.G.train()
        try:  # the losses refuse NaN / Inf inputs on CPU: the run diverged
            if self.D is not None and self.step >= cfg.gan_start:
                self.D.train()
                for _ in range(cfg.d_steps):
                    self.discriminator_step(*stream.next(cfg.batch_size))
            for _ in range(cfg.g_steps):
                self.generator_step(*stream.next(cfg.g_batch_size))
        except NonFiniteError as e:
            raise TrainingDiverged(f"a loss input became nan or inf at step {self.step} ({e}): {self._ADVICE}") from e
        self.step += 1
        if self.step % cfg.log_every == 0:
            self.history["step"].append(float(self.step))
            for key, vals in self._pending.items():
                self.history.setdefault(key, []).append(sum(vals) / len(vals))
            self._pending = {}

    def fit(self, stream: Stream, steps: int, callback: Callable[["Trainer"], Any] | None = None, callback_every: int = 0,
            checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 0,
            should_stop: Callable[[], bool] | None = None, check_every: int = 100) -> dict[str, list[float]]:
        """Train until ``self.step == steps`` (a total, so a resumed run ends where the original would).

        ``callback(trainer)`` runs every ``callback_every`` steps (live plots, animation frames, metrics via
        :meth:`log`); ``checkpoint`` is written atomically every ``checkpoint_every`` steps and at the end, each time
        after :meth:`check_weights` (a diverged network never replaces the last good checkpoint), which also runs
        every ``check_every`` steps (0: at checkpoints only); ``should_stop()`` lets a UI pause. Returns the history."""
        for name, v in (("steps", steps), ("callback_every", callback_every), ("checkpoint_every", checkpoint_every), ("check_every", check_every)):
            check_int(name, v, 0)
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=min(self.step, steps), disable=not self.config.progress or self.rank != 0, desc=self.objective.name)
        try:
            while self.step < steps:
                if should_stop is not None and should_stop():
                    break
                self.set_lr(steps)
                self.train_step(stream)
                bar.update(1)
                if check_every and self.step % check_every == 0:
                    self.check_weights()
                if callback is not None and callback_every and self.step % callback_every == 0:
                    callback(self)
                if checkpoint is not None and checkpoint_every and self.step % checkpoint_every == 0:
                    self.save(checkpoint, stream)
        finally:
            bar.close()
        if checkpoint is not None:
            self.save(checkpoint, stream)
        return self.history

    def set_lr(self, total: int) -> None:
        """Both learning rates at this step of a ``total``-round run (:func:`schedule_lr`)."""
        schedule_lr(self.config, self.step, total, self.opt_g, self.opt_d)

    # -- exact resume ---------------------------------------------------------------------------------
    def state_dict(self, stream: Stream | None = None) -> dict:
        """Everything needed to continue exactly: weights, optimisers, step, history, RNG and stream state."""
        state = {"step": self.step, "G": self.G_core.state_dict(), "opt_g": self.opt_g.state_dict(),
                 "history": {k: list(v) for k, v in self.history.items()},
                 "pending": {k: list(v) for k, v in self._pending.items()}, "objective": asdict(self.objective),
                 **save_rng(self.noise_gen, self.device)}  # the RNG state on CPU: set_state wants CPU bytes
        if self.D is not None:
            state["D"] = self.D_core.state_dict()
            state["opt_d"] = self.opt_d.state_dict()
        if self.P is not None:
            state["P"] = _unwrap(self.P).state_dict()
        if stream is not None:
            state["stream"] = stream.state_dict()
        if hasattr(self.extra_loss, "state_dict"):  # e.g. PresGAN's persistent HMC step size and RNG
            state["extra_loss"] = self.extra_loss.state_dict()
        return state

    def load_state_dict(self, state: dict, stream: Stream | None = None) -> None:
        """Continue from :meth:`state_dict` wherever its tensors were loaded (CheckpointError if it does not fit)."""
        trained = objective_record(state.get("objective", asdict(self.objective)))
        if trained != asdict(self.objective):
            raise CheckpointError(f"checkpoint was trained with objective {state['objective']}, not {asdict(self.objective)}")
        try:
            self.G_core.load_state_dict(state["G"])
            self.opt_g.load_state_dict(state["opt_g"])
            if self.D is not None:
                self.D_core.load_state_dict(state["D"])
                self.opt_d.load_state_dict(state["opt_d"])
            if self.P is not None and "P" in state:
                _unwrap(self.P).load_state_dict(state["P"])
            self.step, self.history = int(state["step"]), {k: list(v) for k, v in state["history"].items()}
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"not a checkpoint of these networks ({type(e).__name__}: {str(e).splitlines()[0]})") from e
        self._pending = {k: list(v) for k, v in state.get("pending", {}).items()}
        restore_rng(state, self.noise_gen, self.device, reseed=self.config.seed * 1000 + self.rank + self.step)
        if stream is not None and "stream" in state:  # small states, back on CPU whatever map_location was
            stream.load_state_dict(to_cpu(state["stream"]))
        if "extra_loss" in state and hasattr(self.extra_loss, "load_state_dict"):
            self.extra_loss.load_state_dict(to_cpu(state["extra_loss"]))

    def save(self, path: str | os.PathLike, stream: Stream | None = None) -> Path | None:
        """Write a checkpoint atomically (rank 0 only under DDP), after :meth:`check_weights`."""
        self.check_weights()
        if self.rank != 0:
            return None
        return atomic_save(self.state_dict(stream), path)

    def load(self, path: str | os.PathLike, stream: Stream | None = None,
             map_location: str | torch.device | None = None) -> None:
        """Resume from a checkpoint written by :meth:`save` (``weights_only=True``), loaded onto ``map_location``
        (default: this trainer's device); errors name the file."""
        try:
            self.load_state_dict(load_checkpoint(path, self.device if map_location is None else map_location), stream)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}" if str(path) not in str(e) else str(e)) from e
