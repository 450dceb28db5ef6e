"""PresGAN validated against a linear-Gaussian generator, whose entropy and log-likelihood are closed forms."""
import math

import pytest
import torch

from minilib.nets.digits import DigitDiscriminator, DigitGenerator
from minilib.nets.mlp import GaussianEncoder, ToyGenerator
from minilib.objectives import get_objective
from minilib.presgan import (LinearGenerator, NoisyGenerator, elbo, entropy_surrogate, fit_encoder, log_likelihood, make_presgan_trainer, posterior_log_prob)
from minilib.experiments.bench import bench_hmc_main as bench_main
from minilib.train import TrainConfig

torch.set_num_threads(1)


def _linear(nz=2, dim=4, seed=0):
    torch.manual_seed(seed)
    G = NoisyGenerator(LinearGenerator(nz, dim), (dim,), sigma_init=0.5, sigma_min=0.01, sigma_max=2.0).double()
    with torch.no_grad():
        G.log_sigma.copy_(torch.linspace(0.3, 0.8, dim, dtype=torch.float64).log())
    return G


def _entropy_grad_error(G, burn_in, num_samples, step_size, n=20000):
    H = G.base.exact_entropy(G.sigma)  # 1/2 log det(2 pi e (W W^T + diag sigma^2))
    params = list(G.parameters())
    exact = torch.autograd.grad(H, params, allow_unused=True, materialize_grads=True)
    g = torch.Generator().manual_seed(1)
    z, eps = G.noise(n, generator=g)
    x = torch.zeros(n, 0, dtype=torch.float64)
    y = G(x, (z, eps))
    surrogate, res = entropy_surrogate(G, x, y, z, burn_in=burn_in, num_samples=num_samples, num_leapfrog=5,
                                       step_size=step_size, generator=g)
    est = torch.autograd.grad(surrogate, params)
    flat = lambda gs: torch.cat([t.flatten() for t in gs])  # noqa: E731
    return ((flat(est) - flat(exact)).norm() / flat(exact).norm()).item(), exact, est


def test_entropy_gradient_matches_closed_form():
    G = _linear()
    err, exact, est = _entropy_grad_error(G, burn_in=5, num_samples=5, step_size=0.1)
    assert err < 0.08, err
    # per parameter: d H / d W = Sigma^-1 W, d H / d b = 0, d H / d log sigma = sigma^2 diag(Sigma^-1)
    cov = G.base.marginal_cov(G.sigma.detach())
    assert torch.allclose(exact[1], torch.linalg.solve(cov, G.base.linear.weight.detach()))
    assert torch.allclose(exact[0], G.sigma.detach() ** 2 * torch.linalg.inv(cov).diagonal())


def test_entropy_gradient_needs_the_chains_to_move():
    """Chains that stay at the generating z give c = eps / sigma, uncorrelated with dy/dW: the W gradient is lost."""
    G = _linear()
    err, exact, est = _entropy_grad_error(G, burn_in=0, num_samples=1, step_size=1e-7)
    assert err > 0.3
    assert est[1].norm() < 0.3 * exact[1].norm()


def test_log_likelihood_matches_exact_linear_gaussian():
    G = _linear(nz=2, dim=5)
    G.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    n = 2000
    with torch.no_grad():
        data = G(torch.zeros(n, 0, dtype=torch.float64), G.noise(n, generator=g))
    enc = GaussianEncoder(5, 2, layers=0).double()  # the posterior mean is linear in y: a linear encoder suffices
    losses = fit_encoder(G, enc, data, steps=600, batch_size=128, lr=2e-2)
    assert losses[-1] < losses[0]
    test = data[:50]
    exact = G.base.exact_log_prob(test, G.sigma)
    ll = log_likelihood(G, enc, test, num_samples=2000)
    assert (ll.per_example - exact).abs().mean() < 0.02 and (ll.per_example - exact).abs().max() < 0.08
    assert ll.num_samples == 2000 and ll.ess > 500
    assert math.isclose(ll.bits_per_dim, -ll.nats / (5 * math.log(2)))
    # the ELBO is a lower bound, close to log p for a nearly exact q
    with torch.no_grad():
        lb = torch.stack([elbo(G, enc, test, torch.Generator().manual_seed(s)) for s in range(200)]).mean(0)
    assert 0.0 < (exact - lb).mean() < 0.3
    # a proposal from an untrained encoder still converges with many samples, but is noisier with few
    bad = GaussianEncoder(5, 2, layers=0).double()
    few = log_likelihood(G, bad, test, num_samples=5)
    assert few.ess < ll.ess and (few.per_example - exact).abs().mean() > (ll.per_example - exact).abs().mean()


