"""Closed-form checks of every loss in minilib.losses (values, gradients, Laplace trick, optima, bad input)."""
import math

import pytest
import torch

from minilib import losses as L

torch.set_default_dtype(torch.float32)


def _x(vals, dtype=torch.float64, grad=False):
    return torch.tensor(vals, dtype=dtype, requires_grad=grad)


# ------------------------------------------------------------------ sample_moments
def test_sample_moments_gaussian_hand_computed():
    s = _x([[[1.0], [2.0], [6.0]]])  # B=1, K=3, event=(1,)
    m, v = L.sample_moments(s, "gaussian")
    assert m.shape == (1, 1)
    assert m.item() == pytest.approx(3.0)
    assert v.item() == pytest.approx(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2)  # unbiased: 7


def test_sample_moments_laplace_median_and_mad():
    s = _x([[[1.0], [2.0], [6.0]], [[4.0], [0.0], [1.0]]])  # B=2, K=3
    m, b = L.sample_moments(s, "laplace")
    assert m.flatten().tolist() == [2.0, 1.0]
    assert b[0].item() == pytest.approx((1 + 0 + 4) / 3)
    assert b[1].item() == pytest.approx((3 + 1 + 0) / 3)


def test_sample_moments_even_k_uses_lower_middle_value():
    s = _x([[[1.0], [2.0], [3.0], [10.0]]])
    m, b = L.sample_moments(s, "laplace")
    assert m.item() == 2.0
    assert b.item() == pytest.approx((1 + 0 + 1 + 8) / 4)


def test_sample_moments_image_shapes():
    s = torch.randn(3, 5, 2, 4, 4)
    for dist in L.DISTS:
        c, d = L.sample_moments(s, dist)
        assert c.shape == d.shape == (3, 2, 4, 4)
        assert (d >= 0).all()


# ------------------------------------------------------------------ mle_loss
def test_mle_loss_gaussian_closed_form():
    y, mu, logv = _x([[1.0, 3.0]]), _x([[0.0, 1.0]]), _x([[math.log(4.0), 0.0]])
    expected = ((1 / (2 * 4) + 0.5 * math.log(4.0)) + (4 / 2 + 0.0)) / 2
    assert L.mle_loss(mu, logv, y, "gaussian").item() == pytest.approx(expected)


def test_mle_loss_laplace_closed_form():
    y, m, logb = _x([[1.0, -2.0]]), _x([[0.0, 1.0]]), _x([[math.log(2.0), 0.0]])
    expected = ((1 / 2 + math.log(2.0)) + (3 / 1 + 0.0)) / 2
    assert L.mle_loss(m, logb, y, "laplace").item() == pytest.approx(expected)


