"""What notebooks 08-10 share: pick a profile, train (or reuse) the baseline / MR / proxy-MR runs of
an image task through ``python -m minilib train``, load them, draw MR-GAN-style figures and score
them with the MR-GAN diversity protocol through :mod:`minilib.experiments.evaluate`.

* :func:`setup` — the profile (``$MINILIB_PROFILE``, else full with CUDA and data, else smoke) and
  why, printed; where the runs go; how many rounds to train.
* :func:`ensure_run` / :func:`ensure_runs` — train a run, resume an unfinished one, or reuse a
  finished one (so re-running a notebook is fast). :func:`train_argv` is the exact command line.
* :func:`~minilib.experiments.runs.load_run` — G (and P for proxy MR) with the run's weights, its datasets and history.
* :func:`paper_columns` / :func:`plot_paper_figure` — rows like MR-GAN Figures 1, 3, 5-10:
  input | ground truth | predicted mean | predicted variance | sample mean | sample variance | samples;
  :func:`shared_vmax` puts the dispersion columns (variance or MAD) of several methods on one grey scale.
* :func:`shown` / :func:`repo_relative_output` — paths printed relative to the repository (no machine paths).
* :func:`evaluate_runs` / :func:`results_markdown` — MR-GAN protocol (20 samples per input,
  10 random pairs, mean over inputs): LPIPS when its backbone weights exist; in the smoke profile
  without them a pixel-space ℓ1 diversity, and the records say which metric was used.
* :func:`appendix_b_markdown` / :func:`full_commands` — the paper's settings and the GPU commands.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..checkpoints import atomic_write_json
from ..experiments.evaluate import evaluate_run
from ..experiments.image_tasks import TaskSpec, choose_profile, get_task
from ..experiments.image_train import train_main
from ..experiments.results import format_interval
from ..experiments.runs import LoadedRun, RunFolder, load_run
from ..losses import sample_moments
from ..metrics.diversity import MissingWeightsError, load_lpips
from ..train import TrainConfig, sample_k

__all__ = ["CourseSetup", "default_dirs", "RunInfo", "LoadedRun", "course_objectives", "setup", "train_argv", "ensure_run",
           "ensure_runs", "load_run", "sample_spread", "paper_columns", "shared_vmax", "plot_paper_figure",
           "plot_histories", "evaluate_runs", "results_markdown", "appendix_b_markdown", "full_commands", "shown",
           "repo_relative_output"]


FULL_STEPS = 100_000  # train_main's default for the full profile


def course_objectives(task: str | TaskSpec) -> dict[str, str]:
    """``{"baseline": "gan+l1" | "gan+l2", "MR": "gan+mr2", "proxy MR": "gan+pmr2"}`` for a task:
    the paper's baseline (Pix2Pix ℓ1, SRGAN / GLCIC ℓ2) and the Gaussian first-and-second-moment
    variants (MR-GAN's MCMLE1/2 and MLMM1/2, Eq. 8 and Eq. 6)."""
    return {"baseline": get_task(task).baseline, "MR": "gan+mr2", "proxy MR": "gan+pmr2"}


@dataclass(frozen=True)
class CourseSetup:
    """A notebook's choices: ``profile`` ("smoke"/"full") and ``reason``, ``device``, the dataset
    folder ``data`` (None: smoke fixtures generated inside each run), ``runs`` (root of the run
    folders) and ``steps`` (training rounds per run)."""

    task: str
    profile: str
    reason: str
    device: str
    data: str | None
    runs: Path
    steps: int


def default_dirs(task: str | TaskSpec) -> tuple[Path, Path]:
    """``(data, runs)``: ``$MINILIB_DATA`` or ``data/<dataset>`` and ``runs/`` of the source checkout
    this module lives in (so notebooks run from ``notebooks/`` write to the repository's git-ignored
    ``runs/``); outside a checkout, relative to the working directory."""
    spec = get_task(task)
    repo = Path(__file__).resolve().parents[2]
    base = repo if (repo / "pyproject.toml").is_file() else Path(".")
    return Path(os.environ.get("MINILIB_DATA") or base / "data" / spec.dataset), base / "runs"


def _repo() -> Path | None:
    repo = Path(__file__).resolve().parents[2]
    return repo if (repo / "pyproject.toml").is_file() else None


def shown(path: str | os.PathLike) -> str:
    """``path`` as a reader should see it: relative to the repository root when it lies inside the checkout,
    with the home folder written ``~`` otherwise (notebook outputs carry no machine paths)."""
    p, repo = Path(path), _repo()
    if repo is not None:
        with contextlib.suppress(ValueError):
            return str(p.resolve().relative_to(repo))
    home = str(Path.home())
    return str(p).replace(home, "~", 1) if str(p).startswith(home) else str(p)


class _RelativeWriter:
    """A text stream that writes through to ``stream`` with the repository root (and home folder) removed."""

    def __init__(self, stream: Any, repo: Path | None) -> None:
        self.stream, self.prefix = stream, (str(repo) + os.sep) if repo is not None else None

    def write(self, text: str) -> int:
        if self.prefix:
            text = text.replace(self.prefix, "")
        return self.stream.write(text.replace(str(Path.home()) + os.sep, "~" + os.sep))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def repo_relative_output():
    """Within the block, whatever is printed shows paths inside the repository relative to its root
    (``runs/...``) and the home folder as ``~``: for commands such as ``train_main`` that print the paths they get."""
    old = sys.stdout
    sys.stdout = _RelativeWriter(old, _repo())
    try:
        yield
    finally:
        sys.stdout = old


def setup(task: str, data: str | os.PathLike | None = None, runs: str | os.PathLike | None = None,
          device: str | None = None, steps: int | None = None, verbose: bool = True) -> CourseSetup:
    """Choose the profile (:func:`minilib.experiments.image_tasks.choose_profile`) and print why.

    ``data`` is the prepared dataset folder (e.g. ``data/cityscapes``); the full profile needs it
    and CUDA. Runs go to ``<runs>/<task>/<profile>/<objective>`` (defaults: :func:`default_dirs`). ``steps`` defaults to
    the family's ``smoke_steps`` (smoke) or 100,000 rounds (full, the paper's length)."""
    spec = get_task(task)
    data = default_dirs(spec)[0] if data is None else data
    runs = default_dirs(spec)[1] if runs is None else runs
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    profile, reason = choose_profile(data, device)
    if profile == "full" and (data is None or not Path(data).is_dir()):
        raise ValueError(f"the full profile needs data= the prepared {spec.dataset} folder (see data/README.md), got {data!r}")
    out = CourseSetup(spec.name, profile, reason, device, str(data) if profile == "full" else None,
                      Path(runs) / spec.name / profile,
                      steps or (FULL_STEPS if profile == "full" else spec.family.smoke_steps))
    if verbose:
        print(f"profile: {profile} ({reason}); device {device}; {out.steps} rounds per run; runs in {shown(out.runs)}")
    return out


def train_argv(cfg: CourseSetup, objective: str, resume: bool = False, threads: int | None = 1) -> list[str]:
    """The ``python -m minilib train`` arguments for one run of ``cfg`` (see :func:`full_commands`)."""
    argv = ["--task", cfg.task, "--objective", objective, "--out", str(cfg.runs / objective), "--profile", cfg.profile,
            "--device", cfg.device, "--steps", str(cfg.steps)]
    if cfg.data:
        argv += ["--data", cfg.data]
    if cfg.profile == "smoke":
        argv += ["--no-progress"] + (["--threads", str(threads)] if threads else [])
    return argv + (["--resume"] if resume else [])


@dataclass(frozen=True)
class RunInfo:
    """A run folder after :func:`ensure_run`: ``action`` is "trained", "resumed" or "reused"."""

    objective: str
    path: Path
    step: int
    action: str
    seconds: float


def _checkpoint_step(path: Path) -> int | None:
    return RunFolder(path).step()


def ensure_run(cfg: CourseSetup, objective: str, threads: int | None = 1) -> RunInfo:
    """Make sure ``<cfg.runs>/<objective>`` holds a run trained for ``cfg.steps`` rounds: train it from
    scratch, resume it (``--resume``: exact continuation) if it stopped earlier, or reuse it.

    A folder that holds a different task, profile or objective raises ValueError."""
    path = cfg.runs / objective
    t0 = time.perf_counter()
    step = _checkpoint_step(path)
    if step is not None:
        meta = RunFolder(path).settings()
        got = (meta["task"]["name"], meta["profile"], meta["objective"]["name"].split(":")[-1])
        if got != (cfg.task, cfg.profile, objective):
            raise ValueError(f"{path} holds a run of {got}, expected {(cfg.task, cfg.profile, objective)}; "
                             "choose another runs= folder")
        if step >= cfg.steps:
            return RunInfo(objective, path, step, "reused", time.perf_counter() - t0)
    with repo_relative_output():
        rc = train_main(train_argv(cfg, objective, resume=step is not None, threads=threads))
    if rc != 0:
        raise RuntimeError(f"python -m minilib train {shlex.join(train_argv(cfg, objective))} failed with status {rc}")
    return RunInfo(objective, path, int(_checkpoint_step(path) or 0), "resumed" if step is not None else "trained",
                   time.perf_counter() - t0)


def ensure_runs(cfg: CourseSetup, objectives: Sequence[str] | None = None, threads: int | None = 1) -> dict[str, RunInfo]:
    """:func:`ensure_run` for each objective (default: :func:`course_objectives`' baseline, MR, proxy MR);
    prints one line per run. Returns ``{objective: RunInfo}``."""
    objectives = list(objectives or course_objectives(cfg.task).values())
    out = {}
    for name in objectives:
        info = ensure_run(cfg, name, threads)
        print(f"{name:<10} {info.action:<8} step {info.step:>6} ({info.seconds:.1f} s)  {shown(info.path)}")
        out[name] = info
    return out


@torch.no_grad()
def sample_spread(G: nn.Module, x: torch.Tensor, k: int = 8, seed: int = 0) -> torch.Tensor:
    """How much the output moves with z: per input, the mean over pixels of the standard deviation
    over ``k`` samples. x ``[B, ...]`` -> ``[B]`` (0 for a generator that ignores its noise)."""
    if not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an int >= 2 (a spread needs two samples), got {k!r}")
    was = G.training
    G.eval()
    samples, _ = sample_k(G, x, k, torch.Generator(x.device).manual_seed(seed))  # [B, K, C, H, W]
    G.train(was)
    return samples.float().std(1).flatten(1).mean(1)


@torch.no_grad()
def paper_columns(run: LoadedRun, x: torch.Tensor, y: torch.Tensor, k: int = 20, n_samples: int = 3,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """The columns of MR-GAN's sample figures, each ``[B, 3, H, W]`` in image units [0, 1]:
    "input", "ground truth", ("predicted mean", "predicted variance" with a predictor),
    "sample mean", "sample variance", "sample 1".."sample n". Moments of ``k`` samples follow
    Eq. 7 with the run's distribution; a Laplace run's columns are the median and the MAD ("predicted median",
    "predicted MAD", "sample median", "sample MAD"). Dispersions are in image units (variances scaled by the
    square of the y -> image slope, MADs by the slope), not yet normalised for display."""
    if not isinstance(k, int) or k < 2 or not isinstance(n_samples, int) or not 0 <= n_samples <= k:
        raise ValueError(f"need ints k >= 2 and 0 <= n_samples <= k, got k={k!r}, n_samples={n_samples!r}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same number of inputs, got {x.shape[0]} and {y.shape[0]}")
    dev = next(run.G.parameters()).device
    x = x.to(dev)
    to_image = run.built.to_image
    img = lambda t: to_image(x, t)[1].float().clamp(0, 1)  # noqa: E731 - y-space -> [0, 1]
    # y -> image is affine (identity or (y+1)/2): its slope converts y-space dispersions to image units
    slope = float((to_image(x[:1], torch.ones_like(y[:1]))[1] - to_image(x[:1], torch.zeros_like(y[:1]))[1]).mean())
    gaussian = run.objective.moment_dist == "gaussian"
    power, center_name, disp_name = (2, "mean", "variance") if gaussian else (1, "median", "MAD")
    grey = lambda v: v.float().cpu().mean(1, keepdim=True).expand(-1, 3, -1, -1) * abs(slope) ** power  # noqa: E731
    samples, _ = sample_k(run.G, x, k, torch.Generator(dev).manual_seed(seed))  # [B, K, C, H, W]
    center, disp = sample_moments(samples.float(), run.objective.moment_dist)
    xi, yi = to_image(x, y)
    cols = {"input": xi.float().clamp(0, 1), "ground truth": yi.float().clamp(0, 1)}
    if run.P is not None:
        p_center, p_log = run.P(x)
        cols[f"predicted {center_name}"] = img(p_center).cpu()
        cols[f"predicted {disp_name}"] = grey(p_log.exp())
    cols[f"sample {center_name}"] = img(center).cpu()
    cols[f"sample {disp_name}"] = grey(disp)
    for j in range(n_samples):
        cols[f"sample {j + 1}"] = img(samples[:, j]).cpu()
    return cols


def _is_dispersion(name: str) -> bool:
    return name.endswith(("variance", "MAD"))


def shared_vmax(*columns: dict[str, torch.Tensor]) -> float:
    """The largest value of every dispersion column (predicted and sample variance or MAD) of several
    :func:`paper_columns` results: pass it as ``vmax`` to :func:`plot_paper_figure` so all methods share one grey
    scale."""
    values = [float(c[n].max()) for c in columns for n in c if _is_dispersion(n)]
    return max(values + [1e-12])


def plot_paper_figure(columns: dict[str, torch.Tensor], title: str = "", scale: float = 1.3,
                      vmax: float | None = None) -> Any:
    """A matplotlib figure, one row per input, one column per entry of :func:`paper_columns`.
    Dispersion columns (variance or MAD) are grey from black (0) to white (``vmax``, in image units; values above
    it saturate). ``vmax=None`` uses the largest dispersion of this figure; pass :func:`shared_vmax` of several
    methods to draw them all on one scale (a method that ignores its noise then stays black). The scale is written
    under the title."""
    import matplotlib.pyplot as plt

    if not columns:
        raise ValueError("columns must not be empty (use paper_columns)")
    var_names = [n for n in columns if _is_dispersion(n)]
    if vmax is None:
        vmax = shared_vmax(columns)
    elif not isinstance(vmax, (int, float)) or not vmax > 0:
        raise ValueError(f"vmax must be a positive number, got {vmax!r}")
    names = list(columns)
    rows = columns[names[0]].shape[0]
    fig, axes = plt.subplots(rows, len(names), figsize=(scale * len(names), scale * rows + 0.6), squeeze=False,
                             layout="constrained")
    for j, name in enumerate(names):
        for i in range(rows):
            t = columns[name][i]
            t = (t / vmax).clamp(0, 1) if name in var_names else t
            axes[i, j].imshow(t.permute(1, 2, 0).numpy(), interpolation="nearest")
            axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
        axes[0, j].set_title(name, fontsize=8)
    if var_names:
        kinds = " and ".join(sorted({n.split()[-1] for n in var_names}, reverse=True))
        scale_note = f"{kinds} columns: black 0 to white {vmax:.2g} (pixels in [0, 1])"
        title = f"{title}\n{scale_note}" if title else scale_note
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_histories(runs: dict[str, LoadedRun], keys: Sequence[str] = ("d_real", "d_fake", "g_gan")) -> Any:
    """Training curves (one panel per history key) of several runs, labelled by objective."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 2.8), squeeze=False, layout="constrained")
    for ax, key in zip(axes[0], keys):
        for name, run in runs.items():
            if key in run.history:
                ax.plot(run.history["step"][-len(run.history[key]):], run.history[key], label=name, marker=".")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("training round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss (nats)")
    axes[0, 0].legend(fontsize=7)
    return fig


def evaluate_runs(runs: dict[str, RunInfo] | dict[str, Path], profile: str, num_inputs: int = 300,
                  metric: str = "auto", device: str = "cpu", seed: int = 0) -> dict[str, dict[str, Any]]:
    """Score each run with the MR-GAN protocol through :func:`minilib.experiments.evaluate.evaluate_run` and write
    ``<run>/eval_mrgan_<metric>.json`` (what ``python -m minilib evaluate`` writes; read by
    :mod:`minilib.experiments.results`). A record for the run's current step and ``num_inputs`` is reused.

    ``metric="auto"``: LPIPS (AlexNet, v0.1) if its backbone weights are on this machine; otherwise,
    in the smoke profile only, pixel ℓ1 diversity with a printed note (in full the missing-weights
    error is raised, since the paper's claim is about LPIPS). Each record gets ``"profile"``."""
    if profile not in ("smoke", "full"):
        raise ValueError(f"profile must be 'smoke' or 'full', got {profile!r}")
    if metric not in ("auto", "lpips", "pixel"):
        raise ValueError(f"metric must be 'auto', 'lpips' or 'pixel', got {metric!r}")
    if metric == "auto":
        try:
            load_lpips("alex", "0.1")
            metric = "lpips"
        except MissingWeightsError as e:
            if profile == "full":
                raise
            metric = "pixel"
            print(f"note: {str(e).split(' (expected')[0].split('. On a machine')[0]}, so this smoke run "
                  "scores pixel-space l1 diversity "
                  "instead of LPIPS (minilib.metrics.diversity.load_lpips says how to get the weights).")
    out = {}
    for name, run in runs.items():
        path = run.path if isinstance(run, RunInfo) else Path(run)
        file = path / f"eval_mrgan_{metric}.json"
        step = _checkpoint_step(path)
        rec = json.loads(file.read_text()) if file.is_file() else None
        if rec is None or (rec.get("step"), rec.get("requested_inputs"), rec.get("seed")) != (step, num_inputs, seed):
            rec = {**evaluate_run(path, "mrgan", metric, num_inputs, device=device, seed=seed),
                   "requested_inputs": num_inputs, "seed": seed}
            atomic_write_json(file, rec)
        rec["file"] = str(file)
        out[name] = rec
    return out


def results_markdown(records: dict[str, dict[str, Any]]) -> str:
    """A markdown table of :func:`evaluate_runs` records: objective, profile, rounds, metric, inputs,
    diversity mean and 95% interval. Smoke rows say "smoke" (they are not the paper's numbers)."""
    lines = ["| objective | profile | rounds | metric | inputs | diversity (MR-GAN protocol) | 95% CI |",
             "|---|---|---|---|---|---|---|"]
    for name, r in records.items():
        d = r["diversity"]
        label = r["profile"] + (" (not comparable with the paper)" if r["profile"] == "smoke" else "")
        lines.append(f"| {name} | {label} | {r['step']} | {d['metric']} | {r['num_inputs']} | {d['mean']:.3g} | "
                     f"{format_interval(d, '.3g')} |")
    return "\n".join(lines)


def appendix_b_markdown(task: str | TaskSpec) -> str:
    """MR-GAN Appendix B's settings for a task as a markdown table (from :data:`minilib.experiments.image_tasks.TASKS`
    and :class:`~minilib.train.TrainConfig`'s defaults, so the table is what the code runs)."""
    spec, c = get_task(task), TrainConfig()
    rows = [("networks / data", spec.about), ("batch size: D and predictor / G", f"{spec.batch_size} / {spec.g_batch_size}"),
            ("samples per input K", spec.k), ("D : G updates per round", f"{spec.d_steps} : {spec.g_steps}"),
            (f"baseline {spec.baseline}: reconstruction weight", spec.rec_weight),
            ("MR (gan+mr1/mr2) weight λ", spec.mr_weight), ("proxy MR (gan+pmr1/pmr2) weight λ", spec.pmr_weight),
            ("optimiser", f"Adam{' (AMSGrad)' if c.amsgrad else ''}, betas {tuple(c.betas)}, weight decay {c.weight_decay}"),
            ("learning rates G / D", f"{c.lr_g} / {c.lr_d}"), ("gradient clipping by value", c.clip_value)]
    return "\n".join(["| setting | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])


def full_commands(task: str | TaskSpec, raw: str = "data/{dataset}_raw", data: str = "data/{dataset}",
                  runs: str = "runs") -> list[str]:
    """The shell commands of the full profile on a GPU: prepare the downloaded dataset, train the
    baseline, MR and proxy MR runs (resumable with ``--resume``), evaluate each with the MR-GAN protocol."""
    spec = get_task(task)
    raw, data = raw.format(dataset=spec.dataset), data.format(dataset=spec.dataset)
    cmds = [f"python -m minilib prepare {spec.dataset} --src {raw} --dst {data}"]
    for obj in course_objectives(spec).values():
        out = f"{runs}/{spec.name}/full/{obj}"
        cmds.append(f"python -m minilib train --task {spec.name} --objective {obj} --data {data} --out {out}")
        cmds.append(f"python -m minilib evaluate --run {out} --protocol mrgan --metric lpips")
    return cmds
