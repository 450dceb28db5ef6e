"""Independent runs in worker processes: the toy MLPs are too small to use several threads well, so separate
runs on separate cores is how a 2-core machine trains a notebook's runs about twice as fast.

On Linux the workers are forked from a *fork server*: a fresh process that imported torch (and ``torch._dynamo``,
which the first optimizer of a process imports) once, so a worker starts in milliseconds instead of the 4-5 CPU
seconds those imports cost every spawned process. The server is one per process and lives as long as it, so a
notebook or a test session pays for the imports once, not once per worker.
A job carries the caller's environment variables, working folder and ``sys.path`` as they are when it is sent, so a
worker sees what a freshly spawned one would. Elsewhere the workers are spawned (macOS's system libraries are not
safe to fork once loaded, which is why Python spawns there by default)."""
from __future__ import annotations

import ctypes
import functools
import multiprocessing as mp
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

import torch

__all__ = ["map_in_processes"]


def _keep_freed_memory() -> None:
    """In a worker (a process of its own), let glibc keep freed blocks of up to 256 MB for reuse instead of handing
    each back to the OS: a stacked toy step frees and allocates tensors of a few MB every step, and the page faults
    of getting them back cost about a fifth of the step. Nothing happens where glibc is not the C library."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


_PRELOAD = ["torch", "torch._dynamo", __name__]


def _single_threaded(fn: Any, where: tuple[dict[str, str], str, list[str]], item: Any) -> Any:
    env, cwd, path = where
    if os.environ != env:  # what the caller's environment is now, not when the fork server started
        os.environ.clear()
        os.environ.update(env)
    if os.getcwd() != cwd:
        os.chdir(cwd)
    sys.path[:] = path
    torch.set_num_threads(1)
    _keep_freed_memory()
    return fn(item)


def _context(fn: Any) -> Any:
    """The fork server's context on Linux (preloading torch and ``fn``'s module when it is minilib's); else spawn.
    The preload list counts only for the server's first start in this process."""
    if not sys.platform.startswith("linux"):
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    module = getattr(fn, "__module__", "") or ""
    ctx.set_forkserver_preload(_PRELOAD + ([module] if module.startswith("minilib.") else []))
    return ctx


def map_in_processes(fn: Any, items: Sequence[Any], workers: int | None = None,
                     cost: Callable[[Any], Any] | None = None) -> list[Any]:
    """``[fn(item) for item in items]``, computed in ``workers`` processes with one torch thread each
    (default ``min(2, cpu count)``); with one worker or one item, here. ``fn`` must be a module-level function.

    ``cost(item)`` (any sortable value, computed here): the items start costliest first (ties in their order), so
    the workers finish together; the results still come back in the order of ``items``."""
    items = list(items)
    order = sorted(range(len(items)), key=lambda i: cost(items[i]), reverse=True) if cost else list(range(len(items)))
    workers = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    if workers <= 1 or len(items) <= 1:
        done = [fn(items[i]) for i in order]
    else:
        where = (dict(os.environ), os.getcwd(), list(sys.path))
        with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=_context(fn)) as pool:
            done = list(pool.map(functools.partial(_single_threaded, fn, where), [items[i] for i in order]))
    results: list[Any] = [None] * len(items)
    for i, r in zip(order, done):
        results[i] = r
    return results
