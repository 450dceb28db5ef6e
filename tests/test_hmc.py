"""HMC validated against closed forms (issue 5): linear-Gaussian posterior, leapfrog reversibility and
O(eps^2) energy error, step-size adaptation, a banana, effective sample size, bad arguments."""
import math

import pytest
import torch

from minilib import hmc

torch.set_num_threads(1)


def _linear_gaussian(d_z=3, d_x=6, sigma=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d_x, d_z, generator=g, dtype=torch.float64)
    b = torch.randn(d_x, generator=g, dtype=torch.float64)
    x = W @ torch.randn(d_z, generator=g, dtype=torch.float64) + b + sigma * torch.randn(d_x, generator=g, dtype=torch.float64)
    cov = torch.linalg.inv(torch.eye(d_z, dtype=torch.float64) + W.T @ W / sigma**2)  # posterior covariance
    mean = cov @ W.T @ (x - b) / sigma**2

    def log_prob(z):  # [C, d_z] -> [C]: log N(z; 0, I) + log N(x; Wz + b, sigma^2 I) (up to constants)
        r = x - (z @ W.T + b)
        return -0.5 * z.pow(2).sum(1) - 0.5 * r.pow(2).sum(1) / sigma**2

    return log_prob, mean, cov


@pytest.mark.parametrize("d_z,d_x,sigma", [(3, 6, 0.5), (5, 64, 0.1)])
def test_linear_gaussian_posterior_mean_and_covariance(d_z, d_x, sigma):
    log_prob, mean, cov = _linear_gaussian(d_z, d_x, sigma)
    g = torch.Generator().manual_seed(1)
    init = torch.randn(256, d_z, dtype=torch.float64, generator=g)
    res = hmc.sample(log_prob, init, num_samples=60, burn_in=60, step_size=0.05, num_leapfrog=10, generator=g)
    assert res.samples.shape == (60, 256, d_z)
    z = res.samples.reshape(-1, d_z)
    sd = cov.diagonal().sqrt()
    assert ((z.mean(0) - mean).abs() / sd).max() < 0.1
    emp_cov = torch.cov(z.T)
    corr = emp_cov / (sd[:, None] * sd[None, :])
    true_corr = cov / (sd[:, None] * sd[None, :])
    assert (corr - true_corr).abs().max() < 0.1
    assert ((emp_cov.diagonal() / cov.diagonal()) - 1).abs().max() < 0.15
    # adaptation reached the target acceptance; step sizes are per chain
    assert abs(res.accept_rate.mean().item() - 0.67) < 0.1
    assert res.step_size.shape == (256,)


def test_only_prior_gradient_fails_the_closed_form():
    """The reference PresGAN sampler's bug (likelihood gradient dropped) would not pass the test above."""
    d_z, d_x, sigma = 5, 64, 0.1
    log_prob, mean, cov = _linear_gaussian(d_z, d_x, sigma)
    g = torch.Generator().manual_seed(1)
    init = torch.randn(128, d_z, dtype=torch.float64, generator=g)
    # leapfrog driven by the prior only, accept/reject by the true density: barely moves
    z, lp = init.clone(), log_prob(init)
    for _ in range(60):
        p0 = torch.randn(z.shape, dtype=z.dtype, generator=g)
        zn, pn, _, _ = hmc.leapfrog(lambda t: -0.5 * t.pow(2).sum(1), z, p0, 0.05, 10)
        lpn = log_prob(zn)
        acc = torch.rand(z.shape[0], generator=g, dtype=z.dtype).log() < (lpn - 0.5 * pn.pow(2).sum(1)) - (lp - 0.5 * p0.pow(2).sum(1))
        z, lp = torch.where(acc[:, None], zn, z), torch.where(acc, lpn, lp)
    assert ((z.mean(0) - mean).abs() / cov.diagonal().sqrt()).max() > 1.0


