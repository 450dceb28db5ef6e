"""A static course site: every notebook as an HTML page plus an index, readable from ``file://`` with no network.

``python -m minilib site [--out site/] [--notebooks notebooks/] [--readme README.md]`` renders the notebooks as
they are saved (nbconvert's ``HTMLExporter``; nothing is re-executed) and writes ``index.html`` from the course map
in README.md (the table between ``<!-- course-map -->`` and ``<!-- /course-map -->``, which ``python -m minilib
course-map`` writes from :data:`minilib.course.course_map.COURSE`, the one source): number, title, what the notebook
teaches, run time and whether it needs a GPU. Every page gets a small navigation bar (index, previous, next).

Offline: nbconvert's lab template loads require.js, MathJax, mermaid and the widget manager from CDNs. The template
here (:data:`TEMPLATE`) drops those blocks and :func:`strip_remote` removes any remote ``<script>``/``<link>``
that is left, so a page needs nothing but itself: images and animations are embedded (data URIs, inline
JavaScript or base64 ``<video>``) and nbconvert's CSS is inlined. MathJax itself is not shipped with nbconvert
and is too large to inline into every page, so **math stays as raw TeX** (``$\\sigma^2$``), which is readable.
Saved widget state is dropped: a widget output becomes a note to open the notebook in JupyterLab or Voila.

Only the standard library and nbconvert (with its own dependencies nbformat and jinja2) are used.
"""
from __future__ import annotations

import argparse
import copy
import html
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from minilib.course.course_map import MAP_END, MAP_START
from minilib.video import JSHTML_ICON_CSS

__all__ = ["CourseEntry", "read_course_map", "build_index", "render_notebook", "build_site", "strip_remote",
           "remote_resources", "site_main", "TEMPLATE"]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("<p class='minilib-widget-note'><em>An interactive widget was here. Open this notebook in JupyterLab "
               "(or Voil&agrave;) to use it.</em></p>")