@pytest.mark.parametrize("dist", L.DISTS)
def test_mle_loss_minimised_by_true_parameters(dist):
    """The predictor NLL is minimised at (mean, variance) / (median, MAD) of the data."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(20000, 1, generator=g, dtype=torch.float64) * 2 + 1 if dist == "gaussian" else (
        torch.distributions.Laplace(1.0, 2.0).sample((20000, 1)).double())
    c = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    ld = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([c, ld], lr=0.05)
    for _ in range(1500):
        opt.zero_grad()
        L.mle_loss(c.expand_as(y), ld.expand_as(y), y, dist).backward()
        opt.step()
    if dist == "gaussian":
        assert c.item() == pytest.approx(y.mean().item(), abs=0.02)
        assert math.exp(ld.item()) == pytest.approx(y.var().item(), rel=0.03)
    else:
        med = y.median()
        assert c.item() == pytest.approx(med.item(), abs=0.05)
        assert math.exp(ld.item()) == pytest.approx((y - med).abs().mean().item(), rel=0.03)


# ------------------------------------------------------------------ mr_loss
def test_mr1_gaussian_value():
    s = _x([[[1.0], [3.0]], [[0.0], [0.0]]])  # means 2, 0
    y = _x([[5.0], [1.0]])
    assert L.mr_loss(s, y, "gaussian", 1).item() == pytest.approx((9 + 1) / 2)


def test_mr2_gaussian_value():
    s = _x([[[1.0], [3.0]]])  # mean 2, var 2
    y = _x([[4.0]])
    assert L.mr_loss(s, y, "gaussian", 2).item() == pytest.approx(4 / (2 * 2) + 0.5 * math.log(2))


def test_mr2_noise_variance_is_added_not_a_floor():
    """y = G + ε with known Var ε: the Gaussian NLL uses s² + σ_n² (finite where the K samples agree, and the
    variance keeps its gradient, which a clamp at σ_n² would kill)."""
    s = _x([[[1.0], [3.0]]])  # mean 2, var 2
    y = _x([[4.0]])
    assert L.mr_loss(s, y, noise_variance=0.5).item() == pytest.approx(4 / (2 * 2.5) + 0.5 * math.log(2.5))
    flat = _x([[[1.0], [1.0], [1.0]]], grad=True)  # collapsed samples: var 0
    loss = L.mr_loss(flat, _x([[2.0]]), noise_variance=0.25)
    assert loss.item() == pytest.approx(1 / (2 * 0.25) + 0.5 * math.log(0.25))
    loss.backward()
    assert torch.isfinite(flat.grad).all()
    with pytest.raises(ValueError, match="noise_variance"):
        L.mr_loss(s, y, noise_variance=-1.0)
    with pytest.raises(ValueError, match="Gaussian"):
        L.mr_loss(_x([[[1.0], [2.0], [7.0]]]), _x([[5.0]]), "laplace", noise_variance=0.1)


def test_mr2_unbiased_precision_divides_by_k_minus_3():
    s = _x([[[0.0], [1.0], [2.0], [5.0]]])  # K = 4, mean 2, sum of squares 4 + 1 + 0 + 9 = 14
    y = _x([[3.0]])
    v = 14 / (4 - 3)
    assert L.mr_loss(s, y, unbiased_precision=True).item() == pytest.approx(1 / (2 * v) + 0.5 * math.log(v))
    with pytest.raises(ValueError, match="K >= 4"):
        L.mr_loss(s[:, :3], y, unbiased_precision=True)
    assert L.mr_loss(s[:, :3], y, order=1, unbiased_precision=True).item() == pytest.approx(4.0)  # order 1: no variance


def test_mr2_unbiased_precision_puts_the_optimum_at_the_data_spread():
    """E[1/s²] = (K-1)/(K-3)/σ² for Gaussian samples: with K - 3 the precision is unbiased, so the expected loss
    over y ~ N(0, 1) is smallest when the generator's spread is the data's, not 1.4 times it (K = 8)."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(100_000, 8, 1, generator=g, dtype=torch.float64)
    y = torch.randn(100_000, 1, generator=g, dtype=torch.float64)
    prec = 1 / (z.var(1) * 7 / 5)
    assert prec.mean().item() == pytest.approx(1.0, rel=0.02)
    scales = [0.8, 0.9, 1.0, 1.1, 1.2]
    plain = [L.mr_loss(c * z, y).item() for c in scales]
    fixed = [L.mr_loss(c * z, y, unbiased_precision=True).item() for c in scales]
    assert scales[fixed.index(min(fixed))] == 1.0
    assert scales[plain.index(min(plain))] == 1.2  # the plain loss prefers a wider spread (its optimum: 1.18)


def test_mr_laplace_trick_value_and_gradient():
    """Alg. 7: the value is |y - median| and the gradient reaches every sample equally."""
    s = _x([[[1.0], [2.0], [7.0]]], grad=True)  # median 2
    y = _x([[5.0]])
    loss = L.mr_loss(s, y, "laplace", 1)
    assert loss.item() == pytest.approx(3.0)
    loss.backward()
    g = s.grad.flatten()
    assert torch.allclose(g, torch.full_like(g, g[0].item()))  # all samples equal
    assert g[0].item() == pytest.approx(-1 / 3)  # d/ds of mean_i |t_i - s_i| with t_i - s_i = 3 > 0


def test_mr2_laplace_value():
    s = _x([[[1.0], [2.0], [7.0]]])  # median 2, MAD (1+0+5)/3 = 2
    y = _x([[5.0]])
    assert L.mr_loss(s, y, "laplace", 2).item() == pytest.approx(3 / 2 + math.log(2))


