"""Tests for minilib.app: the batched engine (several objectives at once) and the widgets (the app, headless)."""
from __future__ import annotations

import html
import io
import time

import pytest
import torch
from torch import nn

from minilib.app.engine import BatchedMLP, MultiConfig, MultiTrainer
from minilib.app.bench import bench_main
from minilib.experiments.toys import toy_adam
from minilib.objectives import get_objective
from minilib.train import TrainConfig, Trainer

torch.set_num_threads(1)


def y_shape(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 1, generator=gen) * 2 - 1
    sign = torch.where(torch.rand(n, 1, generator=gen) < 0.5, -1.0, 1.0)
    return x, torch.where(x < 0, torch.zeros_like(x), sign * x) + 0.05 * torch.randn(n, 1, generator=gen)


# ------------------------------------------------------------------------------------------ BatchedMLP
def test_batched_mlp_equals_separate_linear_stacks():
    net = BatchedMLP(3, 4, 16, 2, 2, torch.Generator().manual_seed(0))
    h = torch.randn(3, 10, 4)
    out = net(h)
    assert out.shape == (3, 10, 2)
    for i in range(3):
        a = h[i]
        for j, (w, b) in enumerate(zip(net.weights, net.biases)):
            a = a @ w[i] + b[i, 0]
            if j < 2:
                a = torch.relu(a)
        assert torch.allclose(out[i], a, atol=1e-6)
    assert torch.equal(net(h[0]), net(h[0].unsqueeze(0).expand(3, 10, 4)))  # shared input
    with pytest.raises(ValueError, match=r"h must be \[N=3"):
        net(torch.randn(2, 10, 4))
    with pytest.raises(ValueError, match="need n >= 1"):
        BatchedMLP(0, 1, 1, 1, 1)


# ------------------------------------------------------------------------------------------ MultiTrainer
class _SlotG(nn.Module):
    """Slot i of a MultiTrainer seen through the generator contract, with a fixed noise tensor."""

    def __init__(self, mt: MultiTrainer, i: int, z: torch.Tensor) -> None:
        super().__init__()
        self.mt, self.i, self.z = mt, i, z
        self.dummy = nn.Parameter(torch.zeros(()))

    def noise(self, n, device=None, generator=None):
        return self.z[:n]

    def forward(self, x, z):
        return self.mt.G(torch.cat([x, z], dim=1))[self.i]


class _SlotD(nn.Module):
    def __init__(self, mt: MultiTrainer, i: int) -> None:
        super().__init__()
        self.mt, self.i = mt, i
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, y):
        return self.mt.discriminate(x, y)[self.i]


class _SlotP(nn.Module):
    def __init__(self, mt: MultiTrainer, i: int) -> None:
        super().__init__()
        self.mt, self.i = mt, i

    def forward(self, x):
        c, d = self.mt.predict(x)
        return c[self.i], d[self.i]


PRESETS = ["gan", "l2", "gan+l1", "gan+l2", "gan+mr1", "gan+mr2", "gan+pmr1", "gan+pmr2", "gan+mr2-laplace",
           "gan+pmr2-laplace", "gan+ms", "gan+l1+ms"]


def test_generator_terms_equal_the_shared_trainer_for_every_preset():
    """Each slot's weighted terms are exactly Trainer.generator_losses on the same networks, data and noise."""
    objs = [get_objective(n, k=4) for n in PRESETS]
    mt = MultiTrainer(objs, y_shape, 1, 1, MultiConfig(hidden=16, predictor_steps=20))
    mt.fit_predictors()
    g = torch.Generator().manual_seed(3)
    x, y = y_shape(6, g)
    z = torch.randn(6 * 4, mt.config.z_dim, generator=g)
    mt.noise = lambda m: z[:m]  # the batched step draws the same z
    batched = mt.generator_terms(x, y)
    for i, o in enumerate(objs):
        tr = Trainer(_SlotG(mt, i, z), _SlotD(mt, i) if o.gan_weight else None, o,
                     TrainConfig(progress=False), P=_SlotP(mt, i) if o.needs_predictor else None)
        ref = tr.generator_losses(x, y)
        assert set(ref) == set(batched[i]), o.name
        for key in ref:
            assert torch.allclose(ref[key], batched[i][key], rtol=1e-5, atol=1e-6), (o.name, key)


