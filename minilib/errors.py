"""The errors minilib shows its users, and the checks at the edge that raise them.

Every error a user can cause is a :class:`MinilibError` whose message names the file, flag or argument and what
was expected. Each subclass also inherits the builtin it replaces, so ``except ValueError`` / ``except
FileNotFoundError`` keep working:

=========================  =============================  ====================================================
class                      also a                         raised when
=========================  =============================  ====================================================
:class:`ConfigError`       ``ValueError``                 a flag, argument or setting has a value that cannot
                                                          be used (wrong shape, K < 2, non-positive size, ...)
:class:`NonFiniteError`    ``ValueError`` (ConfigError)   a tensor argument holds NaN or Inf
:class:`ConfigTypeError`   ``TypeError``                  an argument has the wrong type or dtype
:class:`CheckpointError`   ``ValueError``                 ``checkpoint.pt``, ``predictor.pt`` or ``run.json`` is
                                                          unreadable or belongs to other settings
:class:`MissingFileError`  ``FileNotFoundError``          an expected file or folder does not exist
:class:`DataError`         ``FileNotFoundError``          a dataset file is missing, corrupt or unsupported
:class:`TrainingDiverged`  ``FloatingPointError``         a loss, weight or buffer became NaN / Inf
:class:`MissingWeightsError` ``RuntimeError``             pretrained metric weights are not on this machine
=========================  =============================  ====================================================

``python -m minilib ...`` prints a :class:`MinilibError` as one or two lines and exits with status 2 (``--debug``
or ``MINILIB_DEBUG=1`` shows the traceback).

The checks: :func:`check_tensor`, :func:`check_same_device`, :func:`check_int`, :func:`check_number`, :func:`check_device`,
:func:`check_output_folder`, :func:`check_output_file` for library arguments; :func:`positive_int`, :func:`nonnegative_int`, :func:`device_arg`, :func:`output_folder`,
:func:`output_file`, :func:`existing_folder` as ``argparse`` types, so a bad flag is refused before anything runs
or is written.
"""
from __future__ import annotations

import argparse
import contextlib
import contextvars
import math
import os
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = [
    "MinilibError", "ConfigError", "NonFiniteError", "ConfigTypeError", "CheckpointError", "MissingFileError",
    "DataError", "TrainingDiverged", "MissingWeightsError",
    "check_tensor", "inputs_checked", "check_same_device", "check_int", "check_number", "check_device", "check_output_folder",
    "check_output_file", "debug_enabled", "positive_int", "nonnegative_int", "device_arg", "output_folder", "output_file", "existing_folder",
]


class MinilibError(Exception):
    """Base of every error minilib raises for a user's input, file or setting (not for its own bugs)."""


class ConfigError(MinilibError, ValueError):
    """A flag, argument or setting has a value that cannot be used; the message names it and what was expected."""


class NonFiniteError(ConfigError):
    """A tensor argument holds NaN or Inf."""


class ConfigTypeError(MinilibError, TypeError):
    """An argument has the wrong type (e.g. a list for a tensor) or dtype (integers where floats are needed)."""


class CheckpointError(MinilibError, ValueError):
    """A run's file (checkpoint, predictor, run.json) is unreadable or was written with other settings."""


class MissingFileError(MinilibError, FileNotFoundError):
    """An expected file or folder does not exist; the message names it and what writes it."""


class DataError(MissingFileError):
    """A dataset file is missing, corrupt or in an unsupported format; the message names the file and the layout."""


class TrainingDiverged(MinilibError, FloatingPointError):
    """A loss, a weight or a buffer became NaN or Inf; training stopped and the last good checkpoint is kept."""


class MissingWeightsError(MinilibError, RuntimeError):
    """Pretrained weights a metric needs are not on this machine (they download from the internet)."""


def debug_enabled() -> bool:
    """True when ``MINILIB_DEBUG`` is set (not "" or "0"; ``python -m minilib --debug`` sets it): commands then let
    a :class:`MinilibError` propagate with its traceback instead of printing it."""
    return os.environ.get("MINILIB_DEBUG", "") not in ("", "0")


