"""Tests for minilib.experiments.evaluate (protocol sampling, the evaluate command), the digit-completion analysis
(minilib.course.digit_completion) and minilib.experiments.results (paper tables beside ours)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from minilib.nets.digits import DigitCompletionG
from minilib.metrics.digits import get_digit_classifier
from minilib.data.digits import load_digits
from minilib.course.digit_completion import (NeighbourCompletion, completion_classes, digit_completion_report, plausible_classes)
from minilib.experiments.evaluate import evaluate_main, sample_protocol
from minilib.experiments.results import PAPER_TABLES, compare, load_results, to_html, to_markdown

torch.set_num_threads(1)


def test_sample_protocol_shape_seed_and_mode():
    G = DigitCompletionG(3, z_dim=4)
    G.train()
    x = torch.rand(5, 1, 3, 8) * 2 - 1
    a = sample_protocol(G, x, 20, seed=1, chunk=2)
    assert a.shape == (5, 20, 1, 5, 8) and G.training  # mode restored
    assert torch.equal(a, sample_protocol(G, x, 20, seed=1, chunk=2))
    assert not torch.equal(a, sample_protocol(G, x, 20, seed=2, chunk=2))
    with pytest.raises(ValueError, match="k must be a positive int"):
        sample_protocol(G, x, 0)


def _pattern(row_value: float, label_pixel: int | None = None) -> torch.Tensor:
    img = -torch.ones(1, 8, 8)
    img[:, :3] = row_value
    if label_pixel is not None:
        img[0, 7, label_pixel] = 1.0
    return img


def test_plausible_classes_known_answer():
    reference = torch.stack([_pattern(0.5)] * 5 + [_pattern(-0.5)] * 5)
    labels = torch.tensor([1, 1, 7, 7, 7, 0, 0, 0, 0, 0])
    top = torch.stack([_pattern(0.45), _pattern(-0.4)])[:, :, :3]
    probs, plausible = plausible_classes(top, reference, labels, neighbours=5, min_fraction=0.3)
    assert torch.allclose(probs[0, [1, 7]], torch.tensor([0.4, 0.6])) and probs[0].sum() == pytest.approx(1.0)
    assert plausible[0].nonzero().flatten().tolist() == [1, 7]
    assert plausible[1].nonzero().flatten().tolist() == [0]
    _, strict = plausible_classes(top, reference, labels, neighbours=5, min_fraction=0.5)
    assert strict[0].nonzero().flatten().tolist() == [7]
    with pytest.raises(ValueError, match="neighbours"):
        plausible_classes(top, reference, labels, neighbours=11)
    with pytest.raises(ValueError, match="min_fraction"):
        plausible_classes(top, reference, labels, neighbours=5, min_fraction=0)


class _PixelClassifier(nn.Module):
    """Class c <=> pixel (7, c) is lit: logits are the bottom row (classes 8, 9 never chosen)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, 0, 7, :], torch.full((len(x), 2), -9.0)], 1)


def test_completion_classes_counts_shares():
    comps = torch.stack([torch.stack([_pattern(0, 2), _pattern(0, 2), _pattern(0, 5), _pattern(0, 2)])])  # [1, 4, 1, 8, 8]
    share = completion_classes(comps, _PixelClassifier())
    assert share.shape == (1, 10) and share[0, 2] == 0.75 and share[0, 5] == 0.25
    with pytest.raises(ValueError, match="completions"):
        completion_classes(comps[0], _PixelClassifier())


@pytest.fixture(scope="module")
def digit_setup():
    clf = get_digit_classifier(seed=0)  # the shared cache, as the notebooks use
    train, train_y = load_digits("train", 0)
    test, _ = load_digits("test", 0)
    return clf, train, train_y, test[:120]


def test_neighbour_completion_returns_real_bottoms_of_near_digits():
    train, _ = load_digits("train", 0)
    G = NeighbourCompletion(train[:100], neighbours=5)
    x = train[:4, :, :3]
    out = G(x, torch.zeros(4, 1))  # z = 0 picks the nearest: the digit itself
    assert torch.equal(out, train[:4, :, 3:])
    many = sample_protocol(G, x, 20)  # [4, 20, 1, 5, 8]: each one of the 5 neighbours' bottoms
    rows = {tuple(r) for r in train[:100, :, 3:].flatten(1).tolist()}
    assert all(tuple(r) in rows for r in many.flatten(0, 1).flatten(1).tolist())
    assert len({tuple(r) for r in many[0].flatten(1).tolist()}) > 1
    with pytest.raises(ValueError, match="neighbours"):
        NeighbourCompletion(train[:3], neighbours=5)


def test_digit_report_ideal_sampler_vs_collapsed(digit_setup):
    from minilib.metrics.ndb import fit_ndb_bins

    clf, train, train_y, test = digit_setup
    bins = fit_ndb_bins(train, k=20, seed=0)
    ideal = digit_completion_report(NeighbourCompletion(train), test, train, train_y, clf, ndb_bins=bins)
    collapsed = digit_completion_report(NeighbourCompletion(train, collapse=True), test, train, train_y, clf)
    assert collapsed["pixel_diversity"] == 0.0
    assert collapsed["classes_ambiguous"] <= 1.0 and collapsed["coverage_ambiguous"] < 0.65
    # sampling the data's own conditional: several plausible classes where the data is ambiguous
    assert ideal["classes_ambiguous"] >= 2.0 and ideal["coverage_ambiguous"] > 0.8 and ideal["several_plausible"] > 0.8
    assert collapsed["several_plausible"] == 0.0
    assert ideal["implausible"] < 0.15 and ideal["pixel_diversity"] > 0.2
    assert 0.3 < ideal["fraction_ambiguous"] < 0.9
    assert ideal["completions"].shape == (120, 20, 1, 8, 8) and ideal["ndb_k"] == 20
    assert ideal["digit_fd"] < collapsed["digit_fd"] + 5  # both are real digits: similar realism
    with pytest.raises(ValueError, match="k must be 20"):
        digit_completion_report(NeighbourCompletion(train), test, train, train_y, clf, k=10)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from minilib.experiments.image_train import train_main

    out = tmp_path_factory.mktemp("runs") / "srgan"
    assert train_main(["--task", "srgan-celeba", "--objective", "gan+l2", "--out", str(out), "--profile", "smoke",
                       "--steps", "2", "--no-progress", "--threads", "1"]) == 0
    return out


