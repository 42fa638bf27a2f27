"""The built book as a reader meets it: every page in a real headless Chromium, offline, at a desktop
and a phone width. A page passes when it answers 200, every image loads, MathJax has rendered the
math (no raw `\\(` or `\\[` left in the text), the console shows no error, nothing is fetched from
outside 127.0.0.1, at phone width the page does not scroll sideways, no table is wider than its
column unless it sits in a scroll box of its own, no image is wider than the text column, at desktop
width the page is at most `MAX_SCREENS` screens tall, a finding box (`.admonition.finding`) starts on
the first screen (and, at desktop width, ends there) with a figure or table below it that is not
folded away, and no cell papermill injected shows other parameter values than the parameters cell. The intro and every page rendered
from a results notebook (notebook metadata `sardfq.results_page: true`) must have one.
Screenshots of every page go to `_build/screenshots/<width>/`.

Chromium is Debian's package (`apt-get install chromium`; `make test` installs it when run as root),
driven by playwright without any browser download; SARDFQ_CHROMIUM names another binary.
"""
import functools
import http.server
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = {"desktop": 1280, "phone": 390}
HEIGHT = 900  # px: one screen
MAX_SCREENS = 8  # a page a reader can hold, at desktop width
SCREENSHOTS = ROOT / "_build" / "screenshots"


def results_pages(root: Path = ROOT) -> set[str]:
    """The built pages that must open with a finding box: the intro, and each chapter whose notebook
    says it is a results page (metadata `"sardfq": {"results_page": true}`)."""
    pages = {"book/intro.html"}
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if json.loads(path.read_text()).get("metadata", {}).get("sardfq", {}).get("results_page"):
            pages.add(f"book/chapters/{path.stem}.html")
    return pages

# Runs in the page after `load`: waits for MathJax's first typeset (if MathJax started) and for every
# image, then reports what a reader would see wrong.
_INSPECT = """async () => {
  const typeset = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
  const timeout = new Promise(resolve => setTimeout(resolve, 15000));
  if (typeset) await Promise.race([typeset, timeout]);
  await Promise.race([timeout, Promise.all([...document.images].map(img => img.complete ? null :
      new Promise(resolve => { img.onload = img.onerror = resolve; })))]);
  const broken = [...document.images].filter(img => img.naturalWidth === 0)
      .map(img => img.getAttribute('src'));
  // Visible prose only: code blocks may show a backslash-parenthesis on purpose.
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {acceptNode: node =>
      node.parentElement.closest('pre, code, script, style, textarea, mjx-container')
        ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  let text = '';
  while (walker.nextNode()) text += walker.currentNode.nodeValue;
  const raw = [...text.matchAll(/\\\\[(\\[]/g)].map(m => text.slice(m.index, m.index + 40));
  const page = document.scrollingElement;
  // The text column: a table may be wider than it only inside a box that scrolls (auto or scroll),
  // itself no wider than the column; an image never.
  const column = document.querySelector('article') || document.body;
  const right = column.getBoundingClientRect().right + 1;
  const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  const wideTables = [...column.querySelectorAll('table')].filter(table => {
    let box = table;
    while (box !== column && !scrolls(box)) box = box.parentElement;
    const outer = box === column ? table : box;
    return outer.getBoundingClientRect().right > right ||
        (box === column && table.scrollWidth > table.getBoundingClientRect().width + 1);
  }).map(table => table.innerText.trim().slice(0, 40));
  const wideImages = [...column.querySelectorAll('img')].filter(img =>
      img.getBoundingClientRect().right > Math.min(right, page.clientWidth + 1)).map(img => img.getAttribute('src'));
  const findings = [...document.querySelectorAll('.admonition.finding')].map(box => {
    const r = box.getBoundingClientRect();
    return {top: r.top + window.scrollY, bottom: r.bottom + window.scrollY};
  });
  // The evidence a finding is bound to: a figure or table a reader sees without opening a fold below the
  // first finding box. A closed <details> (Jupyter Book's folds) may still give its content boxes
  // (Chromium hides it with content-visibility), so a closed fold counts as hidden by itself.
  const folded = el => { const fold = el.closest('details:not([open])'); return !!fold && !el.closest('summary'); };
  const shown = el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden' &&
      !folded(el) && (!el.checkVisibility || el.checkVisibility({visibilityProperty: true}));
  const box = document.querySelector('.admonition.finding');
  const evidence = box ? [...column.querySelectorAll('img, table')].filter(el => shown(el) &&
      !box.contains(el) && (box.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING)).length : 0;
  // papermill's injected cell overrides the parameters cell above it: a page shows the values in one place
  const injected = document.querySelectorAll('.tag_injected-parameters').length;
  return {broken, raw, scrollWidth: page.scrollWidth, clientWidth: page.clientWidth, wideTables, wideImages,
          findings, evidence, injected, scrollHeight: page.scrollHeight, innerHeight: window.innerHeight};
}"""


