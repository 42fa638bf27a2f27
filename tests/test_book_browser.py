"""The built book as a reader meets it: every page in a real headless Chromium, offline, at a desktop
and a phone width. A page passes when it answers 200, every image loads, MathJax has rendered the
math (no raw `\\(` or `\\[` left in the text), the console shows no error, nothing is fetched from
outside 127.0.0.1, and at phone width the page does not scroll sideways. Screenshots of every page
go to `_build/screenshots/<width>/`.

Chromium is Debian's package (`apt-get install chromium`; `make test` installs it when run as root),
driven by playwright without any browser download; SARDFQ_CHROMIUM names another binary.
"""
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = {"desktop": 1280, "phone": 390}
SCREENSHOTS = ROOT / "_build" / "screenshots"

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
  return {broken, raw, scrollWidth: page.scrollWidth, clientWidth: page.clientWidth};
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


def check_page(browser, url: str, width: int, screenshot: Path | None = None) -> list[str]:
    """What a reader would find wrong with the page at `url` at this window width (empty: nothing)."""
    context = browser.new_context(viewport={"width": width, "height": 900})
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
    failures = []
    with Served(html) as server:
        for name in pages:
            for label, width in WIDTHS.items():
                shot = SCREENSHOTS / label / name.replace("/", "__").replace(".html", ".png")
                failures += [f"{name} at {width} px: {p}" for p in check_page(browser, server.url + name, width, shot)]
    assert not failures, "\n".join(failures)


# The checker itself, on tiny pages: it passes a good one and flags each kind of fault.
_GOOD = "<html><body><p>A figure:</p><img src='dot.png'></body></html>"
_BAD = {
    "cdn_mathjax": ("<html><head><script defer src='https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js'>"
                    "</script></head><body><p>\\(Q(x) = s\\,x\\)</p></body></html>", "outside request"),
    "broken_image": ("<html><body><img src='missing.png'></body></html>", "image not loaded"),
    "raw_math": ("<html><body><p>\\[ \\alpha_1 \\in [1, 10^5] \\]</p></body></html>", "raw math"),
    "wide": ("<html><body><div style='width:1000px'>wide</div></body></html>", "scrolls sideways"),
    "script_error": ("<html><body><script>undefinedFunction()</script></body></html>", "script error"),
    "console_error": ("<html><body><script>console.error('THEBE_JS_URL declared twice')</script></body></html>",
                      "console error"),
}


def test_the_checker_flags_a_cdn_script_a_broken_image_raw_math_errors_and_sideways_scroll(tmp_path, browser):
    from PIL import Image

    Image.new("RGB", (4, 4), "red").save(tmp_path / "dot.png")
    (tmp_path / "good.html").write_text(_GOOD)
    for name, (text, _) in _BAD.items():
        (tmp_path / f"{name}.html").write_text(text)
    with Served(tmp_path) as server:
        assert check_page(browser, server.url + "good.html", 390) == []
        assert any("status 404" in p for p in check_page(browser, server.url + "absent.html", 390))
        for name, (_, expected) in _BAD.items():
            problems = check_page(browser, server.url + f"{name}.html", 390)
            assert any(p.startswith(expected) for p in problems), (name, problems)
            if name == "cdn_mathjax":  # offline, the reader would see the TeX source
                assert any(p.startswith("raw math") for p in problems), problems
