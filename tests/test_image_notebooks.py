"""Tests of minilib.course.image_notebooks (notebooks 08-10): profile choice, train / resume / reuse of runs,
loading, the paper-figure columns (closed forms on a toy generator), evaluation records, tables."""
from __future__ import annotations

import json
import math
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from minilib.course import image_notebooks as ic
from minilib.experiments.evaluate import _parser as evaluate_parser
from minilib.objectives import get_objective
from minilib.experiments.image_tasks import TASKS, Built
from minilib.experiments.image_train import _parser as train_parser
from minilib.checkpoints import load_checkpoint

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _smoke_env(monkeypatch):
    monkeypatch.setenv("MINILIB_PROFILE", "smoke")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny Pix2Pix smoke runs (baseline, proxy MR) trained for 2 rounds."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MINILIB_PROFILE", "smoke")
    cfg = ic.setup("pix2pix-cityscapes", runs=tmp_path_factory.mktemp("runs"), device="cpu", steps=2, verbose=False)
    out = ic.ensure_runs(cfg, ["gan+l1", "gan+pmr2"])
    mp.undo()
    return cfg, out


# ------------------------------------------------------------------------------------ setup / argv
def test_setup_smoke_profile_and_defaults(tmp_path):
    cfg = ic.setup("srgan-celeba", runs=tmp_path, device="cpu")
    assert (cfg.profile, cfg.reason, cfg.data) == ("smoke", "MINILIB_PROFILE=smoke", None)
    assert cfg.steps == TASKS["srgan-celeba"].family.smoke_steps and cfg.runs == tmp_path / "srgan-celeba" / "smoke"


def test_setup_without_env_on_cpu_says_why(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("MINILIB_PROFILE")
    cfg = ic.setup("glcic-celeba", data=tmp_path, runs=tmp_path, device="cpu")
    assert cfg.profile == "smoke" and "no CUDA" in cfg.reason
    assert "profile: smoke (no CUDA" in capsys.readouterr().out


def test_setup_bad_inputs(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="task"):
        ic.setup("pix2pix-mars")
    with pytest.raises(ValueError, match="steps"):
        ic.setup("srgan-celeba", steps=0)
    monkeypatch.setenv("MINILIB_PROFILE", "full")
    with pytest.raises(ValueError, match="data="):
        ic.setup("srgan-celeba", data=tmp_path / "missing", device="cpu")


def test_course_objectives_follow_the_task():
    assert ic.course_objectives("pix2pix-cityscapes") == {"baseline": "gan+l1", "MR": "gan+mr2", "proxy MR": "gan+pmr2"}
    assert ic.course_objectives("srgan-celeba")["baseline"] == "gan+l2"


def test_train_argv_parses_with_the_train_command(tmp_path):
    cfg = ic.setup("glcic-celeba", runs=tmp_path, device="cpu", steps=7, verbose=False)
    a = train_parser().parse_args(ic.train_argv(cfg, "gan+pmr2", resume=True))
    assert (a.task, a.objective, a.steps, a.resume, a.profile, a.data) == ("glcic-celeba", "gan+pmr2", 7, True, "smoke", None)
    assert a.out == str(tmp_path / "glcic-celeba" / "smoke" / "gan+pmr2")


def test_full_commands_parse_with_their_commands():
    cmds = ic.full_commands("pix2pix-cityscapes")
    assert cmds[0] == "python -m minilib prepare cityscapes --src data/cityscapes_raw --dst data/cityscapes"
    trains = [shlex.split(c)[4:] for c in cmds if " train " in c]
    evals = [shlex.split(c)[4:] for c in cmds if " evaluate " in c]
    assert [train_parser().parse_args(t).objective for t in trains] == ["gan+l1", "gan+mr2", "gan+pmr2"]
    assert all(train_parser().parse_args(t).data == "data/cityscapes" for t in trains)
    assert [evaluate_parser().parse_args(e).run for e in evals] == [train_parser().parse_args(t).out for t in trains]


def test_appendix_b_table_holds_the_task_settings():
    md = ic.appendix_b_markdown("srgan-celeba")
    for text in ("| samples per input K | 24 |", "| D : G updates per round | 1 : 5 |", "2400.0", "1000.0", "AMSGrad"):
        assert text in md
    assert "| 1 : 3 |" in ic.appendix_b_markdown(TASKS["glcic-celeba"])


# ------------------------------------------------------------------------------ train / resume / reuse
def test_ensure_runs_train_then_reuse(runs):
    cfg, out = runs
    assert {n: (r.action, r.step) for n, r in out.items()} == {"gan+l1": ("trained", 2), "gan+pmr2": ("trained", 2)}
    assert (out["gan+pmr2"].path / "predictor.pt").is_file() and not (out["gan+l1"].path / "predictor.pt").exists()
    mtime = (out["gan+l1"].path / "checkpoint.pt").stat().st_mtime_ns
    again = ic.ensure_run(cfg, "gan+l1")
    assert (again.action, again.step) == ("reused", 2)
    assert (out["gan+l1"].path / "checkpoint.pt").stat().st_mtime_ns == mtime


def test_ensure_run_resumes_an_unfinished_run(runs, tmp_path):
    cfg, out = runs
    src = out["gan+l1"].path
    cfg2 = ic.CourseSetup(cfg.task, cfg.profile, cfg.reason, cfg.device, None, tmp_path, 3)
    shutil.copytree(src, tmp_path / "gan+l1")
    r = ic.ensure_run(cfg2, "gan+l1")
    assert (r.action, r.step) == ("resumed", 3)
    hist = json.loads((r.path / "history.json").read_text())
    assert hist["step"][-1] == 3 and len(hist["g_total"]) == 3


def test_ensure_run_refuses_a_folder_of_another_objective(runs, tmp_path):
    cfg, out = runs
    shutil.copytree(out["gan+l1"].path, tmp_path / "gan+mr2")
    cfg2 = ic.CourseSetup(cfg.task, cfg.profile, cfg.reason, cfg.device, None, tmp_path, 2)
    with pytest.raises(ValueError, match="holds a run of"):
        ic.ensure_run(cfg2, "gan+mr2")


def test_load_run_restores_weights_and_predictor(runs):
    _, out = runs
    run = ic.load_run(out["gan+pmr2"].path)
    state = load_checkpoint(out["gan+pmr2"].path / "checkpoint.pt")["G"]
    assert all(torch.equal(v, state[k]) for k, v in run.G.state_dict().items())
    assert run.P is not None and not run.G.training and run.step == 2 and run.history["step"][-1] == 2
    assert ic.load_run(out["gan+l1"].path).P is None
    x, y = run.val_batch(2)
    cols = ic.paper_columns(run, x, y, k=4, n_samples=2)
    assert list(cols) == ["input", "ground truth", "predicted mean", "predicted variance", "sample mean",
                          "sample variance", "sample 1", "sample 2"]
    assert all(c.shape == (2, 3, 32, 32) for c in cols.values())
    assert float(cols["predicted variance"].min()) > 0  # the predictor's dispersion is exp(log_dispersion)
    assert float(ic.sample_spread(run.G, x.float(), k=4).min()) > 0  # the noise reaches the output


def test_load_run_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="run.json"):
        ic.load_run(tmp_path)


