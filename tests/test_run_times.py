"""One source of run times: ``minilib.course.course_map.COURSE``.

The README's course map and every notebook's ``**Run time:**`` line must be what that table generates. To change a
time, edit its number in ``minilib/course/course_map.py`` and run ``python -m minilib course-map``.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from minilib.course import course_map, site
from minilib.course.course_map import COURSE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
FIX = "edit minilib/course/course_map.py if the number changed, then run `python -m minilib course-map`"


def test_readme_course_map_is_generated_from_the_source():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert course_map.update_readme(text) == text, f"the README's course map is not the generated one: {FIX}"


@pytest.mark.parametrize("lesson", [l for l in COURSE if (NOTEBOOKS / l.notebook).exists()], ids=lambda l: l.number)
def test_notebook_run_time_line_matches_the_source(lesson):
    minutes = course_map.notebook_run_time(NOTEBOOKS / lesson.notebook)
    assert minutes == lesson.run_min, f"{lesson.notebook} says {minutes:g} min, the course map {lesson.run_min:g}: {FIX}"


def test_every_notebook_has_one_row():
    names = [l.notebook for l in COURSE]
    assert len(set(names)) == len(names) and len({l.number for l in COURSE}) == len(COURSE)
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        assert path.name in names, f"{path.name} has no row in minilib/course/course_map.py COURSE"
    for l in COURSE:
        assert l.notebook.startswith(l.number + "_") and l.run_min > 0 and l.read_min > 0
        assert l.needs in (course_map.CPU, course_map.GPU)
        assert "|" not in l.teaches, "a | would split the markdown table"


def test_site_index_reads_the_generated_map():
    entries = site.read_course_map(ROOT / "README.md")
    assert [e.notebook for e in entries] == [l.notebook for l in COURSE]
    assert [e.run_time for e in entries] == [l.run_time for l in COURSE]
    assert [e.device for e in entries] == [l.needs for l in COURSE]
    assert {e.number for e in entries if e.device == course_map.GPU} == {"08", "09", "10"}


def test_changing_one_number_is_one_edit_and_the_generator(tmp_path):
    lesson = next(l for l in COURSE if (NOTEBOOKS / l.notebook).exists())
    (tmp_path / "notebooks").mkdir()
    nb = tmp_path / "notebooks" / lesson.notebook
    shutil.copy(NOTEBOOKS / lesson.notebook, nb)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    assert course_map.course_map_main(["--root", str(tmp_path), "--check"]) == 0
    before = nb.read_text(encoding="utf-8")

    changed = dataclasses.replace(lesson, run_min=lesson.run_min + 12.5)
    assert course_map.set_notebook_run_time(nb, changed)
    after = nb.read_text(encoding="utf-8")
    assert course_map.notebook_run_time(nb) == changed.run_min
    diff = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines()) and len(diff) == 1, diff  # only that line
    assert after.endswith("}\n") and json.loads(after)["cells"][1:] == json.loads(before)["cells"][1:]
    assert course_map.course_map_main(["--root", str(tmp_path), "--check"]) == 1  # now differs from COURSE
    assert course_map.course_map_main(["--root", str(tmp_path)]) == 0  # rewritten from COURSE
    assert nb.read_text(encoding="utf-8") == before

    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    table = course_map.readme_table([changed])
    assert f"| {changed.run_time} |" in table and table in course_map.update_readme(readme, [changed])


def test_a_malformed_run_time_line_is_refused(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# 99 · x\n", "\n",
                                                                         "**Run time:** 20 s on a laptop\n"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "99_x.ipynb"
    path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must read"):
        course_map.notebook_run_time(path)
    nb["cells"][0]["source"][2] = course_map.run_time_line(COURSE[0]) + " (and more text)\n"
    path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    assert course_map.notebook_run_time(path) == COURSE[0].run_min
