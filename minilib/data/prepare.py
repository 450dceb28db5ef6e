"""``python -m minilib prepare``: resize a downloaded dataset once (Cityscapes / Maps to the pix2pix format,
CelebA square crops) and record the statistics training needs, so training reads small files.

Only files inside ``--src`` are read (a CelebA list naming ``../x.jpg`` or an absolute path is refused), and
``--dst`` may not be ``--src`` or lie inside it, so outputs never mix with the download."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..checkpoints import atomic_write_json
from ..errors import ConfigError, MinilibError, check_int, check_output_folder, debug_enabled, positive_int
from .images import DataError, PairedImages, celeba_split, channel_stats, load_image, square_crop, to_tensor

__all__ = ["prepare_pairs", "prepare_celeba", "prepare_main"]


# ------------------------------------------------------------------------------------------- prepare
def _check_folders(src: str | Path, dst: str | Path, size: int) -> tuple[Path, Path]:
    """``src`` and ``dst`` resolved; ``dst`` writable and neither ``src`` nor inside it; ``size`` a positive int."""
    check_int("size", size)
    src_r, dst_r = Path(src).resolve(), Path(dst).resolve()
    if not src_r.is_dir():
        raise DataError(f"--src {src} is not a folder (the downloaded dataset; layouts: data/README.md)")
    if dst_r == src_r or src_r in dst_r.parents:
        raise ConfigError(f"--dst {dst} is {'--src' if dst_r == src_r else 'inside --src'} ({src}): prepared files "
                          "would mix with the download; choose a folder outside it")
    check_output_folder("--dst", dst)
    return src_r, Path(dst)


def _inside(path: Path, src: Path) -> Path:
    """``path`` if it resolves inside ``src`` (symlinks followed), else a :class:`DataError`."""
    real = Path(os.path.realpath(path))
    if real != src and src not in real.parents:
        raise DataError(f"{path} resolves to {real}, outside --src {src}: refusing to read it")
    return path


def prepare_pairs(src: str | Path, dst: str | Path, dataset: str, size: int = 256) -> dict:
    """Resize Cityscapes / Maps pairs to ``size`` and write them in the pix2pix format
    ``<dst>/{train,val}/NNNNN.png`` (photo left, label right; PNG keeps label colours exact), plus
    ``<dst>/stats.json`` with the training inputs' per-channel mean / std. Returns the stats."""
    src_r, dst = _check_folders(src, dst, size)
    for split in ("train", "val"):
        ds = PairedImages(src, split, dataset, size, flip=False, stats=([0.0] * 3, [1.0] * 3))
        for pair in ds.pairs:
            for f in pair:
                if f is not None:
                    _inside(f, src_r)
        (dst / split).mkdir(parents=True, exist_ok=True)
        for i in range(len(ds)):
            x, y = ds.load(i)
            pair = torch.cat([y, x], dim=2)  # [3, S, 2S]: photo | label
            Image.fromarray((pair.permute(1, 2, 0) * 255).round().byte().numpy()).save(dst / split / f"{i:05d}.png")
    train = PairedImages(dst, "train", dataset, size, flip=False, stats=([0.0] * 3, [1.0] * 3))
    mean, std = channel_stats([train.load(i)[0] for i in range(len(train))])
    stats = {"dataset": dataset, "size": size, "input_mean": mean, "input_std": std}
    atomic_write_json(dst / "stats.json", stats)
    return stats


def prepare_celeba(src: str | Path, dst: str | Path, size: int = 128) -> dict:
    """Square-crop and resize every CelebA image listed in the official split to ``size`` (same file
    names), copy ``list_eval_partition.txt``, and write the training-set mean pixel to ``stats.json``. Every listed
    file must resolve inside ``src``."""
    src_r, dst = _check_folders(src, dst, size)
    src = Path(src)
    splits = {}
    for split in ("train", "val", "test"):  # read and check every list first: nothing is written for a bad list
        try:
            splits[split] = [_inside(f, src_r) for f in celeba_split(src, split)]
        except DataError:
            if split == "train" or not (src / "list_eval_partition.txt").is_file():
                raise
    (dst / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    sums, count = torch.zeros(3, dtype=torch.float64), 0
    for split, files in splits.items():
        for f in files:
            img = square_crop(load_image(f, "celeba")).resize((size, size), Image.BICUBIC)
            img.save(dst / "img_align_celeba" / f.name, quality=95)
            if split == "train":
                sums += to_tensor(img).double().mean((1, 2))
                count += 1
    shutil.copyfile(src / "list_eval_partition.txt", dst / "list_eval_partition.txt")
    stats = {"dataset": "celeba", "size": size, "mean_pixel": (sums / count).tolist()}
    atomic_write_json(dst / "stats.json", stats)
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
    p.add_argument("--size", type=positive_int, default=None, help="output side in pixels (default 256; CelebA 128)")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    size = a.size if a.size is not None else (128 if a.dataset == "celeba" else 256)
    try:
        if a.dataset == "celeba":
            stats = prepare_celeba(a.src, a.dst, size)
        else:
            stats = prepare_pairs(a.src, a.dst, a.dataset, size)
    except MinilibError as e:
        if debug_enabled():
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"prepared {a.dataset} in {a.dst}: {json.dumps(stats)}")
    return 0
