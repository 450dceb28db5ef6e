"""PresGAN's experiments in miniature (notebooks 06 and 06b): stacked digits, the ring, log-likelihoods on digits.

* :func:`run_stacked` — StackedMNIST (Metz et al. 2017; PresGAN Section 5) on scikit-learn's 8x8 digits: a small
  DCGAN-style GAN, PresGAN, GAN+MS or GAN+MR trained with the shared :class:`minilib.train.Trainer`, its modes
  counted with :mod:`minilib.metrics.digits`.
* :func:`run_ring` / :func:`run_rings` — PresGAN's Figure 1: a GAN in a collapsing regime vs a PresGAN with the
  same settings (several runs in worker processes).
* :func:`digit_likelihoods` — GAN (lambda = 0), PresGAN and a VAE with the same decoder (PresGAN Table 5).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from ..data.digits import StackedDigitStream, load_digits
from ..data.toys import ToyStream, ring
from ..metrics.digits import ModeStats, get_digit_classifier, stacked_labels, stacked_mode_stats, true_label_distribution
from ..metrics.toy import mode_coverage
from ..nets.digits import DigitDiscriminator, DigitGenerator
from ..nets.mlp import GaussianEncoder, ToyDiscriminator, ToyGenerator
from ..objectives import get_objective
from ..presgan import NoisyGenerator, fit_encoder, log_likelihood, make_presgan_trainer
from ..train import TrainConfig, Trainer
from .parallel import map_in_processes
from .toys import toy_adam

__all__ = ["real_stacked_stats", "METHODS", "StackedRun", "run_stacked", "run_stacked_many", "run_ring", "run_rings",
           "digit_likelihoods"]


METHODS = ("gan", "presgan", "gan+ms", "gan+mr")


def real_stacked_stats(num_eval: int = 10000, split: str = "test", seed: int = 0) -> ModeStats:
    """Reference row of PresGAN Table 2 (StackedMNIST): modes and KL of ``num_eval`` real stacked digits from ``split``.

    The images are labelled by the same classifier as the generators' samples and compared with the
    true distribution of the *train* stream, so the KL includes classifier errors and finite-sample noise.
    """
    if not isinstance(num_eval, int) or num_eval < 1:
        raise ValueError(f"num_eval must be a positive int, got {num_eval!r}")
    images, _ = StackedDigitStream(split, seed=seed).sample(num_eval)  # [N, 3, 8, 8]
    true = true_label_distribution(StackedDigitStream("train").labels)
    return stacked_mode_stats(stacked_labels(get_digit_classifier(0), images), true)


@dataclass
class StackedRun:
    """One training run: the method, its mode statistics, wall time (s), the generator and the history."""

    method: str
    stats: ModeStats
    seconds: float
    G: nn.Module
    history: dict


def run_stacked(method: str, steps: int = 1500, seed: int = 0, *, nz: int = 16, width: int = 32,
                weight: float | None = None, num_eval: int = 10000, lr: float = 2e-4) -> StackedRun:
    """Train ``method`` in {"gan", "presgan", "gan+ms", "gan+mr"} on stacked digits and count its modes.

    Shared settings: :class:`~minilib.nets.digits.DigitGenerator` / ``DigitDiscriminator`` of ``width``, Adam
    lr ``lr`` betas (0.5, 0.999), batch 64, 1:1 updates, non-saturating loss. ``weight`` is the method's
    lambda (defaults: MS 1, MR2 1 with K = 8, PresGAN entropy 0.01 per dimension sum, sigma in [0.01, 0.3]).
    Evaluates ``num_eval`` samples (PresGAN: the mean mu(z), which the paper shows as its sample).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    torch.manual_seed(seed)
    cfg = _adam(lr, seed, 64)
    base = DigitGenerator(nz=nz, channels=3, ngf=width)
    D = DigitDiscriminator(channels=3, ndf=width)
    stream = StackedDigitStream("train", seed=seed)
    t0 = time.perf_counter()
    if method == "presgan":
        G = NoisyGenerator(base, (3, 8, 8), sigma_init=0.1, sigma_min=0.01, sigma_max=0.3)
        obj = get_objective("presgan", entropy_weight=0.01 if weight is None else weight, k=1)
        trainer = make_presgan_trainer(G, D, obj, cfg, burn_in=1, num_samples=1, num_leapfrog=3, step_size=0.05)
    else:
        G = base
        if method == "gan":
            obj = get_objective("gan", k=1)
        elif method == "gan+ms":
            obj = get_objective("gan+ms", ms_weight=1.0 if weight is None else weight, k=2)
            cfg.g_batch_size = 32
        else:
            obj = get_objective("gan+mr2", moment_weight=1.0 if weight is None else weight, k=8)
            cfg.g_batch_size = 8
        trainer = Trainer(G, D, obj, cfg)
    trainer.fit(stream, steps)
    seconds = time.perf_counter() - t0
    G.eval()
    with torch.no_grad():
        gen = torch.Generator().manual_seed(10_000 + seed)
        z = base.noise(num_eval, generator=gen)
        images = base(torch.zeros(num_eval, 0), z)
    classifier = get_digit_classifier(0)
    stats = stacked_mode_stats(stacked_labels(classifier, images), true_label_distribution(stream.labels))
    return StackedRun(method, stats, seconds, G, trainer.history)


