"""The one run-folder format: what ``python -m minilib train --out RUN`` writes and what ``evaluate``, the
notebooks and :mod:`minilib.experiments.results` read.

A run folder holds ``run.json`` (the settings: task, profile, objective, config, steps, data folder),
``checkpoint.pt`` (resumable: weights, optimisers, RNG and stream state), ``predictor.pt`` (proxy MR),
``history.json``, ``samples/step_NNNNNN.png`` and ``eval_<protocol>_<metric>.json``. :class:`RunFolder` names
the files and writes them atomically; :func:`load_run` rebuilds a trained run from them.

The checkpoint is the authority on what was trained: it records the objective, ``predictor.pt`` records the
distribution it was fitted for, and :func:`load_run` refuses a ``run.json`` or a predictor that disagrees with it.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import atomic_save, atomic_write_json, load_checkpoint, remove_temp_files
from ..data.images import DatasetStream
from ..errors import CheckpointError, MissingFileError
from ..objectives import Objective
from .image_tasks import Built, TaskSpec, build, get_task

__all__ = ["RunFolder", "LoadedRun", "load_run"]

_SETTINGS_KEYS = ("task", "profile", "objective", "config", "steps")
_ATOMIC_FILES = ["checkpoint.pt", "predictor.pt", "run.json", "history.json", "eval_*.json"]


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

    def remove_leftovers(self) -> list[Path]:
        """Delete what a killed run left: temporary files of interrupted atomic writes (``checkpoint.pt.*.tmp``, up
        to a checkpoint's size each) and half-generated fixtures (``fixture/*.tmp-*``). Returns what was removed."""
        removed = remove_temp_files(self.path, _ATOMIC_FILES)
        for d in (self.path / "fixture").glob("*.tmp-*") if (self.path / "fixture").is_dir() else []:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        return removed

    def save_predictor(self, P: nn.Module, objective: Objective, result: dict[str, Any]) -> Path:
        """Write ``predictor.pt``: P's weights, its validation record and the distribution (and objective) it was
        fitted for, so it is never reused for another one."""
        return atomic_save({"P": P.state_dict(), "best_val": result["best_val"], "best_step": result["best_step"],
                            "dist": objective.moment_dist, "objective": objective.name}, self.predictor)

    def load_predictor(self, objective: Objective, device: str | torch.device = "cpu") -> dict[str, Any]:
        """The state of ``predictor.pt``, refused (:class:`~minilib.errors.CheckpointError`) when it was fitted for
        another distribution than ``objective``'s."""
        state = load_checkpoint(self.predictor, device)
        dist = state.get("dist")
        if dist is None:
            warnings.warn(f"{self.predictor} records no distribution (written by an older minilib): assuming it was "
                          f"fitted for {objective.moment_dist!r}")
        elif dist != objective.moment_dist:
            raise CheckpointError(f"{self.predictor} was fitted for a {dist} likelihood ({state.get('objective')}), but "
                                  f"objective {objective.name!r} needs a {objective.moment_dist} one: delete the file to "
                                  "fit a new predictor, or choose another --out")
        if "P" not in state:
            raise CheckpointError(f"{self.predictor} holds no predictor weights ('P')")
        return state

    def write_settings(self, *, argv: list[str], data: Path | None, spec: TaskSpec, profile: str, objective: Objective,
                       config: Any, steps: int) -> Path:
        """Write ``run.json``. ``data`` None: the run trains on its own fixture (``fixture/<dataset>``)."""
        return atomic_write_json(self.settings_file, {
            "argv": list(argv), "data": None if data is None else str(data), "task": spec.settings(),
            "profile": profile, "objective": asdict(objective), "config": asdict(config), "steps": steps})

    def settings(self) -> dict[str, Any]:
        """The parsed ``run.json`` (:class:`~minilib.errors.CheckpointError` naming the file if it is malformed)."""
        f = self.settings_file
        if not f.is_file():
            raise MissingFileError(f"{self.path} is not a training run: expected {f.name} and "
                                   f"{self.checkpoint.name} (written by `python -m minilib train --out ...`)")
        try:
            meta = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{f} is not valid JSON ({e}); it is written by `python -m minilib train`: restore it "
                                  "or train again into another --out") from e
        missing = [k for k in _SETTINGS_KEYS if not isinstance(meta, dict) or k not in meta]
        if missing or not isinstance(meta.get("task"), dict) or not isinstance(meta.get("objective"), dict):
            raise CheckpointError(f"{f} is not a run's settings: expected the keys {list(_SETTINGS_KEYS)} "
                                  f"(missing {missing or 'none'}; 'task' and 'objective' must be objects)")
        return meta

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
    datasets (``data`` overrides the folder the run trained on) and history.

    The objective is the checkpoint's; a ``run.json`` that names another one (or a predictor fitted for another
    distribution) is refused with :class:`~minilib.errors.CheckpointError`, so a run is never scored under a label
    it was not trained with."""
    run = RunFolder(Path(path))
    if not run.is_run():
        run.settings()  # raises the not-a-run error when run.json is missing
        raise MissingFileError(f"{run.path} is not a training run: expected {run.checkpoint.name} "
                               "(written by `python -m minilib train --out ...`)")
    meta = run.settings()
    spec = get_task(meta["task"]["name"])
    state = load_checkpoint(run.checkpoint, device)
    objective = Objective(**meta["objective"])
    if "objective" in state and state["objective"] != meta["objective"]:
        trained = Objective(**state["objective"])
        raise CheckpointError(f"{run.checkpoint} was trained with objective {trained.name!r} ({trained.describe()}) but "
                              f"{run.settings_file} says {objective.name!r} ({objective.describe()}): run.json was "
                              "rewritten after training; the checkpoint is what was trained")
    built = build(spec, run.data_root(meta, data), meta["profile"], device, meta["config"].get("seed", 0), objective,
                  progress=False)
    try:
        built.G.load_state_dict(state["G"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"{run.checkpoint} does not fit the {spec.name} {meta['profile']} generator "
                              f"({type(e).__name__}: {str(e).splitlines()[0]})") from e
    P = None
    if run.predictor.is_file():
        built.P.load_state_dict(run.load_predictor(objective, device)["P"])
        P = built.P.to(device).eval()
    return LoadedRun(run.path, spec, objective, meta["profile"], int(state["step"]), built.G.to(device).eval(), P, built,
                     run.history(), meta)
