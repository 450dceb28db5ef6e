"""Training objectives: one frozen dataclass and the papers' named presets.

An :class:`Objective` says which terms the generator minimises and with which weights:

    L_G = gan_weight * L_GAN + rec_weight * L_rec + moment_weight * L_MR/pMR + ms_weight * L_MS (+ entropy)

Notebooks and widgets list presets by name (``PRESETS``); code passes dataclasses. :func:`generator_terms`
is the one place where an objective's terms are computed from a batch of samples: the training loop
(``minilib.train.Trainer``) and the app's batched engine (``minilib.app.engine``) both call it, so a new loss
term is added here (a field, a preset, a line in :func:`generator_terms`) and in the app's controls. Override a weight
with ``get_objective("gan+pmr2", moment_weight=2400.0)`` or ``objective.replace(k=24)``.

Default weights are for the 2-D toys; the image tasks (``minilib.experiments.image_tasks``) override them with the
values of MR-GAN Appendix B (Pix2Pix: MR/pMR 10, ℓ1 100; SRGAN: pMR 2400, MR 20, ℓ2 1000;
GLCIC: pMR 1000, ℓ2 100).
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import torch

from . import losses as L
from .losses import DISTS, GAN_KINDS

__all__ = ["Objective", "PRESETS", "get_objective", "preset_names", "generator_terms", "objective_record"]

Noise = torch.Tensor | tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Objective:
    """Weights and settings of the generator's loss.

    Attributes:
        name: a label for tables and plots.
        gan_weight: weight of the adversarial term (0 trains without a discriminator, e.g. ``"l2"``).
        gan_kind: ``"nonsaturating"`` (the papers'), ``"lsgan"`` or ``"hinge"``.
        rec: ``"l1"``, ``"l2"`` or ``None``: reconstruction loss between every sample and y (Eq. 3).
        rec_weight: its weight.
        moment: ``"mr"`` (moment reconstruction = MCMLE), ``"pmr"`` (proxy MR = MLMM, needs a predictor) or ``None``.
        moment_order: 1 (centre only) or 2 (centre and dispersion).
        moment_dist: ``"gaussian"`` (mean / variance) or ``"laplace"`` (median / MAD).
        moment_weight: its weight (λ_MR or λ_pMR).
        ms_weight: weight of MSGAN's mode-seeking regulariser (needs k >= 2).
        entropy_weight: weight of PresGAN's entropy regulariser (the term itself lives in ``minilib.presgan``).
        k: generator samples per input in one step (the K of the MR-GAN paper).
        noise_variance: MR2 (Gaussian) only: the data's known observation-noise variance, added to the K samples'
            variance (see :func:`minilib.losses.mr_loss`); 0 keeps the paper's loss.
        unbiased_precision: MR2 (Gaussian) only: the K samples' sum of squares divided by K - 3 instead of K - 1,
            so that 1 / variance is unbiased and the loss's optimum is the data's spread (needs k >= 4).
        moment_warmup: training rounds during which an order-2 moment term acts as order 1 (the centre is fitted
            before the spread); applied by :func:`generator_terms` when it is given the step (the Trainer does).
    """

    name: str = "custom"
    gan_weight: float = 1.0
    gan_kind: str = "nonsaturating"
    rec: str | None = None
    rec_weight: float = 0.0
    moment: str | None = None
    moment_order: int = 2
    moment_dist: str = "gaussian"
    moment_weight: float = 0.0
    ms_weight: float = 0.0
    entropy_weight: float = 0.0
    k: int = 8
    noise_variance: float = 0.0
    unbiased_precision: bool = False
    moment_warmup: int = 0

    def __post_init__(self) -> None:
        if self.gan_kind not in GAN_KINDS:
            raise ValueError(f"gan_kind must be one of {GAN_KINDS}, got {self.gan_kind!r}")
        if self.rec not in (None, "l1", "l2"):
            raise ValueError(f"rec must be None, 'l1' or 'l2', got {self.rec!r}")
        if self.moment not in (None, "mr", "pmr"):
            raise ValueError(f"moment must be None, 'mr' or 'pmr', got {self.moment!r}")
        if self.moment_order not in (1, 2):
            raise ValueError(f"moment_order must be 1 or 2, got {self.moment_order!r}")
        if self.moment_dist not in DISTS:
            raise ValueError(f"moment_dist must be one of {DISTS}, got {self.moment_dist!r}")
        for field in ("gan_weight", "rec_weight", "moment_weight", "ms_weight", "entropy_weight"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be a positive int (samples per input), got {self.k!r}")
        if isinstance(self.moment_warmup, bool) or not isinstance(self.moment_warmup, int) or self.moment_warmup < 0:
            raise ValueError(f"moment_warmup must be an int >= 0 (rounds), got {self.moment_warmup!r}")
        if not self.noise_variance >= 0:
            raise ValueError(f"noise_variance must be >= 0, got {self.noise_variance}")
        if self.noise_variance or self.unbiased_precision:
            if (self.moment, self.moment_dist) != ("mr", "gaussian"):
                raise ValueError(f"noise_variance and unbiased_precision apply to the Gaussian MR only, got moment = "
                                 f"{self.moment!r}, moment_dist = {self.moment_dist!r}")
            if self.unbiased_precision and self.k < 4:
                raise ValueError(f"unbiased_precision divides by K - 3: k must be >= 4, got k = {self.k}")
        needs_two = self.ms_weight > 0 or (
            self.moment is not None and self.moment_weight > 0 and (self.moment_order == 2 or self.moment_dist == "laplace")
        )
        if needs_two and self.k < 2:
            raise ValueError(
                f"k must be >= 2 for objective {self.name!r}: a sample variance/median/MAD or a mode-seeking pair "
                f"needs at least two samples per input, got k = {self.k}"
            )
        if self.gan_weight == 0 and self.rec is None and self.moment is None and self.ms_weight == 0 and self.entropy_weight == 0:
            raise ValueError("the objective has no term: set gan_weight > 0, rec, moment, ms_weight or entropy_weight")

    @property
    def needs_predictor(self) -> bool:
        """True for proxy MR, which matches a pre-trained predictor's moments."""
        return self.moment == "pmr" and self.moment_weight > 0

    @property
    def uses_discriminator(self) -> bool:
        return self.gan_weight > 0

    def replace(self, **changes: object) -> "Objective":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One line for tables: the non-zero terms with their weights."""
        terms = []
        if self.gan_weight:
            terms.append(f"{self.gan_weight:g}·GAN")
        if self.rec:
            terms.append(f"{self.rec_weight:g}·{self.rec}")
        if self.moment and self.moment_weight:
            tag = f"{self.moment.upper() if self.moment == 'mr' else 'pMR'}{self.moment_order}"
            notes = [note for on, note in ((self.noise_variance, f"+{self.noise_variance:g} noise variance"),
                                           (self.unbiased_precision, "K-3 precision"),
                                           (self.moment_warmup, f"order 1 for {self.moment_warmup} rounds")) if on]
            terms.append(f"{self.moment_weight:g}·{tag}-{self.moment_dist}" + (f" ({', '.join(notes)})" if notes else ""))
        if self.ms_weight:
            terms.append(f"{self.ms_weight:g}·MS")
        if self.entropy_weight:
            terms.append(f"{self.entropy_weight:g}·entropy")
        return " + ".join(terms) + f" (K={self.k})"


def _moment_presets() -> dict[str, Objective]:
    out = {}
    for moment in ("mr", "pmr"):
        for order in (1, 2):
            for dist in DISTS:
                name = f"gan+{moment}{order}" + ("-laplace" if dist == "laplace" else "")
                out[name] = Objective(name=name, moment=moment, moment_order=order, moment_dist=dist, moment_weight=10.0)
    return out


PRESETS: dict[str, Objective] = {
    "gan": Objective(name="gan"),
    "l1": Objective(name="l1", gan_weight=0.0, rec="l1", rec_weight=1.0),
    "l2": Objective(name="l2", gan_weight=0.0, rec="l2", rec_weight=1.0),
    "gan+l1": Objective(name="gan+l1", rec="l1", rec_weight=10.0),
    "gan+l2": Objective(name="gan+l2", rec="l2", rec_weight=10.0),
    **_moment_presets(),
    "gan+ms": Objective(name="gan+ms", ms_weight=1.0),
    "gan+l1+ms": Objective(name="gan+l1+ms", rec="l1", rec_weight=10.0, ms_weight=1.0),
    "presgan": Objective(name="presgan", entropy_weight=1.0),
}
"""The papers' objectives by name. Weights are toy defaults (see the module docstring)."""


def preset_names() -> list[str]:
    """Names of every preset, in a teaching order."""
    return list(PRESETS)


def objective_record(record: dict) -> dict:
    """A saved objective (``asdict`` of an :class:`Objective`, e.g. from a checkpoint) completed with the defaults of
    fields added since it was saved, so that it compares equal to today's record of the same objective."""
    return {**asdict(Objective()), **record}


def get_objective(name: str, **overrides: object) -> Objective:
    """The preset called ``name`` with some fields overridden, e.g. ``get_objective("gan+ms", ms_weight=5.0)``."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"name must be one of the presets {preset_names()}, got {name!r}")
    preset = PRESETS[name]
    return preset.replace(**overrides) if overrides else preset


# --------------------------------------------------------------------------------------------- the terms
def _noise_rows(z: Noise, b: int, k: int, idx: slice) -> Noise:
    """Samples ``idx`` of every input from flat noise ``[B·K, ...]`` (or a tuple of such) -> ``[B·len(idx), ...]``."""
    if isinstance(z, torch.Tensor):
        return z.reshape(b, k, *z.shape[1:])[:, idx].reshape(-1, *z.shape[1:])
    return tuple(_noise_rows(t, b, k, idx) for t in z)


def generator_terms(
    objective: Objective,
    samples: torch.Tensor,
    y: torch.Tensor,
    *,
    logits: torch.Tensor | None = None,
    center: torch.Tensor | None = None,
    log_dispersion: torch.Tensor | None = None,
    z: Noise | None = None,
    step: int | None = None,
    adversarial: bool = True,
) -> dict[str, torch.Tensor]:
    """Every weighted term of the generator loss of ``objective`` for one batch (MR-GAN Eq. 2, 3, 6, 8; MSGAN Eq. 1).

    Args:
        samples: ``[B, K, *event]`` generator samples, K = ``objective.k`` per input (computed in float32).
        y: ``[B, *event]`` ground truth (used by ℓ1/ℓ2 and MR).
        logits: the discriminator's logits on the ``B·K`` samples (required when ``gan_weight > 0``).
        center, log_dispersion: the frozen predictor's outputs ``[B, *event]`` (required for proxy MR).
        z: the flat noise ``[B·K, ...]`` (or a tuple of noise maps) that made the samples, with the K samples of
            input b at rows ``b·K ... b·K + K - 1`` (required for mode seeking: the first and second half of
            each input's samples are the pairs).
        step: the training round; before ``objective.moment_warmup`` an order-2 moment term is computed at order 1.
            None (the app's engine): no warm-up.
        adversarial: False leaves out the GAN term (the Trainer's ``gan_start`` rounds; no logits needed).
    Returns:
        ``{"gan", "rec", "moment", "ms": weighted term, ...}`` for the terms the objective uses, plus ``"total"``.
    """
    obj = objective
    b, k = samples.shape[0], samples.shape[1]
    samples32, y32 = samples.float(), y.float()  # moments in float32 even under autocast
    terms: dict[str, torch.Tensor] = {}
    order = 1 if (step is not None and step < obj.moment_warmup) else obj.moment_order
    if obj.gan_weight > 0 and adversarial:
        if logits is None:
            raise ValueError(f"logits are required: objective {obj.name!r} has gan_weight = {obj.gan_weight}")
        terms["gan"] = obj.gan_weight * L.gan_loss(logits.float(), True, obj.gan_kind, generator=True)
    if obj.rec is not None and obj.rec_weight > 0:
        terms["rec"] = obj.rec_weight * L.reconstruction_loss(samples32, y32, 1 if obj.rec == "l1" else 2)
    if obj.moment == "mr" and obj.moment_weight > 0:
        terms["moment"] = obj.moment_weight * L.mr_loss(samples32, y32, obj.moment_dist, order,
                                                        noise_variance=obj.noise_variance,
                                                        unbiased_precision=obj.unbiased_precision)
    if obj.needs_predictor:
        if center is None or log_dispersion is None:
            raise ValueError(f"center and log_dispersion (the predictor's outputs) are required: objective {obj.name!r} "
                             "uses proxy MR")
        terms["moment"] = obj.moment_weight * L.proxy_mr_loss(samples32, center.float(), log_dispersion.float(),
                                                              obj.moment_dist, order)
    if obj.ms_weight > 0:
        if z is None:
            raise ValueError(f"z (the samples' noise) is required: objective {obj.name!r} uses mode seeking")
        half = k // 2
        terms["ms"] = obj.ms_weight * L.mode_seeking_loss(
            samples32[:, :half], samples32[:, half:2 * half],
            _noise_rows(z, b, k, slice(0, half)), _noise_rows(z, b, k, slice(half, 2 * half)))
    terms["total"] = sum(terms.values())
    return terms