# ------------------------------------------------------------------------------------------ library arguments
def _shape(t: Any) -> str:
    return str(tuple(t.shape)) if hasattr(t, "shape") else type(t).__name__


_INPUTS_CHECKED = contextvars.ContextVar("minilib_inputs_checked", default=False)


@contextlib.contextmanager
def inputs_checked():
    """Within this block ``check_tensor(..., finite="cpu")`` skips its NaN / Inf test: the caller has already tested
    every tensor it passes on, at once (a stack of toy runs tests all its runs' samples in one operation instead of
    one per loss call). Shapes and dtypes are still checked."""
    token = _INPUTS_CHECKED.set(True)
    try:
        yield
    finally:
        _INPUTS_CHECKED.reset(token)


def check_tensor(name: str, t: Any, *, dims: int | None = None, min_dims: int | None = None, floating: bool = True,
                 nonempty: bool = True, finite: bool | str = True) -> torch.Tensor:
    """``t`` if it is a tensor with the wanted number of dims, a floating dtype and elements; else an error naming
    ``name``.

    ``finite``: ``True`` checks for NaN / Inf (one device sync on an accelerator); ``"cpu"`` checks CPU tensors
    only (the training hot path: on an accelerator a NaN reaches the loss and the Trainer's guard stops the run);
    ``False`` skips the check. Meta tensors (no data) are never checked for values."""
    if not isinstance(t, torch.Tensor):
        raise ConfigTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if dims is not None and t.dim() != dims:
        raise ConfigError(f"{name} must have {dims} dims, got shape {tuple(t.shape)}")
    if min_dims is not None and t.dim() < min_dims:
        raise ConfigError(f"{name} must have at least {min_dims} dims, got shape {tuple(t.shape)}")
    if floating and not (t.is_floating_point() or t.is_complex()):
        raise ConfigTypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype} (convert it with .float())")
    if nonempty and t.numel() == 0:
        raise ConfigError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    check = finite is True or (finite == "cpu" and t.device.type == "cpu" and not _INPUTS_CHECKED.get())
    if check and t.device.type != "meta" and t.numel() and not bool(torch.isfinite(t).all()):
        bad = "NaN" if bool(torch.isnan(t).any()) else "Inf"
        raise NonFiniteError(f"{name} must be finite, found {bad} (shape {tuple(t.shape)})")
    return t


def check_same_device(ref_name: str, ref: torch.Tensor, **others: torch.Tensor | None) -> None:
    """Every tensor of ``others`` is on ``ref``'s device; else an error naming the first one that is not."""
    for name, t in others.items():
        if isinstance(t, torch.Tensor) and t.device != ref.device:
            raise ConfigError(f"{name} is on device {t.device} but {ref_name} is on {ref.device}; move both to one device")


def check_int(name: str, v: Any, minimum: int = 1) -> int:
    """``v`` if it is an int >= ``minimum`` (bools refused); else an error naming ``name``."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigTypeError(f"{name} must be an int >= {minimum}, got {v!r} ({type(v).__name__})")
    if v < minimum:
        what = "a positive int" if minimum == 1 else "a non-negative int" if minimum == 0 else f"an int >= {minimum}"
        raise ConfigError(f"{name} must be {what}, got {v!r}")
    return v


def check_number(name: str, v: Any, *, low: float | None = None, high: float | None = None, low_open: bool = True,
                 high_open: bool = True, finite: bool = True) -> float:
    """``float(v)`` if it is a real number (finite unless ``finite=False``) in the interval; else an error naming
    ``name``. ``low`` / ``high`` are excluded unless ``low_open`` / ``high_open`` is False."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) and not (isinstance(v, torch.Tensor) and v.numel() == 1):
        raise ConfigTypeError(f"{name} must be a number, got {type(v).__name__}")
    x = float(v)
    lo_ok = low is None or (x > low if low_open else x >= low)
    hi_ok = high is None or (x < high if high_open else x <= high)
    if math.isnan(x) or (finite and math.isinf(x)) or not (lo_ok and hi_ok):
        if low == 0 and high is None:
            want = "a positive number" if low_open else "a non-negative number"
        else:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
            want = "a number " + " and ".join(c for c in (lo, hi) if c) if (lo or hi) else "a number"
        raise ConfigError(f"{name} must be {want}{' (finite)' if finite else ''}, got {v!r}")
    return x