def find_chromium() -> str:
    for name in (os.environ.get("SARDFQ_CHROMIUM"), "chromium", "chromium-browser"):
        path = name and shutil.which(name)
        if path:
            return path
    pytest.fail("the browser test needs Chromium: `apt-get install chromium` (`make test` does it when "
                "run as root), or set SARDFQ_CHROMIUM to a Chromium binary")


@functools.lru_cache(maxsize=None)
def _handler(directory: str):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, *args):
            pass

    return Quiet


class Served:
    """`directory` served on 127.0.0.1 from a thread, for the length of a `with` block."""

    def __init__(self, directory: Path):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(str(directory)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=find_chromium(), headless=True)
        yield chromium
        chromium.close()


def check_page(browser, url: str, width: int, screenshot: Path | None = None, *,
               needs_finding: bool = False) -> list[str]:
    """What a reader would find wrong with the page at `url` at this window width (empty: nothing);
    `needs_finding`: the page must have a finding box."""
    context = browser.new_context(viewport={"width": width, "height": HEIGHT})
    page = context.new_page()
    problems: list[str] = []
    local = url.split("/", 3)[:3]

    def offline(route):
        if route.request.url.split("/", 3)[:3] == local:
            route.continue_()
        else:  # the book must work without a network: refuse, and report, every outside request
            problems.append(f"outside request: {route.request.url}")
            route.abort()

    page.route("**/*", offline)
    page.on("console", lambda msg: msg.type == "error" and problems.append(f"console error: {msg.text}"))
    page.on("pageerror", lambda err: problems.append(f"script error: {err}"))
    try:
        response = page.goto(url, wait_until="load")
        if response is None or response.status != 200:
            problems.append(f"status {response and response.status}")
        seen = page.evaluate(_INSPECT)
        problems += [f"image not loaded: {src}" for src in seen["broken"]]
        problems += [f"raw math: {snippet!r}" for snippet in seen["raw"][:3]]
        if width < 600 and seen["scrollWidth"] > seen["clientWidth"] + 1:
            problems.append(f"scrolls sideways: {seen['scrollWidth']} px wide in a {seen['clientWidth']} px window")
        problems += [f"table wider than its column: {text!r}" for text in seen["wideTables"]]
        problems += [f"image wider than the column: {src}" for src in seen["wideImages"]]
        screen = seen["innerHeight"]
        if width >= 1000 and seen["scrollHeight"] > MAX_SCREENS * screen:
            problems.append(f"too tall: {seen['scrollHeight']} px, {seen['scrollHeight'] / screen:.1f} screens "
                            f"(at most {MAX_SCREENS})")
        if needs_finding and not seen["findings"]:
            problems.append("no finding box")
        for box in seen["findings"][:1]:
            if box["top"] >= screen or (width >= 1000 and box["bottom"] > screen):
                problems.append(f"finding box not on the first screen: {box['top']:.0f}-{box['bottom']:.0f} px "
                                f"in a {screen} px window")
            if not seen["evidence"]:
                problems.append("no visible figure or table under the finding box (folded evidence)")
        if seen["injected"]:
            problems.append("an injected parameters cell: the parameters cell should show the values the page ran with")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        context.close()
    return problems