def _adam(lr: float, seed: int, batch: int, lr_d: float | None = None) -> TrainConfig:
    """The toys' plain Adam (:data:`~minilib.experiments.toys.TOY_ADAM`) at ``lr`` for G and ``lr_d`` (default ``lr``)
    for D, batch ``batch`` for both."""
    return toy_adam(lr_g=lr, lr_d=lr if lr_d is None else lr_d, batch_size=batch, g_batch_size=batch, seed=seed, log_every=50)


_FAST_HMC = dict(burn_in=1, num_samples=1, num_leapfrog=3, step_size=0.05)


def run_ring(method: str, seed: int = 0, steps: int = 3000, *, entropy_weight: float = 1.0, z_dim: int = 2,
             lr_d: float = 2e-3, lr_g: float = 2e-4, sigma: float = 0.1, batch: int = 128, num_eval: int = 2000) -> dict:
    """PresGAN Figure 1: ``method`` "gan" or "presgan" on the ring of 8 (radius 2, std 0.02).

    Collapsing regime (ours; the paper's numbers were lost): 2-D latent, tanh MLPs (2 hidden layers of 128),
    Adam with the discriminator 10x faster than the generator (lr_d 2e-3, lr_g 2e-4), batch 128, 1:1 updates,
    3,000 steps. The PresGAN uses the same settings plus output noise sigma in [0.01, ``sigma``] (started at
    ``sigma``), the entropy term with weight ``entropy_weight`` (0 = the noise alone, an ablation) and
    1 burn-in + 1 HMC draw of 3 leapfrog steps per sample.

    Returns ``{"samples": mu(z) [num_eval, 2], "modes": the course's mode criterion
    (:func:`~minilib.metrics.toy.mode_coverage`: covered, sharp, KL), "seconds", "sigma", "history"}``.
    """
    if method not in ("gan", "presgan"):
        raise ValueError(f"method must be 'gan' or 'presgan', got {method!r}")
    if not (isinstance(entropy_weight, (int, float)) and entropy_weight >= 0):
        raise ValueError(f"entropy_weight must be a float >= 0, got {entropy_weight!r}")
    if not (isinstance(sigma, (int, float)) and 0.01 <= sigma):
        raise ValueError(f"sigma must be a float >= 0.01 (the lower bound of the noise), got {sigma!r}")
    ds = ring()
    torch.manual_seed(seed)
    base = ToyGenerator(0, 2, z_dim=z_dim, hidden=128, layers=2, act="tanh")
    D = ToyDiscriminator(0, 2, hidden=128, layers=2, act="tanh")
    cfg = _adam(lr_g, seed, batch, lr_d=lr_d)
    t0 = time.perf_counter()
    noise = None
    if method == "gan":
        trainer = Trainer(base, D, get_objective("gan", k=1), cfg)
    else:
        G = NoisyGenerator(base, (2,), sigma_init=sigma, sigma_min=0.01, sigma_max=sigma)
        trainer = make_presgan_trainer(G, D, get_objective("presgan", entropy_weight=entropy_weight, k=1), cfg, **_FAST_HMC)
    trainer.fit(ToyStream(ds, seed), steps)
    if method == "presgan":
        noise = G.sigma.detach().clone()
    with torch.no_grad():
        y = base(torch.zeros(num_eval, 0), base.noise(num_eval, generator=torch.Generator().manual_seed(seed + 99)))
    return {"samples": y, "modes": mode_coverage(y, ds.modes, ds.weights, ds.std), "seconds": time.perf_counter() - t0, "sigma": noise, "history": trainer.history}


