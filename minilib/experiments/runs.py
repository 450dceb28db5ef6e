"""The one run-folder format: what ``python -m minilib train --out RUN`` writes and what ``evaluate``, the
notebooks and :mod:`minilib.experiments.results` read.

A run folder holds ``run.json`` (the settings: task, profile, objective, config, steps, data folder),
``checkpoint.pt`` (resumable: weights, optimisers, RNG and stream state), ``predictor.pt`` (proxy MR),
``history.json``, ``samples/step_NNNNNN.png`` and ``eval_<protocol>_<metric>.json``. :class:`RunFolder` names
the files and writes them atomically; :func:`load_run` rebuilds a trained run from them.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import atomic_write_json, load_checkpoint
from ..data.images import DatasetStream
from ..objectives import Objective
from .image_tasks import Built, TaskSpec, build, get_task

__all__ = ["RunFolder", "LoadedRun", "load_run"]


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run under ``path``."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def settings_file(self) -> Path:
        return self.path / "run.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def predictor(self) -> Path:
        return self.path / "predictor.pt"

    @property
    def history_file(self) -> Path:
        return self.path / "history.json"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    def fixture(self, dataset: str) -> Path:
        """Where a smoke run without ``--data`` keeps its generated fixture dataset."""
        return self.path / "fixture" / dataset

    def is_run(self) -> bool:
        """True when the folder holds a trained run (settings and a checkpoint)."""
        return self.settings_file.is_file() and self.checkpoint.is_file()

    def write_settings(self, *, argv: list[str], data: Path | None, spec: TaskSpec, profile: str, objective: Objective,
                       config: Any, steps: int) -> Path:
        """Write ``run.json``. ``data`` None: the run trains on its own fixture (``fixture/<dataset>``)."""
        return atomic_write_json(self.settings_file, {
            "argv": list(argv), "data": None if data is None else str(data), "task": spec.settings(),
            "profile": profile, "objective": asdict(objective), "config": asdict(config), "steps": steps})

    def settings(self) -> dict[str, Any]:
        """The parsed ``run.json``."""
        if not self.settings_file.is_file():
            raise FileNotFoundError(f"{self.path} is not a training run: expected {self.settings_file.name} and "
                                    f"{self.checkpoint.name} (written by `python -m minilib train --out ...`)")
        return json.loads(self.settings_file.read_text())

    def data_root(self, meta: dict[str, Any], data: str | os.PathLike | None = None) -> Path:
        """The dataset folder: ``data`` if given, else the one the run trained on, else its own fixture."""
        if data is not None:
            return Path(data)
        return Path(meta["data"]) if meta.get("data") else self.fixture(meta["task"]["dataset"])

    def step(self) -> int | None:
        """The checkpoint's step, or None when there is no checkpoint yet."""
        return int(load_checkpoint(self.checkpoint)["step"]) if self.checkpoint.is_file() else None

    def history(self) -> dict[str, list]:
        return json.loads(self.history_file.read_text()) if self.history_file.is_file() else {}

    def write_history(self, history: dict[str, list]) -> Path:
        return atomic_write_json(self.history_file, history)


@dataclass
class LoadedRun:
    """A run loaded for figures and scores: ``G`` (eval mode), ``P`` (proxy MR's predictor, else None), the task
    ``spec``, ``objective``, ``profile``, checkpoint ``step``, training ``history`` and the
    :class:`~minilib.experiments.image_tasks.Built` task (datasets, ``to_image``)."""

    path: Path
    spec: TaskSpec
    objective: Objective
    profile: str
    step: int
    G: nn.Module
    P: nn.Module | None
    built: Built
    history: dict[str, list] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def val_batch(self, n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` validation pairs (fixed order, no flips): ``(x [n, ...], y [n, C, H, W])``."""
        n = min(n, len(self.built.val))
        return DatasetStream(self.built.val, seed, shuffle=False).next(n)


def load_run(path: str | os.PathLike, device: str = "cpu", data: str | os.PathLike | None = None) -> LoadedRun:
    """Load a ``train`` run folder: settings, G with the checkpoint's weights, P from ``predictor.pt`` if any,
    datasets (``data`` overrides the folder the run trained on) and history."""
    run = RunFolder(Path(path))
    if not run.is_run():
        run.settings()  # raises the not-a-run error when run.json is missing
        raise FileNotFoundError(f"{run.path} is not a training run: expected {run.checkpoint.name} "
                                "(written by `python -m minilib train --out ...`)")
    meta = run.settings()
    spec = get_task(meta["task"]["name"])
    objective = Objective(**meta["objective"])
    built = build(spec, run.data_root(meta, data), meta["profile"], device, meta["config"].get("seed", 0), objective,
                  progress=False)
    state = load_checkpoint(run.checkpoint, device)
    built.G.load_state_dict(state["G"])
    P = None
    if run.predictor.is_file():
        built.P.load_state_dict(load_checkpoint(run.predictor, device)["P"])
        P = built.P.to(device).eval()
    return LoadedRun(run.path, spec, objective, meta["profile"], int(state["step"]), built.G.to(device).eval(), P, built,
                     run.history(), meta)