def test_leapfrog_is_reversible_and_volume_preserving():
    log_prob, _, _ = _linear_gaussian()
    g = torch.Generator().manual_seed(2)
    z0 = torch.randn(16, 3, dtype=torch.float64, generator=g)
    p0 = torch.randn(16, 3, dtype=torch.float64, generator=g)
    z1, p1, _, _ = hmc.leapfrog(log_prob, z0, p0, 0.03, 25)
    z2, p2, _, _ = hmc.leapfrog(log_prob, z1, -p1, 0.03, 25)
    assert torch.allclose(z2, z0, atol=1e-10) and torch.allclose(-p2, p0, atol=1e-10)
    # Jacobian determinant of the map (z, p) -> (z', p') is 1 (volume preservation)
    def flow(v):
        zz, pp, _, _ = hmc.leapfrog(log_prob, v[:3][None], v[3:][None], 0.03, 5)
        return torch.cat([zz[0], pp[0]])
    J = torch.autograd.functional.jacobian(flow, torch.cat([z0[0], p0[0]]))
    assert abs(torch.linalg.det(J).item() - 1.0) < 1e-8


def test_energy_error_shrinks_as_step_squared():
    log_prob, _, _ = _linear_gaussian()
    g = torch.Generator().manual_seed(3)
    z0 = torch.randn(64, 3, dtype=torch.float64, generator=g)
    p0 = torch.randn(64, 3, dtype=torch.float64, generator=g)
    h0 = hmc.hamiltonian(log_prob(z0), p0)
    errs = []
    for eps in (0.02, 0.01, 0.005):
        n = int(round(0.2 / eps))  # same trajectory length
        z, p, lp, _ = hmc.leapfrog(log_prob, z0, p0, eps, n)
        errs.append((hmc.hamiltonian(lp, p) - h0).abs().max().item())
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    assert all(3.5 < r < 4.5 for r in ratios), (errs, ratios)


def test_adaptation_hits_target_from_bad_start():
    """A 10-D Gaussian with scales 0.1..1 and a far too large initial step; targets 0.5 and 0.9."""
    scales = torch.linspace(0.1, 1.0, 10, dtype=torch.float64)

    def log_prob(z):
        return -0.5 * (z / scales).pow(2).sum(1)

    for target in (0.5, 0.9):
        g = torch.Generator().manual_seed(4)
        res = hmc.sample(log_prob, torch.randn(200, 10, dtype=torch.float64, generator=g) * scales, num_samples=40,
                         burn_in=100, step_size=1.0, num_leapfrog=5, target_accept=target, generator=g)
        assert abs(res.accept_rate.mean().item() - target) < 0.08, (target, res.accept_rate.mean())
    # without adaptation the bad step stays bad
    res = hmc.sample(log_prob, torch.zeros(100, 10, dtype=torch.float64), num_samples=20, burn_in=20, step_size=1.0,
                     num_leapfrog=5, adapt=False, generator=torch.Generator().manual_seed(0))
    assert res.accept_rate.mean() < 0.3 and torch.all(res.step_size == 1.0)


def test_banana_is_explored():
    """z1 ~ N(0, 1), z2 | z1 ~ N(b z1^2, 1): E z2 = b, Var z2 = 1 + 2 b^2, from chains started in one corner."""
    bend = 0.5  # stronger bends need smaller steps in the tails (curvature grows like z1^2)

    def log_prob(z):
        return -0.5 * z[:, 0] ** 2 - 0.5 * (z[:, 1] - bend * z[:, 0] ** 2) ** 2

    g = torch.Generator().manual_seed(5)
    init = torch.tensor([[1.5, 2.0]], dtype=torch.float64).repeat(256, 1)
    res = hmc.sample(log_prob, init, num_samples=100, burn_in=50, step_size=0.3, num_leapfrog=10, target_accept=0.8,
                     generator=g)
    z = res.samples.reshape(-1, 2)
    assert abs(z[:, 0].mean()) < 0.1 and abs(z[:, 1].mean() - bend) < 0.1
    assert abs(z[:, 0].var() - 1.0) < 0.15 and abs(z[:, 1].var() / (1 + 2 * bend**2) - 1) < 0.1
    assert (z[:, 0] < -1).float().mean() > 0.1  # reached the other arm
    assert res.ess().min() > 500


def test_effective_sample_size_iid_and_ar1():
    g = torch.Generator().manual_seed(6)
    iid = torch.randn(1000, 8, 2, generator=g, dtype=torch.float64)
    ess = hmc.effective_sample_size(iid)
    assert ess.shape == (2,) and ((ess / 8000) - 1).abs().max() < 0.15
    rho = 0.8
    x = torch.zeros(4000, 8, dtype=torch.float64)
    e = torch.randn(4000, 8, generator=g, dtype=torch.float64)
    for t in range(1, 4000):
        x[t] = rho * x[t - 1] + math.sqrt(1 - rho**2) * e[t]
    expected = 32000 * (1 - rho) / (1 + rho)
    assert abs(hmc.effective_sample_size(x).item() / expected - 1) < 0.2


