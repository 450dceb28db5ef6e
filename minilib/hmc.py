"""Batched Hamiltonian Monte Carlo with per-chain step-size adaptation (Neal 2011, "MCMC using
Hamiltonian dynamics"; Robbins-Monro adaptation as in Andrieu & Thoms 2008).

PresGAN (Dieng et al. 2019, Eq. 12) needs samples of z from the posterior p(z | x) of a generator;
its reference code runs the generator under ``no_grad`` inside the leapfrog steps, so only the prior
moves the chains. Here the gradient is of the *full* log density, every chain runs in one batched
call of ``log_prob``, and the sampler is validated against closed forms in ``tests/test_hmc.py``.

Shapes: a batch of C chains is a tensor ``[C, *event]``; ``log_prob`` maps it to ``[C]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .errors import ConfigError, ConfigTypeError, check_int, check_number, check_same_device, check_tensor

__all__ = ["HMCResult", "sample", "leapfrog", "log_prob_and_grad", "effective_sample_size", "hamiltonian"]

LogProb = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class HMCResult:
    """What :func:`sample` returns.

    Attributes:
        samples: ``[num_samples, C, *event]`` draws after burn-in.
        accept_rate: ``[C]`` fraction of accepted proposals after burn-in (NaN if ``num_samples == 0``).
        step_size: ``[C]`` the leapfrog step size each chain used after burn-in.
        log_prob: ``[num_samples, C]`` log density of each draw.
        burn_in_accept: ``[C]`` mean acceptance probability during burn-in (NaN if ``burn_in == 0``).
    """

    samples: torch.Tensor
    accept_rate: torch.Tensor
    step_size: torch.Tensor
    log_prob: torch.Tensor
    burn_in_accept: torch.Tensor

    @property
    def last(self) -> torch.Tensor:
        """``[C, *event]`` the final state of every chain."""
        return self.samples[-1]

    def ess(self) -> torch.Tensor:
        """``[*event]`` multi-chain effective sample size of every coordinate (see :func:`effective_sample_size`)."""
        return effective_sample_size(self.samples)


def _check_chains(name: str, z: object) -> torch.Tensor:
    """A finite floating tensor ``[C, *event]`` with C >= 1 chains, on a device with data."""
    t = check_tensor(name, z, min_dims=1)
    if t.device.type == "meta":
        raise ConfigError(f"{name} is on the meta device (shapes only, no values): HMC needs real values")
    return t


def _check_log_prob(log_prob: object) -> None:
    if not callable(log_prob):
        raise ConfigTypeError(f"log_prob must be a function [C, *event] -> [C], got {type(log_prob).__name__}")


def log_prob_and_grad(log_prob: LogProb, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log_prob(z)`` ``[C]`` and its gradient ``d log_prob / dz`` ``[C, *event]``, both detached.

    The gradient flows through everything ``log_prob`` computes (e.g. a generator's forward), but only
    with respect to ``z``: no gradient is accumulated into any module's parameters.
    """
    _check_log_prob(log_prob)
    check_tensor("z", z, min_dims=1, finite=False)
    return _log_prob_and_grad(log_prob, z)


