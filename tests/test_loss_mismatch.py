"""Tests for minilib.course.loss_mismatch and bias_variance (notebook 01): closed forms against Monte Carlo and known answers."""
from __future__ import annotations

import math

import pytest
import torch

from minilib.course.bias_variance import (BiasVariance, bias_variance_mc, estimator_draws, fit_location_scale, mle_closed_form)
from minilib.course.loss_mismatch import (Mixture1D, jensen_shannon, discriminator_value, expected_abs_diff, expected_sq_diff, gan_value, l1_gap, monte_carlo_losses, optimal_discriminator, population_losses)

torch.set_num_threads(1)
BIMODAL = Mixture1D((0.5, 0.5), (-2.0, 2.0), (0.5, 0.5))
SKEWED = Mixture1D((0.7, 0.3), (0.0, 3.0), (0.5, 1.5))
TWO_POINT = Mixture1D((0.5, 0.5), (-1.0, 1.0), (0.0, 0.0))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ Mixture1D
@pytest.mark.parametrize("kwargs, exc", [
    (dict(weights=(0.5, 0.4), means=(0.0, 1.0), stds=(1.0, 1.0)), ValueError),  # do not sum to 1
    (dict(weights=(1.0,), means=(0.0, 1.0), stds=(1.0,)), ValueError),  # lengths differ
    (dict(weights=(1.0,), means=(0.0,), stds=(-1.0,)), ValueError),  # negative std
    (dict(weights=(1.0,), means=(float("nan"),), stds=(1.0,)), ValueError),
    (dict(weights=(), means=(), stds=()), ValueError),
    (dict(weights=(1.0,), means=("a",), stds=(1.0,)), TypeError),
])
def test_mixture_rejects_bad_input(kwargs, exc):
    with pytest.raises(exc, match=r"weights|means|stds"):
        Mixture1D(**kwargs)


@pytest.mark.parametrize("p", [BIMODAL, SKEWED, TWO_POINT, Mixture1D((0.3, 0.7), (1.0, -1.0), (0.0, 2.0))])
def test_mixture_moments_cdf_absdev_match_monte_carlo(p):
    y = p.sample(400_000, gen(1))
    assert abs(y.mean().item() - p.mean) < 4 * math.sqrt(p.variance / y.numel()) + 1e-12
    assert y.var().item() == pytest.approx(p.variance, rel=0.02)
    for c in (-1.5, 0.0, 0.7, 2.5):
        assert float(p.cdf(torch.tensor(c))) == pytest.approx((y <= c).double().mean().item(), abs=4e-3)
        assert float(p.abs_dev(c)) == pytest.approx((y - c).abs().mean().item(), rel=0.01)


def test_pdf_integrates_to_continuous_mass_and_median_minimises_abs_dev():
    p = Mixture1D((0.25, 0.75), (0.0, 1.0), (0.0, 0.5))  # an atom of mass 1/4 and a Gaussian
    y = torch.linspace(-8, 8, 40001, dtype=torch.float64)
    assert float(torch.trapezoid(p.pdf(y), y)) == pytest.approx(0.75, abs=1e-8)
    a, b = SKEWED.median_interval()
    assert b - a < 1e-6
    assert float(SKEWED.cdf(torch.tensor(SKEWED.median, dtype=torch.float64))) == pytest.approx(0.5, abs=1e-9)
    grid = torch.linspace(-3, 5, 801, dtype=torch.float64)
    assert SKEWED.abs_dev(grid).min().item() >= SKEWED.mad - 1e-9
    assert SKEWED.mad == pytest.approx(float(SKEWED.abs_dev(SKEWED.median)))


