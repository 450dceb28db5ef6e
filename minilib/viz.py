"""Figures and animations for the toys (notebooks 02-04).

Every drawing function draws into a given matplotlib ``Axes`` and returns a dict of artists; the
matching ``update_*`` function changes only the data of those artists (``set_offsets``,
``set_height``), so live widgets and animations redraw cheaply:

* :func:`plot_samples_2d` / :func:`update_samples_2d` -- generated points over the data, with a
  ``3 sigma`` circle around every true mode (the high-quality region of ``minilib.metrics.toy``).
* :func:`plot_conditional` / :func:`update_conditional` -- y over x with the true conditional density
  ``p(y | x)`` as a background image (the MR-GAN project page's Y-shape pictures).
* :func:`plot_hist_1d` / :func:`update_hist_1d` -- a histogram of 1-D samples over the true density.
* :func:`plot_toy` / :func:`update_toy` -- whichever of the three fits the dataset.
* :func:`plot_losses`, :func:`plot_moments`, :func:`animate` / :func:`animate_panels` (at most ``max_frames`` frames,
  at least 800 px wide with legible fonts); embed them with :func:`minilib.video.animation_html` (re-exported here).
* :func:`stacked_grid` -- stacked digits tiled into one RGB picture (notebook 06b).
* :func:`use_course_style` -- the course's figure style (every notebook's setup cell calls it): 110 dpi, 10 pt
  text, labelled axes, legends that keep clear of the data, titles that do not overlap (constrained layout).
"""
from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes
from matplotlib.patches import Circle, Patch

from .data.toys import MixtureToy, ToyDataset
from .video import MAX_VIDEO_BYTES, animation_html, ffmpeg_exe, offline_jshtml, save_video  # noqa: F401 - re-exported

__all__ = [
    "frame_indices",
    "plot_samples_2d",
    "update_samples_2d",
    "plot_conditional",
    "update_conditional",
    "plot_hist_1d",
    "update_hist_1d",
    "plot_toy",
    "update_toy",
    "plot_losses",
    "plot_moments",
    "animate",
    "animate_panels",
    "stacked_grid",
    "COURSE_STYLE",
    "use_course_style",
    "animation_html",
    "save_video",
    "ffmpeg_exe",
    "offline_jshtml",
]

Artists = dict[str, Any]


def _np(t: Any, name: str, cols: int | None = None) -> np.ndarray:
    a = t.detach().cpu().float().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float32)
    if cols is not None and (a.ndim != 2 or a.shape[1] != cols):
        raise ValueError(f"{name} must have shape [N, {cols}], got {a.shape}")
    return a


def _check_ax(ax: object) -> Axes:
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return ax


def frame_indices(n_available: int, max_frames: int = 60) -> list[int]:
    """At most ``max_frames`` indices spread evenly over ``range(n_available)``, always keeping the last."""
    if not isinstance(n_available, int) or n_available < 0:
        raise ValueError(f"n_available must be a non-negative int, got {n_available!r}")
    if not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"max_frames must be a positive int, got {max_frames!r}")
    if n_available <= max_frames:
        return list(range(n_available))
    return sorted({int(round(i)) for i in np.linspace(0, n_available - 1, max_frames)})


COURSE_STYLE: dict[str, Any] = {
    "figure.dpi": 110, "savefig.dpi": 110, "figure.constrained_layout.use": True,
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 9, "legend.framealpha": 0.85, "legend.loc": "best", "axes.grid": False,
    "image.interpolation": "nearest", "animation.embed_limit": 8.0,
}
"""matplotlib settings of the course's figures (read by :func:`use_course_style`)."""


def use_course_style(**overrides: Any) -> None:
    """Apply :data:`COURSE_STYLE` (and ``overrides``) to matplotlib's rcParams for the rest of the session."""
    plt.rcParams.update({**COURSE_STYLE, **overrides})