def test_mr_gaussian_naive_median_grad_comparison():
    """Without the trick, the median's gradient would touch a single sample: make sure we are not naive."""
    s = _x([[[0.0], [1.0], [2.0], [3.0], [4.0]]], grad=True)
    L.mr_loss(s, _x([[10.0]]), "laplace", 1).backward()
    assert (s.grad != 0).all()


@pytest.mark.parametrize("order", [1, 2])
def test_gradcheck_mr_gaussian(order):
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: L.mr_loss(a, y, "gaussian", order), (s,))


def _shift_derivative(fn, h=1e-6):
    """Central difference of fn(t) at t = 0."""
    return (fn(h) - fn(-h)) / (2 * h)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("which", ["mr", "pmr"])
def test_laplace_spread_gradient_is_exact_along_common_shift(order, which):
    """The Laplace trick changes *how* the centre's gradient is shared out, not its total.

    Shifting all K samples together moves the median by the same amount and leaves the MAD unchanged,
    so the true derivative along that direction must equal the sum of the spread per-sample gradients.
    (A plain gradcheck does not apply: the spread gradient is deliberately not the derivative of the
    median, which touches a single sample.)
    """
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, generator=g, dtype=torch.float64)
    ld = torch.randn(2, 3, generator=g, dtype=torch.float64)
    fn = (lambda a: L.mr_loss(a, y, "laplace", order)) if which == "mr" else (
        lambda a: L.proxy_mr_loss(a, y, ld, "laplace", order))
    fn(s).backward()
    total = s.grad.sum(dim=1)  # [B, event]: sum of spread gradients per element
    for b in range(2):
        for e in range(3):
            direction = torch.zeros_like(s)
            direction[b, :, e] = 1.0
            num = _shift_derivative(lambda h: fn((s + h * direction).detach()))
            assert total[b, e].item() == pytest.approx(num.item(), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("dist", L.DISTS)
def test_gradcheck_mle(dist):
    g = torch.Generator().manual_seed(2)
    c = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    ld = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 2, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: L.mle_loss(a, b, y, dist), (c, ld))


# ------------------------------------------------------------------ proxy_mr_loss
def test_pmr_gaussian_values():
    s = _x([[[1.0], [3.0]]])  # mean 2, var 2
    c, ld = _x([[5.0]]), _x([[math.log(3.0)]])
    assert L.proxy_mr_loss(s, c, ld, "gaussian", 1).item() == pytest.approx(9.0)
    assert L.proxy_mr_loss(s, c, ld, "gaussian", 2).item() == pytest.approx(9.0 + 1.0)


def test_pmr_laplace_values_and_trick():
    s = _x([[[1.0], [2.0], [7.0]]], grad=True)  # median 2, MAD 2
    c, ld = _x([[4.0]]), _x([[math.log(3.0)]])
    l1 = L.proxy_mr_loss(s, c, ld, "laplace", 1)
    assert l1.item() == pytest.approx(4.0)  # (4 - 2)^2
    l1.backward()
    g = s.grad.flatten()
    assert torch.allclose(g, torch.full_like(g, -2 * 2 / 3))  # d/ds mean (t - s)^2 = -2 (t - s) / K
    l2 = L.proxy_mr_loss(s.detach(), c, ld, "laplace", 2)
    assert l2.item() == pytest.approx(4.0 + (3.0 - 2.0) ** 2)


def test_pmr_does_not_backprop_into_predictor():
    s = torch.randn(2, 4, 3, requires_grad=True)
    c = torch.randn(2, 3, requires_grad=True)
    ld = torch.randn(2, 3, requires_grad=True)
    L.proxy_mr_loss(s, c, ld, "gaussian", 2).backward()
    assert c.grad is None and ld.grad is None and s.grad is not None


@pytest.mark.parametrize("dist", ["gaussian"])
@pytest.mark.parametrize("order", [1, 2])
def test_gradcheck_pmr(dist, order):
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 3, generator=g, dtype=torch.float64)
    ld = torch.randn(2, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: L.proxy_mr_loss(a, c, ld, dist, order), (s,))