@pytest.mark.slow
def test_every_page_reads_well_offline_at_desktop_and_phone_width(built_book, browser):
    proc, html = built_book
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    # every page but the redirect stub at the root, which lands on book/intro.html
    pages = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                   if not p.relative_to(html).parts[0].startswith("_") and "http-equiv" not in p.read_text()[:200])
    assert "book/chapters/02_apa.html" in pages and "book/api.html" in pages
    assert (html / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    findings = results_pages()
    assert "book/intro.html" in findings and set(findings) <= set(pages), sorted(set(findings) - set(pages))
    failures = []
    with Served(html) as server:
        for name in pages:
            for label, width in WIDTHS.items():
                shot = SCREENSHOTS / label / name.replace("/", "__").replace(".html", ".png")
                failures += [f"{name} at {width} px: {p}" for p in check_page(
                    browser, server.url + name, width, shot, needs_finding=name in findings)]
    assert not failures, "\n".join(failures)


# The checker itself, on tiny pages: it passes a good one and flags each kind of fault.
_FINDING = "<div class='admonition finding'><p>Finding</p><p>what the outputs show</p></div>"
_GOOD = ("<html><body><article>" + _FINDING + "<p>A figure:</p><img src='dot.png'>"
         "<div style='overflow-x:auto'><table><tr><td style='min-width:2000px'>wide, in its own scroll box</td>"
         "</tr></table></div></article></body></html>")
_BAD = {
    "cdn_mathjax": ("<html><head><script defer src='https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js'>"
                    "</script></head><body><p>\\(Q(x) = s\\,x\\)</p></body></html>", "outside request"),
    "broken_image": ("<html><body><img src='missing.png'></body></html>", "image not loaded"),
    "raw_math": ("<html><body><p>\\[ \\alpha_1 \\in [1, 10^5] \\]</p></body></html>", "raw math"),
    "wide": ("<html><body><div style='width:1000px'>wide</div></body></html>", "scrolls sideways"),
    "script_error": ("<html><body><script>undefinedFunction()</script></body></html>", "script error"),
    "console_error": ("<html><body><script>console.error('THEBE_JS_URL declared twice')</script></body></html>",
                      "console error"),
    "wide_table": ("<html><body><article style='width:300px'><table><tr><td style='min-width:600px'>x</td></tr>"
                   "</table></article></body></html>", "table wider than its column"),
    "wide_image": ("<html><body><article style='width:300px'><img src='dot.png' style='width:600px'></article>"
                   "</body></html>", "image wider than the column"),
    "tall": ("<html><body><div style='height:20000px'>long</div></body></html>", "too tall"),
    "late_finding": ("<html><body><div style='height:1200px'>the question first</div>" + _FINDING
                     + "</body></html>", "finding box not on the first screen"),
    "no_finding": ("<html><body><p>no answer here</p></body></html>", "no finding box"),
    "folded_evidence": ("<html><body><article>" + _FINDING + "<details><summary>the table</summary><table><tr><td>1"
                        "</td></tr></table></details></article></body></html>", "no visible figure or table"),
    "injected": ("<html><body><div class='cell tag_injected-parameters'><pre>n = 32</pre></div></body></html>",
                 "an injected parameters cell"),
}


def test_the_checker_flags_each_fault_a_reader_would_meet(tmp_path, browser):
    from PIL import Image

    Image.new("RGB", (4, 4), "red").save(tmp_path / "dot.png")
    (tmp_path / "good.html").write_text(_GOOD)
    for name, (text, _) in _BAD.items():
        (tmp_path / f"{name}.html").write_text(text)
    with Served(tmp_path) as server:
        for width in WIDTHS.values():
            assert check_page(browser, server.url + "good.html", width, needs_finding=True) == []
        assert any("status 404" in p for p in check_page(browser, server.url + "absent.html", 390))
        for name, (_, expected) in _BAD.items():
            width = 1280 if name == "tall" else 390
            problems = check_page(browser, server.url + f"{name}.html", width,
                                  needs_finding=name in ("no_finding", "folded_evidence"))
            assert any(p.startswith(expected) for p in problems), (name, problems)
            if name == "cdn_mathjax":  # offline, the reader would see the TeX source
                assert any(p.startswith("raw math") for p in problems), problems
