"""``python -m minilib site``: the saved notebooks as a static site that works from file:// without network.

Unit tests build a site from two small notebooks written here; the browser test builds it from the real
notebooks/ folder and opens it in Debian's chromium (skipped without chromium unless CI=true, as in
tests/test_browser.py), with every network request blocked and recorded.
"""
from __future__ import annotations

import base64
import io
import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS as BASE_ARGS, require_browser
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from minilib.course import site
from minilib.__main__ import main

ROOT = Path(__file__).resolve().parents[1]

README = """# A course

| # | notebook | what it shows | CPU run time (2 cores, cold cache) |
|---|---|---|---|
<!-- course-map -->
| 01 | `01_first.ipynb` | ℓ2 = Gaussian ML; `python -m minilib` <b>bold</b> | 15 s |
| 02 | `02_second.ipynb` | an image task (full: GPU + Cityscapes; smoke: CPU fixtures) | 20 s (smoke) |
| 03 | `03_later.ipynb` | not written yet | ? |
<!-- /course-map -->

More text.
"""

# any src/href of a script, stylesheet, font, image or medium that points at the network
REMOTE = re.compile(r"""<(?:script|link|img|video|source|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)


def _png() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def _notebook(title: str, widget: bool = False) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell(f"# {title}\n\nThe loss is $\\|y - G(x, z)\\|^2$ and [the paper](https://arxiv.org/abs/1902.00000)."),
        new_code_cell("print('hi')", execution_count=1,
                      outputs=[new_output("stream", name="stdout", text="hi\n")]),
        new_code_cell("plot()", execution_count=2,
                      outputs=[new_output("display_data", data={"image/png": _png(), "text/plain": "<Figure>"})]),
    ]
    if widget:
        view = {"version_major": 2, "version_minor": 0, "model_id": "abc"}
        nb.cells.append(new_code_cell("app", execution_count=3, outputs=[new_output(
            "display_data", data={site.WIDGET_MIME: view, "text/plain": "VBox(children=(...))"})]))
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}, "version_major": 2}}
    return nb


@pytest.fixture
def course(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    nbformat.write(_notebook("01 · First steps"), nbs / "01_first.ipynb")
    nbformat.write(_notebook("Second: an image task", widget=True), nbs / "02_second.ipynb")
    (tmp_path / "README.md").write_text(README, encoding="utf-8")
    return tmp_path


def test_course_map_is_read_from_the_readme(course):
    entries = site.read_course_map(course / "README.md")
    assert [e.notebook for e in entries] == ["01_first.ipynb", "02_second.ipynb", "03_later.ipynb"]
    assert [e.number for e in entries] == ["01", "02", "03"]
    assert entries[0].run_time == "15 s" and entries[0].teaches.startswith("ℓ2 = Gaussian ML")
    assert [e.device for e in entries] == ["CPU", "CPU (smoke) / GPU (full)", "CPU"]
    with pytest.raises(ValueError, match="course map"):
        site.read_course_map("no map here\n" + "| a | b |\n")
    # the real README: every notebook of the course is in its map
    real = {e.notebook for e in site.read_course_map(ROOT / "README.md")}
    assert {p.name for p in (ROOT / "notebooks").glob("*.ipynb")} <= real


def test_site_links_every_notebook_with_nav_and_no_remote_resources(course):
    out = course / "site"
    entries = site.build_site(course / "notebooks", out)
    assert [e.page for e in entries] == ["01_first.html", "02_second.html", None]
    assert [e.title for e in entries[:2]] == ["First steps", "Second: an image task"]  # the number is its own column
    index = (out / "index.html").read_text(encoding="utf-8")
    for page in ("01_first.html", "02_second.html"):
        assert f'href="{page}"' in index and (out / page).is_file()
    assert "03_later" in index and "not built" in index and 'href="03_later.html"' not in index
    assert "CPU (smoke) / GPU (full)" in index and "20 s (smoke)" in index
    assert "<code>python -m minilib</code>" in index and "&lt;b&gt;bold&lt;/b&gt;" in index  # escaped, code rendered
    first = (out / "01_first.html").read_text(encoding="utf-8")
    second = (out / "02_second.html").read_text(encoding="utf-8")
    nav1 = re.findall(r'<nav class="minilib-nav">(.*?)</nav>', first)
    nav2 = re.findall(r'<nav class="minilib-nav">(.*?)</nav>', second)
    assert len(nav1) == 2 and len(nav2) == 2  # above and below the notebook
    assert 'href="index.html"' in nav1[0] and 'href="02_second.html" rel="next"' in nav1[0] and "rel=\"prev\"" not in nav1[0]
    assert 'href="01_first.html" rel="prev"' in nav2[0] and 'rel="next"' not in nav2[0]
    for page in (index, first, second):
        assert not REMOTE.search(page), REMOTE.search(page).group(0)
        assert site.remote_resources(page) == []
        assert "cdnjs" not in page and "unpkg" not in page and "require.js" not in page
    assert "data:image/png;base64," in first  # the figure is embedded
    assert "https://arxiv.org/abs/1902.00000" in first  # ordinary links stay
    assert "\\|y - G(x, z)\\|^2" in first  # no MathJax offline: TeX as written
    assert site.WIDGET_MIME not in second and "widget-state" not in second and "Voil" in second
    assert "<title>02 · Second: an image task</title>" in second


def test_strip_remote_and_remote_resources():
    page = ('<script src="https://cdn.example/require.js"></script><link rel="stylesheet" href="//cdn.example/a.css">'
            '<style>@import url("https://fonts.example/f.css"); .x { background: url(https://img.example/b.png) }</style>'
            '<img src="https://img.example/c.png"><a href="https://arxiv.org/abs/1">paper</a><script>var a = 1;</script>'
            '<!-- see https://example.org --><img src="data:image/png;base64,AAAA">')
    assert sorted(site.remote_resources(page)) == sorted([
        "https://cdn.example/require.js", "//cdn.example/a.css", "https://img.example/c.png",
        "https://img.example/b.png", "https://fonts.example/f.css"])
    clean = site.strip_remote(page)
    assert "require.js" not in clean and "a.css" not in clean and "fonts.example" not in clean
    assert "<script>var a = 1;</script>" in clean and "arxiv.org" in clean
    assert site.remote_resources(clean) == ["https://img.example/c.png", "https://img.example/b.png"]


def test_a_page_that_would_need_the_network_fails_the_build(course):
    nb = nbformat.read(course / "notebooks" / "01_first.ipynb", as_version=4)
    nb.cells.append(new_markdown_cell('<img src="https://example.org/figure.png">'))
    nbformat.write(nb, course / "notebooks" / "01_first.ipynb")
    with pytest.raises(RuntimeError, match="network"):
        site.build_site(course / "notebooks", course / "site")


def test_site_command(course, capsys):
    assert main(["site", "--out", str(course / "out"), "--notebooks", str(course / "notebooks")]) == 0
    assert (course / "out" / "index.html").is_file() and "index.html" in capsys.readouterr().out
    assert main(["site", "--notebooks", str(course / "missing"), "--out", str(course / "x")]) == 2
    assert main(["--help"]) == 0 and "site" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- real browser
CHROMIUM_ARGS = BASE_ARGS + ["--autoplay-policy=no-user-gesture-required"]


def _artifacts() -> Path:
    path = Path(os.environ.get("MINILIB_ARTIFACTS") or ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _images_loaded(page) -> list[str]:
    """Sources (shortened) of the <img> elements that did not load."""
    return page.evaluate("""() => Array.from(document.images)
        .filter(img => !(img.complete && img.naturalWidth > 0)).map(img => (img.src || '(no src)').slice(0, 60))""")


def _animation_plays(page) -> str:
    """Play the first animation on the page and return how it was seen to move ('video' or 'jshtml')."""
    if page.locator("video").count():
        video = page.locator("video").first
        video.scroll_into_view_if_needed()
        page.evaluate("() => document.querySelector('video').play()")
        t0 = video.evaluate("v => v.currentTime")
        deadline = time.time() + 15
        while time.time() < deadline:
            page.wait_for_timeout(300)
            state = video.evaluate("v => [v.currentTime, v.error && v.error.code, v.videoWidth]")
            assert state[1] is None, f"the video failed to decode (MediaError {state[1]})"
            if state[0] > t0:
                assert state[2] >= 800, state
                return "video"
        raise AssertionError("the <video> did not advance")
    player = page.locator("div.animation").first
    assert player.count(), "no <video> and no JavaScript animation on the page"
    player.scroll_into_view_if_needed()
    img = player.locator("img").first
    first = img.get_attribute("src")
    slider = player.locator("input[type=range]").first
    v0 = slider.evaluate("s => s.value")
    player.locator("button[title='Play']").first.click()
    deadline = time.time() + 15
    while time.time() < deadline:
        page.wait_for_timeout(300)
        if img.get_attribute("src") != first and slider.evaluate("s => s.value") != v0:
            return "jshtml"
    raise AssertionError("the JavaScript animation did not change frame after Play")


@pytest.mark.browser
def test_site_opens_offline_in_chromium(tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    out = tmp_path / "site"
    entries = site.build_site(ROOT / "notebooks", out)
    pages = {e.notebook: e.page for e in entries}
    other = "06_hmc_presgan.ipynb" if pages.get("06_hmc_presgan.ipynb") else next(n for n, p in pages.items() if p)
    art = _artifacts()
    network = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})

            def block(route):  # the site must not need the network: record and refuse every request
                if not route.request.url.startswith(("file:", "data:", "blob:", "about:")):
                    network.append(route.request.url)
                    return route.abort()
                return route.continue_()

            page.route("**/*", block)
            page.goto((out / "index.html").as_uri())
            links = page.eval_on_selector_all("main table a", "els => els.map(a => a.getAttribute('href'))")
            assert links == [p for p in pages.values() if p]
            assert _images_loaded(page) == []
            page.screenshot(path=str(art / "site-index.png"), full_page=True)
            seen = {}
            for nb in ("02_toy_mode_collapse.ipynb", other):
                page.goto((out / pages[nb]).as_uri())
                page.wait_for_load_state("load")
                assert page.locator("nav.minilib-nav a[href='index.html']").count() == 2
                assert page.locator("img").count() > 0 and _images_loaded(page) == [], _images_loaded(page)
                if nb.startswith("02_"):
                    seen[nb] = _animation_plays(page)
                    page.wait_for_timeout(500)
                    page.locator("video, div.animation").first.screenshot(path=str(art / "site-02-animation.png"))
                page.screenshot(path=str(art / f"site-{Path(nb).stem}.png"), full_page=False)
            # the nav bar walks the course: from 02, "next" opens 03
            page.goto((out / pages["02_toy_mode_collapse.ipynb"]).as_uri())
            page.locator("nav.minilib-nav a[rel='next']").first.click()
            page.wait_for_load_state("load")
            assert page.url.endswith(pages["03_moment_reconstruction.ipynb"])
        finally:
            browser.close()
    assert network == [], f"the site tried to load {network[:5]}"
    print(f"animation on notebook 02 played as {seen['02_toy_mode_collapse.ipynb']}; screenshots in {art}")