# --------------------------------------------------------------------------------------------- 2-D
def plot_samples_2d(ax: Axes, samples: Any, dataset: MixtureToy | None = None, data: Any = None,
                    threshold: float = 3.0, title: str | None = None, color: str = "C3", lim: float | None = None,
                    label: str = "generated", legend: bool = False) -> Artists:
    """Scatter ``samples [N, 2]`` (named ``label``) over optional real ``data [M, 2]``; circles of radius
    ``threshold * std`` mark the modes of ``dataset``. ``legend``: a key to the points and circles (give it to one
    panel of a grid). Returns ``{"samples": PathCollection, ...}``."""
    ax = _check_ax(ax)
    s = _np(samples, "samples", 2)
    out: Artists = {}
    if data is not None:
        d = _np(data, "data", 2)
        out["data"] = ax.scatter(d[:, 0], d[:, 1], s=4, c="0.6", alpha=0.5, lw=0, label="data")
    if dataset is not None:
        if not isinstance(dataset, MixtureToy) or dataset.y_dim != 2:
            raise ValueError("dataset must be a 2-D MixtureToy (ring or grid) to draw its modes")
        for j, m in enumerate(dataset.modes.numpy()):
            ax.add_patch(Circle(m, threshold * dataset.std, fill=False, ec="k", lw=0.8, alpha=0.7,
                                label=f"mode ± {threshold:g} std" if j == 0 else None))
        lim = lim or float(dataset.modes.abs().max()) * 1.4 + 3 * dataset.std
    out["samples"] = ax.scatter(s[:, 0], s[:, 1], s=5, c=color, alpha=0.6, lw=0, label=label)
    if lim:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    out["title"] = ax.set_title(title or "")
    if legend:
        ax.legend(loc="upper right", markerscale=2.5, fontsize=8)
    return out


def update_samples_2d(artists: Artists, samples: Any, title: str | None = None) -> None:
    """Move the generated points of :func:`plot_samples_2d` to ``samples [N, 2]``."""
    artists["samples"].set_offsets(_np(samples, "samples", 2))
    if title is not None:
        artists["title"].set_text(title)


# --------------------------------------------------------------------------------------------- y over x
def _density_image(dataset: ToyDataset, xlim: tuple[float, float], ylim: tuple[float, float], res: int) -> np.ndarray:
    xs = torch.linspace(*xlim, res)
    ys = torch.linspace(*ylim, res)
    xx = xs.repeat_interleave(res).view(-1, 1)  # [res*res, 1], x major
    yy = ys.repeat(res).view(-1, 1)
    logp = dataset.log_prob(xx, yy).view(res, res)  # [x, y]
    p = torch.exp(logp)
    p = p / p.max(1, keepdim=True).values  # each column scaled to its own peak: branches stay visible
    return p.T.numpy()  # [y, x] for imshow


def plot_conditional(ax: Axes, x: Any, y: Any, dataset: ToyDataset | None = None, xlim: tuple[float, float] = (-1.0, 1.0),
                     ylim: tuple[float, float] = (-1.25, 1.25), res: int = 120, title: str | None = None,
                     color: str = "C3", legend: bool = False) -> Artists:
    """Generated pairs ``(x [N, 1], y [N, 1])`` as points over the true conditional density ``p(y | x)`` of
    ``dataset`` (a background image, each column scaled to its maximum). ``legend``: a key to the points and the
    background (give it to one panel of a grid). Returns the artists."""
    ax = _check_ax(ax)
    xa, ya = _np(x, "x", 1), _np(y, "y", 1)
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(f"x and y must have the same N, got {xa.shape[0]} and {ya.shape[0]}")
    out: Artists = {}
    if dataset is not None:
        if dataset.x_dim != 1 or dataset.y_dim != 1:
            raise ValueError(f"dataset must have 1-D x and y for a y-over-x plot, got {dataset.name!r}")
        img = _density_image(dataset, xlim, ylim, res)
        out["density"] = ax.imshow(img, origin="lower", extent=(*xlim, *ylim), aspect="auto", cmap="Greys", vmin=0, vmax=1.6)
    out["samples"] = ax.scatter(xa[:, 0], ya[:, 0], s=4, c=color, alpha=0.6, lw=0, label="generated")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    out["title"] = ax.set_title(title or "")
    if legend:
        handles = [out["samples"]] + ([Patch(color="0.55", label="true p(y | x)")] if dataset is not None else [])
        ax.legend(handles=handles, loc="upper left", markerscale=2.5, fontsize=8)
    return out


