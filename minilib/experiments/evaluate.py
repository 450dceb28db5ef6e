"""Scoring a trained image run: draw a protocol's samples and score diversity (LPIPS or pixels), optionally
NDB/JSD and FID.

* :func:`sample_protocol` — K = protocol samples per input, in chunks, reproducibly.
* :func:`evaluate_run` / :func:`evaluate_main` — ``python -m minilib evaluate --run runs/… --protocol
  mrgan`` loads a run written by ``python -m minilib train`` (:func:`minilib.experiments.runs.load_run`),
  scores it and writes ``<run>/eval_<protocol>_<metric>.json`` (read by :mod:`minilib.experiments.results`).
  A task whose family knows its exact truth (the colour task) adds its exact metrics under ``"exact"``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..checkpoints import atomic_write_json
from ..data.images import DatasetStream
from ..errors import (ConfigError, ConfigTypeError, MinilibError, check_device, check_int, check_output_file, check_tensor,
                      debug_enabled, device_arg, existing_folder, nonnegative_int, output_file, positive_int)
from ..metrics.diversity import DIVERSITY_PROTOCOLS, lpips_diversity, pairwise_diversity, pixel_distance
from ..metrics.ndb import fit_ndb_bins, ndb_jsd
from ..train import sample_k
from .image_tasks import get_task
from .runs import RunFolder, load_run

__all__ = ["sample_protocol", "evaluate_run", "evaluate_main"]


@torch.no_grad()
def sample_protocol(G: nn.Module, x: torch.Tensor, k: int, seed: int = 0, chunk: int = 16) -> torch.Tensor:
    """``k`` samples for each input of ``x [N, ...]`` -> ``[N, k, *event]`` (CPU), G in eval mode.

    Inputs go through :func:`minilib.train.sample_k` ``chunk`` at a time; the noise comes from one
    generator seeded with ``seed``, so the result does not depend on the device's global RNG.
    """
    check_int("k", k)
    check_int("chunk", chunk)
    if not isinstance(G, nn.Module) or not hasattr(G, "noise"):
        raise ConfigTypeError(f"G must be a generator module with a noise(n, device, generator) method, got {type(G).__name__}")
    check_tensor("x", x, min_dims=1, floating=False)
    was = G.training
    G.eval()
    dev = next(iter(G.parameters()), next(iter(G.buffers()), torch.empty(0))).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    out = [sample_k(G, x[i:i + chunk].to(dev), k, gen)[0].float().cpu() for i in range(0, len(x), chunk)]
    G.train(was)
    return torch.cat(out)


def evaluate_run(run: str | Path, protocol: str = "mrgan", metric: str = "lpips", num_inputs: int = 300,
                 net: str = "alex", version: str = "0.1", backbone_weights: str | None = None, data: str | None = None,
                 device: str = "cpu", seed: int = 0, ndb_k: int | None = None, fid: bool = False) -> dict[str, Any]:
    """Score a ``train`` run: ``num_inputs`` validation inputs (the paper: 300), the protocol's K
    samples each, diversity by ``metric`` ("lpips" or "pixel"; inpainting: inside the hole only).

    ``ndb_k`` adds NDB/JSD with that many k-means bins fitted on (up to 2,000) training targets in
    pixel space (MSGAN App. B uses K = 50 on maps); ``fid`` adds FID of one sample per input against
    the inputs' ground truth (needs pytorch-fid's Inception weights). A family with ``exact_metrics`` (the colour
    task) adds them under ``"exact"`` (every test input, 12 samples each, noise seeded with ``seed``).
    Returns the JSON-ready record :mod:`minilib.experiments.results` reads."""
    if protocol not in DIVERSITY_PROTOCOLS:
        raise ConfigError(f"protocol must be one of {sorted(DIVERSITY_PROTOCOLS)}, got {protocol!r}")
    if metric not in ("lpips", "pixel"):
        raise ConfigError(f"metric must be 'lpips' or 'pixel', got {metric!r}")
    check_int("num_inputs", num_inputs)
    check_int("seed", seed, 0)
    if ndb_k is not None:
        check_int("ndb_k", ndb_k, 2)
    check_device("device", device)
    t0 = time.perf_counter()
    loaded = load_run(run, device, data)
    spec, objective, G, built, step, meta = loaded.spec, loaded.objective, loaded.G, loaded.built, loaded.step, loaded.settings
    n = min(num_inputs, len(built.val))
    x, y = DatasetStream(built.val, seed, shuffle=False).next(n)
    p = DIVERSITY_PROTOCOLS[protocol]
    samples = sample_protocol(G, x, p.num_samples, seed)  # [N, K, C, H, W] in y's range
    k = p.num_samples
    flat = samples.flatten(0, 1)
    images = built.to_image(x.repeat_interleave(k, 0).cpu(), flat)[1].reshape(samples.shape).clamp(0, 1)  # [0, 1]
    c = spec.family.mask_channel
    mask = x[:, c:c + 1].cpu() if c is not None else None  # inpainting: score inside the hole only
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
        from ..metrics.frechet import inception_fid

        truth = built.to_image(x.cpu(), y.cpu())[1].clamp(0, 1)
        extra["fid"] = inception_fid(truth, images[:, 0], input_range="[0,1]", device=device)
    if spec.family.exact_metrics is not None:
        extra["exact"] = spec.family.exact_metrics(G, spec.family.sizes[meta["profile"]], seed)
    rec = {**extra,
        "task": spec.name, "objective": objective.name.split(":")[-1], "objective_detail": objective.describe(),
        "profile": meta["profile"], "step": step, "protocol": protocol, "num_inputs": n, "metric": div.metric,
        "diversity": div.to_dict(), "realism": None, "run": str(run), "seconds": round(time.perf_counter() - t0, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    undefined = [k for k, v in rec["diversity"].items() if isinstance(v, float) and not math.isfinite(v)]
    if undefined:  # JSON has no NaN: these are written as null, and the record says why
        rec["notes"] = [f"diversity {', '.join(undefined)} undefined (written as null): "
                        + ("a confidence interval needs at least 2 inputs" if n < 2 else "non-finite distances")]
    return rec


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minilib evaluate", description=(
        "Score a training run (python -m minilib train --out RUN) with a named diversity protocol and write JSON.\n"
        "protocols: " + "; ".join(f"{n}: {q.source}" for n, q in DIVERSITY_PROTOCOLS.items())),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder holding run.json and checkpoint.pt")
    p.add_argument("--protocol", default="mrgan", choices=sorted(DIVERSITY_PROTOCOLS))
    p.add_argument("--metric", default=None, choices=("lpips", "pixel"),
                   help="lpips (needs torchvision ImageNet backbone weights) or pixel (mean |a-b|, no weights); default: "
                        "the task's (lpips; pixel for pix2pix-colours, whose exact metrics are what count)")
    p.add_argument("--net", default="alex", choices=("alex", "vgg", "squeeze"), help="LPIPS backbone (default alex)")
    p.add_argument("--version", default="0.1", choices=("0.0", "0.1"), help="LPIPS version (default 0.1)")
    p.add_argument("--backbone-weights", default=None, help="torchvision state-dict file for the LPIPS backbone")
    p.add_argument("--num-inputs", type=positive_int, default=300, help="validation inputs to score (paper: 300)")
    p.add_argument("--data", type=existing_folder, default=None, help="dataset folder (default: the run's own --data or fixture)")
    p.add_argument("--device", type=device_arg, default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--ndb-k", type=positive_int, default=None, help="also NDB/JSD with this many k-means bins (MSGAN: 50 on maps)")
    p.add_argument("--fid", action="store_true", help="also FID (needs pytorch-fid and its Inception weights)")
    p.add_argument("--out", type=output_file, default=None, help="JSON path (default RUN/eval_<protocol>_<metric>.json)")
    return p


def _default_metric(run: str) -> str:
    """The run's task's diversity metric (``"lpips"`` when the folder is not a readable run: loading reports that)."""
    try:
        return get_task(RunFolder(Path(run)).settings()["task"]["name"]).family.diversity_metric
    except (MinilibError, ValueError):
        return "lpips"


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib evaluate ...``; returns the exit status (2 on a bad flag, a missing or unreadable file).

    Every flag and the output path are checked before the evaluation starts (``--out`` naming a folder is refused
    then, not after minutes of scoring)."""
    a = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        a.metric = a.metric or _default_metric(a.run)
        out = a.out or check_output_file("--out", Path(a.run) / f"eval_{a.protocol}_{a.metric}.json")
        rec = evaluate_run(a.run, a.protocol, a.metric, a.num_inputs, a.net, a.version, a.backbone_weights, a.data,
                           device, a.seed, a.ndb_k, a.fid)
    except MinilibError as e:
        if debug_enabled():
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    atomic_write_json(out, rec)
    d = rec["diversity"]
    ci = f"[{d['ci_low']:.4f}, {d['ci_high']:.4f}]" if math.isfinite(d["ci_low"]) else "(no interval: one input)"
    print(f"{rec['task']} {rec['objective']}: {d['metric']} diversity ({a.protocol}, {rec['num_inputs']} inputs) "
          f"= {d['mean']:.4f} {ci} -> {out}")
    return 0
