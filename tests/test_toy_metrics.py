"""minilib.metrics.toy on cases with known answers."""
import math

import pytest
import torch

from minilib.metrics.toy import assign_modes, coverage_radius, mode_coverage, conditional_w1, mode_stats, std_ratio, wasserstein_1d
from minilib.data.toys import grid, ring


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_perfect_sampler_captures_all_modes_with_kl_near_zero():
    r = ring()
    _, y = r.sample(4000, gen(0))
    st = mode_stats(y, r.modes, r.weights, r.std)
    assert st["modes"] == 8 and st["n_modes"] == 8
    assert st["high_quality"] > 0.98  # P(|N(0, I_2)| < 3) = 1 - exp(-4.5) = 0.989
    assert st["kl"] < 0.01
    g = grid()
    _, y = g.sample(10000, gen(1))
    assert mode_stats(y, g.modes, g.weights, g.std)["modes"] == 25


def test_one_mode_sampler_scores_one_of_eight_and_log8():
    r = ring()
    y = r.modes[3] + r.std * torch.randn(1000, 2, generator=gen(2))
    st = mode_stats(y, r.modes, r.weights, r.std)
    assert st["modes"] == 1
    assert abs(st["kl"] - math.log(8)) < 1e-6
    assert st["counts"][3] > 950 and sum(st["counts"]) == st["counts"][3]


def test_high_quality_threshold_and_min_share():
    r = ring()
    far = torch.zeros(100, 2)  # the centre: distance 2 = 100 std from every mode
    st = mode_stats(far, r.modes, r.weights, r.std)
    assert st["high_quality"] == 0.0 and st["modes"] == 0
    # 4 modes well covered, 4 with a single stray sample each: strays do not count as captured
    good = r.modes[:4].repeat(100, 1)
    stray = r.modes[4:]
    st = mode_stats(torch.cat([good, stray]), r.modes, r.weights, r.std)
    assert st["modes"] == 4
    assert st["high_quality"] == 1.0


def test_assign_modes_nearest():
    modes = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    idx, d = assign_modes(torch.tensor([[1.0, 0.0], [9.0, 1.0]]), modes)
    assert idx.tolist() == [0, 1]
    assert torch.allclose(d, torch.tensor([1.0, math.sqrt(2)]))


def test_w1_of_shift_equals_shift_and_closed_forms():
    a = torch.randn(4, 500, generator=gen(3))
    for c in (0.0, 0.3, -1.7):
        assert torch.allclose(wasserstein_1d(a, a + c), torch.full((4,), abs(c)), atol=1e-5)
    # two point masses: W1(delta_0, delta_2) = 2; unequal sample counts are handled exactly
    assert float(wasserstein_1d(torch.zeros(3), torch.full((7,), 2.0))) == pytest.approx(2.0)
    # {0, 1} vs {0}: half the mass moves by 1
    assert float(wasserstein_1d(torch.tensor([0.0, 1.0]), torch.tensor([0.0]))) == pytest.approx(0.5)
    # symmetry and agreement with the sorted-pairs formula for equal N
    b = torch.randn(4, 500, generator=gen(4))
    ref = (a.sort(-1).values - b.sort(-1).values).abs().mean(-1)
    assert torch.allclose(wasserstein_1d(a, b), ref, atol=1e-5)
    assert torch.allclose(wasserstein_1d(a, b), wasserstein_1d(b, a), atol=1e-6)


def test_w1_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    a = torch.randn(300, generator=gen(5))
    b = torch.rand(170, generator=gen(6)) * 3
    assert float(wasserstein_1d(a, b)) == pytest.approx(scipy_stats.wasserstein_distance(a.numpy(), b.numpy()), rel=1e-4)


def test_conditional_w1_and_std_ratio():
    truth = torch.randn(5, 400, 1, generator=gen(7))
    shift = torch.arange(5.0).view(5, 1, 1)
    assert torch.allclose(conditional_w1(truth + shift, truth), torch.arange(5.0), atol=1e-5)
    samples = 3.0 * torch.randn(6, 4000, 2, generator=gen(8))
    r = std_ratio(samples, torch.full((6, 2), 1.5))
    assert r.shape == (6, 2) and torch.allclose(r, torch.full((6, 2), 2.0), rtol=0.05)
    const = torch.ones(6, 10, 2)
    assert torch.equal(std_ratio(const, torch.ones(6, 2)), torch.zeros(6, 2))


def test_bad_inputs():
    r = ring()
    with pytest.raises(ValueError, match="same d"):
        mode_stats(torch.zeros(5, 3), r.modes)
    with pytest.raises(ValueError, match="weights"):
        mode_stats(torch.zeros(5, 2), r.modes, torch.ones(3) / 3)
    with pytest.raises(TypeError, match="samples"):
        mode_stats([[0.0, 0.0]], r.modes)
    with pytest.raises(ValueError, match="leading dims"):
        wasserstein_1d(torch.zeros(2, 5), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="K >= 2"):
        std_ratio(torch.zeros(3, 1, 1), torch.ones(3, 1))
    with pytest.raises(ValueError, match="true_std"):
        std_ratio(torch.zeros(3, 4, 1), torch.ones(2, 1))
    with pytest.raises(ValueError, match="1-D y"):
        conditional_w1(torch.zeros(3, 4, 2), torch.zeros(3, 4, 2))


def test_mode_coverage_reports_covered_and_sharp_side_by_side():
    """One criterion: covered (mass within the stated radius) and sharp (within 3 data std), with both radii."""
    ds = ring()
    assert coverage_radius(ds.modes, ds.std) == pytest.approx(0.2 * 4 * math.sin(math.pi / 8))  # a fifth of 1.53
    g = torch.Generator().manual_seed(0)
    blurred = ds.modes.repeat(250, 1) + 0.1 * torch.randn(2000, 2, generator=g)  # every mode, 5x the data's std
    m = mode_coverage(blurred, ds.modes, ds.weights, ds.std)
    assert m["covered"] == 8 and m["sharp_modes"] == 8 and m["sharp"] < 0.2 and m["kl"] < 0.01
    assert (m["radius"], m["sharp_radius"]) == (pytest.approx(0.306, abs=1e-3), pytest.approx(0.06))
    far = ds.modes[:4].repeat(500, 1) * 1.2  # four modes, but 0.4 outside the ring: nearest, never within the radius
    m = mode_coverage(far, ds.modes, ds.weights, ds.std)
    assert m["covered"] == 0 and m["sharp"] == 0.0 and m["kl"] == pytest.approx(math.log(2), abs=1e-5)
    half = torch.cat([ds.modes[:4].repeat(250, 1), ds.modes.repeat(125, 1)])  # 4 modes hold 3/4 of the mass
    assert mode_coverage(half, ds.modes, ds.weights, ds.std, min_share=0.6)["covered"] == 4
    assert mode_coverage(half, ds.modes, ds.weights, ds.std, radius=0.01)["covered"] == 8  # exact points are within any radius
    with pytest.raises(ValueError, match="radius"):
        mode_coverage(half, ds.modes, radius=-1.0)
