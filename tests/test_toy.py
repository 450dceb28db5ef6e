"""minilib.data.toys and minilib.nets.mlp: samplers against their true densities, the stream contract, the MLP contracts."""
import math

import pytest
import torch

from minilib.data.toys import DATASETS, ToyStream, YShape, grid, make_dataset, mixture_1d, ring
from minilib.nets.mlp import ToyDiscriminator, ToyGenerator, ToyPredictor, make_models
from minilib.train import sample_k


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny MLPs: one intra-op thread is fastest and avoids oversubscribing a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_ring_and_grid_geometry():
    r = ring()
    assert r.modes.shape == (8, 2)
    assert torch.allclose(r.modes.norm(dim=1), torch.full((8,), 2.0), atol=1e-6)
    g = grid()
    assert g.modes.shape == (25, 2)
    assert sorted(set(g.modes[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_sampler_matches_moments_and_density(name):
    ds = make_dataset(name)
    x, y = ds.sample(20000, gen(1))
    assert x.shape == (20000, ds.x_dim) and y.shape == (20000, ds.y_dim)
    # the empirical mean / std of y match E[y|x] and sqrt(E[Var] + Var[E]) from the exact formulas
    mean = ds.conditional_mean(x).mean(0)
    var = (ds.conditional_std(x) ** 2 + ds.conditional_mean(x) ** 2).mean(0) - mean**2
    assert torch.allclose(y.mean(0), mean, atol=0.05)
    assert torch.allclose(y.var(0), var, rtol=0.05, atol=0.01)
    assert torch.isfinite(ds.log_prob(x, y)).all()  # every sample lies where the true density is positive


def test_log_prob_integrates_to_one_1d():
    for ds, x0 in ((mixture_1d(), torch.zeros(1, 0)), (YShape(), torch.tensor([[0.6]])), (YShape(), torch.tensor([[-0.4]]))):
        t = torch.linspace(-4, 4, 8001).view(-1, 1)
        p = torch.exp(ds.log_prob(x0.expand(len(t), -1), t))
        assert abs(float(torch.trapezoid(p, t[:, 0])) - 1) < 1e-3


def test_ring_log_prob_closed_form_at_a_mode():
    r = ring(std=0.1)
    y = r.modes[:1]
    # at a mode the other modes (distance >= 1.53 = 15 std) contribute nothing: log(1/8) - log(2 pi s^2)
    expected = math.log(1 / 8) - math.log(2 * math.pi * 0.01)
    assert abs(float(r.log_prob(torch.zeros(1, 0), y)) - expected) < 1e-4


def test_yshape_closed_forms():
    ds = YShape(noise=0.05)
    x = torch.tensor([[-0.5], [0.0], [0.75]])
    assert torch.allclose(ds.conditional_mean(x), torch.zeros(3, 1))
    assert torch.allclose(ds.conditional_std(x)[:, 0], torch.tensor([0.05, 0.05, math.sqrt(0.75**2 + 0.05**2)]))
    s = ds.sample_conditional(torch.tensor([[0.75]]), 20000, gen(3))[0, :, 0]
    assert abs(float((s > 0).float().mean()) - 0.5) < 0.02  # two branches, equal weight
    assert abs(float(s[s > 0].mean()) - 0.75) < 0.005
    stem = ds.sample_conditional(torch.tensor([[-0.5]]), 20000, gen(3))[0, :, 0]
    assert abs(float(stem.std()) - 0.05) < 0.002


def test_mixture_weights_are_respected():
    ds = mixture_1d(means=(-2.0, 2.0), weights=(0.2, 0.8), std=0.1)
    _, y = ds.sample(20000, gen(4))
    assert abs(float((y > 0).float().mean()) - 0.8) < 0.01


def test_same_seed_same_samples_and_stream_resume():
    ds = ring()
    a = ds.sample(100, gen(5))[1]
    b = ds.sample(100, gen(5))[1]
    assert torch.equal(a, b)
    s = ToyStream(YShape(), seed=7)
    s.next(10)
    state = s.state_dict()
    want = s.next(16)
    s2 = ToyStream(YShape(), seed=0)
    s2.load_state_dict(state)
    got = s2.next(16)
    assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])


def test_bad_inputs():
    with pytest.raises(ValueError, match="name"):
        make_dataset("spiral")
    with pytest.raises(ValueError, match="x must have shape"):
        YShape().conditional_mean(torch.zeros(3, 2))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        ring().log_prob([[0.0]], torch.zeros(1, 2))
    with pytest.raises(ValueError, match="y must have shape"):
        ring().log_prob(torch.zeros(2, 0), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="weights"):
        mixture_1d(weights=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="n must be a positive int"):
        ring().sample(0)
    with pytest.raises(ValueError, match="batch_size"):
        ToyStream(ring()).next(-1)
    with pytest.raises(TypeError, match="dataset"):
        ToyStream("ring")
    with pytest.raises(ValueError, match="conditional"):
        YShape().constant_x(3)


def test_generator_contract_and_sample_k():
    G = ToyGenerator(x_dim=1, y_dim=1, z_dim=3, hidden=16, layers=2)
    z = G.noise(5, generator=gen(0))
    assert z.shape == (5, 3)
    assert torch.equal(z, G.noise(5, generator=gen(0)))
    assert G(torch.zeros(5, 1), z).shape == (5, 1)
    samples, zk = sample_k(G, torch.rand(4, 1), 6, gen(1))
    assert samples.shape == (4, 6, 1) and zk.shape == (24, 3)
    # the noise reaches the output: different z, different y for the same x
    assert samples[0].std() > 0
    with pytest.raises(ValueError, match="z must have shape"):
        G(torch.zeros(5, 1), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="x must have shape"):
        G(torch.zeros(4, 1), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="act"):
        ToyGenerator(1, 1, act="gelu")


def test_discriminator_and_predictor_contracts():
    D = ToyDiscriminator(x_dim=0, y_dim=2, hidden=16)
    assert D(torch.zeros(7, 0), torch.randn(7, 2)).shape == (7,)
    P = ToyPredictor(x_dim=1, y_dim=1, hidden=16)
    c, ld = P(torch.rand(9, 1))
    assert c.shape == ld.shape == (9, 1)
    Pu = ToyPredictor(x_dim=0, y_dim=2, hidden=16)
    c, ld = Pu(torch.zeros(3, 0))
    assert c.shape == (3, 2) and torch.allclose(c, c[:1].expand(3, -1))  # constant input -> constant output
    with pytest.raises(ValueError, match="y must have shape"):
        D(torch.zeros(7, 0), torch.randn(7, 3))


def test_make_models_is_seeded_and_leaves_global_rng():
    before = torch.get_rng_state()
    G1, D1, P1 = make_models(ring(), seed=3, hidden=16)
    G2, _, _ = make_models(ring(), seed=3, hidden=16)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a, b) for a, b in zip(G1.state_dict().values(), G2.state_dict().values()))
    G3, _, _ = make_models(ring(), seed=4, hidden=16)
    assert not torch.equal(G1.net[0].weight, G3.net[0].weight)
    assert G1.x_dim == 0 and G1.y_dim == 2 and D1.y_dim == 2 and P1.y_dim == 2