# ----------------------------------------------------------------------- closed forms on a toy run
class _AffineNoise(nn.Module):
    """G(x, z) = x + c z with one scalar z per sample: sample statistics are known exactly."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))

    def noise(self, n, device=None, generator=None):
        return torch.randn(n, 1, 1, 1, device=device, generator=generator)

    def forward(self, x, z):
        return x + self.c * z


class _ConstPredictor(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x), torch.full_like(x, math.log(0.04))


def _toy_run(c: float, P: nn.Module | None = None, objective: str = "gan+pmr2") -> ic.LoadedRun:
    to_image = lambda x, y: ((x + 1) / 2, (y + 1) / 2)  # noqa: E731 - slope 1/2, like SRGAN / Pix2Pix targets
    built = Built(_AffineNoise(c), None, P, None, None, None, to_image)
    return ic.LoadedRun(None, TASKS["srgan-celeba"], get_objective(objective), "smoke", 0, built.G, P, built)


def test_sample_spread_closed_form():
    x = torch.zeros(3, 3, 4, 4)
    z = _AffineNoise(0.0).noise(3 * 6, generator=torch.Generator().manual_seed(5))  # sample_k's draw
    spread = ic.sample_spread(_AffineNoise(0.3), x, k=6, seed=5)
    expected = (0.3 * z.view(3, 6)).std(1)
    torch.testing.assert_close(spread, expected)
    assert torch.equal(ic.sample_spread(_AffineNoise(0.0), x, k=6), torch.zeros(3))  # ignores z -> 0
    with pytest.raises(ValueError, match="k must"):
        ic.sample_spread(_AffineNoise(0.3), x, k=1)


def test_paper_columns_closed_form():
    x, y = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    cols = ic.paper_columns(_toy_run(0.2, _ConstPredictor()), x, y, k=5, n_samples=2, seed=3)
    z = _AffineNoise(0.0).noise(10, generator=torch.Generator().manual_seed(3)).view(2, 5)
    var_img = (0.2 * z).var(1) / 4  # unbiased variance in y units, times slope (1/2) squared
    torch.testing.assert_close(cols["sample variance"], var_img.view(2, 1, 1, 1).expand(2, 3, 4, 4))
    torch.testing.assert_close(cols["predicted variance"], torch.full((2, 3, 4, 4), 0.01))  # 0.04 / 4
    torch.testing.assert_close(cols["sample mean"], ((0.2 * z.mean(1) + 1) / 2).view(2, 1, 1, 1).expand(2, 3, 4, 4))
    torch.testing.assert_close(cols["ground truth"], torch.full((2, 3, 4, 4), 0.75))
    torch.testing.assert_close(cols["sample 2"], ((0.2 * z[:, 1] + 1) / 2).view(2, 1, 1, 1).expand(2, 3, 4, 4))
    assert "predicted mean" not in ic.paper_columns(_toy_run(0.2), x, y, k=3, n_samples=1)
    with pytest.raises(ValueError, match="k >= 2"):
        ic.paper_columns(_toy_run(0.2), x, y, k=1)
    with pytest.raises(ValueError, match="same number"):
        ic.paper_columns(_toy_run(0.2), x, y[:1])


def test_a_laplace_run_shows_median_and_mad_columns():
    x, y = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    cols = ic.paper_columns(_toy_run(0.2, _ConstPredictor(), "gan+pmr2-laplace"), x, y, k=5, n_samples=1, seed=3)
    assert list(cols) == ["input", "ground truth", "predicted median", "predicted MAD", "sample median", "sample MAD",
                          "sample 1"]
    z = _AffineNoise(0.0).noise(10, generator=torch.Generator().manual_seed(3)).view(2, 5)
    med = (0.2 * z).median(1).values
    mad = (0.2 * z - med[:, None]).abs().mean(1) / 2  # a MAD has the units of y: times the slope (1/2), not squared
    torch.testing.assert_close(cols["sample MAD"], mad.view(2, 1, 1, 1).expand(2, 3, 4, 4))
    torch.testing.assert_close(cols["sample median"], ((med + 1) / 2).view(2, 1, 1, 1).expand(2, 3, 4, 4))
    fig = ic.plot_paper_figure(cols, "laplace")
    assert "MAD columns: black 0 to white" in fig._suptitle.get_text()
    assert ic.shared_vmax(cols) == max(float(cols["predicted MAD"].max()), float(cols["sample MAD"].max()))
    import matplotlib.pyplot as plt

    plt.close("all")


def test_plot_paper_figure_layout_and_shared_variance_scale():
    x, y = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    cols = ic.paper_columns(_toy_run(0.2, _ConstPredictor()), x, y, k=5, n_samples=1)
    fig = ic.plot_paper_figure(cols, "toy")
    axes = fig.axes
    first_row = axes[:len(cols)]  # row-major: one row per input
    assert len(axes) == 2 * len(cols) and [a.get_title() for a in first_row] == list(cols)
    shown = {a.get_title(): a.images[0].get_array() for a in first_row}
    vmax = max(float(cols["predicted variance"].max()), float(cols["sample variance"].max()))
    assert float(shown["predicted variance"].max()) == pytest.approx(float(cols["predicted variance"].max()) / vmax)
    assert float(max(shown["predicted variance"].max(), shown["sample variance"].max())) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="columns"):
        ic.plot_paper_figure({})
    import matplotlib.pyplot as plt

    plt.close("all")


def _variance_shown(fig, cols):
    """The array drawn in the first row's "sample variance" panel of a plot_paper_figure figure."""
    first_row = fig.axes[:len(cols)]
    return next(a for a in first_row if a.get_title() == "sample variance").images[0].get_array()


