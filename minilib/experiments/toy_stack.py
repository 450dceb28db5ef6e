"""Several toy runs trained as one stacked network: the same algorithm as :class:`minilib.train.Trainer`, run by run.

A toy MLP is so small that a training step is mostly per-operation overhead, not arithmetic. Stacking E runs'
networks (weights ``[E, in, out]``, one batched matrix product per layer, one optimiser step for all) pays that
overhead once for E runs. Each run keeps its own initial weights, its own data stream and noise generator (drawn
in the Trainer's order), and its own objective, predictor and loss terms; the loss that is differentiated is the
sum of the runs' losses, so each run's gradient is exactly its own. A run's result does not depend on which other
runs share its stack (``tests/test_toy_stack.py`` checks this bit for bit, and checks that one stacked run follows
the Trainer step by step).

Runs can share a stack when they share the dataset, the networks' sizes, the optimiser settings, the number of
steps and K, and either all use a discriminator or none does (:func:`stack_key`).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..errors import ConfigError, NonFiniteError, TrainingDiverged, inputs_checked
from ..losses import gan_loss
from ..objectives import Objective, generator_terms
from ..train import TrainConfig, make_optimizer, schedule_lr

__all__ = ["StackedRun", "stack_params", "unstack_params", "stacked_forward", "train_stacked", "stack_key"]


@dataclass
class StackedRun:
    """One run of a stack: its networks (``G``, ``D`` or None, a trained ``P`` or None), objective, seed (noise:
    ``seed * 1000`` as in the Trainer), data ``stream``, and an optional ``callback(step, G)`` called every
    ``callback_every`` steps with ``G`` holding the run's current weights (animation frames)."""

    G: nn.Module
    D: nn.Module | None
    P: nn.Module | None
    objective: Objective
    seed: int
    stream: Any
    callback: Callable[[int, nn.Module], Any] | None = None
    callback_every: int = 0
    history: dict[str, list[float]] = field(default_factory=lambda: {"step": []})