def test_two_point_median_interval_is_whole_gap_and_scaled_law():
    assert TWO_POINT.median_interval() == (-1.0, 1.0)
    c = torch.linspace(-1, 1, 11, dtype=torch.float64)
    assert torch.allclose(TWO_POINT.abs_dev(c), torch.ones_like(c))  # flat: every c in [-1, 1] is optimal
    q = BIMODAL.scaled(0.5)
    assert q.mean == pytest.approx(BIMODAL.mean) and q.variance == pytest.approx(0.25 * BIMODAL.variance)
    point = BIMODAL.scaled(0.0)
    assert point.atoms == {0.0: 1.0} and point.variance == 0.0 and point.mad == 0.0
    with pytest.raises(ValueError, match="s must be"):
        BIMODAL.scaled(-1.0)


def test_expected_differences_match_monte_carlo():
    g = gen(2)
    x, y = BIMODAL.sample(300_000, g), SKEWED.sample(300_000, g)
    assert expected_abs_diff(BIMODAL, SKEWED) == pytest.approx((x - y).abs().mean().item(), rel=0.01)
    assert expected_sq_diff(BIMODAL, SKEWED) == pytest.approx(((x - y) ** 2).mean().item(), rel=0.01)
    assert expected_abs_diff(TWO_POINT, TWO_POINT) == pytest.approx(1.0)  # |y - y'| = 2 w.p. 1/2
    with pytest.raises(TypeError, match="q must be a Mixture1D"):
        expected_abs_diff(BIMODAL, 3.0)


# ------------------------------------------------------------------------------------------ GAN at D*
def test_jensen_shannon_known_answers():
    assert jensen_shannon(BIMODAL, BIMODAL) == pytest.approx(0.0, abs=1e-9)
    assert jensen_shannon(TWO_POINT, TWO_POINT) == 0.0
    assert jensen_shannon(BIMODAL, BIMODAL.scaled(0.0)) == pytest.approx(math.log(2))  # point vs density
    far = Mixture1D((1.0,), (100.0,), (0.5,))
    assert jensen_shannon(BIMODAL, far) == pytest.approx(math.log(2), abs=1e-9)  # disjoint supports
    # shared atoms: JSD of Bernoulli(0.5) vs Bernoulli(0.6) on {-1, 1}
    q = Mixture1D((0.4, 0.6), (-1.0, 1.0), (0.0, 0.0))
    m = (0.45, 0.55)
    expect = 0.5 * sum(a * math.log(a / c) for a, c in zip((0.5, 0.5), m)) + 0.5 * sum(
        b * math.log(b / c) for b, c in zip((0.4, 0.6), m))
    assert jensen_shannon(TWO_POINT, q) == pytest.approx(expect, rel=1e-12)
    assert jensen_shannon(BIMODAL, SKEWED) == pytest.approx(jensen_shannon(SKEWED, BIMODAL), rel=1e-9)


def test_jensen_shannon_matches_monte_carlo_for_densities():
    g = gen(3)
    xp, xq = BIMODAL.sample(200_000, g), SKEWED.sample(200_000, g)

    def kl_to_mid(x, a, b):
        fa, fb = a.pdf(x), b.pdf(x)
        return torch.log(2 * fa / (fa + fb)).mean().item()

    mc = 0.5 * kl_to_mid(xp, BIMODAL, SKEWED) + 0.5 * kl_to_mid(xq, SKEWED, BIMODAL)
    assert jensen_shannon(BIMODAL, SKEWED) == pytest.approx(mc, abs=5e-3)


def test_optimal_discriminator_maximises_value_and_gives_gan_value():
    p, q = BIMODAL, BIMODAL.scaled(0.6)
    d_star = lambda y: optimal_discriminator(p, q, y)
    v_star = discriminator_value(p, q, d_star)
    assert float(v_star) == pytest.approx(gan_value(p, q), abs=1e-6)
    # first-order optimality: the derivative along any logit perturbation vanishes at D*
    eps = torch.zeros((), dtype=torch.float64, requires_grad=True)
    h = lambda y: torch.sin(y)
    v = discriminator_value(p, q, lambda y: torch.sigmoid(torch.logit(d_star(y).clamp(1e-12, 1 - 1e-12)) + eps * h(y)))
    (grad,) = torch.autograd.grad(v, eps)
    assert abs(float(grad)) < 1e-6
    for shift in (0.3, -0.3):
        other = discriminator_value(p, q, lambda y: torch.sigmoid(torch.logit(d_star(y).clamp(1e-12, 1 - 1e-12)) + shift))
        assert float(other) < float(v_star) - 1e-3
    assert gan_value(p, p) == pytest.approx(-math.log(4), abs=1e-9)
    with pytest.raises(ValueError, match="point masses"):
        discriminator_value(TWO_POINT, TWO_POINT, d_star)


