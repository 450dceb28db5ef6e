"""What the app shows: a toy as the app sees it (:class:`ToyTask`: training pairs, reference draws, the slots'
samples, the discriminators on a grid, exact metric readouts) and the live figure (:class:`ToyView`: per
objective a sample panel and loss curves, updated by blitting, rendered to PNG frames and exported as GIF)."""
from __future__ import annotations

import html
from collections import Counter
from typing import Any, Sequence

import torch

from ..data.toys import make_dataset
from ..metrics.toy import conditional_w1, mode_coverage, std_ratio, wasserstein_1d
from .engine import MultiTrainer

__all__ = ["ToyTask", "ToyView"]


# --------------------------------------------------------------------------------------------- toy tasks
class ToyTask:
    """A toy of :mod:`minilib.data.toys` as the app sees it: sampler, reference draws, the slots' samples for the
    views and metrics, and the discriminators on a grid.

    ``kind`` is ``"conditional"`` (y over x), ``"2d"`` (unconditional 2-D scatter) or ``"1d"`` (histogram).
    """

    def __init__(self, name: str, view_points: int = 600) -> None:
        self.dataset = make_dataset(name)
        self.name, self.x_dim, self.y_dim = name, self.dataset.x_dim, self.dataset.y_dim
        self.kind = "conditional" if self.x_dim else ("2d" if self.y_dim == 2 else "1d")
        self.view_points = view_points
        if self.kind == "conditional":
            self.extent = ((-1.0, 1.0), (-1.25, 1.25))
        else:
            modes, pad = self.dataset.modes, 4 * self.dataset.std + 0.5
            lo, hi = float(modes.min()) - pad, float(modes.max()) + pad
            self.extent = ((lo, hi), (lo, hi))
        self._gen = torch.Generator()

    def sampler(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pairs ``(x [n, x_dim], y [n, y_dim])``."""
        return self.dataset.sample(n, generator)

    def reference(self, n: int, seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed true draws for the background of the views."""
        return self.dataset.sample(n, torch.Generator().manual_seed(seed))

    def view_x(self) -> torch.Tensor:
        """Inputs of the view: an even grid of x for conditional toys, empty x otherwise ``[M, x_dim]``."""
        if self.kind == "conditional":
            return torch.linspace(*self.extent[0], self.view_points).unsqueeze(1)
        return torch.zeros(self.view_points * (4 if self.kind == "1d" else 1), 0)

    @torch.no_grad()
    def generate(self, trainer: MultiTrainer) -> torch.Tensor:
        """One sample per view input for every slot: ``[N, M, y_dim]`` (seeded: frames differ only by training)."""
        x = self.view_x()
        z = torch.randn(x.shape[0], trainer.config.z_dim, generator=self._gen.manual_seed(7))
        return trainer.sample(x, 1, z)[:, :, 0]

    @torch.no_grad()
    def d_heatmap(self, trainer: MultiTrainer, size: int = 64) -> torch.Tensor:
        """D(x, y) probabilities on a grid: ``[N, size, size]`` (rows: y / y2, columns: x / y1), ``[N, size]`` for 1-D."""
        (a0, a1), (b0, b1) = self.extent
        u = torch.linspace(a0, a1, size)
        if self.kind == "1d":
            return torch.sigmoid(trainer.discriminate(torch.zeros(size, 0), u.unsqueeze(1)))
        v = torch.linspace(b0, b1, size)
        vv, uu = torch.meshgrid(v, u, indexing="ij")  # [size, size]
        if self.kind == "conditional":
            x, y = uu.reshape(-1, 1), vv.reshape(-1, 1)
        else:
            x, y = torch.zeros(size * size, 0), torch.stack([uu.reshape(-1), vv.reshape(-1)], 1)
        return torch.sigmoid(trainer.discriminate(x, y)).reshape(trainer.n, size, size)

    @torch.no_grad()
    def metrics(self, trainer: MultiTrainer, points: int = 24, k: int = 64) -> list[dict[str, float]]:
        """Exact readouts per slot (:mod:`minilib.metrics.toy`), seeded so frames are comparable.

        Conditional: mean per-x W1 to the true p(y|x) over ``points`` inputs, and the std ratio for x > 0.5 (where
        the Y's branches are apart). Mixtures: modes captured, high-quality fraction, KL of the mode histogram,
        the ratio of generated to true std (and W1 for 1-D).
        """
        gen = self._gen.manual_seed(11)
        ds = self.dataset
        if self.kind == "conditional":
            x = torch.linspace(-0.95, 0.95, points).unsqueeze(1)  # [T, 1]
            z = torch.randn(points * k, trainer.config.z_dim, generator=gen)
            samples = trainer.sample(x, k, z)  # [N, T, K, 1]
            truth = ds.sample_conditional(x, 256, gen)  # [T, 256, 1]
            right = x[:, 0] > 0.5
            true_std = ds.conditional_std(x[right])
            return [{"W1": float(conditional_w1(s, truth).mean()),
                     "std ratio": float(std_ratio(s[right], true_std).mean())} for s in samples]
        n = 1000
        x = torch.zeros(n, 0)
        z = torch.randn(n, trainer.config.z_dim, generator=gen)
        samples = trainer.sample(x, 1, z)[:, :, 0]  # [N, n, d]
        truth = ds.sample(4000, gen)[1]  # [4000, d]
        out = []
        for s in samples:
            st = mode_coverage(s, ds.modes, ds.weights, ds.std)
            row = {"covered": float(st["covered"]), "sharp": st["sharp"], "kl": st["kl"],
                   "std ratio": float((s.std(0) / truth.std(0)).mean())}
            if self.kind == "1d":
                row["W1"] = float(wasserstein_1d(s[:, 0], truth[:, 0]))
            out.append(row)
        return out



def _numbered(names: Sequence[str]) -> list[str]:
    """Panel titles: a name that occurs more than once gets "(run 1)", "(run 2)", ... in slot order."""
    total, seen = Counter(names), Counter()
    out = []
    for n in names:
        seen[n] += 1
        out.append(f"{n} (run {seen[n]})" if total[n] > 1 else n)
    return out


class ToyView:
    """The app's figure: per objective a sample panel (top) and loss curves (bottom), updated by blitting.

    Panels: y over x with true samples behind (conditional toys), a 2-D scatter with the true modes, or a
    histogram against the true density (1-D); optionally D(x, y) as a heat-map (a curve for 1-D). Axes,
    ticks and the data are drawn once; a frame redraws only the moving artists (about 10x faster than a
    full matplotlib draw), so the view keeps up with training. ``snapshot(trainer)`` copies what a frame
    needs, so frames can be re-rendered for export; ``render(snapshot)`` returns PNG bytes.
    """

    def __init__(self, task: ToyTask, names: Sequence[str], steps: int = 2000, dpi: int = 64) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.ticker import MaxNLocator

        self.task, self.names, self.dpi, self.steps = task, list(names), dpi, max(int(steps), 1)
        self.titles = _numbered(self.names)  # two slots with one objective (two initialisations): "run 1", "run 2"
        n = len(self.names)
        self.fig = Figure(figsize=(3.2 * n + 0.4, 5.9), dpi=dpi, layout="none")  # its own margins, whatever the style
        self.canvas = FigureCanvasAgg(self.fig)
        # per objective: samples (top), a row for the readouts and legends (so they never cover data), losses
        self.axes = self.fig.subplots(3, n, squeeze=False, gridspec_kw={"height_ratios": [2.2, 0.3, 1]})
        ref_x, ref_y = task.reference(1500)
        self.view_x = task.view_x()[:, 0] if task.kind == "conditional" else None
        (a0, a1), (b0, b1) = task.extent
        self.edges = torch.linspace(a0, a1, 61)
        self.art: list[dict[str, Any]] = []
        for i in range(n):
            top, mid, bottom = self.axes[0, i], self.axes[1, i], self.axes[2, i]
            mid.set_axis_off()
            a: dict[str, Any] = {"top": top, "bottom": bottom}
            if task.kind == "1d":
                grid = torch.linspace(a0, a1, 300)
                dens = task.dataset.log_prob(torch.zeros(300, 0), grid.unsqueeze(1)).exp()
                top.plot(grid, dens, "k", lw=1, label="data density")
                a["fake"] = top.stairs(torch.zeros(60).numpy(), self.edges.numpy(), fill=True, alpha=0.5,
                                       color="tab:red", label="generated")
                top.set_ylim(0, float(dens.max()) * 1.4)
                a["heat"], = top.plot([], [], "g", lw=1.5, label="D(y) (scaled)")
                top.set_xlabel("y", fontsize=8)
                top.set_ylabel("density", fontsize=8)
            else:
                top.scatter(ref_x[:, 0] if task.kind == "conditional" else ref_y[:, 0], ref_y[:, -1], s=2, c="0.7",
                            label="data", zorder=1)
                if task.kind == "2d":
                    top.scatter(task.dataset.modes[:, 0], task.dataset.modes[:, 1], marker="x", c="k", s=25, zorder=3,
                                label="modes (data)")
                a["fake"] = top.scatter([], [], s=3, c="tab:red", label="generated", zorder=2)
                a["heat"] = top.imshow(torch.zeros(2, 2).numpy(), extent=(a0, a1, b0, b1), origin="lower",
                                       aspect="auto", cmap="RdBu_r", vmin=0, vmax=1, alpha=0.45, zorder=0)
                top.set_ylim(b0, b1)
                top.set_xlabel("x" if task.kind == "conditional" else "y₁", fontsize=8)
                top.set_ylabel("y" if task.kind == "conditional" else "y₂", fontsize=8, labelpad=1)
            top.set_xlim(a0, a1)
            top.set_title(self.titles[i], fontsize=10)
            a["text"] = mid.text(0.0, 0.5, "", transform=mid.transAxes, va="center", fontsize=8, family="monospace")
            a["g_line"], = bottom.plot([], [], lw=1, label="G loss")
            a["d_line"], = bottom.plot([], [], lw=1, label="D loss")
            bottom.set_xlim(0, self.steps)
            bottom.set_ylim(0, 1)
            bottom.set_xlabel("training step", fontsize=8)
            bottom.set_ylabel("loss", fontsize=8, labelpad=1)
            for ax in (top, bottom):
                ax.tick_params(labelsize=8)
                ax.xaxis.set_major_locator(MaxNLocator(5, steps=[1, 2, 5, 10]))
            self.art.append(a)
        # one legend for all panels, in the figure's top margin: clear of samples, readouts and curves
        handles = [Line2D([], [], marker="x", color="k", ls="", markersize=2, label=h.get_label())  # x3 in the legend
                   if h.get_label() == "modes (data)" else h for h in self.axes[0, 0].get_legend_handles_labels()[0]]
        handles += [self.art[0]["g_line"], self.art[0]["d_line"]]
        self.fig.legend(handles=handles, fontsize=8, loc="upper right", markerscale=3,
                        ncol=len(handles) if n > 2 else 2, frameon=False, bbox_to_anchor=(0.99, 0.995))
        self.step_text = self.fig.text(0.01, 0.985, "", ha="left", va="top", fontsize=10)
        # the heat-map's key, shown with it (a 1-D toy's D curve has its own legend entry)
        axes_of_d = "x, y" if task.kind == "conditional" else "y₁, y₂"
        heat_key = "" if task.kind == "1d" else f"background: D({axes_of_d}), red = says real, blue = says fake"
        self.heat_key = self.fig.text(0.01, 0.01, heat_key, ha="left", va="bottom", fontsize=8, visible=False)
        width = self.fig.get_figwidth()
        self.fig.subplots_adjust(left=0.55 / width, right=1 - 0.3 / width, top=0.9, bottom=0.1, wspace=0.35, hspace=0.3)
        self.moving = [self.step_text, self.heat_key] + [a[k] for a in self.art
                                                         for k in ("heat", "fake", "text", "g_line", "d_line")]
        for artist in self.moving:
            artist.set_animated(True)
        self.background = None

    def snapshot(self, trainer: MultiTrainer, show_d: bool = False,
                 metrics: list[dict[str, float]] | None = None) -> dict[str, Any]:
        """Everything one frame shows, detached from the trainer (call under the app's lock)."""
        with torch.no_grad():
            samples = self.task.generate(trainer)  # [N, M, y_dim]
            heat = self.task.d_heatmap(trainer) if show_d else None
        metrics = self.task.metrics(trainer) if metrics is None else metrics
        hist = [{key: self._binned(h[key]) for key in ("g_total", "d_loss") if h.get(key)} for h in trainer.history]
        return {"step": trainer.step, "samples": samples, "heat": heat, "history": hist, "metrics": metrics}

    @staticmethod
    def _binned(values: list[float], points: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
        """Means over equal bins so a long history draws fast: (step at bin centre, mean)."""
        width = max(1, len(values) // points)
        used = len(values) - len(values) % width
        t = torch.tensor(values[:used], dtype=torch.float64).view(-1, width)
        return torch.arange(t.shape[0]) * width + (width + 1) / 2, t.mean(1)

    def _update_artists(self, snap: dict[str, Any]) -> bool:
        """Move the animated artists to ``snap``; True if an axis range changed (needs a full redraw)."""
        kind, (a0, a1), (b0, b1) = self.task.kind, *self.task.extent
        rescale = snap["step"] > self.steps
        if rescale:
            self.steps = 2 * snap["step"]
        for i, a in enumerate(self.art):
            s = snap["samples"][i]
            if kind == "1d":
                a["fake"].set_data(torch.histogram(s[:, 0].clamp(a0, a1), self.edges, density=True).hist.numpy())
            else:
                xs = self.view_x if kind == "conditional" else s[:, 0]
                a["fake"].set_offsets(torch.stack([xs, s[:, -1]], 1).numpy())
            heat = None if snap["heat"] is None else snap["heat"][i]
            a["heat"].set_visible(heat is not None)
            if heat is not None and kind == "1d":
                a["heat"].set_data(torch.linspace(a0, a1, heat.shape[0]).numpy(), (heat * a["top"].get_ylim()[1]).numpy())
            elif heat is not None:
                a["heat"].set_data(heat.numpy())
            shown = []
            for key, line in (("g_total", a["g_line"]), ("d_loss", a["d_line"])):
                if key in snap["history"][i]:
                    xs, ys = snap["history"][i][key]
                    line.set_data(xs.numpy(), ys.numpy())
                    shown.append(ys[len(ys) // 10:])  # skip the first transient (MR2 starts huge)
            if shown:  # robust range; change the axis (a full redraw) only when it is clearly off
                ys = torch.cat(shown)
                q0, q1 = torch.quantile(ys, 0.02).item(), torch.quantile(ys, 0.98).item()
                lo, hi = a["bottom"].get_ylim()
                if q0 < lo or q1 > hi or (hi - lo) > 3 * (q1 - q0) + 1e-9:
                    pad = 0.3 * (q1 - q0) + 1e-3
                    a["bottom"].set_ylim(q0 - pad, q1 + pad)
                    rescale = True
            a["bottom"].set_xlim(0, self.steps)
            items = [f"{k:9s} {v:<6.3g}" for k, v in snap["metrics"][i].items()]
            a["text"].set_text("\n".join("  ".join(items[j:j + 2]) for j in range(0, len(items), 2)))
        self.step_text.set_text(f"{self.task.name}: step {snap['step']}")
        self.heat_key.set_visible(snap["heat"] is not None)
        return rescale

    def render(self, snap: dict[str, Any]) -> bytes:
        """PNG bytes of the frame ``snap`` (full draw only when an axis range changed)."""
        import io

        from PIL import Image

        if self._update_artists(snap) or self.background is None:
            self.canvas.draw()  # animated artists are skipped: this is the static background
            self.background = self.canvas.copy_from_bbox(self.fig.bbox)
        self.canvas.restore_region(self.background)
        for artist in self.moving:
            if artist.get_visible():
                self.fig.draw_artist(artist)
        img = Image.frombuffer("RGBA", self.canvas.get_width_height(), self.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="png", compress_level=1)
        return buf.getvalue()

    def metrics_table(self, snap: dict[str, Any]) -> str:
        """An HTML table of the metric readouts (one row per objective)."""
        keys = list(snap["metrics"][0]) if snap["metrics"] else []
        head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
        rows = "".join(
            f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{m[k]:.3g}</td>" for k in keys) + "</tr>"
            for n, m in zip(self.titles, snap["metrics"]))
        return (f"<div class='minilib-metrics'><b>step {snap['step']}</b>"
                f"<table><tr><th>objective</th>{head}</tr>{rows}</table></div>")

    def write_gif(self, frames: list[dict[str, Any]], path: str, fps: int = 8) -> None:
        """Re-render ``frames`` and write them as an animated GIF with Pillow (matplotlib's GIF writer uses the
        same library)."""
        import io

        from PIL import Image

        images = [Image.open(io.BytesIO(self.render(snap))).convert("P", palette=Image.ADAPTIVE) for snap in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)

    def write_mp4(self, frames: list[dict[str, Any]], path: str, fps: int = 8, crf: int = 28) -> None:
        """Re-render ``frames`` and write them as an H.264 MP4 (yuv420p, plays in browsers) with the ffmpeg binary
        of ``imageio-ffmpeg``. Raises RuntimeError without it (export a GIF instead)."""
        import io

        import numpy as np
        from PIL import Image

        try:
            import imageio_ffmpeg
        except ImportError as e:
            raise RuntimeError("MP4 export needs imageio-ffmpeg (pip install imageio-ffmpeg); export a .gif instead") from e
        images = [np.asarray(Image.open(io.BytesIO(self.render(snap))).convert("RGB")) for snap in frames]
        h, w = images[0].shape[:2]
        h2, w2 = h + h % 2, w + w % 2  # H.264 in yuv420p needs even sides: pad one white row / column
        writer = imageio_ffmpeg.write_frames(path, (w2, h2), fps=fps, codec="libx264", macro_block_size=1,
                                             pix_fmt_out="yuv420p", output_params=["-crf", str(int(crf)),
                                                                                   "-movflags", "+faststart"])
        writer.send(None)  # start ffmpeg
        try:
            for img in images:
                if (h2, w2) != (h, w):
                    img = np.pad(img, ((0, h2 - h), (0, w2 - w), (0, 0)), constant_values=255)
                writer.send(np.ascontiguousarray(img))
        finally:
            writer.close()