def update_conditional(artists: Artists, x: Any, y: Any, title: str | None = None) -> None:
    """Move the points of :func:`plot_conditional` to the pairs ``(x [N, 1], y [N, 1])``."""
    artists["samples"].set_offsets(np.concatenate([_np(x, "x", 1), _np(y, "y", 1)], 1))
    if title is not None:
        artists["title"].set_text(title)


# --------------------------------------------------------------------------------------------- 1-D
def plot_hist_1d(ax: Axes, samples: Any, dataset: ToyDataset | None = None, bins: int = 60,
                 lim: tuple[float, float] = (-3.5, 3.5), title: str | None = None, color: str = "C3") -> Artists:
    """Density histogram of 1-D ``samples [N, 1]`` (fixed ``bins`` over ``lim``) over the true density of an
    unconditional 1-D ``dataset``. Returns the artists (``"bars"``, ``"edges"``)."""
    ax = _check_ax(ax)
    s = _np(samples, "samples", 1)[:, 0]
    edges = np.linspace(lim[0], lim[1], bins + 1)
    h, _ = np.histogram(s, edges, density=False)
    width = edges[1] - edges[0]
    out: Artists = {"edges": edges}
    out["bars"] = ax.bar(edges[:-1], h / max(len(s), 1) / width, width=width, align="edge", color=color, alpha=0.6)
    if dataset is not None:
        if dataset.x_dim != 0 or dataset.y_dim != 1:
            raise ValueError(f"dataset must be unconditional with 1-D y, got {dataset.name!r}")
        t = torch.linspace(lim[0], lim[1], 400).view(-1, 1)
        pdf = torch.exp(dataset.log_prob(torch.zeros(400, 0), t)).numpy()
        ax.plot(t[:, 0].numpy(), pdf, "k", lw=1, label="true density")
    ax.set_xlim(*lim)
    out["title"] = ax.set_title(title or "")
    return out


def update_hist_1d(artists: Artists, samples: Any, title: str | None = None) -> None:
    """Reset the bar heights of :func:`plot_hist_1d` to the histogram of ``samples [N, 1]``."""
    s = _np(samples, "samples", 1)[:, 0]
    edges = artists["edges"]
    h, _ = np.histogram(s, edges)
    for bar, v in zip(artists["bars"], h / max(len(s), 1) / (edges[1] - edges[0])):
        bar.set_height(v)
    if title is not None:
        artists["title"].set_text(title)


# --------------------------------------------------------------------------------------------- dispatch
def plot_toy(ax: Axes, dataset: ToyDataset, x: Any, y: Any, title: str | None = None, **kwargs: Any) -> Artists:
    """The natural picture of generated ``(x, y)`` for ``dataset``: 2-D scatter, y over x, or a 1-D histogram."""
    if not isinstance(dataset, ToyDataset):
        raise TypeError(f"dataset must be a ToyDataset, got {type(dataset).__name__}")
    if dataset.y_dim == 2 and dataset.x_dim == 0:
        out = plot_samples_2d(ax, y, dataset, title=title, **kwargs)
    elif dataset.x_dim == 1 and dataset.y_dim == 1:
        out = plot_conditional(ax, x, y, dataset, title=title, **kwargs)
    elif dataset.x_dim == 0 and dataset.y_dim == 1:
        out = plot_hist_1d(ax, y, dataset, title=title, **kwargs)
    else:
        raise ValueError(f"no picture for x_dim={dataset.x_dim}, y_dim={dataset.y_dim}")
    out["kind"] = "2d" if dataset.y_dim == 2 else ("cond" if dataset.x_dim == 1 else "1d")
    return out


