"""Data with a known layout or a known truth.

* :mod:`minilib.data.toys` — toy worlds with exact p(y | x) (ring of 8, Y-shape, grid, 1-D mixture) and their stream.
* :mod:`minilib.data.digits` — scikit-learn's 8x8 digits: splits, digit completion and stacked-digit streams.
* :mod:`minilib.data.images` — Cityscapes / Maps / CelebA datasets and :class:`DatasetStream` (resumable).
* :mod:`minilib.data.prepare` — ``python -m minilib prepare``; :mod:`minilib.data.fixtures` — tiny datasets in the
  real on-disk layouts for tests and smoke runs.

Every stream has ``next(batch_size) -> (x, y)``, ``state_dict()`` and ``load_state_dict()``.
"""
from .images import CelebAInpaint, CelebASR, DataError, DatasetStream, PairedImages  # noqa: F401

__all__ = ["CelebAInpaint", "CelebASR", "DataError", "DatasetStream", "PairedImages"]