def test_effective_sample_size_of_stuck_chains():
    """Chains that never move are worth one draw per distinct value, not the ~C/2 of the autocorrelation sum."""
    const = torch.tensor([2.0, 3.0], dtype=torch.float64).expand(150, 200, 2)
    assert torch.equal(hmc.effective_sample_size(const), torch.ones(2, dtype=torch.float64))
    four = torch.arange(4, dtype=torch.float64).repeat(50).expand(100, 200)  # 200 chains stuck at 4 distinct points
    assert hmc.effective_sample_size(four).item() == 4
    # a step far too large for the banana: every proposal is rejected and the chains stay at their start
    banana = lambda z: -0.5 * z[:, 0] ** 2 - 0.5 * (z[:, 1] - 0.5 * z[:, 0] ** 2) ** 2
    res = hmc.sample(banana, torch.tensor([[2.0, 3.0]]).repeat(200, 1), num_samples=150, burn_in=50, step_size=2.5,
                     num_leapfrog=10, adapt=False, generator=torch.Generator().manual_seed(0))
    assert res.accept_rate.max() == 0 and res.ess().max() <= 1
    # a moving coordinate next to a stuck one keeps its own ESS
    g = torch.Generator().manual_seed(8)
    mixed = torch.stack([torch.randn(500, 8, generator=g, dtype=torch.float64), torch.zeros(500, 8, dtype=torch.float64)], -1)
    ess = hmc.effective_sample_size(mixed)
    assert abs(ess[0].item() / 4000 - 1) < 0.15 and ess[1].item() == 1


def test_gradient_does_not_touch_module_parameters():
    lin = torch.nn.Linear(2, 3)
    res = hmc.sample(lambda z: -0.5 * lin(z).pow(2).sum(1), torch.zeros(4, 2), num_samples=2, burn_in=1,
                     step_size=0.1, num_leapfrog=2)
    assert lin.weight.grad is None and res.samples.shape == (2, 4, 2)


def _reference_sample(log_prob, init, *, num_samples, burn_in, step_size, num_leapfrog, target_accept=0.67,
                      adapt=True, generator=None):
    """The textbook sampler: every trajectory recomputes the gradient at its start (num_leapfrog + 1 calls)."""

    def lp_grad(z):
        with torch.enable_grad():
            zz = z.detach().requires_grad_(True)
            lp = log_prob(zz)
            (g,) = torch.autograd.grad(lp.sum(), zz)
        return lp.detach(), g

    c = init.shape[0]
    eps = torch.full((c,), float(step_size), dtype=init.dtype)
    log_eps = eps.log()
    z = init.clone()
    lp, _ = lp_grad(z)
    draws = []
    for it in range(burn_in + num_samples):
        p0 = torch.randn(z.shape, dtype=z.dtype, generator=generator)
        e = eps.reshape(-1, *([1] * (z.dim() - 1)))
        _, g = lp_grad(z)
        zn, pn = z, p0 + 0.5 * e * g
        for i in range(num_leapfrog):
            zn = zn + e * pn
            lpn, g = lp_grad(zn)
            pn = pn + (e if i < num_leapfrog - 1 else 0.5 * e) * g
        log_ratio = (-lp + 0.5 * p0.reshape(c, -1).pow(2).sum(1)) - (-lpn + 0.5 * pn.reshape(c, -1).pow(2).sum(1))
        log_ratio = torch.where(torch.isfinite(log_ratio), log_ratio, torch.full_like(log_ratio, -math.inf))
        accept_prob = log_ratio.clamp(max=0.0).exp()
        acc = torch.rand(c, dtype=z.dtype, generator=generator) < accept_prob
        z = torch.where(acc.reshape(-1, *([1] * (z.dim() - 1))), zn, z)
        lp = torch.where(acc, lpn, lp)
        if it < burn_in:
            if adapt:
                log_eps = log_eps + 2.0 * (it + 1) ** -0.6 * (accept_prob - target_accept)
                eps = log_eps.exp()
        else:
            draws.append(z.clone())
    return torch.stack(draws), eps


