"""The interactive loss-comparison app (notebook 04): GAN Lab for conditional toys and these losses.

:class:`LossComparisonApp` puts one to four objectives side by side on a toy with known truth, trains
them at once with :class:`minilib.app.engine.MultiTrainer` in a background thread (so Pause works while
it runs and the notebook stays responsive), and redraws a live view about six times a second: samples
against the truth (y over x with the true conditional for conditional data, a 2-D scatter with the
modes otherwise; optional discriminator heat-map), loss curves and exact metric readouts from
:mod:`minilib.metrics`. A run is exported as an H.264 MP4 (``*.mp4``, the ffmpeg of ``imageio-ffmpeg``) or an
animated GIF (``*.gif``, Pillow).

Everything the buttons do is a method, so the app can be driven headless::

    app = LossComparisonApp(dataset="y-shape", objectives=["gan", "gan+l2", "gan+mr2", "gan+pmr2"])
    app.run(block=True); app.metrics; app.export("run.mp4")
"""
from __future__ import annotations

import functools
import html
import math
import os
import tempfile
import threading
import time
from typing import Any, Callable, Sequence

import ipywidgets as W

from ..data.toys import DATASETS
from ..experiments.toys import toy_adam
from ..objectives import Objective, get_objective, preset_names
from .engine import MultiConfig, MultiTrainer
from .view import ToyTask, ToyView

__all__ = ["LossComparisonApp", "SlotControls", "APP_PRESETS", "TASKS"]


TASKS = list(DATASETS)


APP_PRESETS = [n for n in preset_names() if n != "presgan"]  # PresGAN's entropy term needs HMC: not in the app


OFF = "(off)"


class SlotControls:
    """Controls of one objective slot: a preset and its editable weights."""

    def __init__(self, preset: str | Objective | None) -> None:
        small = W.Layout(width="150px")
        style = {"description_width": "62px"}
        given = preset if isinstance(preset, Objective) else None
        name = given.name.rstrip("*") if given is not None else preset
        if name not in (None, *APP_PRESETS):
            raise ValueError(f"objectives: unknown preset {name!r}; expected one of {APP_PRESETS}")
        self.preset = W.Dropdown(options=[OFF] + APP_PRESETS, value=name or OFF, description="objective", style=style,
                                 layout=W.Layout(width="210px"))
        self.gan_weight = W.FloatText(description="GAN", style=style, layout=small)
        self.rec = W.Dropdown(options=["none", "l1", "l2"], description="rec", style=style, layout=small)
        self.rec_weight = W.FloatText(description="rec λ", style=style, layout=small)
        self.moment = W.Dropdown(options=["none", "mr", "pmr"], description="moment", style=style, layout=small)
        self.order = W.Dropdown(options=[1, 2], value=2, description="order", style=style, layout=small)
        self.dist = W.Dropdown(options=["gaussian", "laplace"], description="dist", style=style, layout=small)
        self.moment_weight = W.FloatText(description="moment λ", style=style, layout=small)
        self.ms_weight = W.FloatText(description="MS λ", style=style, layout=small)
        self.fields = [self.gan_weight, self.rec, self.rec_weight, self.moment, self.order, self.dist,
                       self.moment_weight, self.ms_weight]
        self.preset.observe(lambda change: self.load_preset(), names="value")
        self.load_preset(given)
        self.box = W.VBox([self.preset, *self.fields], layout=W.Layout(border="1px solid #ddd", padding="2px"))

    def load_preset(self, o: Objective | None = None) -> None:
        """Fill the weight fields from the chosen preset (or from the objective ``o``)."""
        on = self.preset.value != OFF
        for f in self.fields:
            f.disabled = not on
        if not on:
            return
        o = o or get_objective(self.preset.value)
        self.gan_weight.value, self.rec.value, self.rec_weight.value = o.gan_weight, o.rec or "none", o.rec_weight
        self.moment.value, self.order.value, self.dist.value = o.moment or "none", o.moment_order, o.moment_dist
        self.moment_weight.value, self.ms_weight.value = o.moment_weight, o.ms_weight

    def objective(self, k: int) -> Objective | None:
        """The slot's :class:`Objective` with K samples per input (``None`` when off); ValueError if invalid."""
        if self.preset.value == OFF:
            return None
        base = get_objective(self.preset.value)
        o = base.replace(gan_weight=float(self.gan_weight.value), rec=None if self.rec.value == "none" else self.rec.value,
                         rec_weight=float(self.rec_weight.value),
                         moment=None if self.moment.value == "none" else self.moment.value,
                         moment_order=int(self.order.value), moment_dist=self.dist.value,
                         moment_weight=float(self.moment_weight.value), ms_weight=float(self.ms_weight.value), k=k)
        edited = o.replace(k=base.k) != base
        return o.replace(name=base.name + ("*" if edited else ""))


