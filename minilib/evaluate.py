"""Evaluating generators: draw a protocol's samples, score diversity (LPIPS or pixels), realism and,
on digits, which classes the completions fall into against the classes the data allows.

* :func:`sample_protocol` — K = protocol samples per input, in chunks, reproducibly.
* :func:`plausible_classes` / :func:`digit_completion_report` — notebook 12's analysis.
* :func:`evaluate_run` / :func:`evaluate_main` — ``python -m minilib evaluate --run runs/… --protocol
  mrgan`` loads a run written by ``python -m minilib train`` (its ``run.json`` + ``checkpoint.pt``),
  scores it and writes ``<run>/eval_<protocol>_<metric>.json`` (read by :mod:`minilib.results`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from minilib.digits import join_rows, split_rows
from minilib.metrics.images import DIVERSITY_PROTOCOLS, fit_ndb_bins, lpips_diversity, ndb_jsd, pairwise_diversity, pixel_distance
from minilib.train import sample_k

__all__ = ["sample_protocol", "plausible_classes", "NeighbourCompletion", "completion_classes", "digit_completion_report",
           "evaluate_run", "evaluate_main"]


@torch.no_grad()
def sample_protocol(G: nn.Module, x: torch.Tensor, k: int, seed: int = 0, chunk: int = 16) -> torch.Tensor:
    """``k`` samples for each input of ``x [N, ...]`` -> ``[N, k, *event]`` (CPU), G in eval mode.

    Inputs go through :func:`minilib.train.sample_k` ``chunk`` at a time; the noise comes from one
    generator seeded with ``seed``, so the result does not depend on the device's global RNG.
    """
    if not isinstance(k, int) or k < 1 or chunk < 1:
        raise ValueError(f"k and chunk must be positive ints, got {k!r}, {chunk!r}")
    was = G.training
    G.eval()
    dev = next(iter(G.parameters()), next(iter(G.buffers()), torch.empty(0))).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    out = [sample_k(G, x[i:i + chunk].to(dev), k, gen)[0].float().cpu() for i in range(0, len(x), chunk)]
    G.train(was)
    return torch.cat(out)


# ----------------------------------------------------------------------------------------- digits
def plausible_classes(top: torch.Tensor, reference: torch.Tensor, reference_labels: torch.Tensor,
                      neighbours: int = 20, min_fraction: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """Which digit classes the data allows for each partial digit.

    ``top [N, 1, T, 8]`` are known rows; ``reference [M, 1, 8, 8]`` labelled digits (the training
    set). The ``neighbours`` reference digits whose top T rows are nearest (Euclidean) estimate
    p(class | top rows); a class is plausible when it has at least ``min_fraction`` of them.
    Returns ``(probs [N, 10], plausible [N, 10] bool)``.
    """
    if top.dim() != 4 or reference.dim() != 4 or top.shape[1:2] != reference.shape[1:2]:
        raise ValueError(f"top must be [N, 1, T, 8] and reference [M, 1, 8, 8]; got {tuple(top.shape)}, {tuple(reference.shape)}")
    if len(reference) != len(reference_labels) or not 1 <= neighbours <= len(reference):
        raise ValueError(f"need len(reference_labels) == len(reference) and 1 <= neighbours <= {len(reference)}")
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    ref_top = reference[:, :, : top.shape[2]].flatten(1)
    idx = torch.cdist(top.flatten(1).float(), ref_top.float()).topk(neighbours, largest=False).indices  # [N, n]
    probs = nn.functional.one_hot(reference_labels[idx], 10).float().mean(1)  # [N, 10]
    return probs, probs >= min_fraction - 1e-9


class NeighbourCompletion(nn.Module):
    """The data's own answer, as a generator: ``G(x [B,1,T,8], z [B,1]) -> [B,1,8−T,8]`` returns the
    missing rows of one of the ``neighbours`` reference digits whose top rows are nearest to x, the
    one picked by z ~ U(0, 1) (``collapse=True``: always the nearest, a generator that ignores z).
    It is the reference row of notebook 12, like the papers' "random real data"."""

    def __init__(self, reference: torch.Tensor, top_rows: int = 3, neighbours: int = 20, collapse: bool = False) -> None:
        super().__init__()
        if reference.dim() != 4 or not 1 <= neighbours <= len(reference):
            raise ValueError(f"reference must be [M, 1, 8, 8] with M >= neighbours={neighbours}, got {tuple(reference.shape)}")
        self.register_buffer("reference", reference.clone())
        self.top_rows, self.neighbours, self.collapse = top_rows, neighbours, collapse

    def noise(self, n: int, device: torch.device | str | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform ``[n, 1]``: which of the neighbours to return."""
        return torch.rand(n, 1, device=device, generator=generator)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(x.flatten(1), self.reference[:, :, : self.top_rows].flatten(1))  # [B, M]
        idx = d.topk(self.neighbours, largest=False).indices  # [B, n], nearest first
        pick = torch.zeros_like(idx[:, 0]) if self.collapse else (z[:, 0] * self.neighbours).long().clamp(max=self.neighbours - 1)
        return self.reference[idx[torch.arange(len(x)), pick], :, self.top_rows:]


@torch.no_grad()
def completion_classes(completions: torch.Tensor, classifier: nn.Module) -> torch.Tensor:
    """Share of each input's completions ``[N, K, 1, 8, 8]`` that ``classifier`` puts in each class: ``[N, 10]``."""
    if completions.dim() != 5:
        raise ValueError(f"completions must be [N, K, 1, 8, 8], got {tuple(completions.shape)}")
    n, k = completions.shape[:2]
    pred = classifier(completions.flatten(0, 1).float()).argmax(1).view(n, k)
    return nn.functional.one_hot(pred, 10).float().mean(1)


def digit_completion_report(G: nn.Module, images: torch.Tensor, reference: torch.Tensor, reference_labels: torch.Tensor,
                            classifier: nn.Module, top_rows: int = 3, k: int = 20, seed: int = 0,
                            min_fraction: float = 0.15, ndb_bins: Any = None) -> dict[str, Any]:
    """Score a digit-completion generator on ``images [N, 1, 8, 8]`` (notebook 12).

    Keys: ``pixel_diversity`` (MR-GAN protocol, ℓ1 in the hole, [−1, 1] units), ``classes_ambiguous``
    / ``classes_unambiguous`` (mean number of classes holding ≥ ``min_fraction`` of an input's k
    completions, over inputs whose data allows ≥ 2 / 1 classes), ``coverage_ambiguous`` (share of
    the allowed classes reached), ``several_plausible`` (share of ambiguous inputs whose completions
    reach ≥ 2 allowed classes), ``implausible`` (share of completions in classes the data does not
    allow), ``digit_fd`` (Fréchet distance to ``reference`` in the classifier's features: realism),
    ``ndb``/``ndb_k``/``jsd`` when ``ndb_bins`` (from :func:`~minilib.metrics.images.fit_ndb_bins`) is
    given, plus the per-input arrays ``probs``, ``plausible``, ``class_share`` and the ``completions``.
    """
    from minilib.realism import digit_frechet_distance

    if k != DIVERSITY_PROTOCOLS["mrgan"].num_samples:
        raise ValueError(f"k must be {DIVERSITY_PROTOCOLS['mrgan'].num_samples} (the MR-GAN protocol), got {k}")
    top, _ = split_rows(images, top_rows)
    samples = sample_protocol(G, top, k, seed)  # [N, K, 1, 8-T, 8]
    full = join_rows(top, samples).clamp(-1, 1)  # [N, K, 1, 8, 8]
    hole = torch.zeros(8, 8)
    hole[top_rows:] = 1
    div = pairwise_diversity(full, "mrgan", pixel_distance, mask=hole, seed=seed)
    probs, plausible = plausible_classes(top, reference, reference_labels, min_fraction=min_fraction)
    share = completion_classes(full, classifier)  # [N, 10]
    present = share >= min_fraction - 1e-9
    ambiguous = plausible.sum(1) >= 2
    coverage = (present & plausible).sum(1).float() / plausible.sum(1).clamp_min(1)
    out = {
        "pixel_diversity": div.mean,
        "classes_ambiguous": float(present.sum(1)[ambiguous].float().mean()) if ambiguous.any() else float("nan"),
        "classes_unambiguous": float(present.sum(1)[~ambiguous].float().mean()) if (~ambiguous).any() else float("nan"),
        "coverage_ambiguous": float(coverage[ambiguous].mean()) if ambiguous.any() else float("nan"),
        "several_plausible": float(((present & plausible).sum(1)[ambiguous] >= 2).float().mean()) if ambiguous.any() else float("nan"),
        "implausible": float((share * (~plausible)).sum(1).mean()),
        "fraction_ambiguous": float(ambiguous.float().mean()),
        "digit_fd": digit_frechet_distance(full[:, :5].flatten(0, 1), reference, classifier),
        "probs": probs, "plausible": plausible, "class_share": share, "completions": full,
    }
    if ndb_bins is not None:
        r = ndb_jsd(ndb_bins, full[:, :5].flatten(0, 1))
        out.update(ndb=r.ndb, ndb_k=r.k, jsd=r.jsd)
    return out


# ----------------------------------------------------------------------------------------- runs
def _load_run(run: Path, data: str | None, device: str) -> tuple[Any, Any, Any, Any]:
    """(spec, objective, G with the checkpoint's weights, built task) for a ``train`` run folder."""
    from minilib import tasks
    from minilib.objectives import Objective
    from minilib.train import load_checkpoint

    meta_path, ckpt_path = run / "run.json", run / "checkpoint.pt"
    if not meta_path.is_file() or not ckpt_path.is_file():
        raise FileNotFoundError(f"--run {run} is not a training run: expected run.json and checkpoint.pt "
                                "(written by `python -m minilib train --out ...`)")
    meta = json.loads(meta_path.read_text())
    spec = tasks.TASKS.get(meta["task"]["name"]) or tasks.TaskSpec(**meta["task"])
    objective = Objective(**meta["objective"])
    root = Path(data) if data else run / "fixture" / spec.dataset
    if data is None and "--data" in meta.get("argv", []):
        root = Path(meta["argv"][meta["argv"].index("--data") + 1])
    built = tasks.build(spec, root, meta["profile"], device, meta["config"].get("seed", 0), objective, progress=False)
    state = load_checkpoint(ckpt_path, device)
    built.G.load_state_dict(state["G"])
    return spec, objective, built.G.to(device).eval(), (built, int(state["step"]), meta)


def evaluate_run(run: str | Path, protocol: str = "mrgan", metric: str = "lpips", num_inputs: int = 300,
                 net: str = "alex", version: str = "0.1", backbone_weights: str | None = None, data: str | None = None,
                 device: str = "cpu", seed: int = 0, ndb_k: int | None = None, fid: bool = False) -> dict[str, Any]:
    """Score a ``train`` run: ``num_inputs`` validation inputs (the paper: 300), the protocol's K
    samples each, diversity by ``metric`` ("lpips" or "pixel"; inpainting: inside the hole only).

    ``ndb_k`` adds NDB/JSD with that many k-means bins fitted on (up to 2,000) training targets in
    pixel space (MSGAN App. C uses K = 50 on maps); ``fid`` adds FID of one sample per input against
    the inputs' ground truth (needs pytorch-fid's Inception weights).
    Returns the JSON-ready record :mod:`minilib.results` reads."""
    from minilib.data import DatasetStream

    if protocol not in DIVERSITY_PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(DIVERSITY_PROTOCOLS)}, got {protocol!r}")
    if metric not in ("lpips", "pixel"):
        raise ValueError(f"metric must be 'lpips' or 'pixel', got {metric!r}")
    t0 = time.perf_counter()
    spec, objective, G, (built, step, meta) = _load_run(Path(run), data, device)
    n = min(num_inputs, len(built.val))
    x, y = DatasetStream(built.val, seed, shuffle=False).next(n)
    p = DIVERSITY_PROTOCOLS[protocol]
    samples = sample_protocol(G, x, p.num_samples, seed)  # [N, K, C, H, W] in y's range
    k = p.num_samples
    flat = samples.flatten(0, 1)
    images = built.to_image(x.repeat_interleave(k, 0).cpu(), flat)[1].reshape(samples.shape).clamp(0, 1)  # [0, 1]
    mask = x[:, 3:4].cpu() if spec.kind == "glcic" else None  # inpainting: the hole channel
    if metric == "lpips":
        div = lpips_diversity(images, protocol, net=net, version=version, input_range="[0,1]", mask=mask, seed=seed,
                              backbone_weights=backbone_weights, device=device)
    else:
        div = pairwise_diversity(images * 2 - 1, protocol, pixel_distance, mask=mask, seed=seed)
    extra: dict[str, Any] = {}
    if ndb_k is not None:
        _, ty = DatasetStream(built.train, seed).next(min(2000, len(built.train)))
        real = built.to_image(x[:1].repeat_interleave(len(ty), 0).cpu(), ty.cpu())[1].clamp(0, 1)
        r = ndb_jsd(fit_ndb_bins(real, ndb_k, seed), images.flatten(0, 1)[:5000])
        extra.update(ndb=r.ndb, ndb_k=r.k, jsd=r.jsd)
    if fid:
        from minilib.realism import inception_fid

        truth = built.to_image(x.cpu(), y.cpu())[1].clamp(0, 1)
        extra["fid"] = inception_fid(truth, images[:, 0], input_range="[0,1]", device=device)
    return {**extra,
        "task": spec.name, "objective": objective.name.split(":")[-1], "objective_detail": objective.describe(),
        "profile": meta["profile"], "step": step, "protocol": protocol, "num_inputs": n, "metric": div.metric,
        "diversity": div.to_dict(), "realism": None, "run": str(run), "seconds": round(time.perf_counter() - t0, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minilib evaluate", description=(
        "Score a training run (python -m minilib train --out RUN) with a named diversity protocol and write JSON.\n"
        "protocols: " + "; ".join(f"{n}: {q.source}" for n, q in DIVERSITY_PROTOCOLS.items())),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder holding run.json and checkpoint.pt")
    p.add_argument("--protocol", default="mrgan", choices=sorted(DIVERSITY_PROTOCOLS))
    p.add_argument("--metric", default="lpips", choices=("lpips", "pixel"),
                   help="lpips (needs torchvision ImageNet backbone weights) or pixel (mean |a-b|, no weights)")
    p.add_argument("--net", default="alex", choices=("alex", "vgg", "squeeze"), help="LPIPS backbone (default alex)")
    p.add_argument("--version", default="0.1", choices=("0.0", "0.1"), help="LPIPS version (default 0.1)")
    p.add_argument("--backbone-weights", default=None, help="torchvision state-dict file for the LPIPS backbone")
    p.add_argument("--num-inputs", type=int, default=300, help="validation inputs to score (paper: 300)")
    p.add_argument("--data", default=None, help="dataset folder (default: the run's own --data or fixture)")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ndb-k", type=int, default=None, help="also NDB/JSD with this many k-means bins (MSGAN: 50 on maps)")
    p.add_argument("--fid", action="store_true", help="also FID (needs pytorch-fid and its Inception weights)")
    p.add_argument("--out", default=None, help="JSON path (default RUN/eval_<protocol>_<metric>.json)")
    return p


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib evaluate ...``; returns the exit status (2 on a usage / missing-file error)."""
    from minilib.metrics.images import MissingWeightsError

    a = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        rec = evaluate_run(a.run, a.protocol, a.metric, a.num_inputs, a.net, a.version, a.backbone_weights, a.data,
                           device, a.seed, a.ndb_k, a.fid)
    except (FileNotFoundError, MissingWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out) if a.out else Path(a.run) / f"eval_{a.protocol}_{a.metric}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rec, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
    tmp.replace(out)
    d = rec["diversity"]
    print(f"{rec['task']} {rec['objective']}: {d['metric']} diversity ({a.protocol}, {rec['num_inputs']} inputs) "
          f"= {d['mean']:.4f} [{d['ci_low']:.4f}, {d['ci_high']:.4f}] -> {out}")
    return 0
