"""Task presets (MR-GAN Appendix B), smoke training of every task with a baseline, an MR and a
proxy-MR objective, sample grids, the train CLI (--help, smoke run, NaN stop) and exact resume
after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minilib.data import images as D
from minilib.experiments import image_tasks as T
from minilib.experiments.image_train import train_main
from minilib.experiments.bench import bench_image_main
from minilib.data.fixtures import make_celeba, make_cityscapes, make_maps
from minilib.train import Trainer, sample_k
from minilib.predictor import fit_predictor
from minilib.checkpoints import load_checkpoint

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    t = tmp_path_factory.mktemp("tasks")
    return {"cityscapes": make_cityscapes(t / "cs"), "maps": make_maps(t / "maps"), "celeba": make_celeba(t / "celeba")}


def test_paper_settings():
    want = {  # task: (D/P batch, G batch, K, D:G, baseline, rec weight, MR, pMR)
        "pix2pix-cityscapes": (16, 8, 10, (1, 1), "gan+l1", 100, 10, 10),
        "pix2pix-maps": (16, 8, 10, (1, 1), "gan+l1", 100, 10, 10),
        "srgan-celeba": (32, 8, 24, (1, 5), "gan+l2", 1000, 20, 2400),
        "glcic-celeba": (16, 8, 12, (1, 3), "gan+l2", 100, 100, 1000),
    }
    for name, (bd, bg, k, ratio, base, rw, mr, pmr) in want.items():
        s = T.TASKS[name]
        assert (s.batch_size, s.g_batch_size, s.k, (s.d_steps, s.g_steps), s.baseline) == (bd, bg, k, ratio, base)
        b, m, p = (T.task_objective(s, n) for n in (base, "gan+mr2", "gan+pmr1"))
        assert (b.rec, b.rec_weight, b.k, b.moment) == (base[-2:], rw, k, None)
        assert (m.moment, m.moment_weight, m.moment_order, m.k) == ("mr", mr, 2, k)
        assert (p.moment, p.moment_weight, p.moment_order, p.needs_predictor) == ("pmr", pmr, 1, True)
    assert T.task_objective(T.TASKS["srgan-celeba"], "gan+pmr2", k=4).k == 4


def test_choose_profile(monkeypatch, tmp_path):
    monkeypatch.delenv("MINILIB_PROFILE", raising=False)
    assert T.choose_profile(tmp_path, "cpu")[0] == "smoke"
    assert T.choose_profile(tmp_path / "missing", "cuda") == ("smoke", f"dataset folder {tmp_path / 'missing'} not found (see data/README.md)")
    assert T.choose_profile(tmp_path, "cuda:0")[0] == "full"
    monkeypatch.setenv("MINILIB_PROFILE", "full")
    assert T.choose_profile(None, "cpu") == ("full", "MINILIB_PROFILE=full")
    monkeypatch.setenv("MINILIB_PROFILE", "huge")
    with pytest.raises(ValueError, match="MINILIB_PROFILE"):
        T.choose_profile()


def test_full_profile_config(roots):
    b = T.build(T.TASKS["srgan-celeba"], roots["celeba"], "full")
    c = b.config
    assert (c.batch_size, c.g_batch_size, c.d_steps, c.g_steps) == (32, 8, 1, 5)
    assert (c.lr_g, c.betas, c.weight_decay, c.amsgrad, c.clip_value) == (1e-4, (0.5, 0.999), 1e-4, True, 0.5)
    x, y = b.train[0]
    assert x.shape == (3, 16, 16) and y.shape == (3, 64, 64)
    assert b.G(x[None].repeat(2, 1, 1, 1), b.G.noise(2)).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="profile"):
        T.build(T.TASKS["srgan-celeba"], roots["celeba"], "medium")


CASES = [(task, obj) for task in ("pix2pix-cityscapes", "srgan-celeba", "glcic-celeba")
         for obj in (T.TASKS[task].baseline, "gan+mr2", "gan+pmr2")] + [("pix2pix-maps", "gan+l1")]


@pytest.mark.parametrize("task,obj_name", CASES)
def test_smoke_training(roots, task, obj_name):
    spec = T.TASKS[task]
    obj = T.task_objective(spec, obj_name, k=4)
    b = T.build(spec, roots[spec.dataset], "smoke", objective=obj, progress=False, batch_size=2, g_batch_size=2)
    P = None
    if obj.needs_predictor:
        P = b.P
        res = fit_predictor(P, D.DatasetStream(b.train, 1), D.DatasetStream(b.val, 2, shuffle=False),
                            steps=2, batch_size=2, val_every=1, val_batches=1, config=b.config)
        assert res["best_step"] in (1, 2)
    G0 = {k: v.clone() for k, v in b.G.state_dict().items()}
    D0 = {k: v.clone() for k, v in b.D.state_dict().items()}
    tr = Trainer(b.G, b.D, obj, b.config, P=P)
    hist = tr.fit(D.DatasetStream(b.train, 0), 2)
    assert tr.step == 2 and len(hist["step"]) == 2
    keys = {"g_gan", "g_total", "d_real", "d_fake"} | ({"g_rec"} if obj.rec else {"g_moment"})
    assert keys <= set(hist) and all(all(map(lambda v: v == v, hist[k])) for k in keys)
    assert any(not torch.equal(G0[k], v) for k, v in b.G.state_dict().items())
    assert any(not torch.equal(D0[k], v) for k, v in b.D.state_dict().items())


def test_sample_grid_layout(roots):
    spec = T.TASKS["srgan-celeba"]
    b = T.build(spec, roots["celeba"], "smoke")
    x, y = D.DatasetStream(b.val, 0, shuffle=False).next(2)
    grid = T.sample_grid(b.G, x, y, 3, b.to_image, P=b.P.eval(), n_samples=3, generator=torch.Generator().manual_seed(0))
    h = w = 32
    assert grid.shape == (3, 2 * (h + 2) + 2, 9 * (w + 2) + 2)  # input|truth|P mean|P disp|mean|var|3 samples

    def tile(r, c):
        return grid[:, 2 + r * (h + 2):2 + r * (h + 2) + h, 2 + c * (w + 2):2 + c * (w + 2) + w]

    xi, yi = b.to_image(x, y)
    assert torch.allclose(tile(1, 0), xi[1]) and torch.allclose(tile(0, 1), yi[0])
    b.G.eval()
    with torch.no_grad():
        s, _ = sample_k(b.G, x, 3, torch.Generator().manual_seed(0))
    assert torch.allclose(tile(0, 4), (s.mean(1)[0] + 1) / 2, atol=1e-5)
    assert torch.allclose(tile(1, 6), (s[1, 0] + 1) / 2, atol=1e-5)
    assert torch.allclose(tile(0, 3)[0], tile(0, 3)[1])  # dispersion columns are grey
    assert float(grid.min()) >= 0 and float(grid.max()) <= 1


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        train_main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for word in ("pix2pix-cityscapes", "srgan-celeba", "glcic-celeba", "--resume", "--profile", "data/README.md", "torchrun"):
        assert word in out


def test_cli_smoke_train(tmp_path, roots):
    out = tmp_path / "run"
    argv = ["--task", "glcic-celeba", "--objective", "gan+pmr1", "--data", str(roots["celeba"]), "--out", str(out),
            "--profile", "smoke", "--steps", "2", "--predictor-steps", "2", "--no-progress", "--k", "3"]
    assert train_main(argv) == 0
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["step"] == 2 and {"G", "D", "P", "opt_g", "stream"} <= set(ck)
    assert json.loads((out / "run.json").read_text())["objective"]["moment_weight"] == 1000.0
    assert len(json.loads((out / "history.json").read_text())["g_moment"]) == 2
    assert (out / "samples" / "step_000002.png").is_file() and (out / "predictor.pt").is_file()
    assert train_main(argv) == 2  # refuses to overwrite a run without --resume
    argv[argv.index("--steps") + 1] = "3"
    assert train_main(argv + ["--resume"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    assert train_main(["--task", "srgan-celeba", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x"),
                         "--profile", "smoke"]) == 2


def test_cli_nan_stops_and_keeps_checkpoint(tmp_path, roots, monkeypatch, capsys):
    calls = {"n": 0}
    orig = D.DatasetStream.next

    def poisoned(self, batch_size):
        x, y = orig(self, batch_size)
        if self.dataset.split != "train":
            return x, y
        calls["n"] += 1
        return (x, y * float("nan")) if calls["n"] > 6 else (x, y)  # round 1 = 1 D + 5 G batches

    monkeypatch.setattr(D.DatasetStream, "next", poisoned)
    out = tmp_path / "nan"
    rc = train_main(["--task", "srgan-celeba", "--objective", "gan+l2", "--data", str(roots["celeba"]), "--out", str(out),
                       "--profile", "smoke", "--steps", "4", "--no-progress"])
    assert rc == 1 and "became nan" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 1


def _cli(out, data, steps):
    return [sys.executable, "-m", "minilib", "train", "--task", "srgan-celeba", "--objective", "gan+pmr2",
            "--data", str(data), "--out", str(out), "--profile", "smoke", "--steps", str(steps), "--threads", "1",
            "--checkpoint-every", "1", "--predictor-steps", "3", "--k", "4", "--no-progress"]


@pytest.mark.slow
def test_resume_after_sigkill_is_exact(tmp_path, roots):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    steps = 10
    subprocess.run(_cli(tmp_path / "a", roots["celeba"], steps), check=True, env=env, cwd=ROOT, capture_output=True)
    proc = subprocess.Popen(_cli(tmp_path / "b", roots["celeba"], steps), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = tmp_path / "b" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ck.exists() and load_checkpoint(ck)["step"] >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_at = load_checkpoint(ck)["step"]
    assert 2 <= killed_at < steps
    subprocess.run(_cli(tmp_path / "b", roots["celeba"], steps) + ["--resume"], check=True, env=env, cwd=ROOT,
                   capture_output=True)
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(ck)
    assert a["step"] == b["step"] == steps
    for net in ("G", "D"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after resume from step {killed_at}"
    assert a["history"] == b["history"] and a["stream"] == b["stream"]


def test_bench_image(tmp_path, capsys):
    assert bench_image_main(["--tasks", "srgan-celeba", "--profile", "smoke", "--repeats", "1", "--json", str(tmp_path / "b.json")]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())
    assert [r["objective"] for r in rows] == ["gan+l2", "gan+mr2", "gan+pmr2"]
    assert rows[0]["ratio"] == 1.0 and all(r["ms"] > 0 and r["images_per_s"] > 0 for r in rows)
    assert rows[0]["batch"] == rows[1]["batch"] * rows[1]["k"]  # same number of generated images
    assert "vs base" in capsys.readouterr().out


def test_bench_image_includes_the_procedural_colour_task(tmp_path):
    assert "pix2pix-colours" in T.TASKS and T.TASKS["pix2pix-colours"].fixture is None
    assert bench_image_main(["--tasks", "pix2pix-colours", "--repeats", "1", "--json", str(tmp_path / "b.json")]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())
    assert [r["objective"] for r in rows] == ["gan+l1", "gan+mr2", "gan+pmr2"]
    assert rows[0]["batch"] == rows[1]["batch"] * rows[1]["k"]


def test_a_new_task_is_one_entry(tmp_path, monkeypatch, capsys):
    """Adding an image task of an existing family is one TASKS entry: train, evaluate, the notebooks' loader and
    bench image all accept it with nothing else changed."""
    from minilib.course import image_notebooks as ic
    from minilib.experiments.evaluate import evaluate_main
    from minilib.experiments.runs import load_run

    spec = T.TaskSpec("pix2pix-tiny-maps", T.PIX2PIX, "maps", 4, 2, 3, 1, 1, "l1", 100.0, 10.0, 10.0,
                      "Maps at K = 3 (a test task)", make_maps)
    monkeypatch.setitem(T.TASKS, spec.name, spec)  # the only change
    out = tmp_path / "run"
    assert train_main(["--task", spec.name, "--objective", "gan+pmr2", "--out", str(out), "--profile", "smoke",
                       "--steps", "2", "--no-progress", "--threads", "1"]) == 0
    run = load_run(out)
    assert run.spec is spec and run.objective.k == 3 and run.P is not None and run.step == 2
    assert evaluate_main(["--run", str(out), "--metric", "pixel", "--num-inputs", "2"]) == 0
    assert json.loads((out / "eval_mrgan_pixel.json").read_text())["task"] == spec.name
    assert ic.course_objectives(spec.name)["baseline"] == "gan+l1"
    capsys.readouterr()
    assert bench_image_main(["--tasks", spec.name, "--repeats", "1", "--profile", "smoke"]) == 0
    assert spec.name in capsys.readouterr().out
