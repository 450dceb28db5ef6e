"""Why the moment terms undo a collapse: each generator term's pull on one group of K samples (notebook 03).

A group is the K samples the generator makes for one input. :func:`term_forces` takes a group (e.g. the K samples
of a collapsed GAN), and for each objective returns, per sample, the *expected* negative gradient of each weighted
term of the generator loss (the one assembly :func:`minilib.objectives.generator_terms` that training uses), the
expectation taken over real targets y of the toy: the direction gradient descent moves that sample. The GAN term
uses a trained discriminator; proxy MR a trained predictor. :func:`force_summary` splits a force field into the
part that moves the group as a whole and the part that spreads it apart (or squeezes it); :func:`plot_forces`
draws the arrows over the ring. :func:`subset_losses` asks which collapses a moment term can see at all: the
expected loss when every group's K samples fall on a subset of the modes only.
"""
from __future__ import annotations

from typing import Any

import torch

from ..data.toys import MixtureToy
from ..objectives import Objective, generator_terms

__all__ = ["term_forces", "force_summary", "plot_forces", "subset_losses"]


def term_forces(group: torch.Tensor, dataset: MixtureToy, objective: Objective, *, D: torch.nn.Module | None = None,
                P: torch.nn.Module | None = None, n_targets: int = 4096, seed: int = 0) -> dict[str, torch.Tensor]:
    """``{term: [K, 2] force}``: minus the gradient of each weighted term of ``objective`` with respect to each of
    the K samples of ``group`` (``[K, 2]``), averaged over ``n_targets`` real targets y drawn from ``dataset``,
    and multiplied by K so that a force reads per sample. ``D`` is required when the objective has a GAN term,
    ``P`` (the fitted predictor) when it uses proxy MR."""
    if not isinstance(group, torch.Tensor) or group.dim() != 2 or group.shape[1] != dataset.y_dim:
        raise ValueError(f"group must be a [K, {dataset.y_dim}] tensor, got "
                         f"{tuple(group.shape) if isinstance(group, torch.Tensor) else type(group).__name__}")
    if objective.gan_weight > 0 and D is None:
        raise ValueError(f"D (a trained discriminator) is required: objective {objective.name!r} has a GAN term")
    if objective.needs_predictor and P is None:
        raise ValueError(f"P (the fitted predictor) is required: objective {objective.name!r} uses proxy MR")
    k = group.shape[0]
    objective = objective.replace(k=k)
    gen = torch.Generator().manual_seed(seed)
    x, y = dataset.sample(n_targets, generator=gen)
    forces: dict[str, torch.Tensor] = {}
    for term in _term_names(objective):
        leaf = group.detach().clone().float().requires_grad_(True)
        samples = leaf.unsqueeze(0).expand(n_targets, k, group.shape[1])
        kwargs: dict[str, Any] = {}
        if objective.gan_weight > 0:
            flat = samples.reshape(n_targets * k, -1)
            kwargs["logits"] = D(x.repeat_interleave(k, 0), flat)
        if objective.needs_predictor:
            with torch.no_grad():
                kwargs["center"], kwargs["log_dispersion"] = P(x)
        terms = generator_terms(objective, samples, y, **kwargs)
        (grad,) = torch.autograd.grad(terms[term], leaf)
        forces[term] = -grad.detach() * k
    return forces


def _term_names(objective: Objective) -> list[str]:
    names = []
    if objective.gan_weight > 0:
        names.append("gan")
    if objective.rec is not None and objective.rec_weight > 0:
        names.append("rec")
    if objective.moment is not None and objective.moment_weight > 0:
        names.append("moment")
    return names


def force_summary(group: torch.Tensor, force: torch.Tensor) -> dict[str, float]:
    """``move``: length of the mean force (what shifts the whole group); ``spread``: mean component of each
    sample's remaining force along the direction from the group's mean to the sample (> 0 pushes the samples
    apart, < 0 squeezes them together); ``size``: median length of a sample's force."""
    mean_force = force.mean(0)
    rel = group - group.mean(0)
    unit = rel / rel.norm(dim=1, keepdim=True).clamp_min(1e-8)
    spread = ((force - mean_force) * unit).sum(1).mean()
    return {"move": float(mean_force.norm()), "spread": float(spread), "size": float(force.norm(dim=1).median())}


def plot_forces(ax: Any, group: torch.Tensor, force: torch.Tensor, dataset: MixtureToy, title: str = "",
                color: str = "C3") -> None:
    """The ring's modes, the group's samples and each sample's force as an arrow (arrows scaled per panel so the
    longest is 1.2 units long; the title carries the real size)."""
    g, f = group.detach().numpy(), force.detach()
    scale = 1.2 / float(f.norm(dim=1).max().clamp_min(1e-12))
    modes = dataset.modes.numpy()
    ax.scatter(modes[:, 0], modes[:, 1], s=60, facecolors="none", edgecolors="0.4", label="data modes")
    ax.scatter(g[:, 0], g[:, 1], s=14, c=color, zorder=3, label=f"K = {len(g)} samples")
    fs = (f * scale).numpy()
    ax.quiver(g[:, 0], g[:, 1], fs[:, 0], fs[:, 1], angles="xy", scale_units="xy", scale=1, color=color,
              width=0.006, zorder=2)
    lim = max(2.8, float(abs(g).max()) + 0.4, float(abs(g + fs).max()) + 0.2)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="y₁", ylabel="y₂", title=title)


def subset_losses(dataset: MixtureToy, subsets: dict[str, list[int]], objectives: list[Objective], k: int = 16,
                  n_groups: int = 20_000, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{subset: {objective name: expected moment loss}}`` when each group's ``k`` samples are drawn uniformly from
    the modes listed in ``subsets`` (mode indices of ``dataset``; each sample gets the mode's own noise) and the
    targets y from the data. Proxy MR is given the *exact* moments of the data (a perfect predictor), so the
    numbers show the loss itself, not a predictor's error. Monte Carlo over ``n_groups`` groups; weight 1."""
    gen = torch.Generator().manual_seed(seed)
    x, y = dataset.sample(n_groups, generator=gen)
    center = dataset.conditional_mean(x)
    log_var = (dataset.conditional_std(x) ** 2).log()
    out: dict[str, dict[str, float]] = {}
    for name, ids in subsets.items():
        if not ids or not all(isinstance(i, int) and 0 <= i < len(dataset.modes) for i in ids):
            raise ValueError(f"subset {name!r} must list mode indices 0..{len(dataset.modes) - 1}, got {ids!r}")
        pick = torch.tensor(ids)[torch.randint(len(ids), (n_groups, k), generator=gen)]
        samples = dataset.modes[pick] + dataset.std * torch.randn(n_groups, k, 2, generator=gen)
        row = {}
        for obj in objectives:
            o = obj.replace(k=k, moment_weight=1.0, gan_weight=0.0)
            terms = generator_terms(o, samples, y, center=center if o.needs_predictor else None,
                                    log_dispersion=log_var if o.needs_predictor else None)
            row[obj.name] = float(terms["moment"])
        out[name] = row
    return out
