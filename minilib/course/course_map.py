"""The course map: the one table of the notebooks, what each teaches, what it needs and how long it takes.

:data:`COURSE` is the single source. Generated from it, and checked against it by ``tests/test_run_times.py``:

* the README's course map, between ``<!-- course-map -->`` and ``<!-- /course-map -->`` (:func:`readme_table`),
  which the static site's index reads in turn (:mod:`minilib.course.site`);
* the run-time line in the first cell of every notebook, written exactly as :func:`run_time_line` writes it,
  ``**Run time:** about 1.5 min on 2 CPU cores from an empty cache``, optionally followed by more text on the line.

To change a number, edit it here and run ``python -m minilib course-map``: it rewrites the README table and the
number in each notebook's run-time line (nothing else in the notebook changes). ``--check`` writes nothing and
exits with status 1 listing what differs.

**Run time**: minutes of wall-clock time to execute the notebook top to bottom (``jupyter nbconvert --execute``) on
2 CPU cores from an empty ``$MINILIB_CACHE``; for notebooks 08-10 that is the CPU smoke profile. **Study time**:
run time plus reading time, rounded to 5 minutes; reading time (:attr:`Lesson.read_min`) was estimated as the
notebook's prose at 120 words a minute plus its visible code at 20 lines a minute, rounded up to 5 minutes. The
exercises come on top.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["Lesson", "COURSE", "MAP_START", "MAP_END", "RUN_TIME_RE", "run_time_line", "readme_table",
           "update_readme", "notebook_run_time", "set_notebook_run_time", "course_map_main"]

MAP_START, MAP_END = "<!-- course-map -->", "<!-- /course-map -->"
CPU, GPU = "CPU", "CPU (smoke) / GPU (full)"
RUN_TIME_RE = re.compile(r"\*\*Run time:\*\* about (\d+(?:\.\d+)?) min on 2 CPU cores from an empty cache")


@dataclass(frozen=True)
class Lesson:
    """One notebook of the course."""

    number: str
    notebook: str  # file name under notebooks/
    teaches: str  # markdown (only `code` spans): what the notebook shows
    run_min: float  # measured: minutes on 2 CPU cores from an empty cache (08-10: the smoke profile)
    read_min: int  # estimated reading time (see the module docstring)
    needs: str = CPU  # CPU, or GPU for the full profile

    @property
    def run_time(self) -> str:
        return f"{self.run_min:g} min" + (" (smoke)" if self.needs == GPU else "")

    @property
    def study_time(self) -> str:
        return f"{max(5, 5 * round((self.run_min + self.read_min) / 5))} min"


COURSE: tuple[Lesson, ...] = (
    Lesson("01", "01_l2_bias_variance.ipynb", "ℓ2 / ℓ1 = Gaussian / Laplace ML; bias–variance by Monte Carlo; the GAN "
           "and ℓ2 optima differ, MR's do not; the ℓ1 exception", 0.3, 25),
    Lesson("02", "02_toy_mode_collapse.ipynb", "Y-shape and ring of 8: GAN, ℓ2, GAN+ℓ2, GAN+MR2 animated and counted "
           "against the project page's claims; the GAN and GAN+ℓ2 collapse on the ring; the predictor's Gaussian fit", 2.5, 10),
    Lesson("03", "03_moment_reconstruction.ipynb", "MR-GAN's ring of 8 reproduced (GAN and GAN+ℓ2 collapse, the four "
           "Gaussian moment losses hold all 8 modes, 3 seeds); each term's gradient on a collapsed group; all eight "
           "variants on the Y-shape; MR vs proxy MR", 3.5, 15),
    Lesson("04", "04_loss_comparison.ipynb", "interactive app: up to four objectives side by side, live (also "
           "`voila notebooks/04_loss_comparison.ipynb`)", 2, 15),
    Lesson("05", "05_mode_seeking.ipynb", "MSGAN's ratio, a λ sweep in the shape of MSGAN's Table 6 on notebook 03's "
           "ring (the GAN collapses, MS at λ = 1 covers all 8 modes), MS vs MR1 on the same toy", 2.5, 10),
    Lesson("06", "06_hmc_presgan.ipynb", "HMC from scratch, PresGAN's entropy gradient, the ring (GAN collapses, "
           "PresGAN covers all 8 modes, 3 seeds), log-likelihood of GAN / PresGAN / VAE on digits", 5.5, 20),
    Lesson("06b", "06b_stacked_digits.ipynb", "StackedMNIST in miniature: 1,000 modes of stacked sklearn digits, "
           "GAN / PresGAN / GAN+MS / GAN+MR", 4, 15),
    Lesson("07", "07_metrics.ipynb", "LPIPS diversity protocols, NDB/JSD, Fréchet distances, realism; how protocols "
           "change the number", 0.5, 20),
    Lesson("07b", "07b_pix2pix_colours.ipynb", "the exact-truth colour task: Pix2Pix on CPU on sklearn digits coloured "
           "from a known palette; ℓ1, GAN+ℓ1 and GAN+ℓ1+MS paint no palette colour at all, GAN+pMR2 paints all "
           "three, counted against the exact answer", 3.5, 15),
    Lesson("08", "08_pix2pix_cityscapes.ipynb", "Pix2Pix + noise: ℓ1 vs MR vs proxy MR (full: GPU + Cityscapes; "
           "smoke: CPU fixtures)", 0.5, 20, GPU),
    Lesson("09", "09_srgan_celeba.ipynb", "SRGAN + noise on CelebA 16→64 (full: GPU + CelebA; smoke: CPU fixtures)",
           0.7, 20, GPU),
    Lesson("10", "10_glcic_celeba.ipynb", "GLCIC inpainting on CelebA (full: GPU + CelebA; smoke: CPU fixtures)",
           0.6, 20, GPU),
    Lesson("11", "11_results.ipynb", "the papers' tables beside ours, filled from `python -m minilib evaluate` JSON; "
           "rows never run say so", 0.8, 10),
    Lesson("12", "12_digit_inpainting.ipynb", "real data on CPU (do it after 07): completing sklearn digits, "
           "plausible classes per method", 4, 20),
)

HEADER = ("| # | notebook | what it teaches | needs | run time (2 CPU cores, empty cache) | study time |\n"
          "|---|---|---|---|---|---|")


def run_time_line(lesson: Lesson) -> str:
    """The start of the notebook's run-time line: ``**Run time:** about <run_min> min on 2 CPU cores ...``."""
    return f"**Run time:** about {lesson.run_min:g} min on 2 CPU cores from an empty cache"


