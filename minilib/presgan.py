"""Prescribed GANs (Dieng, Ruiz, Blei & Titsias 2019, "Prescribed Generative Adversarial Networks").

A PresGAN adds learned Gaussian noise to the generator's output, p(y | z) = N(mu(z), diag sigma^2)
(Eq. 2), which gives the model a density: its entropy can be maximised against mode collapse
(Eq. 5, gradient Eqs. 10-14 with HMC samples of z | y from :mod:`minilib.hmc`) and the predictive
log-likelihood of held-out data can be estimated by importance sampling (Section 3.3).

* :class:`NoisyGenerator` wraps any generator ``G(x, z)``; its noise is the pair ``(z, eps)``.
* :class:`PresGANEntropy` is the entropy term as a :class:`minilib.train.Trainer` hook
  (``extra_loss``) plus the real-data noising (``transform_real``); :func:`make_presgan_trainer` wires both.
* :func:`fit_encoder` fits q(z | y) by the ELBO (with the decoder fixed: the test-time encoder; with it
  trained too: a VAE with the same decoder), :func:`log_likelihood` the importance-sampled estimate.
``python -m minilib bench hmc`` (:mod:`minilib.experiments.bench`) times the sampler and a PresGAN step.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn

from . import hmc
from .checkpoints import rng_state
from .errors import ConfigError, ConfigTypeError, check_int, check_number, check_tensor
from .objectives import Objective, get_objective
from .train import TrainConfig, Trainer, make_optimizer

__all__ = [
    "NoisyGenerator", "LinearGenerator", "posterior_log_prob", "entropy_surrogate", "PresGANEntropy",
    "make_presgan_trainer", "elbo", "fit_encoder", "LogLikelihood", "log_likelihood",
]
LOG_2PI = math.log(2 * math.pi)


class NoisyGenerator(nn.Module):
    """PresGAN's generative distribution y = mu(x, z) + sigma * eps, eps ~ N(0, I) (Eq. 2 and 8).

    Args:
        base: a generator ``base(x, z) -> mu [B, *event]`` with ``base.noise(n, device, generator)``.
        event_shape: the shape of one output (sigma has this shape: one noise level per output dimension).
        sigma_init: initial sigma (the paper initialises log sigma^2 = 0, i.e. sigma = 1).
        sigma_min, sigma_max: sigma is clamped elementwise to this range (Section 3.2, "Stability").
    ``noise(n)`` returns the pair ``(z [n, ...], eps [n, *event])``; ``G(x, (z, eps))`` the noisy sample.
    """

    def __init__(self, base: nn.Module, event_shape: Sequence[int], sigma_init: float = 1.0,
                 sigma_min: float = 1e-2, sigma_max: float = 1.0) -> None:
        super().__init__()
        if not hasattr(base, "noise"):
            raise ConfigTypeError("base must be a generator with a noise(n, device, generator) method")
        event_shape = tuple(event_shape)
        for d in event_shape:
            if isinstance(d, bool) or not isinstance(d, int) or d < 1:
                raise ConfigError(f"event_shape must be positive ints (one output's shape), got {event_shape}")
        check_number("sigma_min", sigma_min, low=0.0)
        check_number("sigma_max", sigma_max, low=sigma_min, low_open=False)
        check_number("sigma_init", sigma_init, low=sigma_min, high=sigma_max, low_open=False, high_open=False)
        self.base, self.event_shape = base, tuple(int(s) for s in event_shape)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.log_sigma = nn.Parameter(torch.full(self.event_shape, math.log(sigma_init)))

    @property
    def sigma(self) -> torch.Tensor:
        """``[*event]`` the noise scale, exp(log_sigma) clamped to [sigma_min, sigma_max].

        The clamp is straight-through: its gradient is the identity, so sigma still learns at a bound
        (``torch.clamp`` has zero gradient *at* the bound, where :meth:`project_` puts the parameter)."""
        ls = self.log_sigma
        return (ls + (ls.clamp(math.log(self.sigma_min), math.log(self.sigma_max)) - ls).detach()).exp()

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp the ``log_sigma`` parameter into [log sigma_min, log sigma_max] in place."""
        self.log_sigma.clamp_(math.log(self.sigma_min), math.log(self.sigma_max))

    def noise(self, n: int, device: torch.device | str | None = None,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, eps)``: the base generator's z and output noise eps ``[n, *event]`` ~ N(0, I)."""
        z = self.base.noise(n, device=device, generator=generator)
        return z, torch.randn((n, *self.event_shape), device=z.device, dtype=self.log_sigma.dtype, generator=generator)

    def mean(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """mu(x, z) ``[B, *event]``: the base generator's output (the image PresGAN shows as its sample)."""
        return self.base(x, z)

    def forward(self, x: torch.Tensor, noise: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if not isinstance(noise, (tuple, list)) or len(noise) != 2:
            raise ConfigTypeError("noise must be the pair (z, eps) returned by NoisyGenerator.noise")
        z, eps = noise
        return self.mean(x, z) + self.sigma * eps  # [B, *event]

    def log_likelihood(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``[B]`` log N(y; mu(x, z), diag sigma^2) summed over the event."""
        sigma = self.sigma
        r = ((y - self.mean(x, z)) / sigma).reshape(y.shape[0], -1)
        return -0.5 * r.pow(2).sum(1) - sigma.log().sum() - 0.5 * r.shape[1] * LOG_2PI


class LinearGenerator(nn.Module):
    """``mu(x, z) = W z + b`` with z ``[B, nz]`` ~ N(0, I), output ``[B, dim]``: the closed-form test model.

    With output noise sigma the marginal is y ~ N(b, W W^T + diag sigma^2).
    """

    def __init__(self, nz: int, dim: int) -> None:
        super().__init__()
        self.nz = check_int("nz", nz)
        check_int("dim", dim)
        self.linear = nn.Linear(nz, dim)

    def noise(self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ``[n, nz]`` ~ N(0, I)."""
        return torch.randn(n, self.nz, device=device, generator=generator, dtype=self.linear.weight.dtype)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)

    def marginal_cov(self, sigma: torch.Tensor) -> torch.Tensor:
        """``[dim, dim]`` W W^T + diag sigma^2."""
        W = self.linear.weight
        return W @ W.T + torch.diag_embed(sigma.expand(W.shape[0]) ** 2)

    def exact_log_prob(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``[B]`` exact log p(y) = log N(y; b, W W^T + diag sigma^2)."""
        dist = torch.distributions.MultivariateNormal(self.linear.bias, covariance_matrix=self.marginal_cov(sigma))
        return dist.log_prob(y)

    def exact_entropy(self, sigma: torch.Tensor) -> torch.Tensor:
        """H = 1/2 log det(2 pi e (W W^T + diag sigma^2)) (differentiable in W and sigma)."""
        cov = self.marginal_cov(sigma)
        return 0.5 * torch.logdet(2 * math.pi * math.e * cov)


def _check_no_batch_stats(G: nn.Module) -> None:
    for m in G.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise ConfigError("G has BatchNorm in training mode: HMC needs per-sample densities; call G.eval() or use a "
                             "generator without batch statistics (minilib.nets.mlp, minilib.nets.digits)")


def _check_noisy(G: object) -> None:
    if not isinstance(G, NoisyGenerator):
        raise ConfigTypeError(f"G must be a NoisyGenerator (PresGAN's generator with learned output noise), got "
                              f"{type(G).__name__}")


def _check_data(name: str, G: NoisyGenerator, y: object, finite: bool | str = True) -> torch.Tensor:
    """``y`` is a finite, non-empty float tensor ``[N, *G.event_shape]``."""
    check_tensor(name, y, min_dims=1, finite=finite)
    if tuple(y.shape[1:]) != G.event_shape:
        raise ConfigError(f"{name} must be [N, *{G.event_shape}] (G's event shape), got {tuple(y.shape)}")
    return y


def posterior_log_prob(G: NoisyGenerator, x: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The unnormalised log posterior z -> log N(z; 0, I) + log p(y | x, z) ``[C]`` for chains z ``[C, ...]``.

    Chain c targets p(z | y_c): ``x`` and ``y`` ``[C, ...]`` are fixed (detached), one chain per observation.
    """
    _check_noisy(G)
    _check_data("y", G, y)
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] != y.shape[0]:
        raise ConfigError(f"x must be a tensor [C, ...] with y's C = {y.shape[0]} rows, got "
                          f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    x, y = x.detach(), y.detach()

    def log_prob(z: torch.Tensor) -> torch.Tensor:
        return -0.5 * z.reshape(z.shape[0], -1).pow(2).sum(1) + G.log_likelihood(y, x, z)

    return log_prob


def entropy_surrogate(
    G: NoisyGenerator, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, *, burn_in: int = 2, num_samples: int = 2,
    num_leapfrog: int = 5, step_size: float | torch.Tensor = 0.02, target_accept: float = 0.67,
    adapt: bool = True, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, hmc.HMCResult]:
    """A scalar whose gradient estimates grad H(p_theta(y)) per sample (PresGAN Eqs. 10-14).

    With y = mu(z) + sigma * eps, grad_theta H = -E[ grad_y log p(y) . d y / d theta ] and
    grad_y log p(y) = E_{p(z' | y)}[ -(y - mu(z')) / sigma^2 ]. HMC chains, one per sample, start at the z
    that generated y (an exact posterior draw); c = mean over draws of (y - mu(z')) / sigma^2 is held fixed
    and the surrogate is mean_b sum_event(c * y): its gradient through y (the reparameterisation) is the
    estimate. The estimate becomes unbiased as the chains forget their start: a chain that never moves
    (z' = z) gives c = eps / sigma, which is uncorrelated with d y / d W (tests measure this).

    Args:
        G: the noisy generator; x ``[N, ...]``; y ``[N, *event]`` the noisy samples (with graph);
        z: ``[N, ...]`` the latent codes that generated y. HMC settings as in :func:`minilib.hmc.sample`.
    Returns: ``(surrogate scalar, HMCResult)``; H is summed over the event, averaged over the batch.
    """
    _check_noisy(G)
    _check_data("y", G, y, finite="cpu")  # the training hot path: no device sync (the Trainer's guard sees NaN)
    if not isinstance(z, torch.Tensor) or z.dim() < 1 or z.shape[0] != y.shape[0]:
        raise ConfigError(f"z must be a tensor with y's batch size {y.shape[0]}, got {getattr(z, 'shape', type(z).__name__)}")
    _check_no_batch_stats(G)
    res = hmc.sample(posterior_log_prob(G, x, y), z.detach(), num_samples=num_samples, burn_in=burn_in,
                     step_size=step_size, num_leapfrog=num_leapfrog, target_accept=target_accept, adapt=adapt,
                     generator=generator)
    s, n = res.samples.shape[:2]
    with torch.no_grad():
        x_rep = x.repeat(s, *([1] * (x.dim() - 1)))  # [S·N, ...] matching samples.reshape(S·N, ...)
        mu = G.mean(x_rep, res.samples.reshape(s * n, *z.shape[1:])).reshape(s, n, *y.shape[1:])
        c = ((y.detach()[None] - mu) / G.sigma**2).mean(0)  # [N, *event] = -grad_y log p(y), estimated
    return (c * y).reshape(n, -1).sum(1).mean(), res


class PresGANEntropy:
    """PresGAN's entropy regulariser as hooks of :class:`minilib.train.Trainer`.

    ``extra_loss`` adds ``{"entropy": -objective.entropy_weight * surrogate}`` (the generator loss of Eq. 5
    is L_GAN - lambda H); ``noise_real(y)`` returns y + sigma * eps (the data noising of Eq. 15, fed to D).
    The HMC step size persists between calls and is adapted toward ``target_accept`` (like the reference
    code); ``last_accept`` holds the latest mean acceptance.
    """

    def __init__(self, G: NoisyGenerator, *, burn_in: int = 2, num_samples: int = 2, num_leapfrog: int = 5,
                 step_size: float = 0.02, target_accept: float = 0.67, seed: int = 0) -> None:
        _check_noisy(G)
        check_int("burn_in", burn_in, 0)
        check_int("num_samples", num_samples, 0)
        if burn_in + num_samples == 0:
            raise ConfigError("num_samples + burn_in must be >= 1 (HMC iterations per step)")
        check_int("num_leapfrog", num_leapfrog)
        step_size = check_number("step_size", step_size, low=0.0)
        target_accept = check_number("target_accept", target_accept, low=0.0, high=1.0)
        self.G, self.step_size, self.target_accept = G, float(step_size), target_accept
        self.hmc_kwargs = dict(burn_in=burn_in, num_samples=num_samples, num_leapfrog=num_leapfrog)
        self.seed, self.gen = seed, torch.Generator().manual_seed(seed)
        self.last_accept = math.nan

    def state_dict(self) -> dict:
        """The sampler state that persists between steps (saved in Trainer checkpoints for exact resume; the RNG
        state as CPU bytes, whatever device the generator runs on)."""
        return {"step_size": self.step_size, "last_accept": self.last_accept, "gen_device": str(self.gen.device),
                "gen_state": self.gen.get_state().cpu()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`, wherever the checkpoint's tensors were loaded (``map_location``)."""
        self.step_size, self.last_accept = float(state["step_size"]), float(state["last_accept"])
        device = torch.device(state["gen_device"])
        gen_state = rng_state(state["gen_state"], "extra_loss.gen_state")
        if device.type == "cuda" and not torch.cuda.is_available():
            warnings.warn("the checkpoint's HMC RNG was on CUDA, which is not available here: the sampler continues "
                          "with freshly seeded noise (not bit-identical to an uninterrupted run)")
            self.gen = torch.Generator().manual_seed(self.seed)
            return
        self.gen = torch.Generator(device=device)
        self.gen.set_state(gen_state)

    def _generator(self, device: torch.device) -> torch.Generator:
        if self.gen.device != device:  # first call on an accelerator: a seeded generator there
            self.gen = torch.Generator(device=device).manual_seed(self.seed)
        return self.gen

    def noise_real(self, y: torch.Tensor) -> torch.Tensor:
        """Real data noised with the model's sigma: ``[B, *event]``."""
        eps = torch.randn(y.shape, generator=self._generator(y.device), dtype=y.dtype, device=y.device)
        return y + self.G.sigma.detach() * eps

    def __call__(self, trainer: Trainer, x: torch.Tensor, y: torch.Tensor, samples: torch.Tensor,
                 z: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        weight = trainer.objective.entropy_weight
        if weight == 0:
            return {}
        b, k = samples.shape[:2]
        flat = samples.reshape(b * k, *samples.shape[2:])  # [B·K, *event]
        x_rep = x.repeat_interleave(k, dim=0)
        surrogate, res = entropy_surrogate(self.G, x_rep, flat, z[0], step_size=self.step_size, adapt=False,
                                           target_accept=self.target_accept, generator=self._generator(flat.device),
                                           **self.hmc_kwargs)
        acc = res.accept_rate.mean().item() if self.hmc_kwargs["num_samples"] else res.burn_in_accept.mean().item()
        self.last_accept = acc
        self.step_size *= 1.02 if acc > self.target_accept else 0.98
        return {"entropy": -weight * surrogate}


def make_presgan_trainer(G: NoisyGenerator, D: nn.Module, objective: Objective | None = None,
                         config: TrainConfig | None = None, *, sigma_lr: float | None = None,
                         **hmc_settings: float) -> Trainer:
    """A :class:`~minilib.train.Trainer` for PresGAN: the objective's ``entropy_weight`` is lambda (0: a GAN with
    learned output noise, the "GAN (lambda = 0)" of the log-likelihood comparison); D sees noised real data.
    ``sigma_lr``: the learning rate of ``log_sigma`` (the reference code's ``--sigma_lr``; default: G's rate).
    ``hmc_settings`` go to :class:`PresGANEntropy` (burn_in, num_samples, num_leapfrog, step_size, ...)."""
    if sigma_lr is not None:
        check_number("sigma_lr", sigma_lr, low=0.0)
    objective = objective or get_objective("presgan")
    hooks = PresGANEntropy(G, seed=(config or TrainConfig()).seed, **hmc_settings)
    trainer = Trainer(G, D, objective, config, extra_loss=hooks, transform_real=hooks.noise_real)
    if sigma_lr is not None:
        rest = [p for name, p in G.named_parameters() if name != "log_sigma"]
        groups = [{"params": rest}, {"params": [G.log_sigma], "lr": float(sigma_lr)}]
        trainer.opt_g = make_optimizer(groups, trainer.config.lr_g, trainer.config)
    trainer.presgan = hooks
    return trainer


# ------------------------------------------------------------------------------- log-likelihood
def elbo(G: NoisyGenerator, encoder: nn.Module, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B]`` one-sample ELBO E_q[log p(y | z)] - KL(q(z | y) || N(0, I)) with q = N(mean, diag std^2) = encoder(y)
    (Kingma & Welling 2014, Eq. 10; PresGAN Eq. 20)."""
    _check_noisy(G)
    _check_data("y", G, y)
    mean, log_std = encoder(y)
    z = mean + log_std.exp() * torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
    kl = 0.5 * (mean.pow(2) + (2 * log_std).exp() - 1 - 2 * log_std).sum(1)
    x = y.new_zeros(y.shape[0], 0)
    return G.log_likelihood(y, x, z) - kl


def fit_encoder(G: NoisyGenerator, encoder: nn.Module, data: torch.Tensor, *, steps: int = 1000, batch_size: int = 64,
                lr: float = 1e-3, train_generator: bool = False, seed: int = 0) -> list[float]:
    """Maximise the ELBO over minibatches of ``data`` ``[N, *event]``; returns the negative ELBO per step.

    ``train_generator=False``: the test-time encoder of PresGAN Section 3.3 (G fixed). ``True``: a VAE whose
    decoder is G (same architecture and learned sigma as the PresGAN it is compared with).
    """
    _check_noisy(G)
    _check_data("data", G, data)
    check_int("steps", steps)
    check_int("batch_size", batch_size)
    check_number("lr", lr, low=0.0)
    gen = torch.Generator().manual_seed(seed)
    params = list(encoder.parameters()) + (list(G.parameters()) if train_generator else [])
    G.requires_grad_(train_generator)
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    try:
        for _ in range(steps):
            idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
            loss = -elbo(G, encoder, data[idx], gen).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        G.requires_grad_(True)
    return losses


@dataclass
class LogLikelihood:
    """Importance-sampled predictive log-likelihood (PresGAN Eq. 19).

    Attributes: ``per_example`` ``[N]`` log p(y) estimates (nats); ``nats`` their mean; ``bits_per_dim``
    = -nats / (D ln 2); ``num_samples`` importance samples per example; ``ess`` mean effective sample size of
    the normalised weights, (sum w)^2 / sum w^2, per example.
    """

    per_example: torch.Tensor
    nats: float
    bits_per_dim: float
    num_samples: int
    ess: float


@torch.no_grad()
def log_likelihood(G: NoisyGenerator, encoder: nn.Module, y: torch.Tensor, *, num_samples: int = 1000,
                   overdispersion: float = 1.2, chunk: int = 100, bounds: tuple[float, float] | None = None,
                   seed: int = 0) -> LogLikelihood:
    """log p(y) ~= logsumexp_s [log p(y | z_s) + log p(z_s) - log q(z_s | y)] - log S with z_s ~ q (Eq. 19).

    q(z | y) = N(mean(y), overdispersion * diag std(y)^2) from ``encoder`` (fitted by :func:`fit_encoder`; the
    paper multiplies the encoder's covariance by a factor > 1: overdispersed proposals keep the weights'
    variance finite). ``bounds=(lo, hi)`` uses the truncated Gaussian likelihood of the paper's evaluation
    (each pixel's density divided by its mass inside [lo, hi]). y ``[N, *event]``.
    """
    _check_noisy(G)
    check_int("num_samples", num_samples)
    check_int("chunk", chunk)
    check_number("overdispersion", overdispersion, low=1.0, low_open=False)
    if bounds is not None:
        if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
            raise ConfigTypeError(f"bounds must be a pair (lo, hi) or None, got {bounds!r}")
        lo = check_number("bounds[0]", bounds[0])
        if not check_number("bounds[1]", bounds[1]) > lo:
            raise ConfigError(f"bounds must be (lo, hi) with lo < hi, got {tuple(bounds)}")
    _check_data("y", G, y)
    gen = torch.Generator().manual_seed(seed)
    n, d = y.shape[0], math.prod(G.event_shape)
    mean, log_std = encoder(y)
    std = log_std.exp() * math.sqrt(overdispersion)  # [N, nz]
    sigma = G.sigma
    log_w = []
    for start in range(0, num_samples, chunk):
        s = min(chunk, num_samples - start)
        eps = torch.randn((s, *mean.shape), generator=gen, dtype=mean.dtype).to(y.device)
        z = mean + std * eps  # [s, N, nz]
        log_q = (-0.5 * eps.pow(2) - std.log() - 0.5 * LOG_2PI).sum(-1)  # [s, N]
        log_prior = (-0.5 * z.pow(2) - 0.5 * LOG_2PI).sum(-1)
        y_rep = y.repeat(s, *([1] * (y.dim() - 1)))  # [s·N, *event]
        zf = z.reshape(s * n, -1)
        log_lik = G.log_likelihood(y_rep, y.new_zeros(s * n, 0), zf).reshape(s, n)
        if bounds is not None:
            mu = G.mean(y.new_zeros(s * n, 0), zf)
            normal = torch.distributions.Normal(mu, sigma)
            mass = (normal.cdf(torch.full_like(mu, bounds[1])) - normal.cdf(torch.full_like(mu, bounds[0]))).clamp_min(1e-12)
            log_lik = log_lik - mass.log().reshape(s, n, -1).sum(-1)
        log_w.append(log_lik + log_prior - log_q)
    lw = torch.cat(log_w)  # [S, N]
    per = torch.logsumexp(lw, 0) - math.log(num_samples)
    w = torch.softmax(lw, 0)
    ess = (1.0 / w.pow(2).sum(0)).mean().item()
    nats = per.mean().item()
    return LogLikelihood(per, nats, -nats / (d * math.log(2)), num_samples, ess)
