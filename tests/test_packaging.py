"""The project's set-up files agree with each other: environment.yml vs pyproject.toml, README vs CI, the CLI."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    proj = _pyproject()["project"]
    deps = env["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"], pythons
    minimum = re.match(r">=\s*(\d+)\.(\d+)", proj["requires-python"]).groups()
    assert (3, 11) >= tuple(int(v) for v in minimum), "environment.yml's python must satisfy requires-python"
    assert "pip" in deps
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1
    editable = [line for line in pip_sections[0] if line.startswith("-e")]
    assert len(editable) == 1, "the pip section must install this package in editable mode"
    extras = re.fullmatch(r"-e \.\[([a-z,]+)\]", editable[0]).group(1).split(",")
    assert set(extras) == {"lab", "test"}
    assert set(extras) <= set(proj["optional-dependencies"])
    # no Python package pinned in conda beside pyproject: every other dependency comes from pyproject through pip
    conda_pkgs = {re.split(r"[=<>]", d)[0] for d in deps if isinstance(d, str)}
    assert conda_pkgs == {"python", "pip"}, conda_pkgs
    assert all(line == editable[0] for line in pip_sections[0])


def test_pyproject_ranges_are_open_and_extras_complete():
    proj = _pyproject()["project"]
    names = {re.split(r"[<>=\[ ;]", d)[0].lower(): d for d in proj["dependencies"]}
    for required in ("torch", "torchvision", "numpy", "matplotlib", "tqdm", "lpips", "scikit-learn"):
        assert required in names, required
        assert "==" not in names[required] and "<" not in names[required], f"{required} must be an open range"
    lab = " ".join(proj["optional-dependencies"]["lab"])
    for pkg in ("jupyterlab", "ipywidgets", "ipykernel", "voila"):  # voila: the app as a page (notebook 04)
        assert pkg in lab
    test = " ".join(proj["optional-dependencies"]["test"])
    for pkg in ("pytest", "nbval", "minilib[lab]"):
        assert pkg in test


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)
    return text, blocks


def test_readme_has_exactly_two_setup_commands_and_ci_runs_b():
    text, blocks = _readme_commands()
    a, b = blocks[0].strip(), blocks[1].strip()
    assert "\n" not in a and "\n" not in b, "each command is one line"
    assert "python3 -m venv .venv" in a and ".[lab]" in a and "jupyter lab notebooks/" in a
    assert "test -d .venv" in b and ".[test]" in b and "pytest tests notebooks --nbval-lax" in b
    ci_lines = [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines() if l.strip() and not l.lstrip().startswith("#")]
    assert b in ci_lines, ".ci/run must run README command (b) exactly as written"
    assert "set -euo pipefail" in ci_lines, "a failing or empty pytest run (exit 5) must fail CI"


def test_readme_course_map_lists_every_notebook():
    text, _ = _readme_commands()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        row = [l for l in text.splitlines() if f"`{nb.name}`" in l]
        assert row, f"{nb.name} is missing from the README course map"
        assert "coming" not in row[0], f"{nb.name} exists but the course map still says 'coming'"


def test_gitignore_keeps_data_readme_only():
    ignore = (ROOT / ".gitignore").read_text().splitlines()
    for pattern in (".venv/", "data/*", "!data/README.md", "runs/", "*.pt"):
        assert pattern in ignore


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "minilib", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("train", "prepare", "evaluate", "reproduce toy", "bench toy", "bench image"):
        assert cmd in out
    bad = subprocess.run([sys.executable, "-m", "minilib", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_nothing_points_outside_the_repository():
    """A clone is all a user has: no file refers to design notes or folders that are not in it."""
    missing = ["DESIGN" + ".md", "../" + "shared", "shared/" + "notes", "shared/" + "seeds"]
    paths = [*ROOT.glob("*.md"), *(ROOT / "minilib").rglob("*.py"), *(ROOT / "tests").rglob("*.py"),
             *(ROOT / "notebooks").glob("*.ipynb"), ROOT / "pyproject.toml", ROOT / "environment.yml"]
    hits = [f"{p.relative_to(ROOT)}: {m}" for p in paths for m in missing if m in p.read_text(encoding="utf-8")]
    assert not hits, hits


def test_notebooks_that_draw_without_a_generator_seed_torch_first():
    """Executed twice, a notebook prints the same numbers: a cell that draws from torch's global generator (no
    ``generator=``) needs a ``torch.manual_seed`` in an earlier cell or earlier in its own source."""
    import json

    draw = re.compile(r"\.sample\(\(|torch\.(randn|rand|randint|randperm|normal|multinomial)\(")
    unseeded = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        seen_seed = False
        for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
            if cell["cell_type"] != "code":
                continue
            for line in "".join(cell["source"]).splitlines():
                seen_seed = seen_seed or "torch.manual_seed(" in line
                if draw.search(line) and "generator" not in line and not seen_seed:
                    unseeded.append(f"{path.name} cell {i}: {line.strip()}")
    assert not unseeded, unseeded
