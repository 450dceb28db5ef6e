"""``python -m minilib prepare``: resize a downloaded dataset once (Cityscapes / Maps to the pix2pix format,
CelebA square crops) and record the statistics training needs, so training reads small files."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from .images import DataError, PairedImages, celeba_split, channel_stats, load_image, square_crop, to_tensor

__all__ = ["prepare_pairs", "prepare_celeba", "prepare_main"]


# ------------------------------------------------------------------------------------------- prepare
def prepare_pairs(src: str | Path, dst: str | Path, dataset: str, size: int = 256) -> dict:
    """Resize Cityscapes / Maps pairs to ``size`` and write them in the pix2pix format
    ``<dst>/{train,val}/NNNNN.png`` (photo left, label right; PNG keeps label colours exact), plus
    ``<dst>/stats.json`` with the training inputs' per-channel mean / std. Returns the stats."""
    dst = Path(dst)
    for split in ("train", "val"):
        ds = PairedImages(src, split, dataset, size, flip=False, stats=([0.0] * 3, [1.0] * 3))
        (dst / split).mkdir(parents=True, exist_ok=True)
        for i in range(len(ds)):
            x, y = ds.load(i)
            pair = torch.cat([y, x], dim=2)  # [3, S, 2S]: photo | label
            Image.fromarray((pair.permute(1, 2, 0) * 255).round().byte().numpy()).save(dst / split / f"{i:05d}.png")
    train = PairedImages(dst, "train", dataset, size, flip=False, stats=([0.0] * 3, [1.0] * 3))
    mean, std = channel_stats([train.load(i)[0] for i in range(len(train))])
    stats = {"dataset": dataset, "size": size, "input_mean": mean, "input_std": std}
    (dst / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats


def prepare_celeba(src: str | Path, dst: str | Path, size: int = 128) -> dict:
    """Square-crop and resize every CelebA image listed in the official split to ``size`` (same file
    names), copy ``list_eval_partition.txt``, and write the training-set mean pixel to ``stats.json``."""
    src, dst = Path(src), Path(dst)
    (dst / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    sums, count = torch.zeros(3, dtype=torch.float64), 0
    for split in ("train", "val", "test"):
        try:
            files = celeba_split(src, split)
        except DataError:
            if split == "train":
                raise
            continue
        for f in files:
            img = square_crop(load_image(f, "celeba")).resize((size, size), Image.BICUBIC)
            img.save(dst / "img_align_celeba" / f.name, quality=95)
            if split == "train":
                sums += to_tensor(img).double().mean((1, 2))
                count += 1
    shutil.copyfile(src / "list_eval_partition.txt", dst / "list_eval_partition.txt")
    stats = {"dataset": "celeba", "size": size, "mean_pixel": (sums / count).tolist()}
    (dst / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats


def prepare_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib prepare {cityscapes,maps,celeba} --src DIR --dst DIR [--size N]``."""
    p = argparse.ArgumentParser(
        prog="python -m minilib prepare",
        description="Resize a downloaded dataset once and record its statistics, so training reads small "
                    "files. The source layouts are described in data/README.md.",
    )
    p.add_argument("dataset", choices=["cityscapes", "maps", "celeba"])
    p.add_argument("--src", required=True, help="the downloaded dataset folder (layout: data/README.md)")
    p.add_argument("--dst", required=True, help="output folder (pass it to `train --data`)")
    p.add_argument("--size", type=int, default=None, help="output side in pixels (default 256; CelebA 128)")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if a.dataset == "celeba":
            stats = prepare_celeba(a.src, a.dst, a.size or 128)
        else:
            stats = prepare_pairs(a.src, a.dst, a.dataset, a.size or 256)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"prepared {a.dataset} in {a.dst}: {json.dumps(stats)}")
    return 0
