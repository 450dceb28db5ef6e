"""The digits: splits and streams (minilib.data.digits), the cached classifier (minilib.metrics.digits), the
digit-completion networks and training (minilib.nets.digits, minilib.course.digit_completion)."""
from __future__ import annotations

import os

import pytest
import torch

from minilib.nets.digits import DigitClassifier, DigitCompletionD, DigitCompletionG, DigitCompletionP
from minilib.data.digits import DigitInpaintingStream, join_rows, load_digits, split_rows
from minilib.metrics.digits import classifier_accuracy, get_digit_classifier
from minilib.course.digit_completion import train_digit_completion

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("digit_cache")


@pytest.fixture(scope="module")
def classifier(cache_dir):
    return get_digit_classifier(seed=0, cache_dir=cache_dir)


def test_splits_disjoint_cover_and_range():
    x_all, y_all = load_digits("all")
    assert x_all.shape == (1797, 1, 8, 8) and y_all.shape == (1797,)
    assert x_all.min() == -1.0 and x_all.max() == 1.0
    parts = [load_digits(s, seed=3) for s in ("train", "val", "test")]
    assert sum(p[0].shape[0] for p in parts) == 1797
    # disjoint and covering: the multiset of (image, label) rows equals the full set
    rows = lambda x, y: {tuple(r) for r in torch.cat([x.flatten(1), y[:, None].float()], 1).tolist()}
    union = set().union(*(rows(*p) for p in parts))
    assert union == rows(x_all, y_all)
    assert parts[2][0].shape[0] == round(0.15 * 1797)
    # seed changes the split, same seed reproduces it
    assert not torch.equal(load_digits("test", seed=4)[1], parts[2][1])
    assert torch.equal(load_digits("test", seed=3)[0], parts[2][0])


def test_pixel_scaling_is_v_over_8_minus_1():
    from sklearn.datasets import load_digits as sk

    raw = torch.tensor(sk().images[:5], dtype=torch.float32)
    assert torch.allclose(load_digits("all")[0][:5, 0], raw / 8 - 1)


def test_bad_inputs():
    with pytest.raises(ValueError, match="split"):
        load_digits("bogus")
    with pytest.raises(ValueError, match="val_fraction"):
        load_digits("train", val_fraction=1.5)
    with pytest.raises(TypeError, match="seed"):
        load_digits("train", seed=1.5)
    with pytest.raises(ValueError, match=r"\[N, 1, 8, 8\]"):
        DigitClassifier()(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="top_rows"):
        split_rows(torch.zeros(2, 1, 8, 8), 8)
    with pytest.raises(ValueError, match="batch_size"):
        DigitInpaintingStream(torch.zeros(3, 1, 8, 8)).next(0)
    with pytest.raises(ValueError, match="x must be"):
        DigitCompletionG(3)(torch.zeros(2, 1, 4, 8), torch.zeros(2, 16))
    with pytest.raises(ValueError, match="z must be"):
        DigitCompletionG(3)(torch.zeros(2, 1, 3, 8), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="objective"):
        train_digit_completion(3.0, steps=0)


def test_classifier_accuracy_on_held_out_test(classifier):
    x, y = load_digits("test", seed=0)
    acc = classifier_accuracy(classifier, x, y)
    assert acc > 0.95, acc
    # shuffled labels drop it to chance, so the metric is not trivially high
    assert classifier_accuracy(classifier, x, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]) < 0.3


def test_classifier_features_shape_and_frozen(classifier):
    x, _ = load_digits("val", seed=0)
    f = classifier.features(x[:7])
    assert f.shape == (7, DigitClassifier.feature_dim)
    assert (f >= 0).all()
    assert not any(p.requires_grad for p in classifier.parameters())
    assert not classifier.training