def _mlp_log_prob(seed=0):
    """A non-Gaussian posterior through a small tanh network (float64), [C, 2, 3] events."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).double()
    y = torch.randn(4, dtype=torch.float64)

    def log_prob(z):
        return -0.5 * z.reshape(z.shape[0], -1).pow(2).sum(1) - 2.0 * (net(z.reshape(z.shape[0], -1)) - y).pow(2).sum(1)

    return log_prob


@pytest.mark.parametrize("reuse_grad", [True, False])
def test_reusing_the_gradient_gives_the_same_chains_as_the_reference(reuse_grad):
    log_prob = _mlp_log_prob()
    init = torch.randn(32, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    kw = dict(num_samples=15, burn_in=10, step_size=0.3, num_leapfrog=4)
    ref, ref_eps = _reference_sample(log_prob, init, generator=torch.Generator().manual_seed(8), **kw)
    res = hmc.sample(log_prob, init, generator=torch.Generator().manual_seed(8), reuse_grad=reuse_grad, **kw)
    assert torch.equal(res.samples, ref) and torch.equal(res.step_size, ref_eps)
    assert 0.05 < res.accept_rate.mean() < 0.99  # both accepts and rejects happened, so torch.where was exercised
    assert torch.equal(res.log_prob, log_prob(ref.reshape(-1, 2, 3)).reshape(15, 32))


def test_sample_calls_log_prob_num_leapfrog_times_per_iteration():
    calls = []
    base = _mlp_log_prob()

    def log_prob(z):
        calls.append(z.shape[0])
        return base(z)

    init = torch.zeros(8, 2, 3, dtype=torch.float64)
    for reuse, per_iter in ((True, 3), (False, 4)):
        calls.clear()
        hmc.sample(log_prob, init, num_samples=5, burn_in=2, step_size=0.1, num_leapfrog=3, reuse_grad=reuse,
                   generator=torch.Generator().manual_seed(0))
        assert len(calls) == 7 * per_iter + 1 and set(calls) == {8}  # one batched call each, + 1 at init


def test_leapfrog_with_a_known_start_gradient():
    log_prob, _, _ = _linear_gaussian()
    g = torch.Generator().manual_seed(9)
    z0 = torch.randn(16, 3, dtype=torch.float64, generator=g)
    p0 = torch.randn(16, 3, dtype=torch.float64, generator=g)
    _, g0 = hmc.log_prob_and_grad(log_prob, z0)
    a = hmc.leapfrog(log_prob, z0, p0, 0.05, 6)
    b = hmc.leapfrog(log_prob, z0, p0, 0.05, 6, grad=g0)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert torch.equal(b[3], hmc.log_prob_and_grad(log_prob, b[0])[1])  # the end gradient is at the end point
    with pytest.raises(ValueError, match="shape"):
        hmc.leapfrog(log_prob, z0, p0, 0.05, 6, grad=g0[:3])


@pytest.mark.parametrize(
    "kwargs,err",
    [
        (dict(init=torch.tensor([[math.nan, 0.0]])), ValueError),
        (dict(num_samples=-1), ValueError),
        (dict(burn_in=-2), ValueError),
        (dict(num_samples=0, burn_in=0), ValueError),
        (dict(step_size=0.0), ValueError),
        (dict(step_size=-0.1), ValueError),
        (dict(step_size=torch.ones(3)), ValueError),
        (dict(num_leapfrog=0), ValueError),
        (dict(target_accept=1.0), ValueError),
        (dict(init=[0.0, 1.0]), TypeError),
        (dict(init=torch.zeros(2, 2, dtype=torch.long)), TypeError),
        (dict(log_prob=lambda z: z.sum()), ValueError),
    ],
)
def test_bad_arguments(kwargs, err):
    args = dict(log_prob=lambda z: -0.5 * z.pow(2).sum(1), init=torch.zeros(2, 2), num_samples=2, burn_in=2,
                step_size=0.1, num_leapfrog=3)
    args.update(kwargs)
    lp = args.pop("log_prob")
    init = args.pop("init")
    with pytest.raises(err):
        hmc.sample(lp, init, **args)
    with pytest.raises(ValueError, match="4 draws"):
        hmc.effective_sample_size(torch.zeros(3, 2))
