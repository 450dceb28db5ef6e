"""Image datasets of the MR-GAN experiments and a resumable stream for the Trainer (preparation of the
downloaded datasets: :mod:`minilib.data.prepare`).

* :class:`PairedImages` - Cityscapes (official ``leftImg8bit`` / ``gtFine`` layout, or the pix2pix
  side-by-side format) and Maps (pix2pix format): label / map -> photo pairs at 256x256, random flip,
  x normalised to zero mean and unit variance per channel (MR-GAN App. B.2), y in [-1, 1].
* :class:`CelebASR` - 64x64 targets in [-1, 1] and their 16x16 bicubic inputs (App. B.3).
* :class:`CelebAInpaint` - 128x128 square crops in [0, 1] with a random 48-64 px hole filled with the
  training-set mean pixel; the mask is a 4th input channel (App. B.4).
* :class:`DatasetStream` - ``next(batch_size)``, ``state_dict()``, ``load_state_dict()``: a seeded
  permutation per epoch plus a position, so a resumed run draws exactly the same batches.

Every random choice of an item (flip, hole) comes from a generator seeded by (seed, epoch, index),
so item ``i`` of epoch ``e`` is reproducible. Layouts and sources: ``data/README.md``.
"""
from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

__all__ = ["DataError", "PairedImages", "CelebASR", "CelebAInpaint", "DatasetStream", "load_image", "channel_stats",
           "celeba_split", "find_pairs", "LAYOUTS"]


README = "data/README.md"


EXTS = (".png", ".jpg", ".jpeg")


LAYOUTS = {
    "cityscapes": "<root>/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png with "
                  "<root>/gtFine/{train,val}/<city>/<name>_gtFine_color.png, or the pix2pix format "
                  "<root>/{train,val}/*.jpg (photo left, label colours right)",
    "maps": "<root>/{train,val}/*.jpg (pix2pix format: aerial photo left, map right)",
    "celeba": "<root>/img_align_celeba/*.jpg and <root>/list_eval_partition.txt "
              "(lines '<file> <0|1|2>' for train/val/test)",
}


def _err(dataset: str, what: str) -> DataError:
    return DataError(f"{what}. Expected layout for {dataset}: {LAYOUTS[dataset]}. See {README} for how to get it.")


def load_image(path: str | Path, dataset: str = "cityscapes") -> Image.Image:
    """Open an image as 8-bit RGB, raising :class:`DataError` naming the file if it is missing, corrupt, too large
    (PIL's decompression-bomb limit) or in a mode with no faithful 8-bit view (32-bit integer or float pixels).

    16-bit images (``I;16`` greyscale PNGs) are scaled to 8 bits (``v * 255 / 65535``), not clipped at 255."""
    path = Path(path)
    if not path.is_file():
        raise _err(dataset, f"missing image file {path}")
    try:
        with Image.open(path) as im:
            return _to_rgb8(im, path, dataset)  # forces a full decode: truncated files fail here
    except DataError:
        raise
    except Image.DecompressionBombError as e:
        raise _err(dataset, f"image file {path} is too large to decode safely ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError) as e:
        raise _err(dataset, f"corrupt image file {path} ({e})") from e


def _to_rgb8(im: Image.Image, path: Path, dataset: str) -> Image.Image:
    """``im`` as 8-bit RGB; 16-bit greyscale scaled down; modes without an 8-bit meaning refused."""
    if im.mode.startswith("I;16"):
        a = np.asarray(im).astype(np.float64)  # uint16 values 0..65535
        return Image.fromarray(np.round(a * (255.0 / 65535.0)).astype(np.uint8)).convert("RGB")
    if im.mode in ("I", "F"):
        a = np.asarray(im)
        bits = 16 if im.format == "PNG" and im.mode == "I" else None  # PNG stores 16-bit greyscale as "I" in some PILs
        if bits is None or a.min() < 0 or a.max() > 65535:
            raise _err(dataset, f"image file {path} has {'32-bit integer' if im.mode == 'I' else 'floating-point'} "
                                "pixels, which have no 8-bit meaning; convert it to 8-bit RGB (e.g. PNG or JPEG)")
        return Image.fromarray(np.round(a.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB image -> float tensor ``[3, H, W]`` in [0, 1]."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


def square_crop(img: Image.Image) -> Image.Image:
    """Centre square crop (CelebA's aligned faces are 178x218)."""
    w, h = img.size
    s = min(w, h)
    return img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))


def _item_rng(seed: int, epoch: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + index)


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTS) if folder.is_dir() else []