def test_shared_vmax_draws_every_method_on_one_scale():
    import matplotlib.pyplot as plt

    x, y = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    ignores_z = ic.paper_columns(_toy_run(1e-3), x, y, k=5, n_samples=1)  # variance ~1e-7: a collapsed method
    uses_z = ic.paper_columns(_toy_run(0.5), x, y, k=5, n_samples=1)
    vmax = ic.shared_vmax(ignores_z, uses_z)
    assert vmax == max(float(c["sample variance"].max()) for c in (ignores_z, uses_z)) == float(uses_z["sample variance"].max())
    # on its own scale the near-zero variance is stretched to white: the misleading bright speckle
    assert float(_variance_shown(ic.plot_paper_figure(ignores_z), ignores_z).max()) == pytest.approx(1.0)
    # on the shared scale it is black, and the method that uses its noise reaches white
    shared = ic.plot_paper_figure(ignores_z, "collapsed", vmax=vmax)
    assert float(_variance_shown(shared, ignores_z).max()) < 1e-4
    assert float(_variance_shown(ic.plot_paper_figure(uses_z, vmax=vmax), uses_z).max()) == pytest.approx(1.0)
    assert f"white {vmax:.2g}" in shared.get_suptitle() and shared.get_suptitle().startswith("collapsed")
    with pytest.raises(ValueError, match="vmax"):
        ic.plot_paper_figure(uses_z, vmax=0.0)
    plt.close("all")