def update_toy(artists: Artists, x: Any, y: Any, title: str | None = None) -> None:
    """Update a :func:`plot_toy` picture with new generated ``(x, y)``."""
    kind = artists["kind"]
    if kind == "2d":
        update_samples_2d(artists, y, title)
    elif kind == "cond":
        update_conditional(artists, x, y, title)
    else:
        update_hist_1d(artists, y, title)


# --------------------------------------------------------------------------------------------- curves
def plot_losses(ax: Axes, history: dict[str, Sequence[float]], keys: Sequence[str] | None = None, smooth: int = 1,
                title: str | None = None) -> list:
    """Loss curves of a trainer ``history`` (``{"step": [...], key: [...]}``) against ``step``; ``smooth`` is a
    moving-average window. Returns the lines."""
    ax = _check_ax(ax)
    if "step" not in history:
        raise ValueError("history must have a 'step' entry (Trainer.history)")
    steps = np.asarray(history["step"], dtype=float)
    keys = list(keys) if keys is not None else [k for k in history if k != "step" and len(history[k]) == len(steps)
                                                and not k.endswith("_step")]
    if not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth must be a positive int, got {smooth!r}")
    lines = []
    for key in keys:
        if key not in history:
            raise ValueError(f"key {key!r} is not in history (has {sorted(history)})")
        v = np.asarray(history[key], dtype=float)
        if smooth > 1 and len(v) >= smooth:
            v = np.convolve(v, np.ones(smooth) / smooth, mode="same")
        lines += ax.plot(steps[: len(v)], v, label=key, lw=1)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return lines


def plot_moments(ax: Axes, xs: Any, center: Any, spread: Any, dataset: ToyDataset | None = None, label: str = "model",
                 color: str = "C0") -> Artists:
    """Centre ``[T, 1]`` and spread (std) ``[T, 1]`` over inputs ``xs [T, 1]`` as a line with a ``+-1 std`` band, next
    to the true conditional mean and std of ``dataset`` (dashed). Returns the artists."""
    ax = _check_ax(ax)
    x, c, s = _np(xs, "xs", 1)[:, 0], _np(center, "center", 1)[:, 0], _np(spread, "spread", 1)[:, 0]
    out: Artists = {"center": ax.plot(x, c, color=color, label=f"{label} mean")[0],
                    "band": ax.fill_between(x, c - s, c + s, color=color, alpha=0.2, label=f"{label} ± std")}
    if dataset is not None:
        xt = torch.as_tensor(x).view(-1, 1)
        m, sd = dataset.conditional_mean(xt)[:, 0].numpy(), dataset.conditional_std(xt)[:, 0].numpy()
        out["true"] = ax.plot(x, m, "k--", lw=1, label="true mean")[0]
        out["true_band"] = ax.plot(x, m + sd, "k:", x, m - sd, "k:", lw=1)
        out["true_band"][0].set_label("true mean ± std")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=8)
    return out


# --------------------------------------------------------------------------------------------- animation
MIN_ANIM_WIDTH_PX = 800  # animations are drawn at least this wide, with fonts of at least ANIM_FONT_PT


ANIM_FONT_PT = 10.0


def _legible(fig: plt.Figure) -> None:
    """Tick labels, axis labels and titles of every axes at readable sizes (>= ANIM_FONT_PT)."""
    for ax in fig.axes:
        ax.tick_params(labelsize=ANIM_FONT_PT)
        ax.xaxis.label.set_fontsize(ANIM_FONT_PT + 1)
        ax.yaxis.label.set_fontsize(ANIM_FONT_PT + 1)
        ax.title.set_fontsize(ANIM_FONT_PT + 2)