def _log_prob_and_grad(log_prob: LogProb, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        lp = log_prob(zz)
        if not isinstance(lp, torch.Tensor) or lp.shape != (z.shape[0],):
            raise ConfigError(f"log_prob must map chains [C, ...] to [C] = [{z.shape[0]}], got "
                              f"{tuple(lp.shape) if isinstance(lp, torch.Tensor) else type(lp).__name__}")
        (grad,) = torch.autograd.grad(lp.sum(), zz)
    return lp.detach(), grad.detach()


def _bcast(step: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-chain step ``[C]`` -> ``[C, 1, ..., 1]`` to scale ``[C, *event]``."""
    return step.reshape(-1, *([1] * (z.dim() - 1)))


def _step_sizes(step_size: torch.Tensor | float, z: torch.Tensor) -> torch.Tensor:
    """``step_size`` (a number or ``[C]``) as a ``[C]`` tensor of finite positive steps, else an error naming it."""
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float, torch.Tensor)):
        raise ConfigTypeError(f"step_size must be a number or a [C] tensor, got {type(step_size).__name__}")
    eps = torch.as_tensor(step_size, dtype=z.dtype, device=z.device).detach().clone()
    c = z.shape[0]
    if eps.dim() == 0:
        eps = eps.expand(c).clone()
    if eps.shape != (c,) or not torch.isfinite(eps).all() or not (eps > 0).all():
        raise ConfigError(f"step_size must be > 0 and finite, a float or a [C] = [{c}] tensor, got {step_size!r}")
    return eps


def leapfrog(
    log_prob: LogProb, z: torch.Tensor, p: torch.Tensor, step_size: torch.Tensor | float, num_steps: int,
    grad: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``num_steps`` leapfrog steps of Hamiltonian dynamics with H(z, p) = -log_prob(z) + |p|^2 / 2 (Neal 2011, Eq. 5.18-5.20).

    Args:
        z, p: ``[C, *event]`` positions and momenta (finite).
        step_size: a float or ``[C]`` per-chain steps (> 0, finite).
        num_steps: leapfrog steps (>= 1).
        grad: ``[C, *event]`` the gradient of ``log_prob`` at ``z`` if already known (e.g. the end gradient
            of the previous trajectory, as :func:`sample` passes it); ``None`` computes it. With it the
            trajectory costs ``num_steps`` evaluations of ``log_prob`` instead of ``num_steps + 1``.
    Returns: ``(z, p, log_prob(z), grad)`` at the end of the trajectory. The map is volume preserving and
    reversible: ``leapfrog(z', -p')`` returns ``(z, -p)``.
    """
    _check_log_prob(log_prob)
    _check_chains("z", z)
    check_int("num_steps", num_steps)
    for name, t in (("p", p), ("grad", grad)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise ConfigTypeError(f"{name} must be a tensor of z's shape {tuple(z.shape)}, got {type(t).__name__}")
        if t.shape != z.shape:
            raise ConfigError(f"{name} must have z's shape {tuple(z.shape)}, got {tuple(t.shape)}")
        check_same_device("z", z, **{name: t})
        check_tensor(name, t)
    return _leapfrog(log_prob, z, p, _step_sizes(step_size, z), num_steps, grad)


def _leapfrog(log_prob: LogProb, z: torch.Tensor, p: torch.Tensor, eps: torch.Tensor, num_steps: int,
              grad: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`leapfrog` without the checks (``eps`` ``[C]``): :func:`sample`'s inner loop."""
    eps = _bcast(eps, z)
    g = _log_prob_and_grad(log_prob, z)[1] if grad is None else grad
    p = p + 0.5 * eps * g
    for i in range(num_steps):
        z = z + eps * p
        lp, g = _log_prob_and_grad(log_prob, z)
        p = p + (eps if i < num_steps - 1 else 0.5 * eps) * g
    return z, p, lp, g


def hamiltonian(log_prob_value: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``H = -log_prob + |p|^2 / 2`` per chain: ``[C]`` from ``[C]`` and ``[C, *event]``."""
    check_tensor("p", p, min_dims=1, finite=False)
    check_tensor("log_prob_value", log_prob_value, dims=1, finite=False)
    if log_prob_value.shape[0] != p.shape[0]:
        raise ConfigError(f"log_prob_value must be [C] with p's C = {p.shape[0]} chains, got {tuple(log_prob_value.shape)}")
    check_same_device("log_prob_value", log_prob_value, p=p)
    return _hamiltonian(log_prob_value, p)


def _hamiltonian(log_prob_value: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return -log_prob_value + 0.5 * p.reshape(p.shape[0], -1).pow(2).sum(1)


def sample(
    log_prob: LogProb,
    init: torch.Tensor,
    *,
    num_samples: int,
    burn_in: int,
    step_size: float | torch.Tensor,
    num_leapfrog: int,
    target_accept: float = 0.67,
    adapt: bool = True,
    generator: torch.Generator | None = None,
    reuse_grad: bool = True,
) -> HMCResult:
    """Run C independent HMC chains in one batch (Neal 2011, Algorithm of Sec. 5.3.2).

    Each iteration draws momenta p ~ N(0, I), takes ``num_leapfrog`` leapfrog steps with the gradient of
    the full log density, and accepts with probability ``min(1, exp(H_old - H_new))`` (a non-finite
    proposal is rejected). During burn-in each chain's step size adapts by Robbins-Monro
    stochastic approximation, ``log eps += 2 t^-0.6 (alpha_t - target_accept)`` with alpha_t the chain's
    acceptance probability (Andrieu & Thoms 2008, Sec. 4; the gain decays so the step settles); afterwards
    it is fixed, so the draws are from a valid Markov chain.

    Args:
        log_prob: maps ``[C, *event]`` to ``[C]`` (unnormalised log density; differentiable in z).
        init: ``[C, *event]`` starting states (finite).
        num_samples: draws kept after burn-in (>= 0; 0 only with burn_in > 0).
        burn_in: iterations discarded (and used for adaptation).
        step_size: initial leapfrog step, a float or ``[C]`` (> 0).
        num_leapfrog: leapfrog steps per iteration (>= 1).
        target_accept: in (0, 1).
        adapt: adapt the step size during burn-in.
        generator: torch RNG for momenta and accept decisions (reproducible chains).
        reuse_grad: keep each chain's (log_prob, gradient) at its current state and start the next
            trajectory from it, so an iteration costs ``num_leapfrog`` evaluations of ``log_prob`` (plus one
            at ``init``). ``False`` recomputes the start gradient every iteration (``num_leapfrog + 1``
            evaluations; the chains are the same, it exists to benchmark the saving).
    Returns: :class:`HMCResult`.
    """
    _check_log_prob(log_prob)
    _check_chains("init", init)
    check_int("num_samples", num_samples, 0)
    check_int("burn_in", burn_in, 0)
    check_int("num_leapfrog", num_leapfrog)
    if num_samples + burn_in == 0:
        raise ConfigError("num_samples + burn_in must be >= 1")
    check_number("target_accept", target_accept, low=0.0, high=1.0)
    c = init.shape[0]
    eps = _step_sizes(step_size, init)

    log_eps = eps.log()  # Robbins-Monro state (per chain)
    z = init.detach().clone()
    lp, grad = _log_prob_and_grad(log_prob, z)  # of the current state, per chain
    if not torch.isfinite(lp).all():
        raise ConfigError("log_prob(init) must be finite for every chain")
    draws, draw_lp = [], []
    accepted = torch.zeros(c, dtype=init.dtype, device=init.device)
    burn_acc = torch.zeros(c, dtype=init.dtype, device=init.device)
    for it in range(burn_in + num_samples):
        p0 = torch.randn(z.shape, dtype=z.dtype, device=z.device, generator=generator)
        z_new, p_new, lp_new, grad_new = _leapfrog(log_prob, z, p0, eps, num_leapfrog, grad if reuse_grad else None)
        log_ratio = _hamiltonian(lp, p0) - _hamiltonian(lp_new, p_new)  # [C]
        log_ratio = torch.where(torch.isfinite(log_ratio), log_ratio, torch.full_like(log_ratio, -math.inf))
        accept_prob = log_ratio.clamp(max=0.0).exp()  # [C]
        u = torch.rand(c, dtype=z.dtype, device=z.device, generator=generator)
        acc = u < accept_prob  # [C]
        z = torch.where(_bcast(acc, z), z_new, z)
        lp = torch.where(acc, lp_new, lp)
        grad = torch.where(_bcast(acc, z), grad_new, grad)
        if it < burn_in:
            burn_acc += accept_prob
            if adapt:  # stochastic approximation on log step: E[accept_prob(eps)] = target_accept
                log_eps = log_eps + 2.0 * (it + 1) ** -0.6 * (accept_prob - target_accept)
                eps = log_eps.exp()
        else:
            accepted += acc.to(z.dtype)
            draws.append(z.clone())
            draw_lp.append(lp.clone())
    nan = torch.full((c,), math.nan, dtype=init.dtype, device=init.device)
    return HMCResult(
        samples=torch.stack(draws) if draws else z.new_zeros((0, *z.shape)),
        accept_rate=accepted / num_samples if num_samples else nan,
        step_size=eps,
        log_prob=torch.stack(draw_lp) if draw_lp else lp.new_zeros((0, c)),
        burn_in_accept=burn_acc / burn_in if burn_in else nan,
    )


def effective_sample_size(samples: torch.Tensor) -> torch.Tensor:
    """Multi-chain effective sample size of every coordinate (Geyer's initial monotone sequence, as in
    Stan's ``ess_bulk`` without ranks or splitting; Gelman et al. BDA3 Sec. 11.5).

    Args:
        samples: ``[S, C, *event]`` (S >= 4 draws of C chains).
    Returns: ``[*event]`` ESS; iid draws give about S*C, an AR(1) chain with correlation rho
    about S*C*(1 - rho)/(1 + rho). A coordinate in which no chain ever moves (every proposal rejected) holds
    only its C chain values, so its ESS is the number of distinct values among them: 1 when all chains
    started at the same point (the autocorrelation estimate alone would say about C/2 there, since it
    cannot see correlations longer than the chains). The same limit makes about C/2 the smallest ESS of
    chains that move but rarely: read it together with the acceptance rate and the traces.
    """
    check_tensor("samples", samples, min_dims=2)
    s, c = samples.shape[:2]
    if s < 4:
        raise ConfigError(f"samples needs at least 4 draws per chain, got S = {s}")
    x = samples.double().reshape(s, c, -1)  # [S, C, E]
    x = x - x.mean(0, keepdim=True)
    n_fft = 1 << (2 * s - 1).bit_length()
    f = torch.fft.rfft(x, n=n_fft, dim=0)
    acov = torch.fft.irfft(f * f.conj(), n=n_fft, dim=0)[:s] / s  # [S, C, E] biased autocovariance per chain
    chain_var = acov[0] * s / (s - 1)  # [C, E]
    w = chain_var.mean(0)  # within-chain variance [E]
    chain_mean = samples.double().reshape(s, c, -1).mean(0)
    b_over_n = chain_mean.var(0, unbiased=True) if c > 1 else torch.zeros_like(w)
    var_plus = (s - 1) / s * w + b_over_n  # [E]
    var_plus = torch.where(var_plus > 0, var_plus, torch.ones_like(var_plus))
    rho = 1.0 - (w - acov.mean(1)) / var_plus  # [S, E] combined autocorrelation
    rho[0] = 1.0
    # Geyer: sums of consecutive pairs, truncated at the first negative pair, made monotone
    m = (s - 1) // 2
    pairs = rho[0 : 2 * m : 2] + rho[1 : 2 * m + 1 : 2]  # [m, E]
    positive = torch.cumprod((pairs > 0).double(), dim=0)
    pairs = pairs * positive
    pairs = torch.cummin(pairs, dim=0).values * positive
    tau = -1.0 + 2.0 * pairs.sum(0)
    tau = torch.clamp(tau, min=1.0 / math.log10(max(s * c, 10)))
    ess = ((s * c) / tau).clamp(max=s * c * math.log10(max(s * c, 10)))
    stuck = w == 0  # no chain moved: the draws are C repeated values
    for e in stuck.nonzero().flatten().tolist():
        ess[e] = float(torch.unique(chain_mean[:, e]).numel())
    return ess.reshape(samples.shape[2:]).to(samples.dtype)