class _Base(torch.utils.data.Dataset):
    seed: int = 0

    def item(self, index: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index`` as ``(x, y)`` with its random choices (flip, hole) drawn from ``rng``."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return self.item(index, _item_rng(self.seed, 0, index))


def find_pairs(root: str | Path, split: str, dataset: str = "cityscapes") -> list[tuple[Path, Path | None]]:
    """List ``(file, second_file_or_None)``: official Cityscapes gives (photo, gtFine colour) pairs,
    the pix2pix format gives (side-by-side file, None). Raises :class:`DataError` if nothing is found."""
    root = Path(root)
    if not root.is_dir():
        raise _err(dataset, f"dataset folder {root} does not exist")
    official = root / "leftImg8bit" / split
    if dataset == "cityscapes" and official.is_dir():
        pairs = []
        for photo in sorted(official.glob("*/*_leftImg8bit.png")):
            label = root / "gtFine" / split / photo.parent.name / photo.name.replace("_leftImg8bit.png", "_gtFine_color.png")
            if not label.is_file():
                raise _err(dataset, f"missing label file {label} for photo {photo}")
            pairs.append((photo, label))
        if not pairs:
            raise _err(dataset, f"no *_leftImg8bit.png files under {official}")
        return pairs
    files = _list_images(root / split)
    if not files:
        raise _err(dataset, f"no images in {root / split}")
    return [(f, None) for f in files]


def channel_stats(images: Sequence[torch.Tensor]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over ``[C, H, W]`` images (pooled over pixels and images)."""
    if len(images) == 0:
        raise ValueError("images must be a non-empty sequence of [C, H, W] tensors")
    flat = torch.cat([im.flatten(1) for im in images], dim=1)  # [C, N]
    return flat.mean(1).tolist(), flat.std(1).clamp_min(1e-6).tolist()


class PairedImages(_Base):
    """Label/map -> photo pairs: item ``(x [3, S, S] normalised per channel, y [3, S, S] in [-1, 1])``.

    Args:
        root: dataset folder (official Cityscapes layout, pix2pix format, or ``prepare``'s output).
        split: ``"train"`` or ``"val"``.  dataset: ``"cityscapes"`` or ``"maps"`` (for messages).
        size: S (256 in the paper).  flip: random horizontal flip (train).
        stats: per-channel ``(mean, std)`` of x; default: ``<root>/stats.json`` if present, else computed
            from up to 200 training images (MR-GAN App. B.2 normalisation).
        seed: for the per-item random choices.
    """

    def __init__(self, root: str | Path, split: str = "train", dataset: str = "cityscapes", size: int = 256,
                 flip: bool | None = None, stats: tuple[Sequence[float], Sequence[float]] | None = None,
                 seed: int = 0) -> None:
        if dataset not in ("cityscapes", "maps"):
            raise ValueError(f"dataset must be 'cityscapes' or 'maps', got {dataset!r}")
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.root, self.split, self.dataset, self.size, self.seed = Path(root), split, dataset, size, seed
        self.flip = split == "train" if flip is None else flip
        self.pairs = find_pairs(root, split, dataset)
        if stats is None:
            stats = self._stats()
        self.mean = torch.tensor(stats[0]).view(3, 1, 1)
        self.std = torch.tensor(stats[1]).view(3, 1, 1)

    def _stats(self) -> tuple[list[float], list[float]]:
        f = self.root / "stats.json"
        if f.is_file():
            d = json.loads(f.read_text())
            return d["input_mean"], d["input_std"]
        train = self if self.split == "train" else PairedImages(self.root, "train", self.dataset, self.size, stats=([0.0] * 3, [1.0] * 3))
        return channel_stats([train.load(i)[0] for i in range(min(len(train), 200))])

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Unnormalised ``(x, y)`` in [0, 1], resized to S x S (labels with nearest, photos bicubic)."""
        a, b = self.pairs[index]
        if b is None:  # pix2pix side by side: photo (A) left, label / map (B) right; we learn B -> A
            im = load_image(a, self.dataset)
            w, h = im.size
            photo, label = im.crop((0, 0, w // 2, h)), im.crop((w // 2, 0, w, h))
        else:
            photo, label = load_image(a, self.dataset), load_image(b, self.dataset)
        s = (self.size, self.size)
        return to_tensor(label.resize(s, Image.NEAREST)), to_tensor(photo.resize(s, Image.BICUBIC))

    def item(self, index: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.load(index)
        if self.flip and torch.rand((), generator=rng) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return (x - self.mean) / self.std, y * 2 - 1


def celeba_split(root: str | Path, split: str) -> list[Path]:
    """Files of the official CelebA split (``list_eval_partition.txt``: 0 train, 1 val, 2 test)."""
    codes = {"train": "0", "val": "1", "test": "2"}
    if split not in codes:
        raise ValueError(f"split must be one of {sorted(codes)}, got {split!r}")
    root = Path(root)
    part = root / "list_eval_partition.txt"
    if not part.is_file():
        raise _err("celeba", f"missing split file {part}")
    files = []
    for n, line in enumerate(part.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise _err("celeba", f"malformed line {n} of {part}: {line!r} (expected '<file> <0|1|2>')")
        name = Path(fields[0])
        if name.is_absolute() or ".." in name.parts or "\\" in fields[0]:
            raise _err("celeba", f"line {n} of {part} names {fields[0]!r}, outside {root / 'img_align_celeba'}: "
                                 "files must be plain names inside that folder")
        if fields[1] == codes[split]:
            files.append(root / "img_align_celeba" / name)
    if not files:
        raise _err("celeba", f"no {split} images listed in {part}")
    return files


class _CelebA(_Base):
    def __init__(self, root: str | Path, split: str, size: int, flip: bool | None, seed: int) -> None:
        self.root, self.split, self.size, self.seed = Path(root), split, size, seed
        self.flip = split == "train" if flip is None else flip
        self.files = celeba_split(root, split)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int, rng: torch.Generator | None = None) -> torch.Tensor:
        """Square-cropped face ``[3, S, S]`` in [0, 1] (flipped at random when ``flip`` and rng given)."""
        img = square_crop(load_image(self.files[index], "celeba")).resize((self.size, self.size), Image.BICUBIC)
        t = to_tensor(img)
        if self.flip and rng is not None and torch.rand((), generator=rng) < 0.5:
            t = t.flip(-1)
        return t


class CelebASR(_CelebA):
    """Super-resolution pairs: ``x [3, S/scale, S/scale]`` (bicubic), ``y [3, S, S]``, both in [-1, 1]."""

    def __init__(self, root: str | Path, split: str = "train", size: int = 64, scale: int = 4,
                 flip: bool | None = None, seed: int = 0) -> None:
        if size % scale:
            raise ValueError(f"size must be a multiple of scale, got size={size}, scale={scale}")
        super().__init__(root, split, size, flip, seed)
        self.scale = scale

    def item(self, index: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.load(index, rng)
        img = Image.fromarray((y.permute(1, 2, 0) * 255).round().byte().numpy())
        lr = img.resize((self.size // self.scale,) * 2, Image.BICUBIC)
        return to_tensor(lr) * 2 - 1, y * 2 - 1


class CelebAInpaint(_CelebA):
    """Inpainting: ``x [4, S, S]`` = image with a random square hole (side in ``hole``) filled with the
    training-set mean pixel, plus the mask (1 in the hole); ``y [3, S, S]``; all in [0, 1] (App. B.4).

    ``mean_pixel`` default: ``<root>/stats.json`` if present, else the mean over the training split.
    """

    def __init__(self, root: str | Path, split: str = "train", size: int = 128, hole: tuple[int, int] = (48, 64),
                 mean_pixel: Sequence[float] | None = None, flip: bool | None = None, seed: int = 0) -> None:
        if not 1 <= hole[0] <= hole[1] <= size:
            raise ValueError(f"hole must be (min, max) sides with 1 <= min <= max <= size={size}, got {hole}")
        super().__init__(root, split, size, flip, seed)
        self.hole = hole
        if mean_pixel is None:
            f = self.root / "stats.json"
            if f.is_file():
                mean_pixel = json.loads(f.read_text())["mean_pixel"]
            else:
                train = self if split == "train" else _CelebA(root, "train", size, False, seed)
                mean_pixel = channel_stats([train.load(i) for i in range(min(len(train), 500))])[0]
        self.mean_pixel = torch.tensor(mean_pixel, dtype=torch.float32).view(3, 1, 1)

    def item(self, index: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.load(index, rng)
        side = int(torch.randint(self.hole[0], self.hole[1] + 1, (), generator=rng))
        top = int(torch.randint(0, self.size - side + 1, (), generator=rng))
        left = int(torch.randint(0, self.size - side + 1, (), generator=rng))
        mask = torch.zeros(1, self.size, self.size)
        mask[:, top:top + side, left:left + side] = 1
        x = y * (1 - mask) + self.mean_pixel * mask
        return torch.cat([x, mask]), y


class DatasetStream:
    """Feeds a dataset to the Trainer: ``next(batch_size) -> (x [B, ...], y [B, ...])``.

    Epoch e visits the items in ``randperm(len, seed + e)`` (this rank's share ``perm[rank::world_size]``
    under DDP); the state is ``(epoch, position)``, so ``load_state_dict`` resumes exactly. Batches
    run across epoch boundaries. Item randomness (flip, hole) is seeded by (seed, epoch, index).
    With ``workers > 0`` a thread pool decodes the next ``prefetch`` items ahead (PIL releases the
    GIL); items are pure functions of (epoch, index), so batches are identical to ``workers=0``.
    """

    def __init__(self, dataset: _Base, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 device: torch.device | str | None = None, workers: int = 0, prefetch: int = 64) -> None:
        if len(dataset) < world_size:
            raise ValueError(f"dataset has {len(dataset)} items, fewer than world_size={world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.dataset, self.seed, self.shuffle, self.rank, self.world_size = dataset, seed, shuffle, rank, world_size
        self.device = device
        self.epoch, self.pos = 0, 0
        self.prefetch = prefetch
        self._pool = ThreadPoolExecutor(workers) if workers > 0 else None
        self._futures: dict[tuple[int, int], Future] = {}
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            n = len(self.dataset)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch)) if self.shuffle else torch.arange(n)
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = perm[self.rank::self.world_size].tolist()
        return self._orders[epoch]

    def _load(self, epoch: int, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = self._order(epoch)[pos]
        return self.dataset.item(i, _item_rng(self.seed, epoch, i))

    def _get(self, epoch: int, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pool is None:
            return self._load(epoch, pos)
        e, p = epoch, pos
        for _ in range(self.prefetch):  # keep the next items in flight
            if (e, p) not in self._futures:
                self._futures[(e, p)] = self._pool.submit(self._load, e, p)
            p += 1
            if p >= len(self._order(e)):
                e, p = e + 1, 0
        return self._futures.pop((epoch, pos)).result()

    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``batch_size`` items, stacked."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        xs, ys = [], []
        order = self._order(self.epoch)
        while len(xs) < batch_size:
            if self.pos >= len(order):
                self.epoch, self.pos = self.epoch + 1, 0
                order = self._order(self.epoch)
            x, y = self._get(self.epoch, self.pos)
            xs.append(x)
            ys.append(y)
            self.pos += 1
        x, y = torch.stack(xs), torch.stack(ys)
        return (x.to(self.device), y.to(self.device)) if self.device is not None else (x, y)

    def state_dict(self) -> dict:
        """``{"epoch", "pos", "seed"}``: all that is needed to continue exactly."""
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` (the seed must match)."""
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"state was saved with seed {state['seed']}, this stream has seed {self.seed}")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._futures.clear()