# ------------------------------------------------------------------ MR2 is minimised by the right moments
@pytest.mark.parametrize("dist", L.DISTS)
def test_mr2_free_samples_recover_moments(dist):
    """Free samples trained against draws of a fixed distribution end with its moments (section 4.3)."""
    torch.manual_seed(0)
    k, true_c, true_s = 8, 1.5, 0.7
    samples = (0.3 * torch.randn(1, k, 1)).requires_grad_(True)
    opt = torch.optim.Adam([samples], lr=0.02)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1000, 0.3)
    for _ in range(3000):
        if dist == "gaussian":
            y = true_c + true_s * torch.randn(512, 1)
        else:
            y = torch.distributions.Laplace(true_c, true_s).sample((512, 1))
        opt.zero_grad()
        L.mr_loss(samples.expand(512, k, 1), y, dist, 2).backward()
        opt.step()
        sched.step()
    c, d = L.sample_moments(samples.detach(), dist)
    assert c.item() == pytest.approx(true_c, abs=0.1)
    # Gaussian: variance -> sigma^2; Laplace: MAD -> b (for Laplace(c, b), E|y - median| = b)
    expect = true_s**2 if dist == "gaussian" else true_s
    assert d.item() == pytest.approx(expect, rel=0.1)


# ------------------------------------------------------------------ mode seeking, reconstruction, GAN
def test_mode_seeking_value():
    y1, y2 = _x([[0.0, 0.0]]), _x([[2.0, 4.0]])  # mean |dy| = 3
    z1, z2 = _x([[0.0]]), _x([[1.5]])  # mean |dz| = 1.5
    assert L.mode_seeking_loss(y1, y2, z1, z2, eps=1e-5).item() == pytest.approx(1 / (2 + 1e-5))


def test_mode_seeking_multiscale_noise_and_gradient_pushes_apart():
    y1 = torch.zeros(2, 3, requires_grad=True)
    y2 = torch.ones(2, 3)
    z1 = (torch.zeros(2, 4), torch.zeros(2, 1, 2, 2))
    z2 = (torch.ones(2, 4), torch.ones(2, 1, 2, 2))
    loss = L.mode_seeking_loss(y1, y2, z1, z2)
    assert loss.item() == pytest.approx(1 / (1 + 1e-5), rel=1e-6)
    loss.backward()
    assert (y1.grad > 0).all()  # decreasing y1 (moving away from y2) lowers the loss


def test_reconstruction_loss_values_and_broadcast():
    pred, y = _x([[1.0, -1.0]]), _x([[0.0, 1.0]])
    assert L.reconstruction_loss(pred, y, 1).item() == pytest.approx(1.5)
    assert L.reconstruction_loss(pred, y, 2).item() == pytest.approx(2.5)
    samples = _x([[[1.0, -1.0], [0.0, 1.0]]])  # [B=1, K=2, 2]
    assert L.reconstruction_loss(samples, y, 1).item() == pytest.approx(0.75)


def test_gan_loss_values():
    logits = _x([0.0, 2.0])
    sp = torch.nn.functional.softplus
    assert L.gan_loss(logits, True).item() == pytest.approx(sp(-logits).mean().item())
    assert L.gan_loss(logits, False).item() == pytest.approx(sp(logits).mean().item())
    assert L.gan_loss(logits, True, generator=True).item() == pytest.approx(-torch.log(torch.sigmoid(logits)).mean().item())
    assert L.gan_loss(logits, True, "lsgan").item() == pytest.approx((1 + 1) / 2)
    assert L.gan_loss(logits, False, "lsgan").item() == pytest.approx((0 + 4) / 2)
    assert L.gan_loss(logits, True, "hinge").item() == pytest.approx((1 + 0) / 2)
    assert L.gan_loss(logits, False, "hinge").item() == pytest.approx((1 + 3) / 2)
    assert L.gan_loss(logits, True, "hinge", generator=True).item() == pytest.approx(-1.0)


@pytest.mark.parametrize("kind", L.GAN_KINDS)
def test_gradcheck_gan(kind):
    x = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64, requires_grad=True)
    for real in (True, False):
        assert torch.autograd.gradcheck(lambda a: L.gan_loss(a, real, kind), (x,))