def test_cache_is_reused_and_atomic(classifier, cache_dir):
    files = [p for p in os.listdir(cache_dir) if p.endswith(".pt")]
    assert len(files) == 1 and not any(p.endswith(".tmp") for p in os.listdir(cache_dir))
    path = cache_dir / files[0]
    mtime = path.stat().st_mtime_ns
    again = get_digit_classifier(seed=0, cache_dir=cache_dir)  # loaded, not retrained
    assert path.stat().st_mtime_ns == mtime
    for a, b in zip(classifier.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_corrupt_cache_is_retrained(tmp_path, monkeypatch):
    import minilib.metrics.digits as digits

    calls = []
    monkeypatch.setattr(digits, "train_digit_classifier", lambda seed: calls.append(seed) or digits._freeze(DigitClassifier()))
    digits.get_digit_classifier(seed=5, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.pt")
    path.write_bytes(b"not a checkpoint")
    digits.get_digit_classifier(seed=5, cache_dir=tmp_path)
    assert calls == [5, 5]
    torch.load(path, weights_only=True)  # rewritten with a valid file


def test_split_and_join_rows_are_inverse():
    x = torch.rand(3, 1, 8, 8)
    top, rest = split_rows(x, 3)
    assert top.shape == (3, 1, 3, 8) and rest.shape == (3, 1, 5, 8)
    assert torch.equal(join_rows(top, rest), x)
    k_rest = torch.rand(3, 4, 1, 5, 8)  # K = 4 completions per input
    full = join_rows(top, k_rest)
    assert full.shape == (3, 4, 1, 8, 8) and torch.equal(full[:, 2, :, :3], top) and torch.equal(full[:, 2, :, 3:], k_rest[:, 2])


def test_inpainting_stream_pairs_epochs_and_exact_resume():
    images, _ = load_digits("train", seed=0)
    s = DigitInpaintingStream(images[:10], top_rows=4, seed=1)
    x, y = s.next(4)
    assert x.shape == (4, 1, 4, 8) and y.shape == (4, 1, 4, 8)
    # one epoch visits every image exactly once, and (x, y) are the two halves of the same digit
    s2 = DigitInpaintingStream(images[:10], top_rows=4, seed=1)
    full = join_rows(*s2.next(10))
    assert {tuple(r) for r in full.flatten(1).tolist()} == {tuple(r) for r in images[:10].flatten(1).tolist()}
    # resume: state after 7 draws reproduces the following batches (crossing an epoch boundary)
    s.next(3)
    state = s.state_dict()
    expected = [s.next(6)[1] for _ in range(3)]
    s3 = DigitInpaintingStream(images[:10], top_rows=4, seed=999)
    s3.load_state_dict(state)
    for e in expected:
        assert torch.equal(s3.next(6)[1], e)


def test_dequantized_targets_stay_in_their_grey_level_bin():
    images, _ = load_digits("train", seed=0)
    s = DigitInpaintingStream(images[:50], top_rows=3, seed=0, dequantize=True)
    clean = DigitInpaintingStream(images[:50], top_rows=3, seed=0)
    x, y = s.next(50)
    xc, yc = clean.next(50)
    assert torch.equal(x, xc)  # inputs untouched
    level = torch.round((yc + 1) * 8)  # grey level 0..16
    assert ((y + 1) * 8.5 >= level).all() and ((y + 1) * 8.5 <= level + 1).all()
    assert y.min() >= -1 and y.max() <= 1 and (y != yc).float().mean() > 0.99
    assert torch.equal(DigitInpaintingStream(images[:50], 3, 0, dequantize=True).next(50)[1], y)  # reproducible


def test_completion_networks_follow_the_contracts():
    from minilib.train import sample_k

    G, D, P = DigitCompletionG(3, z_dim=5), DigitCompletionD(), DigitCompletionP(3)
    x = torch.rand(4, 1, 3, 8) * 2 - 1
    samples, z = sample_k(G, x, 6)
    assert samples.shape == (4, 6, 1, 5, 8) and z.shape == (24, 5)
    assert samples.abs().max() <= 1
    assert (samples[:, 0] - samples[:, 1]).abs().max() > 0  # the noise changes the output
    assert D(x, samples[:, 0]).shape == (4,)
    center, log_disp = P(x)
    assert center.shape == log_disp.shape == (4, 1, 5, 8)
    # gradients reach G's parameters through D
    D(x, samples[:, 0]).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


def test_train_digit_completion_smoke_and_deterministic():
    a = train_digit_completion("gan+l1", steps=20, seed=3)
    b = train_digit_completion("gan+l1", steps=20, seed=3)
    assert a.trainer.step == 20 and a.P is None and not a.G.training
    for pa, pb in zip(a.G.parameters(), b.G.parameters()):
        assert torch.equal(pa, pb)
    assert len(a.trainer.history["g_rec"]) == 2  # logged every 10 steps
    p = train_digit_completion("gan+pmr2", steps=10, seed=0, predictor_steps=20)
    assert isinstance(p.P, DigitCompletionP) and "g_moment" in p.trainer.history