def test_printed_paths_are_relative_to_the_repository(capsys):
    repo = ic.default_dirs("srgan-celeba")[1].parent
    assert ic.shown(repo / "runs" / "x") == str(Path("runs") / "x")
    with ic.repo_relative_output():
        print(f"outputs in {repo / 'runs' / 'y'}")
    assert capsys.readouterr().out == f"outputs in {Path('runs') / 'y'}\n"


# ------------------------------------------------------------------------------------ evaluation
def test_evaluate_runs_writes_and_reuses_records(runs, monkeypatch, capsys):
    from minilib.metrics import diversity as images

    def missing(*a, **k):
        raise images.MissingWeightsError("LPIPS-alex needs weights. On a machine with internet ...")

    monkeypatch.setattr(ic, "load_lpips", missing)
    cfg, out = runs
    recs = ic.evaluate_runs(out, "smoke", num_inputs=2)
    assert "pixel-space" in capsys.readouterr().out
    for name, r in recs.items():
        assert r["protocol"] == "mrgan" and r["profile"] == "smoke" and r["step"] == 2
        assert r["diversity"]["metric"].startswith("pixel") and r["diversity"]["mean"] > 0
        assert json.loads((out[name].path / "eval_mrgan_pixel.json").read_text())["diversity"] == r["diversity"]
    mtime = (out["gan+l1"].path / "eval_mrgan_pixel.json").stat().st_mtime_ns
    again = ic.evaluate_runs(out, "smoke", num_inputs=2)
    assert (out["gan+l1"].path / "eval_mrgan_pixel.json").stat().st_mtime_ns == mtime
    assert again["gan+l1"]["diversity"] == recs["gan+l1"]["diversity"]
    md = ic.results_markdown(recs)
    assert md.count("| smoke (not comparable with the paper) |") == 2 and "gan+pmr2" in md
    with pytest.raises(images.MissingWeightsError):
        ic.evaluate_runs(out, "full")
    with pytest.raises(ValueError, match="metric"):
        ic.evaluate_runs(out, "smoke", metric="fid")


def test_default_dirs_follow_the_checkout_and_env(monkeypatch, tmp_path):
    data, runs = ic.default_dirs("srgan-celeba")
    assert runs.name == "runs" and (runs.parent / "minilib" / "course" / "image_notebooks.py").is_file()
    assert data == runs.parent / "data" / "celeba"
    monkeypatch.setenv("MINILIB_DATA", str(tmp_path))
    assert ic.default_dirs("glcic-celeba")[0] == tmp_path


def test_full_profile_setup_passes_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("MINILIB_PROFILE", "full")
    cfg = ic.setup("pix2pix-cityscapes", data=tmp_path, runs=tmp_path / "runs", device="cpu", verbose=False)
    assert (cfg.profile, cfg.data, cfg.steps) == ("full", str(tmp_path), ic.FULL_STEPS)
    a = train_parser().parse_args(ic.train_argv(cfg, "gan+l1"))
    assert (a.profile, a.data, a.steps, a.no_progress) == ("full", str(tmp_path), 100_000, False)
    assert a.out == str(tmp_path / "runs" / "pix2pix-cityscapes" / "full" / "gan+l1")


def test_plot_histories_labels_whole_rounds():
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    runs = {"gan+l2": SimpleNamespace(history={"step": [1.0, 2.0, 3.0], "d_real": [0.7, 0.6, 0.5], "g_gan": [1, 2, 3]}),
            "gan+mr2": SimpleNamespace(history={"step": [1.0, 2.0, 3.0], "d_real": [0.6, 0.6, 0.4]})}
    fig = ic.plot_histories(runs, keys=("d_real", "g_gan"))
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    shown = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert shown and all(float(t).is_integer() for t in shown)  # rounds are whole numbers: no 1.5 tick
    assert [line.get_label() for line in ax.get_lines()] == ["gan+l2", "gan+mr2"]
    assert ax.get_xlabel() == "training round"
    plt.close(fig)