def check_device(name: str, device: str | torch.device) -> torch.device:
    """A device that exists on this machine (``cpu``, ``cuda``, ``cuda:N``, ``mps``); else an error naming ``name``."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"{name}: {device!r} is not a device; expected cpu, cuda or cuda:N") from e
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{name}: {device!r} asks for CUDA but no CUDA device is visible here; use cpu")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"{name}: {device!r} does not exist: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{name}: {device!r} asks for Apple's MPS, which is not available here; use cpu")
        return dev
    raise ConfigError(f"{name}: {device!r} is not supported; expected cpu, cuda or cuda:N")


# ------------------------------------------------------------------------------------------ argparse types
def _argtype(check: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return check(text)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from e
    parse.__name__ = name  # argparse names the type in "invalid <name> value" messages
    return parse


def _int(text: str, minimum: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise ConfigError(f"expected an int >= {minimum}, got {text!r}") from None
    if v < minimum:
        raise ConfigError(f"expected {'a positive' if minimum == 1 else 'a non-negative'} int, got {text}")
    return v


positive_int = _argtype(lambda s: _int(s, 1), "positive_int")
positive_int.__doc__ = """argparse type: an int >= 1 (``--steps 0`` and ``--k -1`` are refused, naming the flag)."""
nonnegative_int = _argtype(lambda s: _int(s, 0), "nonnegative_int")
nonnegative_int.__doc__ = """argparse type: an int >= 0."""


def _device(text: str) -> str:
    check_device("device", text)
    return text


device_arg = _argtype(_device, "device")
device_arg.__doc__ = """argparse type: a device that exists here (``--device banana`` or ``cuda`` without a GPU are refused)."""


def _writable_dir(path: Path) -> None:
    """``path`` (an existing folder, or the nearest existing folder above it) can be written."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{probe} is not writable")


def _output_folder(text: str) -> Path:
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{text} is a file; expected a folder (existing, or one that can be created)")
    _writable_dir(path)
    return path


def _output_file(text: str) -> Path:
    path = Path(text).expanduser()
    if path.is_dir():
        raise ConfigError(f"{text} is a folder; expected a file name (e.g. {Path(text) / 'result.json'})")
    _writable_dir(path.parent)
    return path


def _existing_folder(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{text} {'is not a folder' if path.exists() else 'does not exist'}")
    return path


def check_output_folder(name: str, path: str | os.PathLike) -> Path:
    """``path`` is a folder that exists or can be created, and can be written; else an error naming ``name``."""
    try:
        return _output_folder(str(path))
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None


def check_output_file(name: str, path: str | os.PathLike) -> Path:
    """``path`` names a file (not a folder) whose folder exists or can be created, writable; else an error naming
    ``name``."""
    try:
        return _output_file(str(path))
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None


def _as_given(check: Callable[[str], Any]) -> Callable[[str], str]:
    """``check`` the text, then return it unchanged (a flag's value keeps its type: a string)."""
    def run(text: str) -> str:
        check(text)
        return text
    return run


output_folder = _argtype(_as_given(_output_folder), "folder")
output_folder.__doc__ = """argparse type: a folder that exists or can be created, and can be written (the text as given)."""
output_file = _argtype(_as_given(_output_file), "file")
output_file.__doc__ = """argparse type: a file path (not a folder) whose folder exists or can be created, writable."""
existing_folder = _argtype(_as_given(_existing_folder), "folder")
existing_folder.__doc__ = """argparse type: an existing folder (the text as given)."""