# ------------------------------------------------------------------------------------------ mismatch
def test_population_losses_mismatch_table():
    data, mean_g, one_mode = BIMODAL, BIMODAL.scaled(0.0), Mixture1D((1.0,), (2.0,), (0.5,))
    gens = {"data": data, "mean": mean_g, "half": data.scaled(0.5), "one_mode": one_mode, "wide": data.scaled(1.5)}
    table = {name: population_losses(data, g) for name, g in gens.items()}
    best = lambda key: min(table, key=lambda n: table[n][key])
    assert best("gan") == "data" and table["data"]["gan"] == pytest.approx(-math.log(4), abs=1e-9)
    assert best("l2") == "mean" and table["mean"]["l2"] == pytest.approx(data.variance)
    assert table["data"]["l2"] == pytest.approx(2 * data.variance)  # noise + variance
    for key in ("mr2", "pmr2", "mr2-laplace", "pmr2-laplace"):
        assert best(key) == "data"
        assert all(table["data"][key] < table[n][key] - 1e-6 for n in gens if n != "data")
    for key in ("mr1", "pmr1"):  # first moment only: the data-matching generator is optimal (tied with the mean)
        assert table["data"][key] == pytest.approx(min(t[key] for t in table.values()))
        assert table["mean"][key] == pytest.approx(table["data"][key])
    assert table["mean"]["mr2"] == math.inf


def test_population_losses_agree_with_library_losses_at_large_k():
    q = SKEWED.scaled(0.8)
    pop = population_losses(SKEWED, q)
    mc = monte_carlo_losses(SKEWED, q, k=400, n=2000, generator=gen(4))
    for key in ("l1", "l2", "mr1", "mr2", "pmr1", "pmr2", "mr1-laplace", "mr2-laplace"):
        assert mc[key] == pytest.approx(pop[key], rel=0.05, abs=0.02), key


def test_finite_k_mr2_minimiser_closed_form():
    """Gaussian data: E[MR2] at scale s is (1 + s^2/K)(K-1)/(2(K-3)s^2) + log s + c, minimised at s^2 = (K-1)/(K-3)."""
    p, k = Mixture1D((1.0,), (0.0,), (1.0,)), 8
    scales = [0.8, 0.9, 1.0, 1.1, 1.18, 1.3, 1.45]
    vals = [monte_carlo_losses(p, p.scaled(s), k, n=60_000, generator=gen(5))["mr2"] for s in scales]
    theory = [(1 + s * s / k) * (k - 1) / (2 * (k - 3) * s * s) + math.log(s) for s in scales]
    offset = sum(v - t for v, t in zip(vals, theory)) / len(vals)
    assert all(abs(v - t - offset) < 0.02 for v, t in zip(vals, theory))
    assert scales[vals.index(min(vals))] in (1.1, 1.18, 1.3)  # theory: sqrt(7/5) = 1.18
    # MR1 at finite K: Var p + s^2 Var p / K
    mr1 = monte_carlo_losses(p, p.scaled(1.0), k, n=60_000, generator=gen(6))["mr1"]
    assert mr1 == pytest.approx(1 + 1 / k, rel=0.03)
    with pytest.raises(ValueError, match="k must be"):
        monte_carlo_losses(p, p, k=1)


