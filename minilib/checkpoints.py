"""Files that must survive a crash: atomic writes, weights-only loads, and the result cache folder.

* :func:`atomic_save` / :func:`atomic_write_text` / :func:`atomic_write_json` write to a temporary file in
  the target's folder, flush it to disk, then rename it over the target: a kill at any moment leaves the old
  file or the new one, never half a file.
* :func:`load_checkpoint` reads a file written by :func:`atomic_save` with ``torch.load(weights_only=True)``
  (tensors, numbers, strings, lists and dicts only: no arbitrary code runs).
* :func:`cache_dir` is where trained toy runs, the digit classifier and k-means bins are cached:
  ``$MINILIB_CACHE`` if set, else ``~/.cache/minilib``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import torch

__all__ = ["atomic_write", "atomic_save", "atomic_write_text", "atomic_write_json", "load_checkpoint", "cache_dir"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temporary file + rename); returns the path."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def _jsonable(o: Any) -> Any:
    return o.tolist() if hasattr(o, "tolist") else str(o)  # numpy arrays and tensors as lists, the rest as text


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (arrays as lists, other non-JSON values as text)."""
    return atomic_write_text(path, json.dumps(obj, indent=1, default=_jsonable))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`atomic_save` with ``weights_only=True`` (no arbitrary code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location=map_location, weights_only=True)


def cache_dir(*parts: str) -> Path:
    """The result cache: ``$MINILIB_CACHE`` if set, else ``~/.cache/minilib``, joined with ``parts``."""
    root = os.environ.get("MINILIB_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "minilib").joinpath(*parts)
