"""minilib.viz: pictures draw the given data into the given Axes; updates move exactly those artists."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minilib import viz  # noqa: E402
from minilib.data.toys import YShape, mixture_1d, ring  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_frame_indices_bounded_and_keep_ends():
    assert viz.frame_indices(10, 60) == list(range(10))
    idx = viz.frame_indices(1000, 60)
    assert len(idx) <= 60 and idx[0] == 0 and idx[-1] == 999 and idx == sorted(idx)
    with pytest.raises(ValueError, match="max_frames"):
        viz.frame_indices(5, 0)


def test_samples_2d_draws_modes_and_updates(ax):
    r = ring()
    s = torch.randn(50, 2)
    art = viz.plot_samples_2d(ax, s, r, data=r.sample(30)[1], title="t")
    assert len(ax.patches) == 8  # one 3-sigma circle per mode
    assert np.allclose(ax.patches[0].get_radius(), 3 * r.std)
    assert np.allclose(art["samples"].get_offsets(), s.numpy())
    new = torch.zeros(50, 2)
    viz.update_samples_2d(art, new, title="step 5")
    assert np.allclose(art["samples"].get_offsets(), 0) and art["title"].get_text() == "step 5"
    with pytest.raises(ValueError, match="samples must have shape"):
        viz.plot_samples_2d(ax, torch.zeros(5, 3))
    with pytest.raises(TypeError, match="ax"):
        viz.plot_samples_2d("ax", s)


def test_keys_name_what_each_mark_is(ax):
    r = ring()
    viz.plot_samples_2d(ax, torch.randn(50, 2), r, data=r.sample(30)[1], label="predictor's Gaussian", legend=True)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["data", "mode ± 3 std", "predictor's Gaussian"]
    fig2, (a1, a2, a3) = plt.subplots(1, 3)
    viz.plot_samples_2d(a1, torch.randn(50, 2), r)  # no key unless asked: panels of a grid share one
    assert a1.get_legend() is None
    viz.plot_conditional(a2, torch.zeros(5, 1), torch.zeros(5, 1), YShape(), res=20, legend=True)
    assert [t.get_text() for t in a2.get_legend().get_texts()] == ["generated", "true p(y | x)"]
    viz.plot_moments(a3, torch.linspace(-1, 1, 5).view(-1, 1), torch.zeros(5, 1), torch.ones(5, 1), YShape())
    assert a3.get_ylabel() == "y" and "true mean ± std" in [t.get_text() for t in a3.get_legend().get_texts()]
    plt.close(fig2)


def test_conditional_density_background(ax):
    ds = YShape()
    x = torch.rand(40, 1) * 2 - 1
    art = viz.plot_conditional(ax, x, torch.zeros(40, 1), ds, res=50)
    img = np.asarray(art["density"].get_array())
    assert img.shape == (50, 50)
    # the column at x ~ 0.75 peaks at y ~ +-0.75 (two branches), not at the conditional mean 0
    xs = np.linspace(-1, 1, 50)
    ys = np.linspace(-1.25, 1.25, 50)
    col = img[:, np.argmin(abs(xs - 0.75))]
    assert abs(abs(ys[np.argmax(col)]) - 0.75) < 0.06 and col[np.argmin(abs(ys))] < 1e-3
    viz.update_conditional(art, x, torch.ones(40, 1))
    assert np.allclose(art["samples"].get_offsets()[:, 1], 1.0)


def test_hist_1d_heights_are_a_density(ax):
    ds = mixture_1d()
    y = ds.sample(4000, torch.Generator().manual_seed(0))[1]
    art = viz.plot_hist_1d(ax, y, ds, bins=40)
    heights = np.array([b.get_height() for b in art["bars"]])
    width = art["edges"][1] - art["edges"][0]
    assert abs(heights.sum() * width - 1) < 0.01
    viz.update_hist_1d(art, torch.full((10, 1), 0.01))
    heights = np.array([b.get_height() for b in art["bars"]])
    assert np.isclose(heights.max() * width, 1.0) and (heights > 0).sum() == 1


def test_plot_toy_dispatch_losses_moments_and_animation(ax):
    art = viz.plot_toy(ax, ring(), torch.zeros(5, 0), torch.randn(5, 2))
    assert art["kind"] == "2d"
    fig2, ax2 = plt.subplots()
    lines = viz.plot_losses(ax2, {"step": [1, 2, 3], "g_total": [3.0, 2.0, 1.0], "d_real": [0.5, 0.4, 0.3]})
    assert len(lines) == 2 and np.allclose(lines[0].get_ydata(), [3, 2, 1])
    with pytest.raises(ValueError, match="step"):
        viz.plot_losses(ax2, {"g": [1.0]})
    xs = torch.linspace(-1, 1, 11).view(-1, 1)
    m = viz.plot_moments(ax2, xs, torch.zeros(11, 1), torch.ones(11, 1), YShape())
    assert np.allclose(m["true"].get_ydata(), 0)
    plt.close(fig2)
    ds = YShape()
    frames = [{"step": i, "x": torch.rand(20, 1), "y": torch.randn(20, 1)} for i in range(100)]
    anim = viz.animate(frames, ds, max_frames=7)
    assert anim._save_count == 7 or len(list(anim.new_frame_seq())) == 7
    html = anim.to_jshtml()
    assert "<script" in html and html.count("frames[") >= 7


def test_animate_panels_moves_every_panel():
    ds = ring()
    frames = [{"step": i, "x": torch.zeros(10, 0), "y": torch.full((10, 2), float(i))} for i in range(5)]
    anim = viz.animate_panels({"a": frames, "b": frames}, ds, max_frames=3)
    anim._func(2)  # draw the last kept frame (index 4 of 5)
    anim._draw_was_started = True  # drawn by hand: no "deleted without rendering" warning
    fig = anim._fig
    offsets = [ax.collections[-1].get_offsets() for ax in fig.axes]
    assert all(np.allclose(o, 4.0) for o in offsets)
    assert fig.axes[1].get_title() == "b: step 4"
    with pytest.raises(ValueError, match="panels"):
        viz.animate_panels({}, ds)


# --------------------------------------------------------------------------------------------- readable, offline video
def _y_frames(n_frames, n=600, seed=0):
    """Random points every frame: the hardest case for the video encoder (nothing stays put)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 2 - 1
    return [{"step": 100 * t, "x": x, "y": torch.randn(n, 1, generator=g) * 0.6} for t in range(n_frames)]


