"""Tiny datasets written in the exact on-disk layouts of Cityscapes, Maps (pix2pix) and CelebA.

Tests, smoke runs and the smoke profile of notebooks 08-10 use them instead of the real data (which
cannot be downloaded on the build machines). The images are small but structured: label maps are
blocks of Cityscapes palette colours and the "photos" are a noisy, shaded rendering of the same
blocks, so a network can learn something in a few steps. Everything is deterministic given ``seed``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["make_cityscapes", "make_maps", "make_celeba", "make_all"]

PALETTE = np.array([(128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (70, 130, 180),
                    (220, 20, 60), (0, 0, 142), (153, 153, 153)], dtype=np.uint8)  # road, sidewalk, building, ...
CITIES = {"train": ["aachen", "bochum"], "val": ["frankfurt"]}


def _label_and_photo(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    label = np.empty((h, w, 3), dtype=np.uint8)
    label[:] = PALETTE[rng.integers(len(PALETTE))]
    for _ in range(4):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        label[y0:y0 + rng.integers(h // 4, h // 2 + 1), x0:x0 + rng.integers(w // 4, w // 2 + 1)] = PALETTE[rng.integers(len(PALETTE))]
    shade = np.linspace(0.7, 1.1, h)[:, None, None]
    photo = np.clip(label * shade + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    return label, photo


def make_cityscapes(root: str | Path, layout: str = "official", n_train: int = 4, n_val: int = 2,
                    width: int = 64, height: int = 32, seed: int = 0) -> Path:
    """Write a tiny Cityscapes: ``layout="official"`` gives ``leftImg8bit/{split}/<city>/<city>_000000_0000NN_leftImg8bit.png``
    and ``gtFine/{split}/<city>/..._gtFine_color.png`` (RGBA, like the real files); ``layout="pix2pix"`` gives ``{split}/N.jpg``
    (photo left, label right, each ``width x height``). Returns ``root``."""
    if layout not in ("official", "pix2pix"):
        raise ValueError(f"layout must be 'official' or 'pix2pix', got {layout!r}")
    root, rng = Path(root), np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            label, photo = _label_and_photo(rng, width, height)
            if layout == "official":
                city = CITIES[split][i % len(CITIES[split])]
                stem = f"{city}_{i:06d}_{19 + i:06d}"
                for top, kind, arr in (("leftImg8bit", "leftImg8bit", photo), ("gtFine", "gtFine_color", label)):
                    d = root / top / split / city
                    d.mkdir(parents=True, exist_ok=True)
                    im = Image.fromarray(arr)
                    (im.convert("RGBA") if kind == "gtFine_color" else im).save(d / f"{stem}_{kind}.png")  # as the real files
            else:
                (root / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.concatenate([photo, label], axis=1)).save(root / split / f"{i + 1}.jpg", quality=95)
    return root


def make_maps(root: str | Path, n_train: int = 4, n_val: int = 2, size: int = 32, seed: int = 1) -> Path:
    """Write a tiny Maps dataset in the pix2pix format ``{train,val}/N.jpg`` (aerial left, map right)."""
    root, rng = Path(root), np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label, photo = _label_and_photo(rng, size, size)
            Image.fromarray(np.concatenate([photo, label], axis=1)).save(root / split / f"{i + 1}.jpg", quality=95)
    return root


def make_celeba(root: str | Path, n: int = 12, width: int = 18, height: int = 22, seed: int = 2,
                split_fractions: tuple[float, float] = (0.6, 0.2)) -> Path:
    """Write a tiny CelebA: ``img_align_celeba/000001.jpg ...`` (``width x height``, aligned-face
    aspect) and ``list_eval_partition.txt`` with the first 60% train (0), next 20% val (1), rest test (2)."""
    if n < 3:
        raise ValueError(f"n must be >= 3 (one image per split at least), got {n}")
    root, rng = Path(root), np.random.default_rng(seed)
    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    n_train = max(1, int(n * split_fractions[0]))
    n_val = max(1, int(n * split_fractions[1]))
    lines = []
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(n):
        skin = rng.uniform(120, 230, 3)
        face = ((xx - width / 2) / (width / 2.6)) ** 2 + ((yy - height / 2) / (height / 2.4)) ** 2 < 1
        img = np.where(face[..., None], skin, rng.uniform(0, 255, 3)) + rng.normal(0, 8, (height, width, 3))
        for ex in (width // 3, 2 * width // 3):  # eyes
            img[height // 2 - 2:height // 2, max(ex - 1, 0):ex + 1] = 30
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "img_align_celeba" / name, quality=95)
        lines.append(f"{name} {0 if i < n_train else 1 if i < n_train + n_val else 2}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def make_all(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """All fixtures under ``root``: cityscapes (official), cityscapes_pix2pix, maps, celeba."""
    root = Path(root)
    return {
        "cityscapes": make_cityscapes(root / "cityscapes", "official", seed=seed),
        "cityscapes_pix2pix": make_cityscapes(root / "cityscapes_pix2pix", "pix2pix", seed=seed + 1),
        "maps": make_maps(root / "maps", seed=seed + 2),
        "celeba": make_celeba(root / "celeba", seed=seed + 3),
    }