def test_truncated_likelihood_adds_the_mass_correction():
    G = _linear(nz=2, dim=3)
    enc = GaussianEncoder(3, 2, layers=0).double()
    y = torch.zeros(4, 3, dtype=torch.float64)
    plain = log_likelihood(G, enc, y, num_samples=50, seed=3)
    trunc = log_likelihood(G, enc, y, num_samples=50, seed=3, bounds=(-1.0, 1.0))
    assert (trunc.per_example > plain.per_example).all()  # dividing by a mass < 1 raises the density


def test_noisy_generator_sigma_clamp_and_likelihood():
    G = NoisyGenerator(ToyGenerator(0, 3, z_dim=2, hidden=8, layers=1), (3,), sigma_init=0.5, sigma_min=0.1, sigma_max=1.0)
    with torch.no_grad():
        G.log_sigma.copy_(torch.tensor([math.log(0.01), math.log(0.5), math.log(5.0)]))
    assert torch.allclose(G.sigma, torch.tensor([0.1, 0.5, 1.0]))
    z, eps = G.noise(7)
    x = torch.zeros(7, 0)
    y = G(x, (z, eps))
    assert y.shape == (7, 3) and torch.allclose(y, G.mean(x, z) + G.sigma * eps)
    ref = torch.distributions.Normal(G.mean(x, z), G.sigma).log_prob(y).sum(1)
    assert torch.allclose(G.log_likelihood(y, x, z), ref, atol=1e-5)
    with pytest.raises(ValueError, match="sigma_min"):
        NoisyGenerator(ToyGenerator(0, 2), (2,), sigma_min=0.0)
    with pytest.raises(ValueError, match="sigma_init"):
        NoisyGenerator(ToyGenerator(0, 2), (2,), sigma_init=3.0, sigma_max=1.0)
    with pytest.raises(TypeError, match="noise"):
        G(x, z)
    with pytest.raises(ValueError, match="num_samples"):
        log_likelihood(G, GaussianEncoder(3, 2), y, num_samples=0)
    with pytest.raises(ValueError, match="overdispersion"):
        log_likelihood(G, GaussianEncoder(3, 2), y, overdispersion=0.5)
    with pytest.raises(ValueError, match="data"):
        fit_encoder(G, GaussianEncoder(3, 2), torch.zeros(5, 4))


def test_hmc_refuses_batchnorm_in_training_mode():
    base = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))

    class BN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.nz = base, 2

        def noise(self, n, device=None, generator=None):
            return torch.randn(n, 2, generator=generator)

        def forward(self, x, z):
            return self.net(z)

    G = NoisyGenerator(BN(), (3,))
    z, eps = G.noise(4)
    x = torch.zeros(4, 0)
    with pytest.raises(ValueError, match="BatchNorm"):
        entropy_surrogate(G, x, G(x, (z, eps)), z)
    G.eval()
    s, _ = entropy_surrogate(G, x, G(x, (z, eps)), z)
    assert torch.isfinite(s)


def test_posterior_log_prob_is_prior_plus_likelihood():
    G = _linear(nz=2, dim=3)
    z = torch.randn(5, 2, dtype=torch.float64)
    y = torch.randn(5, 3, dtype=torch.float64)
    x = torch.zeros(5, 0)
    lp = posterior_log_prob(G, x, y)(z)
    assert torch.allclose(lp, -0.5 * z.pow(2).sum(1) + G.log_likelihood(y, x, z))