def test_evaluate_main_writes_json_that_results_reads(smoke_run, capsys):
    assert evaluate_main(["--run", str(smoke_run), "--metric", "pixel", "--num-inputs", "3", "--ndb-k", "2"]) == 0
    rec = json.loads((smoke_run / "eval_mrgan_pixel.json").read_text())
    assert rec["task"] == "srgan-celeba" and rec["objective"] == "gan+l2" and rec["step"] == 2
    assert rec["diversity"]["num_samples"] == 20 and rec["diversity"]["num_pairs"] == 10
    assert rec["diversity"]["mean"] >= 0 and rec["ndb_k"] == 2 and rec["num_inputs"] <= 3
    assert "pixel-l1 diversity" in capsys.readouterr().out
    rows = compare("mrgan-table1", load_results(smoke_run.parent))
    srgan = {r["method"]: r for r in rows if r["task"] == "srgan-celeba"}
    assert srgan["SRGAN+noise"]["status"].startswith("ours: smoke profile, step 2")
    assert srgan["Gaussian MLMM1/2"]["status"] == "not run" and srgan["Gaussian MLMM1/2"]["ours diversity"] == ""


def test_evaluate_main_errors(smoke_run, tmp_path, capsys):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "empty_hub"))
    try:
        assert evaluate_main(["--run", str(smoke_run), "--num-inputs", "2"]) == 2  # LPIPS weights missing
    finally:
        torch.hub.set_dir(old)
    assert "IMAGENET1K_V1" in capsys.readouterr().err
    assert evaluate_main(["--run", str(tmp_path / "nothing")]) == 2
    assert "run.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_main(["--run", str(smoke_run), "--protocol", "bogus"])


def _record(task: str, objective: str, protocol: str, mean: float, profile: str = "full", created: str = "2026") -> dict:
    div = {"mean": mean, "ci_low": mean - 0.01, "ci_high": mean + 0.01, "metric": "lpips-alex-v0.1"}
    return {"task": task, "objective": objective, "protocol": protocol, "diversity": div, "profile": profile,
            "created": created, "step": 10, "num_inputs": 300}


def test_compare_fills_only_matching_rows_and_never_invents():
    recs = [_record("pix2pix-cityscapes", "gan+pmr2", "mrgan", 0.30, created="2026-01"),
            _record("pix2pix-cityscapes", "gan+pmr2", "mrgan", 0.35, created="2026-02"),
            _record("pix2pix-cityscapes", "gan+pmr2", "mrgan", 0.10, profile="smoke", created="2026-03"),
            _record("pix2pix-cityscapes", "gan+mr2", "msgan", 0.5)]  # wrong protocol for Table 1
    rows = compare("mrgan-table1", recs)
    assert len(rows) == len(PAPER_TABLES["mrgan-table1"]["rows"])
    by = {(r["task"], r["method"]): r for r in rows}
    pmr2 = by[("pix2pix-cityscapes", "Gaussian MLMM1/2")]
    assert pmr2["ours diversity"].startswith("0.3500") and pmr2["paper diversity"] == "0.388"  # latest full run
    assert pmr2["paper realism"] == "0.44 ± 0.05"
    assert by[("pix2pix-cityscapes", "Gaussian MCMLE1/2")]["status"] == "not run"
    assert by[("pix2pix-cityscapes", "BicycleGAN")]["status"] == "not implemented in minilib"
    filled = [r for r in rows if r["ours diversity"]]
    assert len(filled) == 1
    md = to_markdown(rows)
    assert md.count("\n") == len(rows) + 1 and "not run" in md
    assert "<table>" in to_html(rows) and "color:#888" in to_html(rows)
    with pytest.raises(ValueError, match="table"):
        compare("table9", recs)


def test_paper_values_transcribed():
    t1 = {(e.task, e.method): e for e in PAPER_TABLES["mrgan-table1"]["rows"]}
    assert t1[("pix2pix-cityscapes", "Pix2Pix+noise")].metrics["diversity"][0] == 0.004
    assert t1[("srgan-celeba", "Gaussian MLMM1/2")].metrics["realism"] == (0.52, 0.05)
    assert t1[("glcic-celeba", "Random real data")].metrics["diversity"][0] == 0.426
    t3 = {e.method: e for e in PAPER_TABLES["msgan-table3"]["rows"]}
    assert t3["MSGAN"].metrics["diversity"] == (0.2189, 0.0004) and t3["Pix2Pix"].objective == "gan+l1"
    rows = {r["method"]: r for r in compare("msgan-table3", [])}
    assert rows["Pix2Pix"]["paper diversity"] == "0.0016 ± 0.0003" and rows["MSGAN"]["paper fid"] == "152.43 ± 2.52"


def test_load_results_rejects_foreign_json(tmp_path):
    (tmp_path / "eval_x.json").write_text(json.dumps({"task": "t"}))
    with pytest.raises(ValueError, match="evaluation record"):
        load_results(tmp_path)
    assert load_results(tmp_path / "missing") == []