def test_slots_are_independent():
    """Slot 0 follows the same trajectory whatever the other slots train (no cross-talk through the batch)."""
    cfg = MultiConfig(train=toy_adam(seed=5), hidden=32)
    a = MultiTrainer([get_objective("gan+mr2"), get_objective("gan+l2", rec_weight=100.0)], y_shape, 1, 1, cfg)
    b = MultiTrainer([get_objective("gan+mr2"), get_objective("gan+ms")], y_shape, 1, 1, cfg)
    a.train(30), b.train(30)
    other = 0.0
    for pa, pb in zip(list(a.G.parameters()) + list(a.D.parameters()), list(b.G.parameters()) + list(b.D.parameters())):
        assert torch.allclose(pa[0], pb[0], atol=1e-5)
        other = max(other, (pa[1] - pb[1]).abs().max().item())
    assert other > 1e-2  # the second slots did train differently
    assert a.history[0]["g_total"] == pytest.approx(b.history[0]["g_total"], rel=1e-4)
    assert len(a.history[1]["g_rec"]) == 30 and "g_ms" in b.history[1]


def test_l2_alone_learns_the_conditional_mean():
    cfg = MultiConfig(train=toy_adam(seed=0, lr_g=3e-3), hidden=64)
    mt = MultiTrainer([get_objective("l2", k=4)], y_shape, 1, 1, cfg)
    mt.train(400)
    x = torch.linspace(0.3, 0.9, 7).unsqueeze(1)
    with torch.no_grad():
        s = mt.sample(x, 16)[0, :, :, 0]  # [7, 16]
    assert s.mean(1).abs().max() < 0.1  # E[y | x > 0] = 0 for the symmetric branches
    assert s.std(1).max() < 0.05  # ℓ2 alone ignores the noise


def test_fit_predictors_learns_conditional_moments():
    mt = MultiTrainer([get_objective("gan+pmr2"), get_objective("gan+pmr2-laplace")], y_shape, 1, 1,
                      MultiConfig(hidden=64, predictor_steps=600))
    best = mt.fit_predictors()
    assert len(best) == 2 and all(b < 0 for b in best)
    x = torch.tensor([[-0.6], [0.6]])
    c, log_d = mt.predict(x)
    assert c.abs().max() < 0.15  # mean and median are 0 on both sides
    var = log_d[0, :, 0].exp()  # Gaussian slot: variance 0.0025 at x < 0, 0.36 + 0.0025 at x = 0.6
    assert var[0] < 0.05 and 0.2 < var[1] < 0.55


def test_multitrainer_bad_input():
    with pytest.raises(ValueError, match="share the same k"):
        MultiTrainer([get_objective("gan", k=4), get_objective("gan", k=8)], y_shape, 1, 1)
    with pytest.raises(TypeError, match="objectives must be"):
        MultiTrainer(["gan"], y_shape, 1, 1)
    with pytest.raises(ValueError, match="lr_g must be"):
        MultiConfig(train=toy_adam(lr_g=0.0))
    with pytest.raises(ValueError, match="x_dim"):
        MultiTrainer([get_objective("gan")], y_shape, 1, 0)
    bad = lambda n, g: (torch.zeros(n, 1), torch.full((n, 1), float("nan")))
    mt = MultiTrainer([get_objective("gan+mr2")], bad, 1, 1)
    with pytest.raises(FloatingPointError, match="gan\\+mr2"):
        mt.train(1)


