"""The commands refuse bad input before anything is written, and a refused or interrupted run loses nothing:
flags (positive ints, devices, output folders), resume with other settings, evaluate's objective and output,
fixtures and temporary files left by a kill, predictor distributions, data errors in the middle of a run, and
``python -m minilib`` printing a MinilibError in two lines (exit 2) instead of a traceback."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from minilib import errors
from minilib.__main__ import main
from minilib.checkpoints import load_checkpoint
from minilib.data.fixtures import make_celeba
from minilib.experiments import image_tasks as T
from minilib.experiments.evaluate import evaluate_main
from minilib.experiments.image_train import train_main
from minilib.experiments.runs import load_run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    return make_celeba(tmp_path_factory.mktemp("data") / "celeba")


def _argv(out, data, *extra, objective="gan+pmr2", steps=2):
    return ["--task", "srgan-celeba", "--objective", objective, "--data", str(data), "--out", str(out), "--profile",
            "smoke", "--steps", str(steps), "--predictor-steps", "2", "--k", "4", "--no-progress", "--threads", "1",
            *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, celeba):
    """A finished smoke run (gan+pmr2, K = 4, seed 0, 2 rounds) to copy into each test."""
    out = tmp_path_factory.mktemp("runs") / "base"
    assert train_main(_argv(out, celeba)) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    return dst


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every file under ``folder`` with its mtime and, for small files, its bytes."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = (p.stat().st_mtime_ns, p.read_bytes() if p.stat().st_size < 1 << 16 else None)
    return out


def _cli(capsys, *argv: str) -> tuple[int, str]:
    """``python -m minilib ARGV`` in-process: (exit status, stderr + stdout)."""
    try:
        rc = main(list(argv))
    except SystemExit as e:  # argparse
        rc = e.code
    captured = capsys.readouterr()
    return rc, captured.err + captured.out


# ------------------------------------------------------------------------------------------------- flags
@pytest.mark.parametrize("flag, value", [
    ("--steps", "0"), ("--steps", "-5"), ("--k", "0"), ("--predictor-steps", "0"), ("--checkpoint-every", "-1"),
    ("--checkpoint-every", "0"), ("--sample-every", "0"), ("--threads", "-1"), ("--seed", "-1"), ("--steps", "2.5"),
    ("--device", "banana"), ("--device", "cuda:99"),
])
def test_bad_train_flags_are_refused_naming_the_flag(tmp_path, celeba, capsys, flag, value):
    out = tmp_path / "run"
    argv = _argv(out, celeba)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    rc, text = _cli(capsys, "train", *argv)
    assert rc == 2 and f"argument {flag}" in text and "Traceback" not in text
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_a_gpu_is_refused(tmp_path, celeba, capsys):
    rc, text = _cli(capsys, "train", *_argv(tmp_path / "run", celeba, "--device", "cuda"))
    assert rc == 2 and "--device" in text and "no CUDA device" in text
    assert not (tmp_path / "run").exists()


def test_out_naming_a_file_or_a_read_only_folder_is_refused(tmp_path, celeba, capsys, monkeypatch):
    f = tmp_path / "file.txt"
    f.write_text("x")
    rc, text = _cli(capsys, "train", *_argv(f, celeba))
    assert rc == 2 and "argument --out" in text and "is a file" in text and f.read_text() == "x"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: pretend the folder is read-only
        real = os.access
        monkeypatch.setattr(errors.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    try:
        rc, text = _cli(capsys, "train", *_argv(ro / "run", celeba))
    finally:
        ro.chmod(0o755)
    assert rc == 2 and "argument --out" in text and "not writable" in text
    assert not (ro / "run").exists()


def test_a_minilib_error_is_two_lines_and_exit_2_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{not json")
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    rc, text = _cli(capsys, "evaluate", "--run", str(tmp_path / "run"), "--metric", "pixel")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) <= 2 and "run.json" in lines[0] and "not valid JSON" in lines[0]
    with pytest.raises(errors.CheckpointError):
        main(["evaluate", "--run", str(tmp_path / "run"), "--metric", "pixel", "--debug"])
    monkeypatch.setenv("MINILIB_DEBUG", "1")
    with pytest.raises(errors.CheckpointError, match="run.json"):
        main(["evaluate", "--run", str(tmp_path / "run"), "--metric", "pixel"])


# ------------------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("flag, value, was", [
    ("--k", "5", "K = 4"), ("--seed", "3", "0"), ("--objective", "gan+pmr2-laplace", "gan+pmr2"),
    ("--task", "glcic-celeba", "srgan-celeba"), ("--profile", "full", "smoke"),
])
def test_refused_resume_changes_nothing_and_names_the_flag(run, celeba, capsys, flag, value, was):
    before = _snapshot(run)
    argv = _argv(run, celeba, "--resume", steps=3)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    rc, text = _cli(capsys, "train", *argv)
    assert rc == 2 and flag in text and was in text and "Traceback" not in text
    assert _snapshot(run) == before  # run.json, checkpoint, predictor, samples: untouched


def test_resume_with_the_same_settings_continues(run, celeba, capsys):
    rc, text = _cli(capsys, "train", *_argv(run, celeba, "--resume", steps=3))
    assert rc == 0 and load_checkpoint(run / "checkpoint.pt")["step"] == 3


def test_orphan_temp_files_are_removed_at_the_next_start(run, celeba, capsys):
    for name in ("checkpoint.pt.k1ll3d.tmp", "history.json.x.tmp", "predictor.pt.y.tmp"):
        (run / name).write_bytes(b"partial")
    keep = run / "notes.tmp"
    keep.write_text("mine")
    rc, text = _cli(capsys, "train", *_argv(run, celeba, "--resume", steps=3))
    assert rc == 0 and "checkpoint.pt.k1ll3d.tmp" in text
    assert not list(run.glob("*.pt.*.tmp")) and not list(run.glob("*.json.*.tmp")) and keep.read_text() == "mine"


# ------------------------------------------------------------------------------------------------- evaluate
def test_evaluate_takes_the_objective_from_the_checkpoint(run, capsys):
    """A run.json rewritten to another objective (what a refused resume used to do) is refused, not scored and
    labelled with the wrong objective."""
    meta = json.loads((run / "run.json").read_text())
    assert load_checkpoint(run / "checkpoint.pt")["objective"] == meta["objective"]
    meta["objective"] = {**meta["objective"], "name": "srgan-celeba:gan+l2", "moment": None, "moment_weight": 0.0,
                         "rec": "l2", "rec_weight": 1000.0}
    (run / "run.json").write_text(json.dumps(meta))
    rc, text = _cli(capsys, "evaluate", "--run", str(run), "--metric", "pixel", "--num-inputs", "2")
    assert rc == 2 and "checkpoint.pt" in text and "gan+pmr2" in text and "gan+l2" in text
    assert not list(run.glob("eval_*"))
    with pytest.raises(errors.CheckpointError):
        load_run(run)


@pytest.mark.parametrize("argv, flag", [
    (["--num-inputs", "0"], "--num-inputs"), (["--num-inputs", "-3"], "--num-inputs"), (["--ndb-k", "0"], "--ndb-k"),
    (["--seed", "-1"], "--seed"), (["--device", "banana"], "--device"), (["--out", "."], "--out"),
])
def test_bad_evaluate_flags_are_refused_before_evaluating(run, capsys, argv, flag):
    rc, text = _cli(capsys, "evaluate", "--run", str(run), "--metric", "pixel", *argv)
    assert rc == 2 and f"argument {flag}" in text
    assert not list(run.glob("eval_*")) and not list(Path(".").glob("*.tmp"))


def test_evaluate_out_naming_a_folder_fails_before_evaluating(run, tmp_path, capsys, monkeypatch):
    import minilib.experiments.evaluate as E

    monkeypatch.setattr(E, "evaluate_run", lambda *a, **k: pytest.fail("evaluated before checking --out"))
    folder = tmp_path / "results"
    folder.mkdir()
    rc, text = _cli(capsys, "evaluate", "--run", str(run), "--metric", "pixel", "--out", str(folder))
    assert rc == 2 and "--out" in text and "is a folder" in text and list(folder.iterdir()) == []


def test_one_input_writes_null_and_a_note_not_nan(run, capsys):
    assert evaluate_main(["--run", str(run), "--metric", "pixel", "--num-inputs", "1"]) == 0
    text = (run / "eval_mrgan_pixel.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    rec = json.loads(text)
    assert rec["diversity"]["ci_low"] is None and rec["diversity"]["ci_high"] is None
    assert any("ci_low" in n and "2 inputs" in n for n in rec["notes"])
    assert "no interval" in capsys.readouterr().out
    from minilib.experiments.results import compare, load_results

    rows = [r for r in compare("mrgan-table1", load_results(run.parent)) if r.get("ours diversity")]
    assert rows and all("(no interval)" in r["ours diversity"] for r in rows)


def test_malformed_run_json_names_the_file(run, capsys):
    for text in ("{", "[]", json.dumps({"task": {}})):
        (run / "run.json").write_text(text)
        rc, out = _cli(capsys, "evaluate", "--run", str(run), "--metric", "pixel")
        assert rc == 2 and str(run / "run.json") in out and "Traceback" not in out
        rc, out = _cli(capsys, "train", *_argv(run, run.parent, "--resume"))
        assert rc == 2 and "run.json" in out


# ------------------------------------------------------------------------------------------------- predictor
def test_predictor_records_its_distribution_and_is_refused_for_another(run, celeba, capsys):
    state = load_checkpoint(run / "predictor.pt")
    assert state["dist"] == "gaussian" and state["objective"].endswith("gan+pmr2")
    (run / "checkpoint.pt").unlink()  # as if the run had been killed before its first checkpoint
    before = _snapshot(run)
    rc, text = _cli(capsys, "train", *_argv(run, celeba, objective="gan+pmr2-laplace"))
    assert rc == 2 and "predictor.pt" in text and "gaussian" in text and "laplace" in text
    assert _snapshot(run) == before


# ------------------------------------------------------------------------------------------------- fixtures, data
def test_a_killed_fixture_generation_does_not_break_later_runs(tmp_path, capsys, monkeypatch):
    spec = T.TASKS["srgan-celeba"]

    def killed(root):  # writes half a dataset, then the process "dies"
        (Path(root) / "img_align_celeba").mkdir(parents=True)
        raise KeyboardInterrupt

    out = tmp_path / "run"
    argv = ["--task", spec.name, "--objective", "gan+l2", "--out", str(out), "--profile", "smoke", "--steps", "1",
            "--no-progress", "--threads", "1"]
    monkeypatch.setitem(T.TASKS, spec.name, T.dataclasses.replace(spec, fixture=killed))
    with pytest.raises(KeyboardInterrupt):
        train_main(argv)
    monkeypatch.setitem(T.TASKS, spec.name, spec)
    assert train_main(argv) == 0
    argv[argv.index("--steps") + 1] = "2"
    assert train_main(argv + ["--resume"]) == 0
    assert not list((out / "fixture").glob("*.tmp-*")) and (out / "fixture" / "celeba" / "list_eval_partition.txt").is_file()


def test_corrupt_validation_image_is_a_clear_error(tmp_path, capsys):
    data = make_celeba(tmp_path / "celeba")
    val = [ln.split()[0] for ln in (data / "list_eval_partition.txt").read_text().splitlines() if ln.endswith(" 1")]
    bad = data / "img_align_celeba" / val[0]
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rc, text = _cli(capsys, "train", *_argv(tmp_path / "run", data, objective="gan+l2"))
    assert rc == 2 and str(bad) in text and "corrupt image" in text and "Traceback" not in text
    assert not (tmp_path / "run" / "run.json").exists()


def test_missing_image_hit_during_training_is_a_clear_error(tmp_path, capsys):
    data = make_celeba(tmp_path / "celeba", n=20)
    train = [ln.split()[0] for ln in (data / "list_eval_partition.txt").read_text().splitlines() if ln.endswith(" 0")]
    out = tmp_path / "run"
    assert train_main(_argv(out, data, objective="gan+l2", steps=1)) == 0
    for name in train:  # every training image disappears after the first round
        (data / "img_align_celeba" / name).unlink()
    rc, text = _cli(capsys, "train", *_argv(out, data, "--resume", objective="gan+l2", steps=4))
    assert rc == 2 and "missing image file" in text and "--resume" in text and "Traceback" not in text
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 1


def test_sixteen_bit_png_dataset_trains(tmp_path):
    """A dataset of I;16 PNGs is converted to 8 bits, not clipped to white."""
    import numpy as np

    from minilib.data import images as D

    data = make_celeba(tmp_path / "celeba", n=6)
    for f in (data / "img_align_celeba").iterdir():
        grey = np.asarray(Image.open(f).convert("L")).astype(np.uint16) * 257  # 0..65535
        Image.fromarray(grey).save(f.with_suffix(".png"))
        f.unlink()
    part = data / "list_eval_partition.txt"
    part.write_text(part.read_text().replace(".jpg", ".png"))
    y = D.CelebASR(data, "train", 16, flip=False)[0][1]
    assert -0.9 < float(y.mean()) < 0.9  # in [-1, 1], not all white (1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cli_resume_and_evaluate_on_cuda(tmp_path, celeba, capsys):
    """The paper-sized runs resume on a GPU: train on CUDA, resume from the checkpoint (loaded onto the GPU), evaluate."""
    out = tmp_path / "run"
    rc, text = _cli(capsys, "train", *_argv(out, celeba, "--device", "cuda"))
    assert rc == 0, text
    rc, text = _cli(capsys, "train", *_argv(out, celeba, "--device", "cuda", "--resume", steps=4))
    assert rc == 0 and "resumed from" in text, text
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    rc, text = _cli(capsys, "evaluate", "--run", str(out), "--metric", "pixel", "--num-inputs", "2", "--device", "cuda")
    assert rc == 0, text
