"""Stacked digits: the stream, mode labels, mode counting and KL against known answers; a smoke run."""
import math

import pytest
import torch

from minilib.data.digits import StackedDigitStream
from minilib.metrics.digits import NUM_MODES, stacked_mode_stats as mode_stats, stacked_labels, true_label_distribution
from minilib.experiments.presgan_runs import run_stacked

torch.set_num_threads(1)


class _OracleClassifier(torch.nn.Module):
    """Reads the digit off the image's mean grey level (images below are built that way)."""

    def forward(self, x):
        return -(x.mean((1, 2, 3))[:, None] * 10 - torch.arange(10)[None]).abs()


def test_stream_shapes_and_resume():
    s = StackedDigitStream(seed=3)
    x, y = s.next(5)
    assert x.shape == (5, 0) and y.shape == (5, 3, 8, 8) and y.min() >= -1 and y.max() <= 1
    state = s.state_dict()
    a = s.next(4)[1]
    s.load_state_dict(state)
    assert torch.equal(a, s.next(4)[1])
    imgs, labels = s.sample(6)
    # each channel is one digit image of the split, with its own label
    for i in range(6):
        for c in range(3):
            hits = (s.images[:, 0] == imgs[i, c]).all(-1).all(-1)
            assert hits.any() and (s.labels[hits] == labels[i, c]).all()
    with pytest.raises(ValueError, match="n must"):
        s.sample(0)
    assert StackedDigitStream(channels=1).next(2)[1].shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="channels"):
        StackedDigitStream(channels=2)


def test_stacked_labels_combine_channels():
    digits = torch.tensor([[1, 2, 3], [9, 0, 7]])
    images = (digits.float() / 10)[:, :, None, None].expand(2, 3, 8, 8).contiguous()
    assert stacked_labels(_OracleClassifier(), images).tolist() == [123, 907]
    with pytest.raises(ValueError, match="images"):
        stacked_labels(_OracleClassifier(), torch.zeros(2, 1, 8, 8))


def test_true_distribution_and_mode_stats():
    labels = torch.tensor([0, 0, 1, 2] + list(range(3, 10)))
    p = true_label_distribution(labels)
    assert p.shape == (NUM_MODES,) and math.isclose(p.sum().item(), 1.0, rel_tol=1e-9)
    f0 = 2 / 11
    assert math.isclose(p[0].item(), f0**3) and math.isclose(p[12].item(), f0 * (1 / 11) ** 2)
    uniform = torch.full((NUM_MODES,), 1.0 / NUM_MODES, dtype=torch.float64)
    # every mode once: 1000 modes, KL 0 to the uniform truth
    st = mode_stats(torch.arange(NUM_MODES), uniform)
    assert st.modes == NUM_MODES and abs(st.kl) < 1e-12
    # a collapse onto 10 equally used modes: KL = log(1000 / 10)
    st = mode_stats(torch.arange(10).repeat(7), uniform)
    assert st.modes == 10 and math.isclose(st.kl, math.log(100), rel_tol=1e-9) and st.num_samples == 70
    with pytest.raises(ValueError, match="true_dist"):
        mode_stats(torch.arange(3), torch.ones(10))
    with pytest.raises(ValueError, match="labels"):
        mode_stats(torch.tensor([]), uniform)


def test_real_stacked_data_covers_the_modes():
    from minilib.metrics.digits import get_digit_classifier

    s = StackedDigitStream(seed=0)
    images, _ = s.sample(5000)
    st = mode_stats(stacked_labels(get_digit_classifier(0), images), true_label_distribution(s.labels))
    assert st.modes > 980 and st.kl < 0.2  # 5,000 real samples hit nearly every mode


def test_real_stacked_stats_reference_row():
    from minilib.experiments.presgan_runs import real_stacked_stats

    st = real_stacked_stats(4000, split="test", seed=1)
    # held-out digits: the classifier's errors cost a little KL, but nearly every mode is hit
    assert st.num_samples == 4000 and st.modes > 950 and 0 <= st.kl < 0.3
    with pytest.raises(ValueError, match="num_eval"):
        real_stacked_stats(0)


def test_stacked_grid_places_channels_as_colours():
    from minilib.viz import stacked_grid

    images = -torch.ones(5, 3, 8, 8)
    images[3, 1] = 1.0  # image 3: second digit full on -> pure green tile
    g = stacked_grid(images, nrow=2, pad=1)
    assert g.shape == (3 * 9 + 1, 2 * 9 + 1, 3)
    tile = g[1 + 9:1 + 9 + 8, 1 + 9:1 + 9 + 8]  # row 1, column 1
    assert torch.equal(tile[..., 1], torch.ones(8, 8)) and tile[..., [0, 2]].abs().sum() == 0
    assert g[0].eq(1).all() and g[1:9, 1:9].abs().sum() == 0  # white padding, black tile 0
    assert g[-9:-1, -9:-1].eq(1).all()  # the unused 6th slot stays white
    with pytest.raises(ValueError, match="images"):
        stacked_grid(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="nrow"):
        stacked_grid(images, nrow=0)


def test_run_stacked_smoke():
    r = run_stacked("gan+ms", steps=3, num_eval=200, width=4)
    assert r.method == "gan+ms" and 1 <= r.stats.modes <= 200 and r.stats.kl >= 0
    with pytest.raises(ValueError, match="method"):
        run_stacked("vae")


