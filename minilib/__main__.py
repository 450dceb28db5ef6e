"""Command line: ``python -m minilib <command> [...]``.

Each command is implemented next to the code it drives; this file only dispatches:

=========================  =====================================================================
``train``                  train an image task (Pix2Pix / SRGAN / GLCIC) -> ``minilib.experiments.image_train``
``prepare``                convert a downloaded dataset to the course's layout -> ``minilib.data.prepare``
``evaluate``               score a run with a named protocol, write JSON -> ``minilib.experiments.evaluate``
``reproduce toy``          the toy tables and figures of notebooks 02-03 -> ``minilib.experiments.toys``
``bench toy|image|hmc``    timing ratios printed as a table -> ``minilib.experiments.bench``
``bench widgets``          the app's batched engine vs one objective -> ``minilib.app.bench``
``site``                   the saved notebooks as a static HTML site (offline) -> ``minilib.course.site``
``course-map``             README course map and notebook run-time lines from one table -> ``minilib.course.course_map``
=========================  =====================================================================

``python -m minilib <command> --help`` explains each one. An error the user can fix (a :class:`minilib.errors.MinilibError`:
a bad flag, a missing or unreadable file, an incompatible resume) is printed in one or two lines and the exit status is 2;
``--debug`` (anywhere on the line) or ``MINILIB_DEBUG=1`` shows its traceback instead.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Callable, Sequence

# command -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("minilib.experiments.image_train", "train_main", "train an image task (pix2pix-cityscapes, srgan-celeba, glcic-celeba, ...)"),
    "prepare": ("minilib.data.prepare", "prepare_main", "prepare a downloaded dataset (cityscapes, maps, celeba) for training"),
    "evaluate": ("minilib.experiments.evaluate", "evaluate_main", "evaluate a training run with a named protocol and write JSON"),
    "site": ("minilib.course.site", "site_main", "the saved notebooks and the course map as a static site (works offline)"),
    "course-map": ("minilib.course.course_map", "course_map_main",
                   "rewrite the README's course map and the notebooks' run-time lines from minilib.course.course_map"),
}
SUBCOMMANDS: dict[str, dict[str, tuple[str, str, str]]] = {
    "reproduce": {
        "toy": ("minilib.experiments.toys", "reproduce_main", "the toy experiments' tables (markdown) and figures"),
    },
    "bench": {
        "toy": ("minilib.experiments.bench", "bench_toy_main", "toy step time of each objective relative to a GAN step"),
        "widgets": ("minilib.app.bench", "bench_main", "several objectives trained at once vs one at a time"),
        "image": ("minilib.experiments.bench", "bench_image_main", "image MR/pMR generator step relative to the baseline step"),
        "hmc": ("minilib.experiments.bench", "bench_hmc_main", "HMC throughput and PresGAN step cost"),
    },
}


def _usage() -> str:
    lines = ["usage: python -m minilib <command> [options]", "", "commands:"]
    for name, (_, _, text) in COMMANDS.items():
        lines.append(f"  {name:<22}{text}")
    for group, subs in SUBCOMMANDS.items():
        for sub, (_, _, text) in subs.items():
            lines.append(f"  {group + ' ' + sub:<22}{text}")
    lines += ["", "Run `python -m minilib <command> --help` for a command's options; add --debug to see a traceback."]
    return "\n".join(lines)


def _load(module: str, func: str) -> Callable[[Sequence[str]], int | None]:
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to a command; returns the exit status.

    A :class:`~minilib.errors.MinilibError` becomes ``error: <message>`` on stderr and status 2; with ``--debug`` in
    ``argv`` or ``MINILIB_DEBUG=1`` in the environment it propagates with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:  # commands that print their own errors read MINILIB_DEBUG too
        argv = [a for a in argv if a != "--debug"]
        old = os.environ.get("MINILIB_DEBUG")
        os.environ["MINILIB_DEBUG"] = "1"
        try:
            return _dispatch(argv)
        finally:
            if old is None:
                os.environ.pop("MINILIB_DEBUG", None)
            else:
                os.environ["MINILIB_DEBUG"] = old
    from .errors import MinilibError, debug_enabled

    if debug_enabled():
        return _dispatch(argv)
    try:
        return _dispatch(argv)
    except MinilibError as e:
        print(f"error: {e}", file=sys.stderr)
        print("(run with --debug or MINILIB_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd in COMMANDS:
        module, func, _ = COMMANDS[cmd]
        return int(_load(module, func)(rest) or 0)
    if cmd in SUBCOMMANDS:
        subs = SUBCOMMANDS[cmd]
        if not rest or rest[0] in ("-h", "--help"):
            print(f"usage: python -m minilib {cmd} {{{','.join(subs)}}} [options]")
            for sub, (_, _, text) in subs.items():
                print(f"  {sub:<10}{text}")
            return 0
        if rest[0] not in subs:
            print(f"error: unknown {cmd} target {rest[0]!r}; expected one of {sorted(subs)}", file=sys.stderr)
            return 2
        module, func, _ = subs[rest[0]]
        return int(_load(module, func)(rest[1:]) or 0)
    print(f"error: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
