"""Files that must survive a crash: atomic writes, weights-only loads, and the result cache folder.

* :func:`atomic_save` / :func:`atomic_write_text` / :func:`atomic_write_json` write to a temporary file in
  the target's folder, flush it to disk, then rename it over the target: a kill at any moment leaves the old
  file or the new one, never half a file.
* :func:`load_checkpoint` reads a file written by :func:`atomic_save` with ``torch.load(weights_only=True)``
  (tensors, numbers, strings, lists and dicts only: no arbitrary code runs).
  Its errors name the file: a missing file is a :class:`~minilib.errors.MissingFileError`, an empty, truncated or
  foreign one a :class:`~minilib.errors.CheckpointError`.
* :func:`remove_temp_files` deletes the temporary files a killed :func:`atomic_write` leaves behind
  (``<name>.<random>.tmp``: up to a whole checkpoint each), so a run cleans its folder at its next start.
* :func:`save_rng` / :func:`restore_rng` keep the RNG states of exact resume on CPU in a checkpoint and put them
  back on any device; :func:`rng_state` turns a loaded state back into what ``torch.Generator.set_state`` accepts
  (a CPU byte tensor: loading with ``map_location="cuda"`` moves every tensor to the GPU, RNG states included).
* :func:`nonfinite_tensors` names the parameters and buffers that hold NaN / Inf (a diverged run must not
  overwrite its last good checkpoint).
* :func:`cache_dir` is where trained toy runs, the digit classifier and k-means bins are cached:
  ``$MINILIB_CACHE`` if set, else ``~/.cache/minilib``. :func:`file_lock` lets two processes that want the same
  cached result (two notebooks run at once, two test workers) compute it once: the second waits for the first.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, IO, Iterator

import math
import warnings
import zipfile

import torch
from torch import nn

from .errors import CheckpointError, MissingFileError

__all__ = ["file_lock", "atomic_write", "atomic_save", "atomic_write_text", "atomic_write_json", "load_checkpoint", "remove_temp_files",
           "rng_state", "save_rng", "restore_rng", "to_cpu", "nonfinite_tensors", "cache_dir"]


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
    if hasattr(o, "tolist"):  # numpy arrays and tensors as lists, the rest as text
        return _finite(o.tolist())
    return float(o) if hasattr(o, "__float__") and not isinstance(o, (str, bytes)) else str(o)


def _finite(o: Any) -> Any:
    """``o`` with every NaN / Inf float replaced by None (JSON has no NaN: a bare ``NaN`` breaks strict readers)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (arrays as lists, other non-JSON values as text).

    JSON has no NaN or Infinity: non-finite numbers are written as ``null`` (a writer that must explain them adds a
    note beside them)."""
    return atomic_write_text(path, json.dumps(_finite(obj), indent=1, default=_jsonable, allow_nan=False))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """Load a checkpoint written by :func:`atomic_save` with ``weights_only=True`` (no arbitrary code).

    ``mmap=True`` maps the file instead of reading it (cheap when only a few entries are needed). Raises
    :class:`~minilib.errors.MissingFileError` if ``path`` does not exist and :class:`~minilib.errors.CheckpointError`
    naming the file if it is empty, truncated, not a torch file or holds objects ``weights_only`` refuses."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): its write was interrupted; delete it (a run "
                              "then starts over) or restore a copy")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its directory is written last
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): not a complete torch archive, so it is "
                              "truncated (an interrupted copy or write) or not a checkpoint written by minilib")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError, IndexError, ...
        text = str(e)
        if "Weights only load failed" in text:
            why = next((ln.strip() for ln in text.splitlines() if "Unsupported global" in ln or "WeightsUnpickler" in ln),
                       "an object that is not a tensor or plain data")
            raise CheckpointError(f"checkpoint {path} holds objects weights_only loading refuses (no code runs on "
                                  f"load): {why}") from e
        first = text.strip().splitlines()[0] if text.strip() else ""
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): it is truncated, corrupt or not written "
                              f"by minilib ({type(e).__name__}{': ' + first if first else ''})") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict of weights and state")
    return state


