"""Completing digits, the real-data lesson of notebook 12 (and the reference generator of notebook 07).

Given the top rows of a scikit-learn digit, generate the missing rows: a conditional task where the data
itself says which classes are plausible, so mode collapse can be counted in classes.

* :func:`train_digit_completion` — train G (and D, and P for proxy MR) for one objective with the shared loop.
* :func:`plausible_classes` — which classes the data allows for each partial digit (nearest neighbours).
* :class:`NeighbourCompletion` — the data's own answer as a generator (the "random real data" reference row).
* :func:`digit_completion_report` — diversity, classes reached, realism (digit Fréchet distance) and NDB.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.digits import DigitInpaintingStream, join_rows, load_digits, split_rows
from ..experiments.evaluate import sample_protocol
from ..metrics.diversity import DIVERSITY_PROTOCOLS, pairwise_diversity, pixel_distance
from ..metrics.frechet import digit_frechet_distance
from ..metrics.ndb import ndb_jsd
from ..nets.digits import DigitCompletionD, DigitCompletionG, DigitCompletionP
from ..objectives import Objective, get_objective
from ..predictor import fit_predictor
from ..train import TrainConfig, Trainer

__all__ = ["DigitCompletionRun", "train_digit_completion", "plausible_classes", "NeighbourCompletion", "completion_classes",
           "digit_completion_report"]


@dataclass
class DigitCompletionRun:
    """A trained digit-completion model: G (eval mode), the trainer (history), P if used, seconds taken."""

    G: DigitCompletionG
    trainer: Any
    P: DigitCompletionP | None
    seconds: float


def train_digit_completion(objective: Any, steps: int = 1000, seed: int = 0, top_rows: int = 3, lr: float = 1e-3,
                           predictor_steps: int = 1500, progress: bool = False) -> DigitCompletionRun:
    """Train G (and D, and P for proxy MR) on ``load_digits("train", seed)`` for one objective.

    ``objective`` is a preset name or an :class:`~minilib.objectives.Objective`. Targets are
    dequantized (see :class:`DigitInpaintingStream`). Settings differ from MR-GAN Appendix B only
    where the tiny MLPs allow: lr 1e-3 (not 1e-4) and no weight decay, so a run takes ~10–30 s
    on one CPU core; gradient clipping 0.5 and AMSGrad are kept. P is fitted first with the
    MLE loss on the val split for early stopping (Appendix B). Deterministic for a given seed.
    """
    obj = get_objective(objective) if isinstance(objective, str) else objective
    if not isinstance(obj, Objective):
        raise TypeError(f"objective must be a preset name or an Objective, got {type(objective).__name__}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    train, _ = load_digits("train", seed)
    val, _ = load_digits("val", seed)
    config = TrainConfig(lr_g=lr, lr_d=lr, weight_decay=0.0, batch_size=64, g_batch_size=32, seed=seed, progress=progress)
    G, D = DigitCompletionG(top_rows), DigitCompletionD()
    P = None
    if obj.needs_predictor:
        P = DigitCompletionP(top_rows)
        fit_predictor(P, DigitInpaintingStream(train, top_rows, seed, dequantize=True),
                      DigitInpaintingStream(val, top_rows, seed + 1, dequantize=True), dist=obj.moment_dist,
                      steps=predictor_steps, batch_size=64, val_every=100, patience=5, config=config)
    trainer = Trainer(G, D if obj.uses_discriminator else None, obj, config, P=P)
    trainer.fit(DigitInpaintingStream(train, top_rows, seed, dequantize=True), steps)
    G.eval()
    return DigitCompletionRun(G, trainer, P, time.perf_counter() - t0)



# ----------------------------------------------------------------------------------------- digits
def plausible_classes(top: torch.Tensor, reference: torch.Tensor, reference_labels: torch.Tensor,
                      neighbours: int = 20, min_fraction: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """Which digit classes the data allows for each partial digit.

    ``top [N, 1, T, 8]`` are known rows; ``reference [M, 1, 8, 8]`` labelled digits (the training
    set). The ``neighbours`` reference digits whose top T rows are nearest (Euclidean) estimate
    p(class | top rows); a class is plausible when it has at least ``min_fraction`` of them.
    Returns ``(probs [N, 10], plausible [N, 10] bool)``.
    """
    if top.dim() != 4 or reference.dim() != 4 or top.shape[1:2] != reference.shape[1:2]:
        raise ValueError(f"top must be [N, 1, T, 8] and reference [M, 1, 8, 8]; got {tuple(top.shape)}, {tuple(reference.shape)}")
    if len(reference) != len(reference_labels) or not 1 <= neighbours <= len(reference):
        raise ValueError(f"need len(reference_labels) == len(reference) and 1 <= neighbours <= {len(reference)}")
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    ref_top = reference[:, :, : top.shape[2]].flatten(1)
    idx = torch.cdist(top.flatten(1).float(), ref_top.float()).topk(neighbours, largest=False).indices  # [N, n]
    probs = nn.functional.one_hot(reference_labels[idx], 10).float().mean(1)  # [N, 10]
    return probs, probs >= min_fraction - 1e-9


class NeighbourCompletion(nn.Module):
    """The data's own answer, as a generator: ``G(x [B,1,T,8], z [B,1]) -> [B,1,8−T,8]`` returns the
    missing rows of one of the ``neighbours`` reference digits whose top rows are nearest to x, the
    one picked by z ~ U(0, 1) (``collapse=True``: always the nearest, a generator that ignores z).
    It is the reference row of notebook 12, like the papers' "random real data"."""

    def __init__(self, reference: torch.Tensor, top_rows: int = 3, neighbours: int = 20, collapse: bool = False) -> None:
        super().__init__()
        if reference.dim() != 4 or not 1 <= neighbours <= len(reference):
            raise ValueError(f"reference must be [M, 1, 8, 8] with M >= neighbours={neighbours}, got {tuple(reference.shape)}")
        self.register_buffer("reference", reference.clone())
        self.top_rows, self.neighbours, self.collapse = top_rows, neighbours, collapse

    def noise(self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform ``[n, 1]``: which of the neighbours to return."""
        return torch.rand(n, 1, device=device, generator=generator)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(x.flatten(1), self.reference[:, :, : self.top_rows].flatten(1))  # [B, M]
        idx = d.topk(self.neighbours, largest=False).indices  # [B, n], nearest first
        pick = torch.zeros_like(idx[:, 0]) if self.collapse else (z[:, 0] * self.neighbours).long().clamp(max=self.neighbours - 1)
        return self.reference[idx[torch.arange(len(x)), pick], :, self.top_rows:]


@torch.no_grad()
def completion_classes(completions: torch.Tensor, classifier: nn.Module) -> torch.Tensor:
    """Share of each input's completions ``[N, K, 1, 8, 8]`` that ``classifier`` puts in each class: ``[N, 10]``."""
    if completions.dim() != 5:
        raise ValueError(f"completions must be [N, K, 1, 8, 8], got {tuple(completions.shape)}")
    n, k = completions.shape[:2]
    pred = classifier(completions.flatten(0, 1).float()).argmax(1).view(n, k)
    return nn.functional.one_hot(pred, 10).float().mean(1)


def digit_completion_report(G: nn.Module, images: torch.Tensor, reference: torch.Tensor, reference_labels: torch.Tensor,
                            classifier: nn.Module, top_rows: int = 3, k: int = 20, seed: int = 0,
                            min_fraction: float = 0.15, ndb_bins: Any = None) -> dict[str, Any]:
    """Score a digit-completion generator on ``images [N, 1, 8, 8]`` (notebook 12).

    Keys: ``pixel_diversity`` (MR-GAN protocol, ℓ1 in the hole, [−1, 1] units), ``classes_ambiguous``
    / ``classes_unambiguous`` (mean number of classes holding ≥ ``min_fraction`` of an input's k
    completions, over inputs whose data allows ≥ 2 / 1 classes), ``coverage_ambiguous`` (share of
    the allowed classes reached), ``several_plausible`` (share of ambiguous inputs whose completions
    reach ≥ 2 allowed classes), ``implausible`` (share of completions in classes the data does not
    allow), ``digit_fd`` (Fréchet distance to ``reference`` in the classifier's features: realism),
    ``ndb``/``ndb_k``/``jsd`` when ``ndb_bins`` (from :func:`~minilib.metrics.ndb.fit_ndb_bins`) is
    given, plus the per-input arrays ``probs``, ``plausible``, ``class_share`` and the ``completions``.
    """
    if k != DIVERSITY_PROTOCOLS["mrgan"].num_samples:
        raise ValueError(f"k must be {DIVERSITY_PROTOCOLS['mrgan'].num_samples} (the MR-GAN protocol), got {k}")
    top, _ = split_rows(images, top_rows)
    samples = sample_protocol(G, top, k, seed)  # [N, K, 1, 8-T, 8]
    full = join_rows(top, samples).clamp(-1, 1)  # [N, K, 1, 8, 8]
    hole = torch.zeros(8, 8)
    hole[top_rows:] = 1
    div = pairwise_diversity(full, "mrgan", pixel_distance, mask=hole, seed=seed)
    probs, plausible = plausible_classes(top, reference, reference_labels, min_fraction=min_fraction)
    share = completion_classes(full, classifier)  # [N, 10]
    present = share >= min_fraction - 1e-9
    ambiguous = plausible.sum(1) >= 2
    coverage = (present & plausible).sum(1).float() / plausible.sum(1).clamp_min(1)
    out = {
        "pixel_diversity": div.mean,
        "classes_ambiguous": float(present.sum(1)[ambiguous].float().mean()) if ambiguous.any() else float("nan"),
        "classes_unambiguous": float(present.sum(1)[~ambiguous].float().mean()) if (~ambiguous).any() else float("nan"),
        "coverage_ambiguous": float(coverage[ambiguous].mean()) if ambiguous.any() else float("nan"),
        "several_plausible": float(((present & plausible).sum(1)[ambiguous] >= 2).float().mean()) if ambiguous.any() else float("nan"),
        "implausible": float((share * (~plausible)).sum(1).mean()),
        "fraction_ambiguous": float(ambiguous.float().mean()),
        "digit_fd": digit_frechet_distance(full[:, :5].flatten(0, 1), reference, classifier),
        "probs": probs, "plausible": plausible, "class_share": share, "completions": full,
    }
    if ndb_bins is not None:
        r = ndb_jsd(ndb_bins, full[:, :5].flatten(0, 1))
        out.update(ndb=r.ndb, ndb_k=r.k, jsd=r.jsd)
    return out