def _ring_from_spec(spec: dict) -> dict:
    return run_ring(**spec)


def _method_specs(specs: Sequence[dict]) -> list[dict]:
    specs = [dict(s) if isinstance(s, dict) else s for s in specs]
    for s in specs:
        if not isinstance(s, dict) or "method" not in s:
            raise ValueError(f"every spec must be a dict with at least 'method', got {s!r}")
    return specs


def run_rings(specs: Sequence[dict], workers: int | None = None) -> list[dict]:
    """:func:`run_ring` for every spec (a dict of its keyword arguments, e.g. ``{"method": "gan", "seed": 1}``),
    in ``workers`` processes (:func:`minilib.experiments.parallel.map_in_processes`; 1 = here). Results in order.

    The PresGANs with an entropy term (about 2.5 times a GAN's time: HMC in every step) start first, so that the two
    workers finish together."""
    return map_in_processes(_ring_from_spec, _method_specs(specs), workers, cost=_ring_cost)


def _ring_cost(spec: dict) -> float:
    """A run's relative training time (measured on one core: GAN 1, noise only about 1.2, PresGAN with HMC about 2.5)."""
    if spec.get("method") != "presgan":
        return 1.0
    return 2.5 if spec.get("entropy_weight", 1.0) > 0 else 1.2


def _stacked_from_spec(spec: dict) -> StackedRun:
    return run_stacked(**spec)


def run_stacked_many(specs: Sequence[dict], workers: int | None = None) -> list[StackedRun]:
    """:func:`run_stacked` for every spec (its keyword arguments, e.g. ``{"method": "gan", "steps": 1000}``) in
    ``workers`` processes with one torch thread each (1 = here, in order); the same results as one by one with
    one thread. Results in order."""
    return map_in_processes(_stacked_from_spec, _method_specs(specs), workers)


def digit_likelihoods(steps: int = 500, vae_steps: int = 1500, encoder_steps: int = 500, num_test: int = 100,
                      num_samples: Sequence[int] = (10, 100, 1000), entropy_weight: float = 0.01, seed: int = 0) -> dict:
    """Test log-likelihood of GAN (lambda = 0), PresGAN and a VAE with the same decoder on 8x8 digits (PresGAN Table 5).

    Decoder: ``NoisyGenerator(DigitGenerator(nz=8, ngf=16))`` with sigma in [0.01, 0.5]. The GANs are trained
    ``steps`` steps (Adam 1e-3, batch 64) and then get an encoder fitted by the ELBO at test time with the
    generator fixed; the VAE trains decoder and encoder jointly for ``vae_steps``. Each model's log p(y) on
    ``num_test`` test digits is estimated with every S in ``num_samples`` importance samples.
    Returns ``{model: {"estimates": {S: LogLikelihood}, "sigma": mean sigma, "seconds": float, "G": ...}}``.
    """
    train, _ = load_digits("train")
    test = load_digits("test")[0][:num_test]
    out = {}
    for name in ("gan (λ=0)", "presgan", "vae"):
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        G = NoisyGenerator(DigitGenerator(nz=8, channels=1, ngf=16), (1, 8, 8), sigma_init=0.3, sigma_min=0.01, sigma_max=0.5)
        enc = GaussianEncoder(64, 8, hidden=128, layers=2)
        if name == "vae":
            fit_encoder(G, enc, train, steps=vae_steps, batch_size=64, lr=1e-3, train_generator=True, seed=seed)
        else:
            lam = 0.0 if name.startswith("gan") else entropy_weight
            trainer = make_presgan_trainer(G, DigitDiscriminator(1, ndf=16), get_objective("presgan", entropy_weight=lam, k=1),
                                           _adam(1e-3, seed, 64), **_FAST_HMC)
            trainer.fit(StackedDigitStream("train", seed=seed, channels=1), steps)
            fit_encoder(G, enc, train, steps=encoder_steps, batch_size=64, lr=1e-3, seed=seed)
        est = {s: log_likelihood(G, enc, test, num_samples=s, seed=seed) for s in num_samples}
        out[name] = {"estimates": est, "sigma": G.sigma.mean().item(), "seconds": time.perf_counter() - t0, "G": G}
    return out