def test_predictor_learns_true_moments_with_mle():
    """P trained with the Gaussian MLE loss (Eq. 4) recovers E[y|x] = 0 and Var[y|x] = x^2 + noise^2 on the Y-shape."""
    from minilib.train import TrainConfig
    from minilib.predictor import fit_predictor

    torch.manual_seed(0)
    ds = YShape()
    P = ToyPredictor(1, 1, hidden=32, layers=2)
    cfg = TrainConfig(weight_decay=0.0, amsgrad=False, clip_value=None, progress=False)
    fit_predictor(P, ToyStream(ds, 1), ToyStream(ds, 2), steps=600, batch_size=128, lr=5e-3, config=cfg, patience=None)
    xs = torch.tensor([[-0.5], [0.5], [0.8]])
    with torch.no_grad():
        c, lv = P(xs)
    assert (c.abs() < 0.1).all()
    std = torch.exp(0.5 * lv)
    assert torch.allclose(std, ds.conditional_std(xs), rtol=0.25, atol=0.03)


def test_mixture_histogram_matches_true_density():
    ds = mixture_1d()
    _, y = ds.sample(50000, gen(9))
    edges = torch.linspace(-3, 3, 31)
    hist = torch.histc(y[:, 0], bins=30, min=-3, max=3) / len(y)
    fine = torch.linspace(-3, 3, 3001).view(-1, 1)
    pdf = torch.exp(ds.log_prob(torch.zeros(3001, 0), fine))
    cdf = torch.cat([torch.zeros(1), torch.cumulative_trapezoid(pdf, fine[:, 0])])
    mass = cdf[torch.arange(0, 3001, 100)[1:]] - cdf[torch.arange(0, 3001, 100)[:-1]]  # exact mass per bin
    assert edges.shape[0] == 31 and torch.allclose(hist, mass, atol=0.006)