def test_bench_main_prints_ratio(capsys):
    assert bench_main(["--steps", "20", "--objectives", "gan,gan+l2", "--no-app"]) == 0
    out = capsys.readouterr().out
    assert "| batched | 2 | 20 |" in out and "cost" in out


# ------------------------------------------------------------------------------------------ the app, headless
from minilib.app.widgets import APP_PRESETS, TASKS, LossComparisonApp  # noqa: E402


def _png_size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(png)).size


def test_app_run_pause_step_reset_export(tmp_path):
    app = LossComparisonApp(dataset="y-shape", objectives=["gan", "gan+l2"], steps=400, k=4, hidden=32)
    assert app.state == "idle" and app.trainer.step == 0 and app.frames_drawn == 1
    first = app.image.value
    assert _png_size(first)[0] > 300
    app.run()
    assert app.state == "running"
    deadline = time.time() + 60
    while app.trainer.step < 20 and time.time() < deadline:
        time.sleep(0.05)
    app.pause()  # Pause works while the background thread trains
    assert app.state == "paused"
    paused_at = app.trainer.step
    assert 20 <= paused_at < 400
    time.sleep(0.3)
    assert app.trainer.step == paused_at  # nothing trains while paused
    app.step()
    assert app.trainer.step == paused_at + 1
    assert app.image.value != first and f"step {paused_at + 1}" in app.metrics_html.value
    assert set(app.metrics[0]) == {"W1", "std ratio"} and len(app.metrics) == 2
    app.run(block=True, timeout=120)  # Run continues from where Pause stopped
    assert app.state == "done" and app.trainer.step == 400 and app.frames_drawn >= 3
    assert len(app.trainer.history[0]["g_total"]) == 400
    gif = app.export(tmp_path / "run.gif")
    from PIL import Image

    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames >= 3
        gif_frames = im.n_frames
    _check_mp4_export(app, tmp_path, gif_frames)
    app.reset()
    assert app.trainer.step == 0 and app.state == "idle" and app.snapshots and len(app.snapshots) == 1


def _check_mp4_export(app, tmp_path, n_frames):
    """``export("*.mp4")`` writes H.264 with imageio-ffmpeg (same frames as the GIF); other suffixes are refused."""
    import sys

    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    mp4 = app.export(tmp_path / "run.mp4")
    data = open(mp4, "rb").read()
    assert data[4:8] == b"ftyp" and b"avc1" in data and len(data) < 600_000
    assert imageio_ffmpeg.count_frames_and_secs(mp4)[0] == n_frames
    w, h = app.view.canvas.get_width_height()
    meta = next(imageio_ffmpeg.read_frames(mp4))  # the first yield is the stream's metadata
    assert meta["size"] == (w + w % 2, h + h % 2)  # odd sides are padded for yuv420p
    assert app.export(tmp_path / "run.avi") is None and "must end in .mp4 or .gif" in html.unescape(app.status.value)
    old = sys.modules.pop("imageio_ffmpeg")
    sys.modules["imageio_ffmpeg"] = None  # without the package: a message, no traceback, no file
    try:
        assert app.export(tmp_path / "none.mp4") is None and "imageio-ffmpeg" in html.unescape(app.status.value)
    finally:
        sys.modules["imageio_ffmpeg"] = old
    assert not (tmp_path / "none.mp4").exists()


def test_app_controls_rebuild_objectives_and_bad_settings_give_messages():
    app = LossComparisonApp(dataset="y-shape", objectives=["gan+mr2"], steps=50, k=4, hidden=16)
    app.slots[1].preset.value = "gan+l2"
    app.slots[1].rec_weight.value = 100.0
    app.step()  # settings changed: the app rebuilds with them
    assert [o.name for o in app.trainer.objectives] == ["gan+mr2", "gan+l2*"]
    assert app.trainer.objectives[1].rec_weight == 100.0 and app.trainer.step == 1
    app.k.value = 1  # MR2 needs two samples per input
    app.run()
    assert app.state != "running" and "k must be >= 2" in html.unescape(app.status.value) and app.last_error
    app.k.value = 4
    app.lr_g.value = -1.0
    app.step()
    assert "lr_g must be a positive number" in app.status.value
    app.lr_g.value = 1e-3
    for s in app.slots:
        s.preset.value = "(off)"
    app.reset()
    assert "choose at least one objective" in app.status.value
    with pytest.raises(ValueError, match="dataset must be one of"):
        LossComparisonApp(dataset="moons")
    with pytest.raises(ValueError, match="unknown preset"):
        LossComparisonApp(objectives=["gan+xyz"])


