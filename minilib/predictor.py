"""Fitting the predictor P of proxy MR by maximum likelihood (MR-GAN Eq. 4 / 5, Appendix B).

:func:`fit_predictor` trains ``P(x) -> (center, log_dispersion)`` with :func:`minilib.losses.mle_loss` and keeps
the weights with the lowest validation loss. The same loop fits the app's N batched predictors at once
(``slots=N``: P returns ``[N, B, ...]`` outputs whose parameters are stacked along a leading dimension of size N,
and every slot keeps its own best weights).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
from torch import nn

from .losses import DISTS, mle_loss
from .train import Stream, TrainConfig, TrainingDiverged, make_optimizer

__all__ = ["fit_predictor"]


def fit_predictor(
    P: nn.Module,
    train_stream: Stream,
    val_stream: Stream,
    *,
    dist: str | Sequence[str] = "gaussian",
    steps: int = 2000,
    batch_size: int = 16,
    val_every: int = 50,
    val_batches: int = 4,
    patience: int | None = 10,
    config: TrainConfig | None = None,
    lr: float | None = None,
    progress: bool = False,
    slots: int | None = None,
) -> dict[str, Any]:
    """Train a predictor ``P(x) -> (center, log_dispersion)`` with the MLE loss (MR-GAN Eq. 4 / 5).

    Validation loss is measured every ``val_every`` steps on ``val_batches`` fixed batches; the weights with the
    lowest validation loss are loaded back into P at the end (Appendix B: "the checkpoint with the lowest
    validation loss"). Training stops early after ``patience`` validations without improvement (None: never).
    The optimiser is :func:`~minilib.train.make_optimizer` with ``config`` (lr ``lr``, default ``config.lr_g``);
    gradients are clipped by ``config.clip_value``.

    ``slots=N`` fits N independent predictors stored in one module (every parameter ``[N, ...]``, outputs
    ``[N, B, *event]``); ``dist`` may then be one distribution per slot, the training loss is the sum over slots
    and each slot keeps its own best weights (early stopping waits for every slot).

    Returns ``{"best_val": float (a list per slot with slots), "best_step", "steps", "history": {"step", "train",
    "val"}}``.
    """
    n = 1 if slots is None else slots
    if slots is not None and (not isinstance(slots, int) or slots < 1):
        raise ValueError(f"slots must be None or a positive int, got {slots!r}")
    dists = [dist] * n if isinstance(dist, str) else list(dist)
    if len(dists) != n or any(d not in DISTS for d in dists):
        raise ValueError(f"dist must be one of {DISTS} (or {n} of them, one per slot), got {dist!r}")
    for name, v in (("steps", steps), ("batch_size", batch_size), ("val_every", val_every), ("val_batches", val_batches)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    config = config or TrainConfig()
    device = torch.device(config.device)
    P.to(device)
    opt = make_optimizer(P.parameters(), lr if lr is not None else config.lr_g, config)
    # a fixed validation set: the same batches every time
    val_state = val_stream.state_dict()
    val_data = [val_stream.next(batch_size) for _ in range(val_batches)]
    val_stream.load_state_dict(val_state)

    def losses(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The MLE loss of every slot, ``[N]``."""
        center, log_disp = P(x.to(device))
        y = y.to(device)
        if slots is None:
            return mle_loss(center, log_disp, y, dists[0]).unsqueeze(0)
        return torch.stack([mle_loss(center[i], log_disp[i], y, d) for i, d in enumerate(dists)])

    def val_loss() -> torch.Tensor:
        P.eval()
        with torch.no_grad():
            tot = sum(losses(vx, vy).double() for vx, vy in val_data) / len(val_data)  # like summing .item()s
        P.train()
        return tot

    def keep(state: dict[str, torch.Tensor], better: torch.Tensor) -> dict[str, torch.Tensor]:
        if slots is None:
            return copy.deepcopy(P.state_dict())
        for key, value in P.state_dict().items():
            state[key][better] = value.detach()[better]
        return state

    best = torch.full((n,), math.inf, dtype=torch.float64)
    best_step = [0] * n
    best_state = copy.deepcopy(P.state_dict())
    bad = 0
    hist: dict[str, list[float]] = {"step": [], "train": [], "val": []}
    P.train()
    running, n_run, step = 0.0, 0, 0
    from tqdm.auto import tqdm

    for step in tqdm(range(1, steps + 1), disable=not progress, desc="predictor"):
        x, y = train_stream.next(batch_size)
        loss = losses(x, y).sum()
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"predictor loss became {loss.item()} at step {step}; lower lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_value is not None:
            nn.utils.clip_grad_value_(P.parameters(), config.clip_value)
        opt.step()
        running, n_run = running + loss.item(), n_run + 1
        if step % val_every == 0:
            v = val_loss().cpu()
            hist["step"].append(step)
            hist["train"].append(running / n_run)
            hist["val"].append(float(v.sum()))
            running, n_run = 0.0, 0
            better = v < best
            if better.any():
                best_state = keep(best_state, better)
                best = torch.where(better, v, best)
                best_step = [step if b else s for b, s in zip(better.tolist(), best_step)]
                bad = 0
            else:
                bad += 1
                if patience is not None and bad >= patience:
                    break
    if not hist["val"]:  # fewer steps than one validation interval
        best, best_step, best_state = val_loss().cpu(), [step] * n, copy.deepcopy(P.state_dict())
    P.load_state_dict(best_state)
    P.eval()
    if slots is None:
        return {"best_val": float(best[0]), "best_step": best_step[0], "steps": step, "history": hist}
    return {"best_val": best.tolist(), "best_step": best_step, "steps": step, "history": hist}