def test_run_ring_smoke():
    from minilib.experiments.presgan_runs import run_ring

    r = run_ring("presgan", steps=2, num_eval=100)
    assert r["samples"].shape == (100, 2) and 0 <= r["modes"]["sharp_modes"] <= r["modes"]["covered"] <= 8
    assert r["sigma"].shape == (2,) and ((r["sigma"] >= 0.01) & (r["sigma"] <= 0.1)).all()
    with pytest.raises(ValueError, match="method"):
        run_ring("vae")
    with pytest.raises(ValueError, match="entropy_weight"):
        run_ring("presgan", entropy_weight=-1.0)
    with pytest.raises(ValueError, match="sigma"):
        run_ring("presgan", sigma=0.001)


def _one_thread_here(fn, specs):
    """``fn(**spec)`` for each spec in this process with one torch thread, as in the workers of map_in_processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [fn(**s) for s in specs]
    finally:
        torch.set_num_threads(threads)


def test_run_rings_in_processes_equals_one_by_one():
    """Two worker processes give exactly the runs of the same specs trained here (seeded, single-threaded)."""
    from minilib.experiments.presgan_runs import run_ring, run_rings

    specs = [dict(method="gan", seed=1, steps=3, num_eval=50), dict(method="presgan", seed=2, steps=3, num_eval=50)]
    here = _one_thread_here(run_ring, specs)
    there = run_rings(specs, workers=2)
    for a, b in zip(here, there):
        assert torch.equal(a["samples"], b["samples"]) and a["modes"] == b["modes"]
    with pytest.raises(ValueError, match="method"):
        run_rings([dict(seed=0)])


def test_digit_likelihoods_smoke():
    from minilib.experiments.presgan_runs import digit_likelihoods

    out = digit_likelihoods(steps=2, vae_steps=2, encoder_steps=2, num_test=5, num_samples=(2, 4))
    assert set(out) == {"gan (λ=0)", "presgan", "vae"}
    for r in out.values():
        est = r["estimates"]
        assert set(est) == {2, 4} and est[4].num_samples == 4 and est[4].per_example.shape == (5,)
        assert math.isfinite(est[4].nats) and 0.01 <= r["sigma"] <= 0.5


def test_run_stacked_many_in_processes_equals_one_by_one():
    """Stacked-digit runs in two worker processes equal the same specs trained here with one thread."""
    from minilib.experiments.presgan_runs import run_stacked, run_stacked_many

    specs = [dict(method="gan", steps=3, seed=1, num_eval=64), dict(method="gan+ms", steps=3, seed=2, num_eval=64)]
    here = _one_thread_here(run_stacked, specs)
    there = run_stacked_many(specs, workers=2)
    for a, b in zip(here, there):
        assert a.method == b.method and a.stats == b.stats
        for pa, pb in zip(a.G.state_dict().values(), b.G.state_dict().values()):
            assert torch.equal(pa, pb)
    with pytest.raises(ValueError, match="method"):
        run_stacked_many([dict(steps=3)])


def test_map_in_processes_starts_the_costliest_first_and_keeps_the_order(tmp_path):
    """``cost``: items start costliest first (ties in their order); results come back in the items' order."""
    from minilib.experiments.parallel import map_in_processes

    seen = []
    items = [("a", 1), ("b", 3), ("c", 1), ("d", 2)]
    out = map_in_processes(lambda it: seen.append(it[0]) or it[0].upper(), items, workers=1, cost=lambda it: it[1])
    assert seen == ["b", "d", "a", "c"] and out == ["A", "B", "C", "D"]
    assert map_in_processes(str, [3, 1, 2], workers=2, cost=lambda v: v) == ["3", "1", "2"]  # in two processes


def _what_a_worker_sees(name):
    """Module level, so a worker process can run it: what the job sees of its process."""
    import os
    import sys

    return os.environ.get(name), os.getcwd(), "torch._dynamo" in sys.modules, os.getpid()


def test_map_in_processes_workers_see_the_callers_environment_and_folder(tmp_path, monkeypatch):
    """The workers are forked from a server started once per process (torch preloaded there): a job still sees the
    environment variables and working folder of the moment it was sent, as a freshly spawned worker would."""
    import os
    import sys

    from minilib.experiments.parallel import map_in_processes

    monkeypatch.delenv("MINILIB_PROBE", raising=False)
    first = map_in_processes(_what_a_worker_sees, ["MINILIB_PROBE"] * 2, workers=2)  # starts the server if needed
    monkeypatch.setenv("MINILIB_PROBE", "set after the server started")
    monkeypatch.chdir(tmp_path)
    later = map_in_processes(_what_a_worker_sees, ["MINILIB_PROBE"] * 2, workers=2)
    assert [v for v, *_ in first] == [None, None]
    assert [(v, cwd) for v, cwd, *_ in later] == [("set after the server started", str(tmp_path))] * 2
    assert os.getpid() not in {pid for *_, pid in first + later}
    if sys.platform.startswith("linux"):  # the server imported torch._dynamo: the workers never pay for it
        assert all(preloaded for _, _, preloaded, _ in first + later)


def test_map_in_processes_spawns_where_it_must_not_fork(tmp_path, monkeypatch):
    """Off Linux (macOS, Windows) the workers are spawned: the same results, the same environment and folder."""
    import os
    import sys

    from minilib.experiments import parallel

    monkeypatch.setattr(sys, "platform", "darwin")
    assert parallel._context(_what_a_worker_sees).get_start_method() == "spawn"
    monkeypatch.setenv("MINILIB_PROBE", "spawned")
    monkeypatch.chdir(tmp_path)
    seen = parallel.map_in_processes(_what_a_worker_sees, ["MINILIB_PROBE"] * 2, workers=2)
    assert [(v, cwd) for v, cwd, *_ in seen] == [("spawned", str(tmp_path))] * 2
    assert os.getpid() not in {pid for *_, pid in seen}