def test_l1_exception_appendix_f():
    assert l1_gap(TWO_POINT) == pytest.approx(0.0, abs=1e-12)
    for eps in (0.05, 0.1, 0.2):
        p = Mixture1D((0.5 + eps, 0.5 - eps), (-1.0, 1.0), (0.0, 0.0))
        assert l1_gap(p) == pytest.approx(2 * eps - 4 * eps * eps, abs=1e-12)
    smooth = Mixture1D((0.5, 0.5), (-1.0, 1.0), (0.1, 0.1))
    assert l1_gap(smooth) > 0.05
    three = Mixture1D((1 / 3, 1 / 3, 1 / 3), (-1.0, 0.0, 1.0), (0.0, 0.0, 0.0))
    assert l1_gap(three) == pytest.approx(8 / 9 - 2 / 3, abs=1e-12)


# ------------------------------------------------------------------------------------------ bias-variance
def test_bias_variance_decomposition_closed_forms():
    sigma, n, t = 2.0, 10, 100_000
    g = gen(7)
    sampler = lambda m: 1.0 + sigma * torch.randn(m, dtype=torch.float64, generator=g)
    y = sampler(t)
    for name, est, bias2, var in [
        ("mean", lambda d: d.mean(1), 0.0, sigma ** 2 / n),
        ("shrunk", lambda d: 0.5 * d.mean(1), 0.25, 0.25 * sigma ** 2 / n),
        ("sample", lambda d: d[:, 0], 0.0, sigma ** 2),  # a perfect generator: a fresh draw of y
    ]:
        bv = bias_variance_mc(estimator_draws(est, sampler, n, t), y)
        assert isinstance(bv, BiasVariance)
        assert abs(bv.expected_loss - bv.total) < 5 * bv.stderr, name
        assert bv.noise == pytest.approx(sigma ** 2, rel=0.02)
        assert bv.bias2 == pytest.approx(bias2, abs=0.01 + 0.05 * bias2), name
        assert bv.variance == pytest.approx(var, rel=0.03), name
        assert bv.expected_loss == pytest.approx(sigma ** 2 + bias2 + var, rel=0.03), name


def test_bias_variance_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        bias_variance_mc(torch.zeros(5), torch.zeros(6))
    with pytest.raises(TypeError, match="pred must be"):
        bias_variance_mc([1.0, 2.0], torch.zeros(2))
    with pytest.raises(ValueError, match="y must be 1-D"):
        bias_variance_mc(torch.zeros(4), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="estimator must return"):
        estimator_draws(lambda d: d, lambda m: torch.zeros(m), 3, 4)
    with pytest.raises(ValueError, match="n_trials"):
        estimator_draws(lambda d: d.mean(1), lambda m: torch.zeros(m), 3, 1)


# ------------------------------------------------------------------------------------------ MLE fits
@pytest.mark.parametrize("dist", ["gaussian", "laplace"])
@pytest.mark.parametrize("learn", [False, True])
def test_gradient_descent_mle_finds_closed_form(dist, learn):
    y = SKEWED.sample(801, gen(8))  # odd N: unique sample median
    fit = fit_location_scale(y, dist, learn_dispersion=learn, steps=1200, lr=0.05)
    center, disp = mle_closed_form(y, dist)
    assert fit.center == pytest.approx(center, abs=2e-3)
    assert fit.dispersion == pytest.approx(disp if learn else 1.0, rel=2e-3)
    assert fit.losses[-1] <= fit.losses[0] and len(fit.centers) == 1200
    expect_center = y.mean().item() if dist == "gaussian" else y.median().item()
    assert center == pytest.approx(expect_center)


def test_mle_bad_input():
    with pytest.raises(ValueError, match="dist must be one of"):
        fit_location_scale(torch.zeros(5), "cauchy")
    with pytest.raises(ValueError, match="y must be a 1-D"):
        mle_closed_form(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="steps"):
        fit_location_scale(torch.zeros(5), steps=0)
