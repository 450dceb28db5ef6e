"""Independent runs in worker processes: the toy MLPs are too small to use several threads well, so separate
runs on separate cores is how a 2-core machine trains a notebook's runs about twice as fast."""
from __future__ import annotations

import ctypes
import functools
import multiprocessing as mp
import os
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


def _single_threaded(fn: Any, item: Any) -> Any:
    torch.set_num_threads(1)
    _keep_freed_memory()
    return fn(item)


def map_in_processes(fn: Any, items: Sequence[Any], workers: int | None = None,
                     cost: Callable[[Any], Any] | None = None) -> list[Any]:
    """``[fn(item) for item in items]``, computed in ``workers`` spawned processes with one torch thread each
    (default ``min(2, cpu count)``); with one worker or one item, here. ``fn`` must be a module-level function.

    ``cost(item)`` (any sortable value, computed here): the items start costliest first (ties in their order), so
    the workers finish together; the results still come back in the order of ``items``."""
    items = list(items)
    order = sorted(range(len(items)), key=lambda i: cost(items[i]), reverse=True) if cost else list(range(len(items)))
    workers = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    if workers <= 1 or len(items) <= 1:
        done = [fn(items[i]) for i in order]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=mp.get_context("spawn")) as pool:
            done = list(pool.map(functools.partial(_single_threaded, fn), [items[i] for i in order]))
    results: list[Any] = [None] * len(items)
    for i, r in zip(order, done):
        results[i] = r
    return results