# nbconvert's lab page without anything fetched from the network (see the module docstring)
TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}
{#- MathJax comes from a CDN and cannot be inlined: TeX is shown as written. -#}
{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}<style type="text/css">{{ resources.minilib_css }}</style>{%- endblock html_head_css -%}
{%- block body_header -%}{{ super() }}{{ resources.minilib_nav }}{%- endblock body_header -%}
{%- block body_footer -%}{{ resources.minilib_nav }}{{ super() }}{%- endblock body_footer -%}
"""

NAV_CSS = r"""
nav.minilib-nav { display: flex; gap: 1.5em; align-items: baseline; flex-wrap: wrap; padding: 0.6em 1em;
  margin: 0 0 1em 0; background: #f3f5f8; border-bottom: 1px solid #d0d7de; font: 15px/1.4 system-ui, sans-serif; }
nav.minilib-nav a { color: #0b57d0; text-decoration: none; }
nav.minilib-nav a:hover { text-decoration: underline; }
nav.minilib-nav .here { font-weight: 600; color: #24292f; }
nav.minilib-nav .off { color: #8c959f; }
.minilib-animation { max-width: 100%; height: auto; }
"""

# matplotlib's JavaScript animation player loads its button icons (font-awesome) from a CDN: plain glyphs here
NAV_CSS += JSHTML_ICON_CSS.removeprefix("<style>").removesuffix("</style>").strip() + "\n"

INDEX_CSS = """
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #24292f; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 1em 1.5em 3em; }
h1 { font-size: 1.8em; margin: 0.4em 0 0.2em; }
table { border-collapse: collapse; width: 100%; margin-top: 1em; }
th, td { text-align: left; vertical-align: top; padding: 0.5em 0.7em; border-bottom: 1px solid #d8dee4; }
th { background: #f3f5f8; font-weight: 600; }
td.num, td.time, td.device { white-space: nowrap; }
code { font-size: 0.9em; background: #f3f5f8; padding: 0.1em 0.3em; border-radius: 3px; }
.missing { color: #8c959f; }
.note { color: #57606a; font-size: 0.9em; }
"""


@dataclass
class CourseEntry:
    """One row of the course map (and, once built, its page)."""

    number: str
    notebook: str  # file name, e.g. "02_toy_mode_collapse.ipynb"
    teaches: str  # markdown text of the "what it shows" column
    run_time: str
    device: str  # "CPU" or "CPU (smoke) / GPU (full)"
    title: str = ""
    page: str | None = None  # the page's file name in the site, None if the notebook is missing
    executed: bool = True

    @property
    def stem(self) -> str:
        return Path(self.notebook).stem


_SEPARATOR = re.compile(r"\|[\s\-:|]+\|?")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _device(text: str) -> str:
    """The map says "full: GPU" for the image-task notebooks; every other notebook is CPU only."""
    return "CPU (smoke) / GPU (full)" if re.search(r"\bGPU\b", text) else "CPU"


def read_course_map(readme: str | Path) -> list[CourseEntry]:
    """The rows between ``<!-- course-map -->`` and ``<!-- /course-map -->`` of ``readme`` (a path, or the README's
    text: a string with a newline), in
    order. Columns are found by the table header, the block's first row or the row just above the start marker
    ("notebook", "what ...", the first "... time", "needs"); without a header they are
    ``# | notebook | what it shows | run time``. Without a "needs" column a row needs a GPU if its text says GPU."""
    text = readme if isinstance(readme, str) and "\n" in readme else Path(readme).read_text(encoding="utf-8")
    if MAP_START not in text or MAP_END not in text:
        raise ValueError(f"the README has no course map ({MAP_START} ... {MAP_END})")
    before, rest = text.split(MAP_START, 1)
    body = [l for l in rest.split(MAP_END, 1)[0].splitlines() if l.strip().startswith("|")]
    header_lines = []
    if len(body) >= 2 and _SEPARATOR.fullmatch(body[1].strip()):  # the header inside the markers
        header_lines, body = body[:1], body[2:]
    else:  # or just above the start marker
        for line in reversed(before.rstrip().splitlines()):
            if not line.strip().startswith("|"):
                break
            header_lines.insert(0, line)
    heads = [h.lower() for h in _cells(header_lines[0])] if header_lines else []

    def col(pred, default: int) -> int:
        return next((i for i, h in enumerate(heads) if pred(h)), default)

    i_num = col(lambda h: h in ("#", "no", "no.", "number"), 0)
    i_nb = col(lambda h: "notebook" in h, 1)
    i_what = col(lambda h: h.startswith("what") or "teach" in h, 2)
    i_time = col(lambda h: "time" in h, 3)
    i_needs = col(lambda h: h in ("needs", "device"), -1)
    entries = []
    for line in body:
        if _SEPARATOR.fullmatch(line.strip()):
            continue
        cells = _cells(line)
        m = re.search(r"[\w.-]+\.ipynb", cells[i_nb] if i_nb < len(cells) else "")
        if not m:
            raise ValueError(f"course map row without a notebook: {line.strip()!r}")
        what = cells[i_what] if i_what < len(cells) else ""
        run = cells[i_time] if i_time < len(cells) else ""
        needs = cells[i_needs] if 0 <= i_needs < len(cells) else what + " " + run
        entries.append(CourseEntry(number=cells[i_num] if i_num < len(cells) else "", notebook=m.group(0),
                                   teaches=what, run_time=run, device=_device(needs)))
    if not entries:
        raise ValueError("the course map has no rows")
    return entries


def _inline_md(text: str) -> str:
    """Escape ``text`` for HTML and render its `code` spans (the only markdown the course map uses)."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _nav(entries: Sequence[CourseEntry], i: int | None) -> str:
    """Index, previous and next page (built pages only); ``i`` is the current entry (None on the index)."""
    built = [e for e in entries if e.page]
    links = ['<a href="index.html">Course index</a>' if i is not None else '<span class="here">Course index</span>']
    if i is not None:
        cur = entries[i]
        k = built.index(cur)
        prev_e = built[k - 1] if k > 0 else None
        next_e = built[k + 1] if k + 1 < len(built) else None
        links.append(f'<a href="{prev_e.page}" rel="prev">&larr; {html.escape(prev_e.number)} {html.escape(prev_e.title)}</a>'
                     if prev_e else '<span class="off">&larr; previous</span>')
        links.append(f'<span class="here">{html.escape(cur.number)} {html.escape(cur.title)}</span>')
        links.append(f'<a href="{next_e.page}" rel="next">{html.escape(next_e.number)} {html.escape(next_e.title)} &rarr;</a>'
                     if next_e else '<span class="off">next &rarr;</span>')
    return '<nav class="minilib-nav">' + "".join(links) + "</nav>"


def build_index(entries: Sequence[CourseEntry], title: str = "minilib: why conditional GANs ignore their noise",
                intro: str = "") -> str:
    """``index.html``: one table row per course-map entry, linking every built page; offline (inline CSS only)."""
    rows = []
    for e in entries:
        name = html.escape(e.title or e.stem)
        link = f'<a href="{html.escape(e.page)}">{name}</a>' if e.page else f'<span class="missing">{name} (not built)</span>'
        if e.page and not e.executed:
            link += ' <span class="note">(saved without outputs)</span>'
        rows.append(f'<tr><td class="num">{html.escape(e.number)}</td><td>{link}<br><span class="note"><code>'
                    f'{html.escape(e.notebook)}</code></span></td><td>{_inline_md(e.teaches)}</td>'
                    f'<td class="time">{html.escape(e.run_time)}</td><td class="device">{html.escape(e.device)}</td></tr>')
    intro_html = f"<p>{_inline_md(intro)}</p>" if intro else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1.0">\n<title>{html.escape(title)}</title>\n'
            f"<style>{INDEX_CSS}{NAV_CSS}</style>\n</head>\n<body>\n{_nav(entries, None)}\n<main>\n"
            f"<h1>{html.escape(title)}</h1>\n{intro_html}\n"
            "<p class='note'>Pages show the notebooks as saved (nothing re-runs); math is shown as TeX. "
            "Run times are on 2 CPU cores from a cold cache.</p>\n"
            "<table>\n<tr><th>#</th><th>notebook</th><th>what it teaches</th><th>run time</th><th>needs</th></tr>\n"
            + "\n".join(rows) + "\n</table>\n</main>\n</body>\n</html>\n")


# ----------------------------------------------------------------------------------------------- offline checks
_REMOTE = r"""(?:https?:)?//"""
_REMOTE_SCRIPT = re.compile(rf"""<script\b[^>]*\bsrc\s*=\s*["']?{_REMOTE}[^>]*>.*?</script\s*>""", re.I | re.S)
_REMOTE_LINK = re.compile(rf"""<link\b[^>]*\bhref\s*=\s*["']?{_REMOTE}[^>]*>""", re.I)
_REMOTE_IMPORT = re.compile(rf"""@import\s+(?:url\()?\s*["']?{_REMOTE}[^;]*;""", re.I)
_RESOURCE_ATTR = re.compile(
    rf"""<(script|link|img|video|audio|source|iframe|embed|track)\b[^>]*?\b(src|href|poster|srcset)\s*=\s*["']?({_REMOTE}[^"'\s>]*)""",
    re.I)
_CSS_URL = re.compile(rf"""url\(\s*["']?({_REMOTE}[^"')]*)""", re.I)
_MODULE_IMPORT = re.compile(rf"""\bimport\s*\(\s*["']({_REMOTE}[^"']*)""", re.I)


def strip_remote(page: str) -> str:
    """Remove remote ``<script src>``, ``<link href>`` and CSS ``@import`` from ``page``."""
    page = _REMOTE_SCRIPT.sub("", page)
    page = _REMOTE_LINK.sub("", page)
    return _REMOTE_IMPORT.sub("", page)


def _without_comments(page: str) -> str:
    page = re.sub(r"<!--.*?-->", "", page, flags=re.S)
    return re.sub(r"/\*.*?\*/", "", page, flags=re.S)  # CSS comments cite web pages


def remote_resources(page: str) -> list[str]:
    """Every URL ``page`` would fetch from the network: scripts, styles, fonts, images, media, frames, CSS ``url()``
    and dynamic ``import()``. Ordinary ``<a href>`` links to papers are not resources and are not listed."""
    text = _without_comments(page)
    found = [m.group(3) for m in _RESOURCE_ATTR.finditer(text)]
    found += [m.group(1) for m in _CSS_URL.finditer(text)]
    found += [m.group(1) for m in _MODULE_IMPORT.finditer(text)]
    return found


# ----------------------------------------------------------------------------------------------- rendering
def _title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                m = re.match(r"#\s+(.+)", line.strip())
                if m:
                    return re.sub(r"[*_`]", "", m.group(1)).strip()
    return fallback


def _short_title(title: str, number: str) -> str:
    """``"02 · Mode collapse"`` -> ``"Mode collapse"`` when the number is shown beside it anyway."""
    if number:
        m = re.match(rf"{re.escape(number)}\s*[·:.\-–—]\s*(.+)", title)
        if m:
            return m.group(1)
    return title


def _executed(nb) -> bool:
    code = [c for c in nb.cells if c.cell_type == "code"]
    return not code or any(c.get("execution_count") or c.get("outputs") for c in code)


def _drop_widgets(nb):
    """A copy of ``nb`` without saved widget state; widget outputs become :data:`WIDGET_NOTE`."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data and WIDGET_MIME in data:
                out["data"] = {"text/html": WIDGET_NOTE}
    return nb


def _exporter():
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", template_file="minilib_site.html.j2", embed_images=True,
                        extra_loaders=[jinja2.DictLoader({"minilib_site.html.j2": TEMPLATE})])


def render_notebook(path: str | Path, nav: str = "", title: str | None = None, exporter=None) -> str:
    """The saved notebook at ``path`` as one offline HTML page with ``nav`` above and below (not re-executed)."""
    import nbformat

    path = Path(path)
    nb = _drop_widgets(nbformat.read(path, as_version=4))
    exporter = exporter or _exporter()
    resources = {"metadata": {"name": title or _title(nb, path.stem), "path": str(path.parent)},
                 "minilib_nav": nav, "minilib_css": NAV_CSS}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return strip_remote(body)


def build_site(notebooks: str | Path = "notebooks", out: str | Path = "site", readme: str | Path | None = None,
               log=None) -> list[CourseEntry]:
    """Render every notebook of ``notebooks`` into ``out`` and write ``out/index.html`` from the course map of
    ``readme`` (default: README.md next to the notebooks folder). Notebooks missing from the map are added at the
    end. Raises RuntimeError if a page would still load something from the network. Returns the entries."""
    import nbformat

    nb_dir, out = Path(notebooks), Path(out)
    if not nb_dir.is_dir():
        raise FileNotFoundError(f"no notebooks folder {nb_dir}")
    readme = Path(readme) if readme is not None else nb_dir.resolve().parent / "README.md"
    entries = read_course_map(readme)
    mapped = {e.notebook for e in entries}
    for p in sorted(nb_dir.glob("*.ipynb")):
        if p.name not in mapped:
            entries.append(CourseEntry(number=p.name.split("_")[0], notebook=p.name, teaches="(not in the course map)",
                                       run_time="", device="CPU"))
    notebooks_here = []
    for e in entries:
        p = nb_dir / e.notebook
        if p.exists():
            nb = nbformat.read(p, as_version=4)
            e.title, e.executed, e.page = _short_title(_title(nb, e.stem), e.number), _executed(nb), e.stem + ".html"
            notebooks_here.append(e)
        else:
            e.title = e.stem
    out.mkdir(parents=True, exist_ok=True)
    exporter = _exporter()
    for i, e in enumerate(entries):
        if not e.page:
            continue
        page = render_notebook(nb_dir / e.notebook, _nav(entries, i), f"{e.number} · {e.title}".strip(" ·"), exporter)
        remote = remote_resources(page)
        if remote:
            raise RuntimeError(f"{e.notebook}: the page would load {remote[:3]} from the network")
        (out / e.page).write_text(page, encoding="utf-8")
        if log:
            log(f"{e.page}: {len(page) / 1e6:.1f} MB{'' if e.executed else ' (not executed)'}")
    index = build_index(entries, intro="A Jupyter course and a small PyTorch library: why conditional GANs ignore "
                                       "their noise input, and which losses make them use it.")
    (out / "index.html").write_text(index, encoding="utf-8")
    if log:
        log(f"index.html: {len(notebooks_here)} notebooks -> {out / 'index.html'}")
    return entries


def site_main(argv: Sequence[str] | None = None) -> int:
    """``python -m minilib site``: the course as a static site that opens from ``file://`` without network."""
    ap = argparse.ArgumentParser(prog="python -m minilib site", description=site_main.__doc__)
    ap.add_argument("--out", default="site", help="output folder (default: site/)")
    ap.add_argument("--notebooks", default="notebooks", help="folder of saved, executed notebooks (default: notebooks/)")
    ap.add_argument("--readme", default=None, help="README with the course map (default: next to the notebooks folder)")
    args = ap.parse_args(list(argv or []))
    try:
        build_site(args.notebooks, args.out, args.readme, log=print)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"open {Path(args.out).resolve() / 'index.html'}")
    return 0