def remove_temp_files(folder: str | os.PathLike, names: list[str]) -> list[Path]:
    """Delete ``<name>.*.tmp`` in ``folder`` for each of ``names`` (``*`` in a name matches too): what a killed
    :func:`atomic_write` left. Returns the removed paths. Only call it when no other process writes there."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for name in names:
        for p in folder.glob(f"{name}.*.tmp"):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def rng_state(state: Any, name: str = "rng state") -> torch.Tensor:
    """A saved RNG state as ``Generator.set_state`` wants it: a CPU ``uint8`` tensor, wherever it was loaded to.

    ``map_location="cuda"`` moves every tensor of a checkpoint to the GPU, RNG states included, and
    ``set_state`` refuses a CUDA tensor ("RNG state must be a torch.ByteTensor"). Integer tensors of another
    dtype are converted when their values are bytes; anything else is a :class:`~minilib.errors.CheckpointError`."""
    if not isinstance(state, torch.Tensor) or state.dim() != 1 or state.dtype.is_floating_point or state.is_complex():
        raise CheckpointError(f"{name} must be a 1-D byte tensor (torch.Generator.get_state()), got "
                              f"{type(state).__name__ if not isinstance(state, torch.Tensor) else (state.dtype, tuple(state.shape))}")
    state = state.detach().to("cpu")
    if state.dtype != torch.uint8:
        if state.numel() and (int(state.min()) < 0 or int(state.max()) > 255):
            raise CheckpointError(f"{name} holds values outside 0..255: not an RNG state")
        state = state.to(torch.uint8)
    return state.contiguous()


def save_rng(noise_gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    """The RNG states exact resume needs, as CPU byte tensors: the noise generator's, torch's global CPU one and,
    on CUDA, the device's."""
    out = {"noise_rng": noise_gen.get_state().cpu(), "noise_device": device.type, "torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda_rng"] = torch.cuda.get_rng_state(device).cpu()
    return out


def restore_rng(state: dict, noise_gen: torch.Generator, device: torch.device, reseed: int) -> None:
    """Put the states of :func:`save_rng` back, wherever ``state``'s tensors were loaded to.

    A noise state saved on another device type (a CUDA run resumed on CPU) cannot be set: ``noise_gen`` is then
    seeded with ``reseed`` and a warning says the run is no longer bit-identical."""
    noise = rng_state(state["noise_rng"], "noise_rng")
    if state.get("noise_device", device.type) == device.type:
        noise_gen.set_state(noise)
    else:
        warnings.warn(f"the checkpoint's noise RNG was on {state['noise_device']}, this run is on {device.type}: "
                      "training continues with freshly seeded noise (not bit-identical to an uninterrupted run)")
        noise_gen.manual_seed(reseed)
    torch.set_rng_state(rng_state(state["torch_rng"], "torch_rng"))
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(rng_state(state["cuda_rng"], "cuda_rng"), device)


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor inside dicts, lists and tuples moved to CPU: a stream's or a hook's state loaded
    with ``map_location="cuda"`` (an RNG state in it must be a CPU byte tensor again)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def nonfinite_tensors(**modules: nn.Module | None) -> list[str]:
    """``"<module>.<name>"`` of every floating parameter and buffer holding NaN / Inf (one device sync in all).

    Losses can stay finite while a network diverges (e.g. BatchNorm ``running_var`` at Inf makes every eval-mode
    sample constant); the Trainer checks this before each checkpoint and every few steps."""
    named = [(f"{tag}.{n}", t) for tag, m in modules.items() if m is not None
             for n, t in [*m.named_parameters(), *m.named_buffers()] if t.is_floating_point() and t.numel()]
    if not named:
        return []
    ok = torch.stack([torch.isfinite(t).all() for _, t in named]).tolist()
    return [n for (n, _), good in zip(named, ok) if not good]


def cache_dir(*parts: str) -> Path:
    """The result cache: ``$MINILIB_CACHE`` if set, else ``~/.cache/minilib``, joined with ``parts``."""
    root = os.environ.get("MINILIB_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "minilib").joinpath(*parts)


def _lock_is_stale(lock: Path, stale_after: float) -> bool:
    """A lock whose owner (``pid host`` inside) is a dead process on this machine, or older than ``stale_after``."""
    try:
        age = time.time() - lock.stat().st_mtime
        pid, host = lock.read_text().split()
    except FileNotFoundError:
        return False  # released meanwhile: try again
    except ValueError:  # empty or garbled: its owner may be between open and write, so judge by age only
        return age > min(stale_after, 60.0)
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            pass
    return age > stale_after


@contextmanager
def file_lock(path: str | os.PathLike, poll: float = 0.5, stale_after: float = 6 * 3600) -> Iterator[Path]:
    """Hold ``<path>.lock`` while producing ``path``; check whether ``path`` exists *after* entering.

    Another process asking for the same ``path`` waits here (polling every ``poll`` s) until the holder is done, then
    finds the result instead of computing it a second time. A lock left behind by a process that died on this
    machine (or older than ``stale_after`` s, e.g. from another machine sharing the folder) is removed."""
    lock = Path(path).with_name(Path(path).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _lock_is_stale(lock, stale_after):
                lock.unlink(missing_ok=True)
            else:
                time.sleep(poll)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}")
        break
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