@pytest.mark.parametrize("dataset", TASKS)
def test_app_every_dataset_with_discriminator_heatmap(dataset):
    app = LossComparisonApp(dataset=dataset, objectives=["gan", "gan+pmr1"], steps=20, k=4, hidden=16)
    app.show_d.value = True  # redraws with D's heat-map
    with_d = app.image.value
    app.step(3)
    assert app.trainer.step == 3 and app.snapshots[-1]["heat"] is not None
    assert app.image.value != with_d
    keys = set(app.metrics[0])
    assert keys == ({"W1", "std ratio"} if dataset == "y-shape" else
                    {"covered", "sharp", "kl", "std ratio"} | ({"W1"} if dataset == "mixture-1d" else set()))
    assert app.snapshots[-1]["heat"].shape[0] == 2


def test_app_accepts_objectives_with_custom_weights():
    app = LossComparisonApp(objectives=[get_objective("gan+l2", rec_weight=100.0)], steps=5, k=2, hidden=16)
    assert app.slots[0].rec_weight.value == 100.0 and "gan+l2" in APP_PRESETS
    assert app.trainer.objectives[0].rec_weight == 100.0 and app.trainer.objectives[0].name == "gan+l2*"


def test_view_tells_slots_apart_keys_the_heat_map_and_keeps_ticks_inside():
    from minilib.app.view import ToyTask, ToyView

    task = ToyTask("ring")
    names = ["gan+l2", "gan+l2", "gan+pmr1"]
    trainer = MultiTrainer([get_objective(n).replace(k=2) for n in names], task.sampler, 0, 2,
                           MultiConfig(train=toy_adam(), hidden=16))
    trainer.train(2)
    view = ToyView(task, names, steps=2, dpi=100)
    assert [view.axes[0, i].get_title() for i in range(3)] == ["gan+l2 (run 1)", "gan+l2 (run 2)", "gan+pmr1"]
    legend = [t.get_text() for t in view.fig.legends[0].get_texts()]
    assert legend == ["data", "modes (data)", "generated", "G loss", "D loss"]
    view.render(view.snapshot(trainer))
    assert not view.heat_key.get_visible()
    view.render(view.snapshot(trainer, show_d=True))
    assert view.heat_key.get_visible() and "red = says real" in view.heat_key.get_text()
    assert "gan+l2 (run 2)" in view.metrics_table(view.snapshot(trainer))
    task = ToyTask("y-shape")  # its x axis ends on a tick, x = 1
    view = ToyView(task, ["gan"], steps=2, dpi=100)
    view.render(view.snapshot(MultiTrainer([get_objective("gan").replace(k=2)], task.sampler, 1, 1,
                                           MultiConfig(train=toy_adam(), hidden=16))))
    renderer = view.canvas.get_renderer()
    width = view.fig.bbox.width
    for ax in view.axes[[0, 2]].flat:  # every tick label inside the figure (the right edge clipped "1.00" once)
        lo, hi = ax.get_xlim()
        for tick, label in zip(ax.get_xticks(), ax.get_xticklabels()):
            if not lo <= tick <= hi:  # a locator's tick outside the view is not drawn
                continue
            box = label.get_window_extent(renderer)
            assert box.x0 >= 0 and box.x1 <= width, (label.get_text(), box.x1, width)
