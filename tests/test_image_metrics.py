"""Tests for minilib.metrics.diversity / ndb / frechet (diversity protocols, LPIPS, NDB/JSD, Fréchet) and
minilib.course.realism_game
(Fréchet distances, FID errors, the human real-or-fake protocol).

LPIPS note: torchvision's ImageNet backbone weights cannot be downloaded here, so the LPIPS tests
use a RANDOM backbone or a randomly initialised torchvision state dict saved to a file. They check
plumbing (weight loading, masking, pairing, ranges), not the perceptual values of real LPIPS.
"""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

import minilib.metrics as metrics
from minilib.metrics import DIVERSITY_PROTOCOLS
from minilib.metrics.diversity import (DiversityProtocol, MissingWeightsError, load_lpips, lpips_diversity, pairwise_diversity, pixel_distance, protocol_pairs, to_signed_range)
from minilib.metrics.ndb import fit_ndb_bins, jensen_shannon, ndb_jsd
from minilib.course.realism_game import RealismGame, RealismSession, fake_f_measure, realism_score
from minilib.metrics.frechet import (digit_frechet_distance, frechet_distance, frechet_distance_features, gaussian_statistics, inception_fid)

torch.set_num_threads(1)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """torch hub cache pointed at an empty folder: no pretrained weights anywhere."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


# ---------------------------------------------------------------------------- protocols
def test_metrics_package_exports_images_api():
    for name in ("lpips_diversity", "ndb_jsd", "fit_ndb_bins", "DIVERSITY_PROTOCOLS"):
        assert name in metrics.__all__ and getattr(metrics, name) is not None


@pytest.mark.parametrize("name,k,p", [("mrgan", 20, 10), ("bicyclegan", 20, 19), ("msgan", 50, 50)])
def test_protocol_pairs_counted_distinct_and_in_range(name, k, p):
    proto = DIVERSITY_PROTOCOLS[name]
    assert (proto.num_samples, proto.num_pairs) == (k, p)
    pairs = protocol_pairs(name, torch.Generator().manual_seed(0))
    assert pairs.shape == (p, 2)
    assert (pairs[:, 0] < pairs[:, 1]).all() and pairs.min() >= 0 and pairs.max() < k
    assert len({tuple(r) for r in pairs.tolist()}) == p  # distinct pairs
    if name == "bicyclegan":
        assert pairs.tolist() == [[i, i + 1] for i in range(19)]


def test_random_pairs_cover_all_pairs_uniformly():
    gen = torch.Generator().manual_seed(1)
    counts = torch.zeros(20, 20)
    for _ in range(2000):
        for i, j in protocol_pairs("mrgan", gen).tolist():
            counts[i, j] += 1
    upper = counts[torch.triu(torch.ones(20, 20, dtype=torch.bool), 1)]
    expected = 2000 * 10 / 190
    assert upper.min() > 0
    from scipy import stats

    assert stats.chisquare(upper.numpy()).pvalue > 1e-3  # consistent with uniform over the 190 pairs
    assert stats.chisquare(upper.numpy() + np.arange(190) % 2 * 0.3 * expected).pvalue < 1e-3  # the test has power


def test_protocol_validation():
    with pytest.raises(ValueError, match="num_pairs"):
        DiversityProtocol("x", 4, 7, "random")
    with pytest.raises(ValueError, match="pairing"):
        DiversityProtocol("x", 4, 2, "all")
    with pytest.raises(ValueError, match="protocol"):
        protocol_pairs("bogus")


# ---------------------------------------------------------------------------- pairwise diversity
def _ladder(b: int, k: int) -> torch.Tensor:
    """samples[b, i] is the constant image (i / k) * scale_b: pixel distance of (i, j) = |i-j|/k * scale_b."""
    scale = torch.linspace(0.5, 1.0, b)[:, None, None, None, None]
    return (torch.arange(k).float() / k)[None, :, None, None, None] * scale * torch.ones(b, k, 3, 4, 4)


def test_pixel_diversity_known_answers_and_ci():
    s = _ladder(4, 20)
    r = pairwise_diversity(s, "bicyclegan", pixel_distance)
    expected = torch.linspace(0.5, 1.0, 4) / 20  # consecutive pairs: |i - (i+1)| / k * scale
    assert np.allclose(r.per_input, expected.tolist(), atol=1e-6)
    assert math.isclose(r.mean, float(expected.mean()), rel_tol=1e-5)
    from scipy import stats

    half = stats.t.ppf(0.975, 3) * float(expected.double().std()) / 2
    assert math.isclose(r.ci_high - r.mean, half, rel_tol=1e-4) and math.isclose(r.mean - r.ci_low, half, rel_tol=1e-4)
    # random protocol: each input's score is the mean |i-j| over its own 10 pairs
    r2 = pairwise_diversity(s, "mrgan", pixel_distance, seed=3)
    gen = torch.Generator().manual_seed(3)
    manual = [float((p[:, 1] - p[:, 0]).float().mean()) / 20 * float(sc)
              for p, sc in zip([protocol_pairs("mrgan", gen) for _ in range(4)], torch.linspace(0.5, 1.0, 4))]
    assert np.allclose(r2.per_input, manual, atol=1e-6)
    assert r2.num_pairs == 10 and r2.metric == "pixel-l1" and not r2.masked
    assert pairwise_diversity(torch.zeros(3, 20, 1, 4, 4), "mrgan").mean == 0.0


def test_diversity_mask_scores_the_hole_only():
    s = torch.zeros(2, 20, 1, 8, 8)
    s[:, :, :, :4] = torch.rand(2, 20, 1, 4, 8)  # outputs differ only in the top half
    hole = torch.zeros(8, 8)
    hole[4:] = 1
    assert pairwise_diversity(s, "mrgan", mask=hole).mean == 0.0
    assert pairwise_diversity(s, "mrgan", mask=1 - hole).mean > 0.2
    with pytest.raises(ValueError, match="mask"):
        pairwise_diversity(s, "mrgan", mask=torch.zeros(8, 8))
    with pytest.raises(ValueError, match="mask"):
        pairwise_diversity(s, "mrgan", mask=torch.ones(4, 4))


def test_diversity_bad_inputs():
    with pytest.raises(ValueError, match="K=20"):
        pairwise_diversity(torch.zeros(2, 10, 1, 4, 4), "mrgan")
    with pytest.raises(ValueError, match=r"\[B, K, C, H, W\]"):
        pairwise_diversity(torch.zeros(2, 20, 4, 4), "mrgan")
    with pytest.raises(ValueError, match="input_range"):
        to_signed_range(torch.rand(2, 3), "0..255")
    with pytest.raises(ValueError, match=r"\[-1,1\]"):
        to_signed_range(torch.rand(2, 3) * 255)
    x = torch.rand(2, 3)
    assert torch.allclose(to_signed_range(x, "[0,1]"), 2 * x - 1)


# ---------------------------------------------------------------------------- LPIPS
def test_lpips_without_backbone_weights_says_how_to_get_them(empty_hub):
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth") as err:
        load_lpips("alex", "0.1")
    assert "IMAGENET1K_V1" in str(err.value) and "backbone_weights" in str(err.value)
    with pytest.raises(MissingWeightsError):
        lpips_diversity(torch.zeros(1, 20, 3, 32, 32), "mrgan")
    with pytest.raises(ValueError, match="net"):
        load_lpips("resnet")
    with pytest.raises(ValueError, match="version"):
        load_lpips("alex", "0.2")


def test_lpips_linear_weights_are_bundled_and_loaded():
    import os

    import lpips

    model = load_lpips("alex", "0.1", random_backbone=True).model  # RANDOM backbone: plumbing only
    bundled = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights/v0.1/alex.pth"), map_location="cpu", weights_only=True)
    assert torch.equal(model.lin0.model[1].weight, bundled["lin0.model.1.weight"])


def test_lpips_backbone_loaded_from_file_or_hub_cache(tmp_path, empty_hub):
    """A randomly initialised torchvision AlexNet saved to disk stands in for the ImageNet weights."""
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    path = tmp_path / "alex.pth"
    torch.save(state, path)
    from_file = load_lpips("alex", "0.1", backbone_weights=path)
    assert torch.equal(from_file.model.net.slice1[0].weight, state["features.0.weight"])
    assert torch.equal(getattr(from_file.model.net.slice5, "10").weight, state["features.10.weight"])
    (empty_hub / "checkpoints").mkdir(parents=True)
    torch.save(state, empty_hub / "checkpoints" / "alexnet-owt-7be5be79.pth")
    from_hub = load_lpips("alex", "0.1")
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(from_file(a, b), from_hub(a, b))
    assert from_hub.name == "lpips-alex-v0.1" and from_file.name == "lpips-alex-v0.1"
    with pytest.raises(ValueError, match="state dict"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pth")
        load_lpips("alex", backbone_weights=tmp_path / "bad.pth")


def test_lpips_diversity_plumbing_with_random_backbone():
    """RANDOM backbone (no ImageNet weights offline): checks identity, masking, range conversion."""
    d = load_lpips("alex", "0.1", random_backbone=True)
    assert "RANDOM" in d.name
    same = torch.rand(2, 1, 3, 32, 32).expand(2, 20, 3, 32, 32) * 2 - 1
    assert lpips_diversity(same, "mrgan", lpips_model=d).mean == pytest.approx(0.0, abs=1e-6)
    noisy = (same + 0.3 * torch.randn_like(same)).clamp(-1, 1)
    r = lpips_diversity(noisy, "bicyclegan", lpips_model=d)
    assert r.mean > 0 and r.metric.startswith("lpips-alex-v0.1") and r.num_pairs == 19
    # [0, 1] input converted: same numbers as the [-1, 1] tensor
    r01 = lpips_diversity((noisy + 1) / 2, "bicyclegan", lpips_model=d, input_range="[0,1]")
    assert r01.mean == pytest.approx(r.mean, rel=1e-4)
    with pytest.raises(ValueError, match=r"\[-1,1\]"):
        lpips_diversity((noisy + 1) * 100, "bicyclegan", lpips_model=d)
    with pytest.raises(ValueError, match="lpips_model"):
        lpips_diversity(noisy, "bicyclegan", lpips_model=d, version="0.0")
    # masked: the score is the mean of LPIPS's spatial map over the hole (checked by hand) and,
    # with outputs identical near the hole, smaller inside it than outside
    big = torch.rand(1, 1, 3, 64, 64).expand(1, 20, 3, 64, 64) * 2 - 1
    part = big.clone()
    part[..., :16, :] = (big[..., :16, :] + 0.5 * torch.randn(1, 20, 3, 16, 64)).clamp(-1, 1)
    hole = torch.zeros(64, 64)
    hole[40:] = 1
    inside = lpips_diversity(part, "bicyclegan", lpips_model=d, mask=hole)
    outside = lpips_diversity(part, "bicyclegan", lpips_model=d, mask=1 - hole).mean
    assert inside.masked and inside.mean < 0.5 * outside
    d.model.spatial = True
    with torch.no_grad():
        maps = d.model(part[0, :19], part[0, 1:])  # [19, 1, 64, 64]
    d.model.spatial = False
    assert inside.mean == pytest.approx(float(maps[..., 40:, :].mean()), rel=1e-4)


# ---------------------------------------------------------------------------- NDB / JSD
def _clusters(n_per: list[int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    return torch.cat([c + 0.5 * torch.randn(n, 2, generator=g) for c, n in zip(centres, n_per)])


def test_jensen_shannon_closed_forms():
    from scipy.spatial.distance import jensenshannon

    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(math.log(2))
    assert jensen_shannon([0.2, 0.8], [0.2, 0.8]) == 0.0
    p, q = np.array([0.1, 0.4, 0.5]), np.array([0.3, 0.3, 0.4])
    assert jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q) ** 2)  # scipy: sqrt(JSD), natural log
    with pytest.raises(ValueError):
        jensen_shannon([0.5, 0.5], [1.0])


def test_ndb_identical_zero_and_collapsed_large(tmp_path):
    train = _clusters([200, 200, 200, 200], 0)
    bins = fit_ndb_bins(train, k=4, seed=0, cache_dir=tmp_path)
    assert bins.k == 4 and np.allclose(sorted(bins.train_proportions), [0.25] * 4)
    same = ndb_jsd(bins, train)
    assert same.ndb == 0 and same.jsd == 0.0 and same.k == 4
    fresh = ndb_jsd(bins, _clusters([200, 200, 200, 200], 1))  # new draw from the same distribution
    assert fresh.ndb == 0 and fresh.jsd < 1e-3
    collapsed = ndb_jsd(bins, _clusters([400, 0, 0, 0], 2))
    assert collapsed.ndb == 4 and collapsed.ndb_over_k == 1.0
    # JSD of uniform-4 vs one-hot, in nats
    m = np.array([0.625, 0.125, 0.125, 0.125])
    expected = 0.5 * (0.25 * np.log(0.25 / m)).sum() + 0.5 * np.log(1 / 0.625)
    assert collapsed.jsd == pytest.approx(expected, rel=1e-6)


def test_ndb_z_test_matches_hand_computation():
    train = _clusters([500, 500, 0, 0], 0)
    bins = fit_ndb_bins(train, k=2, seed=0)
    samples = _clusters([540, 460, 0, 0], 3)  # 54% / 46% of 1000: z = 0.04 / sqrt(.52*.48*(2/1000)) ≈ 1.79
    r = ndb_jsd(bins, samples)
    assert r.ndb == 0
    assert ndb_jsd(bins, samples, alpha=0.1).ndb == 2  # |z| = 1.79 > 1.645
    assert ndb_jsd(bins, _clusters([600, 400, 0, 0], 3)).ndb == 2  # z ≈ 4.5


def test_ndb_bins_are_cached(tmp_path, monkeypatch):
    train = _clusters([50, 50, 50, 50], 0)
    first = fit_ndb_bins(train, k=4, seed=0, cache_dir=tmp_path)
    import sklearn.cluster

    monkeypatch.setattr(sklearn.cluster, "KMeans", None)  # a cache miss would now fail
    again = fit_ndb_bins(train, k=4, seed=0, cache_dir=tmp_path)
    assert np.array_equal(first.centers, again.centers)
    assert np.array_equal(first.train_proportions, again.train_proportions)
    with pytest.raises(ValueError, match="k must be"):
        fit_ndb_bins(train, k=1)
    with pytest.raises(ValueError, match="values each"):
        first.assign(torch.zeros(3, 5))


# ---------------------------------------------------------------------------- Fréchet / FID
def test_frechet_closed_forms():
    assert frechet_distance(0.0, 1.0, 1.0, 4.0) == pytest.approx(1 + (1 - 2) ** 2)  # (m1-m2)^2 + (s1-s2)^2
    mu1, mu2 = np.array([1.0, 2.0]), np.array([0.0, 0.0])
    d1, d2 = np.diag([1.0, 9.0]), np.diag([4.0, 1.0])
    assert frechet_distance(mu1, d1, mu2, d2) == pytest.approx(5 + (1 - 2) ** 2 + (3 - 1) ** 2)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 3))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T  # s2 singular (rank 3)
    from scipy.linalg import sqrtm

    ref = np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert frechet_distance(np.zeros(5), s1, np.zeros(5), s2) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(mu1, d1, mu1, d1) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="mu"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


def test_frechet_from_features_estimates_gaussians():
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(20000, 3, generator=g)
    f2 = 2 * torch.randn(20000, 3, generator=g) + 1
    assert frechet_distance_features(f1, f2) == pytest.approx(3 * 1 + 3 * 1, rel=0.05)  # 3·1² + 3·(2−1)²
    mu, sig = gaussian_statistics(f1)
    assert mu.shape == (3,) and sig.shape == (3, 3)


def test_digit_frechet_distance_orders_sets():
    from minilib.metrics.digits import get_digit_classifier
    from minilib.data.digits import load_digits

    clf = get_digit_classifier(seed=0)  # the shared cache (~/.cache/minilib or $MINILIB_CACHE), as notebooks use
    train, _ = load_digits("train", 0)
    test, test_y = load_digits("test", 0)
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(test.shape, generator=g) * 2 - 1
    real_vs_real = digit_frechet_distance(train, test, clf)
    only_zeros = digit_frechet_distance(train, test[test_y == 0], clf)
    real_vs_noise = digit_frechet_distance(train, noise, clf)
    # a held-out draw of real digits is close; one class only (mode collapse) or noise is far
    assert real_vs_real < 0.05 * min(only_zeros, real_vs_noise)
    assert digit_frechet_distance(test, test, clf) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="images_b"):
        digit_frechet_distance(test, test * 3, clf)


def test_inception_fid_errors_name_the_fix(empty_hub, monkeypatch):
    x = torch.zeros(2, 3, 32, 32)
    try:
        import pytorch_fid  # noqa: F401  (optional dependency)
    except ImportError:
        pass
    else:
        with pytest.raises(MissingWeightsError, match="pt_inception-2015-12-05"):
            inception_fid(x, x)
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)
    with pytest.raises(MissingWeightsError, match="pip install pytorch-fid"):
        inception_fid(x, x)


# ---------------------------------------------------------------------------- human realism protocol
def test_realism_score_closed_forms():
    truth = [True, True, False, False]
    assert realism_score(truth, truth) == 0.0  # perfect judge
    assert fake_f_measure(truth, [True, False, True, False]) == pytest.approx(0.5)  # P = R = 1/2
    assert realism_score(truth, [True, False, True, False]) == pytest.approx(1.0)  # chance
    assert realism_score(truth, [False] * 4) == 2.0  # never caught a fake
    assert realism_score(truth, [True, True, True, False], kind="accuracy") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="kind"):
        realism_score(truth, truth, kind="auc")
    with pytest.raises(ValueError, match="at least one fake"):
        fake_f_measure([False, False], [True, False])


def test_realism_session_driven_from_python():
    real, fake = torch.full((3, 1, 8, 8), 0.5), torch.full((4, 1, 8, 8), -0.5)
    s = RealismSession(real, fake, num_trials=10, seed=0, show_seconds=0.5)
    assert sum(f for f, _ in s.trials) == 5
    while not s.done:  # an oracle that sees the pixel value
        img = s.current()
        assert s.answer("fake" if img.mean() < 0 else "real")
    r = s.result()
    assert r.accuracy == 1.0 and r.realism == 0.0 and r.num_trials == 10 and len(r.response_seconds) == 10
    with pytest.raises(IndexError):
        s.answer("real")
    with pytest.raises(ValueError, match="tag"):
        RealismSession(real, fake).answer("maybe")
    with pytest.raises(ValueError, match="show_seconds"):
        RealismSession(real, fake, show_seconds=10)
    with pytest.raises(ValueError, match="fake"):
        RealismSession(real, fake * 5)


def test_realism_game_widget_flashes_and_scores():
    real, fake = torch.full((3, 1, 8, 8), 0.5), torch.full((4, 1, 8, 8), -0.5)
    game = RealismGame(real, fake, num_trials=6, seed=1, show_seconds=0.5)
    with pytest.raises(RuntimeError, match="Start"):
        game.click("real")
    game.start()
    assert "data:image/png;base64" in game.image.value and "0.5s" in game.image.value  # hidden after 0.5 s
    for _ in range(6):
        game.click("fake")  # always says fake: catches every fake, precision 1/2
    r = game.result()
    assert r.f_measure == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert "Realism" in game.image.value and game.real_button.disabled