def test_entropy_ascent_raises_entropy_and_presgan_step_runs():
    G = _linear(nz=2, dim=3)
    H0 = G.base.exact_entropy(G.sigma).item()
    opt = torch.optim.Adam(G.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(256, 0, dtype=torch.float64)
    for _ in range(30):  # maximise H alone with the HMC estimator
        z, eps = G.noise(256, generator=g)
        surrogate, res = entropy_surrogate(G, x, G(x, (z, eps)), z, burn_in=3, num_samples=3, step_size=0.1, generator=g)
        opt.zero_grad()
        (-surrogate).backward()
        opt.step()
    assert G.base.exact_entropy(G.sigma).item() > H0 + 0.5
    # full PresGAN step with a discriminator on 8x8 images; D sees real data noised with sigma
    Gi = NoisyGenerator(DigitGenerator(nz=4, channels=1, ngf=4), (1, 8, 8), sigma_init=0.3)
    tr = make_presgan_trainer(Gi, DigitDiscriminator(1, ndf=4), get_objective("presgan", k=2),
                              TrainConfig(progress=False, batch_size=4, g_batch_size=2))
    real = torch.zeros(4000, 1, 8, 8)
    assert abs(tr.transform_real(real).std().item() - 0.3) < 0.01
    d = tr.discriminator_step(torch.zeros(4, 0), real[:4])
    g = tr.generator_step(torch.zeros(2, 0), real[:2])
    assert set(d) == {"d_real", "d_fake"} and {"g_gan", "g_entropy", "g_total"} <= set(g)
    assert 0.0 <= tr.presgan.last_accept <= 1.0
    # lambda = 0: the same model without the entropy term ("GAN (lambda = 0)")
    tr0 = make_presgan_trainer(Gi, DigitDiscriminator(1, ndf=4), get_objective("presgan", entropy_weight=0.0, k=2),
                               TrainConfig(progress=False, batch_size=4, g_batch_size=2))
    assert "g_entropy" not in tr0.generator_step(torch.zeros(2, 0), real[:2])


def test_bench_main_prints_table(capsys):
    assert bench_main(["--chains", "8", "--draws", "2", "--leapfrog", "2", "--steps", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "HMC chains x draws / s, gradient recomputed" in out and "HMC chains x draws / s, gradient reused" in out
    assert "HMC reused / recomputed" in out and "PresGAN / GAN" in out


class _DigitStream:
    """Unconditional stream of fixed random 8x8 'images' with a resumable generator."""

    def __init__(self, seed=0):
        self.gen = torch.Generator().manual_seed(seed)

    def next(self, n):
        return torch.zeros(n, 0), torch.rand(n, 1, 8, 8, generator=self.gen) * 2 - 1

    def state_dict(self):
        return {"rng": self.gen.get_state()}

    def load_state_dict(self, s):
        self.gen.set_state(s["rng"])


def _presgan_run(steps, ckpt=None, resume=None, device="cpu"):
    torch.manual_seed(5)
    G = NoisyGenerator(DigitGenerator(nz=4, channels=1, ngf=4), (1, 8, 8), sigma_init=0.3)
    tr = make_presgan_trainer(G, DigitDiscriminator(1, ndf=4), get_objective("presgan", k=2),
                              TrainConfig(progress=False, batch_size=4, g_batch_size=2, log_every=1, device=device,
                                          amp=False),
                              burn_in=1, num_samples=1, num_leapfrog=2)
    stream = _DigitStream()
    if resume is not None:
        tr.load(resume, stream)
    tr.fit(stream, steps, checkpoint=ckpt, checkpoint_every=1 if ckpt else 0)
    return tr


def test_presgan_resume_is_exact(tmp_path):
    """The HMC step size and RNG persist between steps, so the checkpoint carries them (Trainer extra_loss state)."""
    full = _presgan_run(4)
    _presgan_run(2, ckpt=tmp_path / "ck.pt")
    resumed = _presgan_run(4, resume=tmp_path / "ck.pt")
    assert resumed.presgan.step_size == full.presgan.step_size
    for a, b in zip(full.G.parameters(), resumed.G.parameters()):
        assert torch.equal(a, b)
    assert full.history == resumed.history


def test_presgan_rng_state_is_cpu_bytes_and_loads_from_anywhere(tmp_path):
    """The HMC RNG state is saved as CPU bytes and restored even when the checkpoint's tensors were moved (CUDA
    map_location) or stored with another integer dtype: set_state refuses both as they are."""
    tr = _presgan_run(2, ckpt=tmp_path / "ck.pt")
    state = tr.presgan.state_dict()
    assert state["gen_state"].device.type == "cpu" and state["gen_state"].dtype == torch.uint8
    moved = {**state, "gen_state": state["gen_state"].to(torch.int64)}
    tr.presgan.load_state_dict(moved)
    assert torch.equal(tr.presgan.gen.get_state(), state["gen_state"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_presgan_resume_on_cuda(tmp_path):
    """PresGAN trained on CUDA resumes from its checkpoint onto CUDA (HMC RNG on the GPU, state kept on CPU)."""
    def run(steps, ckpt=None, resume=None):
        return _presgan_run(steps, ckpt, resume, device="cuda")

    full = run(4)
    run(2, ckpt=tmp_path / "ck.pt")
    resumed = run(4, resume=tmp_path / "ck.pt")
    assert resumed.presgan.gen.device.type == "cuda"
    for a, b in zip(full.G.parameters(), resumed.G.parameters()):
        assert torch.equal(a, b)
    assert full.history == resumed.history


def test_entropy_alone_is_a_valid_objective():
    obj = get_objective("presgan", gan_weight=0.0)
    assert obj.entropy_weight > 0 and not obj.uses_discriminator


def test_sigma_gets_back_from_its_bound_after_a_step():
    """An optimiser step past sigma_max must not strand log_sigma where the clamp's gradient is zero."""
    G = NoisyGenerator(ToyGenerator(0, 2, z_dim=2, hidden=4, layers=1), (2,), sigma_init=0.5, sigma_min=0.1, sigma_max=0.5)
    G.sigma.sum().backward()  # at the bound itself the gradient still flows
    assert (G.log_sigma.grad > 0).all()
    with torch.no_grad():
        G.log_sigma.fill_(math.log(5.0))
    G.project_()
    assert torch.allclose(G.log_sigma, torch.full((2,), math.log(0.5)))
    # the Trainer projects after every G step: the entropy term pushes sigma up, and the parameter stays in range
    tr = make_presgan_trainer(G, None, get_objective("presgan", gan_weight=0.0, entropy_weight=10.0, k=2),
                              TrainConfig(progress=False, g_batch_size=4, lr_g=0.5), burn_in=1, num_samples=1, num_leapfrog=2)
    for _ in range(3):
        tr.generator_step(torch.zeros(4, 0), torch.zeros(4, 2))
    assert (G.log_sigma <= math.log(0.5) + 1e-7).all() and torch.allclose(G.sigma, torch.full((2,), 0.5))
    # and a gradient that lowers sigma moves it down at once (it would stay stuck above the bound without project_)
    opt = torch.optim.SGD([G.log_sigma], lr=0.1)
    opt.zero_grad()
    G.sigma.sum().backward()
    opt.step()
    assert (G.sigma < 0.5).all()


def test_sigma_lr_gives_log_sigma_its_own_learning_rate():
    G = NoisyGenerator(ToyGenerator(0, 2, z_dim=2, hidden=4, layers=1), (2,), sigma_init=0.3)
    tr = make_presgan_trainer(G, None, get_objective("presgan", gan_weight=0.0, k=2), TrainConfig(progress=False, lr_g=1e-4),
                              sigma_lr=0.05)
    groups = tr.opt_g.param_groups
    assert [g["lr"] for g in groups] == [1e-4, 0.05]
    assert groups[1]["params"] == [G.log_sigma] and len(groups[0]["params"]) == len(list(G.parameters())) - 1
    with pytest.raises(ValueError, match="sigma_lr"):
        make_presgan_trainer(G, None, get_objective("presgan", gan_weight=0.0), sigma_lr=0.0)