def test_gradcheck_mode_seeking_and_reconstruction():
    g = torch.Generator().manual_seed(4)
    y1 = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y2 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    z1, z2 = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: L.mode_seeking_loss(a, y2, z1, z2), (y1,))
    assert torch.autograd.gradcheck(lambda a: L.reconstruction_loss(a, y2, 2), (y1,))


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: L.sample_moments(torch.randn(2, 1, 3)), "K >= 2"),
        (lambda: L.sample_moments(torch.randn(2, 3), dist="cauchy"), "dist"),
        (lambda: L.sample_moments(torch.randn(4)), "samples"),
        (lambda: L.mr_loss(torch.randn(2, 1, 3), torch.randn(2, 3), "gaussian", 2), "K >= 2"),
        (lambda: L.mr_loss(torch.randn(2, 1, 3), torch.randn(2, 3), "laplace", 1), "K >= 2"),
        (lambda: L.mr_loss(torch.randn(2, 4, 3), torch.randn(2, 4), "gaussian", 2), "y must have the shape"),
        (lambda: L.mr_loss(torch.randn(2, 4, 3), torch.randn(2, 3), "gaussian", 3), "order"),
        (lambda: L.mr_loss(torch.randn(2, 4, 3), torch.randn(2, 3), "student"), "dist"),
        (lambda: L.proxy_mr_loss(torch.randn(2, 4, 3), torch.randn(2, 2), torch.randn(2, 3)), "pred_center"),
        (lambda: L.proxy_mr_loss(torch.randn(2, 4, 3), torch.randn(2, 3), torch.randn(3, 3)), "pred_log_dispersion"),
        (lambda: L.proxy_mr_loss(torch.randn(2, 4, 3), torch.randn(2, 3), None, order=2), "pred_log_dispersion"),
        (lambda: L.proxy_mr_loss(torch.randn(2, 1, 3), torch.randn(2, 3), torch.randn(2, 3), "gaussian", 2), "K >= 2"),
        (lambda: L.mle_loss(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3), "poisson"), "dist"),
        (lambda: L.mle_loss(torch.randn(2, 3), torch.randn(2, 2), torch.randn(2, 3)), "log_dispersion"),
        (lambda: L.mode_seeking_loss(torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 1), torch.randn(2, 1)), "y2"),
        (lambda: L.mode_seeking_loss(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 1), torch.randn(2, 2)), "z2"),
        (lambda: L.mode_seeking_loss(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 1), torch.randn(2, 1), eps=0), "eps"),
        (lambda: L.reconstruction_loss(torch.randn(2, 3), torch.randn(2, 3), p=3), "p must"),
        (lambda: L.reconstruction_loss(torch.randn(2, 3), torch.randn(2, 4)), "pred must"),
        (lambda: L.gan_loss(torch.randn(3), True, kind="wasserstein"), "kind"),
        (lambda: L.gan_loss(torch.randn(3), False, generator=True), "real must be True"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("dist", L.DISTS)
def test_mr2_collapsed_samples_stay_finite_and_floor_never_binds_otherwise(dist):
    collapsed = torch.zeros(2, 4, 3, requires_grad=True)
    y = torch.ones(2, 3)
    loss = L.mr_loss(collapsed, y, dist, 2)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(collapsed.grad).all()
    spread = torch.randn(2, 4, 3)
    assert L.mr_loss(spread, y, dist, 2).item() == L.mr_loss(spread, y, dist, 2, min_dispersion=0.0).item()
    with pytest.raises(ValueError, match="min_dispersion"):
        L.mr_loss(spread, y, dist, 2, min_dispersion=-1.0)


def test_type_errors():
    with pytest.raises(TypeError, match="samples"):
        L.sample_moments([[1.0, 2.0]])
    with pytest.raises(TypeError, match="real"):
        L.gan_loss(torch.randn(3), 1)
    with pytest.raises(TypeError, match="z1"):
        L.mode_seeking_loss(torch.randn(2, 3), torch.randn(2, 3), "noise", torch.randn(2, 1))