def _safe(method: Callable[..., Any]) -> Callable[..., Any]:
    """Button handlers: show any error in the status line instead of a traceback."""

    @functools.wraps(method)
    def wrapper(self: "LossComparisonApp", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the app reports every failure to the user
            self._set_status(f"{type(exc).__name__}: {exc}", error=True)
            return None

    return wrapper


class LossComparisonApp:
    """Side-by-side live training of up to four objectives on a toy (issue 4).

    Args:
        dataset: one of :data:`TASKS` (``"mixture-1d"``, ``"y-shape"``, ``"ring"``, ``"grid"``).
        objectives: up to four preset names (:data:`APP_PRESETS`) or :class:`Objective` s derived from them
            (e.g. ``get_objective("gan+l2", rec_weight=100)``).
        steps: training rounds per run; k: samples per input; lr_g, lr_d: Adam learning rates;
        d_steps, g_steps: the D:G update ratio; seed: data, noise and initialisation seed;
        show_d: draw the discriminators' heat-maps; fps: target view updates per second while running;
        hidden: MLP width (64 keeps the app interactive on a CPU; notebooks 02-03 use 128).
    """

    def __init__(self, dataset: str = "y-shape",
                 objectives: Sequence[str | Objective] = ("gan", "gan+l2", "gan+mr2", "gan+pmr2"),
                 steps: int = 2000, k: int = 8, lr_g: float = 1e-3, lr_d: float = 1e-3, d_steps: int = 1,
                 g_steps: int = 1, seed: int = 0, show_d: bool = False, fps: float = 6.0, hidden: int = 64) -> None:
        if len(objectives) > 4:
            raise ValueError(f"objectives: at most four side by side, got {len(objectives)}")
        if dataset not in TASKS:
            raise ValueError(f"dataset must be one of {list(TASKS)}, got {dataset!r}")
        wide = {"description_width": "90px"}
        self.dataset = W.Dropdown(options=list(TASKS), value=dataset, description="dataset", style=wide)
        self.slots = [SlotControls(objectives[i] if i < len(objectives) else None) for i in range(4)]
        self.k = W.BoundedIntText(value=k, min=1, max=64, description="K samples", style=wide)
        self.lr_g = W.FloatText(value=lr_g, description="lr G", style=wide)
        self.lr_d = W.FloatText(value=lr_d, description="lr D", style=wide)
        self.d_steps = W.BoundedIntText(value=d_steps, min=1, max=10, description="D steps", style=wide)
        self.g_steps = W.BoundedIntText(value=g_steps, min=1, max=10, description="G steps", style=wide)
        self.steps = W.BoundedIntText(value=steps, min=1, max=100_000, description="steps", style=wide)
        self.seed = W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed", style=wide)
        self.show_d = W.Checkbox(value=show_d, description="D heat-map")
        self.buttons = {name: W.Button(description=name, icon=icon, layout=W.Layout(width="90px"))
                        for name, icon in (("Run", "play"), ("Pause", "pause"), ("Step", "step-forward"),
                                           ("Reset", "undo"), ("Export", "download"))}
        self.status = W.HTML(value="")
        self.progress = W.IntProgress(value=0, min=0, max=steps, description="step 0")
        self.metrics_html = W.HTML(value="")
        self.image = W.Image(format="png")
        for w, css in ((self.status, "minilib-status"), (self.progress, "minilib-progress"), (self.image, "minilib-view")):
            w.add_class(css)  # stable hooks for the browser tests
        for name, handler in (("Run", lambda _: self.run()), ("Pause", lambda _: self.pause()),
                              ("Step", lambda _: self.step()), ("Reset", lambda _: self.reset()),
                              ("Export", lambda _: self.export())):
            self.buttons[name].on_click(handler)
        structural = [self.dataset, self.k, self.seed, self.lr_g, self.lr_d, self.d_steps, self.g_steps]
        for w in structural + [f for s in self.slots for f in [s.preset, *s.fields]]:
            w.observe(self._on_settings_change, names="value")
        self.show_d.observe(lambda _: self._redraw(), names="value")
        self.steps.observe(lambda ch: setattr(self.progress, "max", int(ch["new"])), names="value")
        self.fps, self.hidden = fps, hidden
        self.trainer: MultiTrainer | None = None
        self.view: ToyView | None = None
        self.metrics: list[dict[str, float]] = []
        self.snapshots: list[dict[str, Any]] = []
        self.frames_drawn = 0
        self._metrics_time = 0.0
        self.state = "idle"
        self.last_error = ""
        self._dirty = True
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self.widget = self._layout()
        self.reset()

    # ------------------------------------------------------------------------------------------ layout
    def _layout(self) -> W.Widget:
        settings = W.VBox([self.dataset, self.k, self.steps, self.seed, self.lr_g, self.lr_d, self.d_steps,
                           self.g_steps, self.show_d])
        slots = W.HBox([s.box for s in self.slots])
        controls = W.HBox([settings, slots])
        bar = W.HBox([*self.buttons.values(), self.progress])
        return W.VBox([controls, bar, self.status, self.image, self.metrics_html])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------------------------------ state
    def _set_status(self, text: str, error: bool = False) -> None:
        if error:
            self.last_error = text
        colour = "#b00" if error else "#333"
        self.status.value = f"<span style='color:{colour}'>{html.escape(text)}</span>"

    def _on_settings_change(self, _change: dict) -> None:
        self._dirty = True
        if self.state != "running":
            self._set_status("settings changed: Run, Step or Reset starts again with them")

    def objectives(self) -> list[Objective]:
        """The enabled slots' objectives with the current K (ValueError with the reason if a setting is invalid)."""
        objs = [o for o in (s.objective(int(self.k.value)) for s in self.slots) if o is not None]
        if not objs:
            raise ValueError("choose at least one objective (every slot is off)")
        return objs

    def _config(self) -> MultiConfig:
        train = toy_adam(lr_g=float(self.lr_g.value), lr_d=float(self.lr_d.value), d_steps=int(self.d_steps.value),
                         g_steps=int(self.g_steps.value), seed=int(self.seed.value))
        return MultiConfig(train=train, hidden=self.hidden)

    @_safe
    def reset(self) -> None:
        """Stop any run and rebuild the networks from the current settings (step 0)."""
        self._halt()
        self.last_error = ""
        with self._lock:
            task = ToyTask(self.dataset.value)
            objs = self.objectives()
            self.trainer = MultiTrainer(objs, task.sampler, task.x_dim, task.y_dim, self._config())
            self.view = ToyView(task, [o.name for o in objs], int(self.steps.value))
            self.snapshots, self.frames_drawn, self.state, self._dirty = [], 0, "idle", False
            self.metrics, self._metrics_time = [], 0.0
            self.progress.value = 0
        self._draw()
        self._set_status(f"ready: {len(objs)} objective(s) on {task.name}; press Run or Step")

    def _ensure_trainer(self) -> bool:
        if self._dirty or self.trainer is None:
            self.reset()
        return self.trainer is not None and not self._dirty

    # ------------------------------------------------------------------------------------------ running
    @_safe
    def run(self, block: bool = False, timeout: float | None = None) -> None:
        """Train in a background thread until ``steps`` rounds or Pause; ``block=True`` waits for it."""
        if self.state == "running":
            return
        if not self._ensure_trainer():
            return
        total = int(self.steps.value)
        if self.trainer.step >= total:
            self._set_status(f"already at step {self.trainer.step} of {total}: raise 'steps' or press Reset")
            return
        self._stop.clear()
        self.state = "running"
        self._set_status("running…")
        self._thread = threading.Thread(target=self._worker, args=(total,), daemon=True, name="minilib-app")
        self._thread.start()
        if block:
            self.wait(timeout)

    def _worker(self, total: int) -> None:
        period = 1.0 / self.fps
        try:
            next_frame = time.perf_counter() + period
            while self.trainer.step < total and not self._stop.is_set():
                with self._lock:
                    self.trainer.train_step()
                now = time.perf_counter()
                if now >= next_frame:  # frames are scheduled from their start: fps is a rate, not a pause
                    self._draw(metrics_every=1.0)
                    next_frame = max(next_frame + period, now)
            self.state = "done" if self.trainer.step >= total else "paused"
            self._draw()
            self._set_status(f"{self.state} at step {self.trainer.step}")
        except Exception as exc:  # noqa: BLE001 - shown in the app
            self.state = "error"
            self._set_status(f"training stopped: {type(exc).__name__}: {exc}", error=True)

    def _halt(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self._thread = None

    @_safe
    def pause(self) -> None:
        """Stop the background run after the current round (the state is kept: Run continues)."""
        if self.state != "running":
            self._set_status(f"not running (state: {self.state})")
            return
        self._halt()

    @_safe
    def step(self, n: int = 1) -> None:
        """Train ``n`` rounds synchronously (not while running) and redraw."""
        if self.state == "running":
            self._set_status("running: press Pause before stepping")
            return
        if not self._ensure_trainer():
            return
        with self._lock:
            self.trainer.train(n)
        self.state = "paused"
        self._draw()
        self._set_status(f"stepped to {self.trainer.step}")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background run ends; returns True if it did within ``timeout`` seconds."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # ------------------------------------------------------------------------------------------ views
    def _draw(self, metrics_every: float = 0.0) -> None:
        """Snapshot, render and push a frame; metrics are recomputed at most every ``metrics_every`` seconds."""
        with self._lock:
            if self.trainer is None or self.view is None:
                return
            fresh = not self.metrics or time.perf_counter() - self._metrics_time >= metrics_every
            snap = self.view.snapshot(self.trainer, self.show_d.value, None if fresh else self.metrics)
            if fresh:
                self._metrics_time = time.perf_counter()
            self.metrics = snap["metrics"]
            png = self.view.render(snap)
        self.snapshots.append(snap)
        if len(self.snapshots) > 120:  # keep at most ~60 evenly spaced frames for export
            self.snapshots = self.snapshots[::2]
        self.image.value = png
        self.frames_drawn += 1
        self.progress.value = min(self.trainer.step, self.progress.max)
        self.progress.description = f"step {self.trainer.step}"
        self.metrics_html.value = self.view.metrics_table(snap)

    def _redraw(self) -> None:
        if self.state != "running":
            self._draw()

    @_safe
    def export(self, path: str | os.PathLike | None = None, max_frames: int = 60) -> str:
        """Write the run's kept frames (at most ``max_frames``) as an H.264 MP4 (``path`` ending in ``.mp4``) or an
        animated GIF (``.gif``; the default, a temporary file, is a GIF); returns the path."""
        if not self.snapshots:
            raise ValueError("nothing to export yet: press Run or Step first")
        if path is None:
            fd, path = tempfile.mkstemp(prefix="minilib-run-", suffix=".gif")
            os.close(fd)
        suffix = os.path.splitext(str(path))[1].lower()
        writers = {".gif": self.view.write_gif, ".mp4": self.view.write_mp4}
        if suffix not in writers:
            raise ValueError(f"export path must end in .mp4 or .gif, got {str(path)!r}")
        stride = max(1, math.ceil(len(self.snapshots) / max_frames))
        frames = self.snapshots[::stride]
        if frames[-1] is not self.snapshots[-1]:
            frames = frames[:-1] + [self.snapshots[-1]] if len(frames) >= max_frames else frames + [self.snapshots[-1]]
        writers[suffix](frames, str(path))
        self._set_status(f"exported {len(frames)} frames to {path}")
        return str(path)