def _linears(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def _activation(net: nn.Module) -> nn.Module:
    acts = [m for m in net.modules() if not isinstance(m, (nn.Linear, nn.Sequential)) and not list(m.children())
            and m is not net]
    return acts[0] if acts else nn.Identity()


def stack_params(nets: Sequence[nn.Module]) -> list[torch.Tensor]:
    """The Linear layers of same-shaped MLPs as stacked leaves ``[W_1, b_1, W_2, b_2, ...]``, ``W [E, in, out]``
    (transposed, for ``h @ W``) and ``b [E, 1, out]``."""
    layers = [_linears(n) for n in nets]
    if not layers or any(len(ls) != len(layers[0]) for ls in layers):
        raise ValueError("nets must be a non-empty sequence of MLPs with the same number of Linear layers")
    out: list[torch.Tensor] = []
    for j in range(len(layers[0])):
        out.append(torch.stack([ls[j].weight.detach().t() for ls in layers]).contiguous().requires_grad_(True))
        out.append(torch.stack([ls[j].bias.detach()[None] for ls in layers]).contiguous().requires_grad_(True))
    return out


@torch.no_grad()
def unstack_params(params: Sequence[torch.Tensor], nets: Sequence[nn.Module]) -> None:
    """Copy each run's slice of the stacked leaves back into its own MLP (the inverse of :func:`stack_params`)."""
    for e, net in enumerate(nets):
        for j, lin in enumerate(_linears(net)):
            lin.weight.copy_(params[2 * j][e].t())
            lin.bias.copy_(params[2 * j + 1][e, 0])


def stacked_forward(params: Sequence[torch.Tensor], h: torch.Tensor, act: nn.Module) -> torch.Tensor:
    """The stacked MLP on ``h [E, N, in]``: ``[E, N, out]`` (``act`` between layers, none after the last)."""
    n = len(params) // 2
    for j in range(n):
        w, b = params[2 * j], params[2 * j + 1]
        # a dimension of size 1 sends the batched product down another kernel whose result for one run depends
        # on the other runs in the stack: pad it to 2 with zeros (the extra column / row contributes exactly 0)
        if w.shape[1] == 1:
            w, h = torch.cat([w, torch.zeros_like(w)], 1), torch.cat([h, torch.zeros_like(h)], 2)
        if w.shape[2] == 1:
            h = torch.baddbmm(torch.cat([b, torch.zeros_like(b)], 2), h, torch.cat([w, torch.zeros_like(w)], 2))[..., :1]
        else:
            h = torch.baddbmm(b, h, w)
        if j < n - 1:
            h = act(h)
    return h


def _inputs(x: torch.Tensor, z: torch.Tensor, repeat: int) -> torch.Tensor:
    """The toy generator's input ``cat(x, z)`` with each x repeated ``repeat`` times (as ``sample_k`` does)."""
    return torch.cat([x.repeat_interleave(repeat, dim=0).to(z.dtype), z], 1)


def _check_config(cfg: TrainConfig, runs: Sequence[StackedRun]) -> None:
    if not runs:
        raise ValueError("runs must be a non-empty sequence of StackedRun")
    if cfg.device != "cpu":
        raise ConfigError(f"config.device must be 'cpu' for stacked toy runs, got {cfg.device!r}")
    ks = {r.objective.k for r in runs}
    with_d = {r.objective.uses_discriminator for r in runs}
    if len(ks) != 1 or len(with_d) != 1:
        raise ValueError(f"runs of one stack must share K and whether they use a discriminator, got K {sorted(ks)} "
                         f"and discriminator {sorted(with_d)}")
    for r in runs:
        if r.objective.uses_discriminator and r.D is None:
            raise ValueError(f"D is required: objective {r.objective.name!r} has gan_weight = {r.objective.gan_weight}")
        if r.objective.needs_predictor and r.P is None:
            raise ValueError(f"P is required: objective {r.objective.name!r} uses proxy MR")


def train_stacked(runs: Sequence[StackedRun], config: TrainConfig, steps: int, check_every: int = 100) -> None:
    """Train every run for ``steps`` rounds in one stack (see the module docstring); the trained weights are
    copied back into each run's ``G`` and ``D``, the histories (the Trainer's keys, averaged every
    ``config.log_every`` rounds) into ``run.history``. Each round: ``d_steps`` D updates on ``batch_size`` real and
    fake pairs, then ``g_steps`` G updates on ``g_batch_size`` inputs x K samples, clipping by value, the learning-
    rate schedule and ``gan_start`` as in the Trainer. Raises :class:`TrainingDiverged` naming the run whose loss or
    weights became NaN / Inf."""
    cfg = config
    _check_config(cfg, runs)
    E, k = len(runs), runs[0].objective.k
    use_d = runs[0].objective.uses_discriminator
    g_act = _activation(runs[0].G)
    Gp = stack_params([r.G for r in runs])
    opt_g = make_optimizer(Gp, cfg.lr_g, cfg)
    Dp = stack_params([r.D for r in runs]) if use_d else []
    d_act = _activation(runs[0].D) if use_d else None
    opt_d = make_optimizer(Dp, cfg.lr_d, cfg) if use_d else None
    gens = [torch.Generator().manual_seed(r.seed * 1000) for r in runs]
    z_dim = runs[0].G.z_dim
    names = [f"{r.objective.name} (seed {r.seed})" for r in runs]
    const_p = {}  # an unconditional toy's frozen predictor gives one (center, dispersion): computed once
    pending: list[dict[str, list[float]]] = [{} for _ in runs]

    def diverged(what: str, bad: list[int], step: int) -> TrainingDiverged:
        return TrainingDiverged(f"{what} became nan or inf at step {step} in run {', '.join(names[e] for e in bad)}: "
                                "lower the learning rate or the term's weight")

    def check(values: list[torch.Tensor], owners: list[int], what: str, step: int) -> list[float]:
        flat = torch.stack(values)
        if not bool(torch.isfinite(flat).all()):
            bad = sorted({owners[i] for i, ok in enumerate(torch.isfinite(flat).tolist()) if not ok})
            raise diverged(f"a {what} loss", bad, step)
        return flat.tolist()

    def check_inputs(step: int, *stacks: torch.Tensor) -> None:  # [E, ...] tensors, one NaN / Inf test for all
        ok = torch.stack([torch.isfinite(t).flatten(1).all(1) for t in stacks]).all(0)
        if not bool(ok.all()):
            raise diverged("a loss input", [e for e, good in enumerate(ok.tolist()) if not good], step)

    def d_step(step: int) -> None:
        xs, ys = zip(*(r.stream.next(cfg.batch_size) for r in runs))
        zs = [torch.randn(cfg.batch_size, z_dim, generator=g) for g in gens]  # the Trainer's sample_k(G, x, 1)
        with torch.no_grad():
            fake = stacked_forward(Gp, torch.stack([_inputs(x, z, 1) for x, z in zip(xs, zs)]), g_act)
        opt_d.zero_grad(set_to_none=True)
        x_in = [x.to(fake.dtype) for x in xs]
        real_logits = stacked_forward(Dp, torch.stack([torch.cat([x, y], 1) for x, y in zip(x_in, ys)]), d_act)[..., 0]
        check_inputs(step, real_logits.detach())
        with inputs_checked():
            l_real = [gan_loss(real_logits[e], True, r.objective.gan_kind) for e, r in enumerate(runs)]
        v_real = check([v.detach() for v in l_real], list(range(E)), "d_real", step)
        torch.stack(l_real).sum().backward()
        fake_logits = stacked_forward(Dp, torch.cat([torch.stack(x_in), fake], 2), d_act)[..., 0]
        check_inputs(step, fake_logits.detach())
        with inputs_checked():
            l_fake = [gan_loss(fake_logits[e], False, r.objective.gan_kind) for e, r in enumerate(runs)]
        v_fake = check([v.detach() for v in l_fake], list(range(E)), "d_fake", step)
        torch.stack(l_fake).sum().backward()
        if cfg.clip_value is not None:
            nn.utils.clip_grad_value_(Dp, cfg.clip_value)
        opt_d.step()
        for e in range(E):
            pending[e].setdefault("d_real", []).append(v_real[e])
            pending[e].setdefault("d_fake", []).append(v_fake[e])

    def g_step(step: int, adversarial: bool) -> None:
        xs, ys = zip(*(r.stream.next(cfg.g_batch_size) for r in runs))
        zs = [torch.randn(cfg.g_batch_size * k, z_dim, generator=g) for g in gens]  # sample_k(G, x, K)
        opt_g.zero_grad(set_to_none=True)
        samples = stacked_forward(Gp, torch.stack([_inputs(x, z, k) for x, z in zip(xs, zs)]), g_act)
        logits = None
        if use_d and adversarial:
            for p in Dp:
                p.requires_grad_(False)
            x_rep = torch.stack([x.repeat_interleave(k, dim=0).to(samples.dtype) for x in xs])
            logits = stacked_forward(Dp, torch.cat([x_rep, samples], 2), d_act)[..., 0]
            for p in Dp:
                p.requires_grad_(True)
        samples = samples.view(E, cfg.g_batch_size, k, -1)
        y_stack = torch.stack(ys)
        check_inputs(step, samples.detach(), y_stack, *([logits.detach()] if logits is not None else []))
        values, owners, keys, totals = [], [], [], []
        for e, r in enumerate(runs):
            center = log_disp = None
            if r.objective.needs_predictor:
                if e in const_p:
                    center, log_disp = const_p[e]
                else:
                    with torch.no_grad():
                        center, log_disp = r.P(xs[e])
                    if r.G.x_dim == 0:
                        const_p[e] = (center, log_disp)
            with inputs_checked():  # samples, y and logits were tested above; the predictor's outputs are P's own
                terms = generator_terms(r.objective, samples[e], y_stack[e], logits=logits[e] if logits is not None else None,
                                        center=center, log_dispersion=log_disp, z=zs[e], step=step, adversarial=adversarial)
            totals.append(terms["total"])
            for name, v in terms.items():
                values.append(v.detach())
                owners.append(e)
                keys.append("g_" + name)
        flat = check(values, owners, "generator", step)
        torch.stack(totals).sum().backward()
        if cfg.clip_value is not None:
            nn.utils.clip_grad_value_(Gp, cfg.clip_value)
        opt_g.step()
        for e, key, v in zip(owners, keys, flat):
            pending[e].setdefault(key, []).append(v)

    for step in range(steps):
        schedule_lr(cfg, step, steps, opt_g, opt_d)
        adversarial = step >= cfg.gan_start
        try:
            if use_d and adversarial:
                for _ in range(cfg.d_steps):
                    d_step(step)
            for _ in range(cfg.g_steps):
                g_step(step, adversarial)
        except NonFiniteError as e:
            raise TrainingDiverged(f"a loss input became nan or inf at step {step} ({e}): lower the learning rate "
                                   "or the term's weight") from e
        done = step + 1
        if done % cfg.log_every == 0:
            for r, p in zip(runs, pending):
                r.history["step"].append(float(done))
                for key, vals in p.items():
                    r.history.setdefault(key, []).append(sum(vals) / len(vals))
                p.clear()
        if check_every and done % check_every == 0:
            ok = torch.stack([torch.isfinite(p).flatten(1).all(1) for p in [*Gp, *Dp]]).all(0).tolist()
            if not all(ok):
                raise diverged("a weight", [e for e, good in enumerate(ok) if not good], done)
        due = [r for r in runs if r.callback is not None and r.callback_every and done % r.callback_every == 0]
        if due:
            unstack_params(Gp, [r.G for r in runs])
            for r in due:
                r.callback(done, r.G)
    unstack_params(Gp, [r.G for r in runs])
    if use_d:
        unstack_params(Dp, [r.D for r in runs])


def stack_key(dataset_params: dict, regime: Any, objective: Objective) -> str:
    """What runs must share to train in one stack: the dataset, the networks' sizes, the optimiser settings
    (seed aside), the steps, K and whether there is a discriminator."""
    train = dataclasses.asdict(regime.train)
    train.pop("seed", None)
    return json.dumps({"data": dataset_params, "train": train, "z": regime.z_dim, "hidden": regime.hidden,
                       "layers": regime.layers, "act": regime.act, "steps": regime.steps, "k": objective.k,
                       "d": objective.uses_discriminator}, sort_keys=True, default=str)
