"""Screenshots of the built docs site in headless Chromium (``make docs-check``).

A site can build without a warning and still be unreadable: a theme whose CSS did not ship,
code without highlighting, a plot whose path is wrong and shows as a broken image. Those are
seen, not parsed, so this opens a few pages in Debian's ``chromium`` and writes a PNG of
each for a person to look at, and checks the two things a machine can: the page's file
exists, and every local image it references exists.

Usage::

    python tools/docs_screenshots.py docs/_build/html docs/_build/screenshots
    python tools/docs_screenshots.py HTML OUT --page api/process.html --height 2400

Exit status 1 when a page or a local image is missing or Chromium fails; 0 otherwise.
"""

from __future__ import annotations

import argparse
import html.parser
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Pages a reader meets first: the front page, an API page, a guide page with code, and the
# benchmarks page with its plots.
DEFAULT_PAGES = ["index.html", "api/spawning.html", "quickstart.html", "benchmarks.html"]
CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome"]


class _Images(html.parser.HTMLParser):
    """The ``src`` of every ``<img>`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.extend(value for name, value in attrs if name == "src" and value)


def missing_images(page: Path) -> list[str]:
    """The local images *page* references that do not exist (remote ones are not checked)."""
    parser = _Images()
    parser.feed(page.read_text(encoding="utf-8"))
    missing = []
    for source in parser.sources:
        parts = urlsplit(source)
        if parts.scheme or parts.netloc:
            continue
        if not (page.parent / unquote(parts.path)).is_file():
            missing.append(source)
    return missing


def find_chromium() -> str:
    """The path of a Chromium binary, or an error that says how to install one."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(
        "docs_screenshots: no chromium found; install Debian's package: apt-get install chromium"
    )


def screenshot(chromium: str, page: Path, out: Path, width: int, height: int) -> None:
    """Render *page* (a file of the built site) into the PNG *out*."""
    with tempfile.TemporaryDirectory(prefix="docs-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",  # root, as on CI and the dev machines, needs it
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0 or not out.is_file():
        raise RuntimeError(
            f"chromium failed on {page} (exit {result.returncode}): {result.stderr[-2000:]}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the built site (docs/_build/html)")
    parser.add_argument("out", type=Path, help="where the PNGs go (docs/_build/screenshots)")
    parser.add_argument(
        "--page",
        action="append",
        dest="pages",
        help="a page of the site, relative to HTML (repeatable); default: "
        + ", ".join(DEFAULT_PAGES),
    )
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1800)
    args = parser.parse_args(argv)

    chromium = find_chromium()
    args.out.mkdir(parents=True, exist_ok=True)
    failures = []
    for name in args.pages or DEFAULT_PAGES:
        page = args.html / name
        if not page.is_file():
            failures.append(f"{name}: no such page in {args.html}")
            continue
        failures.extend(f"{name}: broken image {source}" for source in missing_images(page))
        out = args.out / (name.removesuffix(".html").replace("/", "-") + ".png")
        try:
            screenshot(chromium, page, out, args.width, args.height)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            failures.append(f"{name}: {error}")
            continue
        print(f"docs_screenshots: {name} -> {out}")
    for failure in failures:
        print(f"docs_screenshots: FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