def animate(frames: Sequence[dict], dataset: ToyDataset, max_frames: int = 60, interval: int = 120,
            figsize: tuple[float, float] = (6.4, 5.6), dpi: int = 125, title: str = "") -> FuncAnimation:
    """A training animation from ``frames`` (dicts with ``"step"``, ``"x" [N, x_dim]``, ``"y" [N, y_dim]``), keeping at
    most ``max_frames`` of them (:func:`frame_indices`). The figure is at least 800 px wide (the width is raised if
    ``figsize * dpi`` is smaller) with fonts of 10 pt or more, and is closed. Embed with :func:`animation_html`."""
    if not frames:
        raise ValueError("frames must be a non-empty sequence of {'step', 'x', 'y'} dicts")
    keep = [frames[i] for i in frame_indices(len(frames), max_frames)]
    w, h = figsize
    if w * dpi < MIN_ANIM_WIDTH_PX:
        w, h = MIN_ANIM_WIDTH_PX / dpi, h * MIN_ANIM_WIDTH_PX / (w * dpi)
    fig, ax = plt.subplots(figsize=(w, h), dpi=dpi, layout="tight")
    f0 = keep[0]
    art = plot_toy(ax, dataset, f0["x"], f0["y"], title=f"{title} step {int(f0['step'])}")
    _legible(fig)
    _freeze_layout(fig)

    def draw(i: int) -> list:
        f = keep[i]
        update_toy(art, f["x"], f["y"], title=f"{title} step {int(f['step'])}")
        return [art["samples"]] if "samples" in art else list(art["bars"])

    anim = FuncAnimation(fig, draw, frames=len(keep), interval=interval, blit=False)
    plt.close(fig)
    return anim


def _freeze_layout(fig: Any) -> None:
    """Lay the figure out once (tight) and keep it: frames then do not shift as their titles change."""
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine("none")


def animate_panels(panels: dict[str, Sequence[dict]], dataset: ToyDataset, max_frames: int = 60, interval: int = 150,
                   panel_size: float = 3.2, dpi: int = 100) -> FuncAnimation:
    """Several runs side by side in one animation: ``panels`` maps a title to that run's frames (as in :func:`animate`,
    same length). At most ``max_frames`` frames are kept; panels grow so the figure is at least 800 px wide; fonts are
    10 pt or more; the figure is closed. Embed with :func:`animation_html`."""
    if not panels or not all(len(f) for f in panels.values()):
        raise ValueError("panels must map titles to non-empty frame lists")
    n = min(len(f) for f in panels.values())
    keep = frame_indices(n, max_frames)
    size = max(panel_size, MIN_ANIM_WIDTH_PX / dpi / len(panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), dpi=dpi, squeeze=False, layout="tight")
    arts = []
    for ax, (title, frames) in zip(axes[0], panels.items()):
        f = frames[keep[0]]
        arts.append((title, frames, plot_toy(ax, dataset, f["x"], f["y"], title=f"{title}: step {int(f['step'])}")))
    _legible(fig)
    _freeze_layout(fig)

    def draw(i: int) -> list:
        for title, frames, art in arts:
            f = frames[keep[i]]
            update_toy(art, f["x"], f["y"], title=f"{title}: step {int(f['step'])}")
        return []

    anim = FuncAnimation(fig, draw, frames=len(keep), interval=interval, blit=False)
    plt.close(fig)
    return anim


def stacked_grid(images: torch.Tensor, nrow: int = 8, pad: int = 1) -> torch.Tensor:
    """Tile stacked digits ``[N, 3, 8, 8]`` in [-1, 1] into one RGB picture ``[H, W, 3]`` in [0, 1] for ``imshow``.

    Channel c (the c-th digit) is shown as colour c (red, green, blue); ``nrow`` images per row, ``pad`` pixels
    of white between them.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape [N, 3, H, W], got {getattr(images, 'shape', type(images).__name__)}")
    if not isinstance(nrow, int) or nrow < 1 or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"nrow must be a positive int and pad a non-negative int, got {nrow!r}, {pad!r}")
    n, _, h, w = images.shape
    rows = -(-n // nrow)
    out = torch.ones(3, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    tiles = ((images.detach().float().cpu() + 1) / 2).clamp(0, 1)
    for i in range(n):
        r, c = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        out[:, top:top + h, left:left + w] = tiles[i]
    return out.permute(1, 2, 0)