def readme_table(course: Sequence[Lesson] = COURSE) -> str:
    """The course map as markdown: the header, the separator and one row per lesson."""
    rows = [f"| {l.number} | `{l.notebook}` | {l.teaches} | {l.needs} | {l.run_time} | {l.study_time} |"
            for l in course]
    return "\n".join([HEADER, *rows])


def update_readme(text: str, course: Sequence[Lesson] = COURSE) -> str:
    """``text`` (a README) with the block between the course-map markers replaced by :func:`readme_table`."""
    if text.count(MAP_START) != 1 or text.count(MAP_END) != 1:
        raise ValueError(f"the README needs exactly one {MAP_START} and one {MAP_END}")
    before, rest = text.split(MAP_START, 1)
    after = rest.split(MAP_END, 1)[1]
    return f"{before}{MAP_START}\n{readme_table(course)}\n{MAP_END}{after}"


def _run_time_lines(nb: dict) -> list[tuple[int, int, str]]:
    """(cell index, line index, line) of every markdown line that mentions ``**Run time:**``."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        source = cell["source"] if isinstance(cell["source"], list) else cell["source"].splitlines(keepends=True)
        for j, line in enumerate(source):
            if "**Run time:**" in line:
                found.append((i, j, line))
    return found


def notebook_run_time(path: str | Path) -> float:
    """The number of minutes in the notebook's one run-time line; ValueError if that line is missing or malformed."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    lines = _run_time_lines(nb)
    if len(lines) != 1:
        raise ValueError(f"{Path(path).name}: {len(lines)} lines with **Run time:** (expected one, in the first cell)")
    m = RUN_TIME_RE.search(lines[0][2])
    if not m:
        raise ValueError(f"{Path(path).name}: the run-time line must read "
                         f"'**Run time:** about N min on 2 CPU cores from an empty cache', got {lines[0][2].strip()!r}")
    return float(m.group(1))


def set_notebook_run_time(path: str | Path, lesson: Lesson) -> bool:
    """Rewrite the number of the notebook's run-time line from ``lesson``; True if the file changed. The JSON is
    written as Jupyter writes it (indent 1, UTF-8 as is, a final newline), so only that line differs."""
    path = Path(path)
    notebook_run_time(path)  # refuses a missing or malformed line
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    i, j, line = _run_time_lines(nb)[0]
    source = nb["cells"][i]["source"]
    new = RUN_TIME_RE.sub(run_time_line(lesson), line, count=1)
    if new == line:
        return False
    if isinstance(source, list):
        source[j] = new
    else:
        nb["cells"][i]["source"] = source.replace(line, new, 1)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def course_map_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib course-map``: write the README's course map and the notebooks' run-time lines from
    :data:`COURSE` (``--check``: only report what differs)."""
    ap = argparse.ArgumentParser(prog="python -m minilib course-map", description=course_map_main.__doc__)
    ap.add_argument("--root", default=".", help="repository root holding README.md and notebooks/ (default: .)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything differs")
    args = ap.parse_args(list(argv or []))
    root = Path(args.root)
    readme = root / "README.md"
    if not readme.is_file():
        print(f"error: no README.md in {root.resolve()}", file=sys.stderr)
        return 2
    stale = []
    try:
        text = readme.read_text(encoding="utf-8")
        new = update_readme(text)
        if new != text:
            stale.append("README.md")
            if not args.check:
                readme.write_text(new, encoding="utf-8")
        for lesson in COURSE:
            path = root / "notebooks" / lesson.notebook
            if not path.exists():
                print(f"{lesson.notebook}: not written yet, skipped")
                continue
            if notebook_run_time(path) != lesson.run_min:
                stale.append(lesson.notebook)
                if not args.check:
                    set_notebook_run_time(path, lesson)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    verb = "differ from the course map" if args.check else "rewritten from the course map"
    print(f"{', '.join(stale)}: {verb}" if stale else "README.md and the notebooks agree with the course map")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(course_map_main(sys.argv[1:]))