def _texts(fig):
    from matplotlib.text import Text

    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


@pytest.mark.parametrize("n_panels", [1, 2, 4])
def test_animations_are_drawn_wide_with_legible_fonts(n_panels):
    ds = YShape()
    frames = _y_frames(3, n=20)
    anims = [viz.animate_panels({f"run {i}": frames for i in range(n_panels)}, ds, max_frames=3)]
    if n_panels == 1:
        anims.append(viz.animate(frames, ds, max_frames=3, title="gan"))
        anims.append(viz.animate(frames, ds, figsize=(3, 3), dpi=100))  # a small request is widened
    for anim in anims:
        fig = anim._fig
        assert fig.dpi >= 100 and fig.get_figwidth() * fig.dpi >= 800 - 1e-6
        texts = _texts(fig)
        assert texts and min(t.get_fontsize() for t in texts) >= 9, sorted({t.get_fontsize() for t in texts})
        anim._draw_was_started = True  # inspected, never played: no "deleted without rendering" warning


def test_animation_html_embeds_a_small_h264_video(tmp_path):
    """Notebook 02's biggest animation (4 panels, 31 frames, 600 points) as a <video>, under 600 KB."""
    import base64
    import re

    if viz.ffmpeg_exe() is None:
        pytest.skip("imageio-ffmpeg is not installed")
    anim = viz.animate_panels({o: _y_frames(31) for o in ("gan", "l2", "gan+l2", "gan+mr2")}, YShape(), max_frames=31)
    html = viz.animation_html(anim)
    assert html.startswith("<video") and "<script" not in html
    for attr in ("controls", "autoplay", "loop", "muted", "playsinline"):
        assert re.search(rf"<video[^>]*\b{attr}\b", html), attr
    assert int(re.search(r'width="(\d+)"', html).group(1)) >= 800
    mp4 = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", html).group(1))
    print(f"4-panel animation: {len(mp4)} bytes of MP4")
    assert mp4[4:8] == b"ftyp" and b"avc1" in mp4  # an MP4 with H.264 video
    assert len(mp4) <= viz.MAX_VIDEO_BYTES == 600_000


def test_save_video_and_size_cap(tmp_path):
    if viz.ffmpeg_exe() is None:
        pytest.skip("imageio-ffmpeg is not installed")
    anim = viz.animate(_y_frames(4, n=200), YShape(), max_frames=4)
    path = viz.save_video(anim, tmp_path / "a.mp4", fps=4)
    data = path.read_bytes()
    assert data[4:8] == b"ftyp" and b"avc1" in data
    # a cap that cannot be met raises the CRF step by step, then warns
    with pytest.warns(UserWarning, match="max_bytes"):
        small = viz.save_video(anim, tmp_path / "b.mp4", fps=4, max_bytes=100)
    assert small.stat().st_size < len(data)
    with pytest.raises(ValueError, match="fps"):
        viz.save_video(anim, tmp_path / "c.mp4", fps=0)


def test_animation_html_falls_back_to_jshtml_without_ffmpeg(monkeypatch):
    import sys

    anim = viz.animate(_y_frames(3, n=20), YShape(), max_frames=3)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # "pip uninstall imageio-ffmpeg"
    assert viz.ffmpeg_exe() is None
    html = viz.animation_html(anim)
    assert "<video" not in html and "<script" in html and html.count("frames[") >= 3
    assert "https://" not in html and "font-awesome" not in html and ".fa-play:before" in html  # plays offline
    monkeypatch.delitem(sys.modules, "imageio_ffmpeg")
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

    def no_binary():
        raise RuntimeError("No ffmpeg exe could be found")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_binary)  # the package without a binary
    assert viz.ffmpeg_exe() is None and "<video" not in viz.animation_html(anim)
    with pytest.raises(RuntimeError, match="imageio-ffmpeg"):
        viz.save_video(anim, "never.mp4")
