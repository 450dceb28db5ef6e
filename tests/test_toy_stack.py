"""minilib.experiments.toy_stack: several toy runs as one stacked network, each run exactly its own."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from minilib.data.toys import ToyStream, make_dataset
from minilib.errors import ConfigError, TrainingDiverged
from minilib.experiments.toy_stack import StackedRun, stack_params, stacked_forward, train_stacked, unstack_params
from minilib.experiments.toys import REGIMES, regime_objective
from minilib.nets.mlp import make_models
from minilib.objectives import get_objective
from minilib.predictor import fit_predictor
from minilib.train import Trainer


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _parts(dataset, objective, seed, regime):
    ds = make_dataset(dataset)
    obj = regime_objective(objective, regime)
    G, D, P = make_models(ds, regime.z_dim, regime.hidden, regime.layers, regime.act, seed=seed)
    cfg = dataclasses.replace(regime.train, seed=seed, progress=False, log_every=4)
    if obj.needs_predictor:
        fit_predictor(P, ToyStream(ds, 10_000 + seed), ToyStream(ds, 20_000 + seed), dist=obj.moment_dist, steps=20,
                      batch_size=64, lr=3e-3, config=cfg, patience=None)
    return ds, obj, G, D if obj.uses_discriminator else None, P if obj.needs_predictor else None, cfg


def _run(dataset, objective, seed, regime):
    ds, obj, G, D, P, cfg = _parts(dataset, objective, seed, regime)
    return StackedRun(G, D, P, obj, seed, ToyStream(ds, seed)), cfg


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("dataset", ["ring", "y-shape", "mixture-1d"])
def test_a_run_is_the_same_bit_for_bit_alone_or_in_a_stack(dataset):
    """The regime's real sizes (a dimension of 1 takes another kernel: mixture-1d's 1-D latent and data, the
    discriminator's single logit, y-shape's 1-D output); objectives with different terms share one stack."""
    regime = REGIMES[dataset]
    cases = [("gan", 0), ("gan+mr1", 3), ("gan+pmr2", 1), ("gan+l2", 2), ("gan+mr2-laplace", 5)]
    alone = []
    for name, seed in cases:
        r, cfg = _run(dataset, name, seed, regime)
        train_stacked([r], cfg, 9)
        alone.append(r)
    stack = [_run(dataset, name, seed, regime)[0] for name, seed in cases]
    train_stacked(stack, cfg, 9)
    for a, b in zip(alone, stack):
        assert _same(a.G, b.G) and _same(a.D, b.D), a.objective.name
        assert a.history == b.history and len(a.history["step"]) == 2 and "g_gan" in a.history


def test_one_stacked_run_follows_the_trainer():
    """Same noise, data, loss terms, clipping and Adam as minilib.train.Trainer: the weights agree to float rounding
    after 12 steps (the Trainer's nn.Linear and the stack's batched product round differently)."""
    regime = REGIMES["ring"]
    for name in ("gan+mr1", "gan+pmr2", "gan+l2"):
        ds, obj, G, D, P, cfg = _parts("ring", name, 4, regime)
        Trainer(G, D, obj, cfg, P=P).fit(ToyStream(ds, 4), 12)
        r, _ = _run("ring", name, 4, regime)
        train_stacked([r], cfg, 12)
        assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(G.parameters(), r.G.parameters())), name
        assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(D.parameters(), r.D.parameters())), name


def test_stacked_forward_matches_each_network_and_round_trips():
    ds = make_dataset("y-shape")
    nets = [make_models(ds, 2, 32, 2, "relu", seed=s)[1] for s in range(3)]  # D: a single logit (out = 1)
    params = stack_params(nets)
    assert params[0].shape == (3, 2, 32) and params[-1].shape == (3, 1, 1)
    x, y = torch.randn(3, 50, 1), torch.randn(3, 50, 1)
    out = stacked_forward(params, torch.cat([x, y], 2), torch.nn.ReLU())
    for e, net in enumerate(nets):
        assert torch.allclose(out[e, :, 0], net(x[e], y[e]), atol=1e-6)
    with torch.no_grad():
        for p in params:
            p.mul_(2)
    unstack_params(params, nets)
    assert torch.equal(nets[1].net[0].weight, params[0][1].t())
    with pytest.raises(ValueError, match="same number of Linear layers"):
        stack_params([nets[0], make_models(ds, 2, 32, 1, "relu")[1]])


def test_stack_config_errors_name_the_problem():
    regime = REGIMES["y-shape"]
    a, cfg = _run("y-shape", "gan+mr1", 0, regime)
    b, _ = _run("y-shape", "gan+mr1", 1, regime)
    b.objective = get_objective("gan+mr1", k=4)
    with pytest.raises(ValueError, match="share K"):
        train_stacked([a, b], cfg, 1)
    with pytest.raises(ValueError, match="non-empty"):
        train_stacked([], cfg, 1)
    a.D = None
    with pytest.raises(ValueError, match="D is required"):
        train_stacked([a], cfg, 1)
    with pytest.raises(ConfigError, match="device"):
        train_stacked([b], dataclasses.replace(cfg, device="cuda"), 1)


def test_a_diverged_run_stops_the_stack():
    regime = REGIMES["y-shape"]
    good, cfg = _run("y-shape", "gan+mr1", 0, regime)
    bad, _ = _run("y-shape", "gan+mr1", 1, regime)
    with torch.no_grad():
        bad.G.net[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"nan or inf at step 0 in run gan\+mr1 \(seed 1\)"):
        train_stacked([good, bad], cfg, 3)


def test_linear_padding_is_exact_for_a_single_output():
    w, b, h = torch.randn(2, 16, 1), torch.randn(2, 1, 1), torch.randn(2, 40, 16)
    out = stacked_forward([w, b], h, torch.nn.ReLU())
    assert out.shape == (2, 40, 1)
    assert torch.allclose(out[1], F.linear(h[1], w[1].t(), b[1, 0]), atol=1e-6)


def test_inputs_checked_skips_only_the_cpu_finite_test():
    from minilib.errors import NonFiniteError, check_tensor, inputs_checked

    bad = torch.tensor([1.0, float("nan")])
    with inputs_checked():
        assert check_tensor("a", bad, finite="cpu") is bad  # the caller tested it already
        with pytest.raises(NonFiniteError, match="a must be finite"):
            check_tensor("a", bad, finite=True)
        with pytest.raises(ConfigError, match="must have 2 dims"):
            check_tensor("a", bad, dims=2, finite="cpu")
    with pytest.raises(NonFiniteError):
        check_tensor("a", bad, finite="cpu")
