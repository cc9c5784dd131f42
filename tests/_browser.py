"""A real headless Chromium for the tests of the report and the dashboard.

The tests load a page, let its scripts run, and read the DOM Chromium rendered: a Plotly plot
that was drawn has one ``<path class="point">`` per marker inside its element. Chromium is
Debian's ``chromium`` package (``.ci/run`` installs it); without it the browser tests are
skipped, unless ``EDGENAS_REQUIRE_CHROMIUM=1`` asks for them to fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    """The browser's executable, or skip (fail when EDGENAS_REQUIRE_CHROMIUM=1)."""
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    message = "Chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("EDGENAS_REQUIRE_CHROMIUM") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args,
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def render(url: str, *, wait_ms: int = 10_000, timeout: float = 90) -> str:
    """The DOM of ``url`` after its scripts ran for ``wait_ms`` of virtual time."""
    done = _run([f"--virtual-time-budget={wait_ms}", "--dump-dom", url], timeout)
    if done.returncode != 0 or "<html" not in done.stdout:
        raise AssertionError(f"Chromium could not render {url}: {done.stderr[-2000:]}")
    return done.stdout


def screenshot(url: str, out: Path, *, width: int = 1280, height: int = 1600,
               wait_ms: int = 10_000, timeout: float = 90) -> Path:  # fmt: skip
    """A PNG of ``url`` as a window of ``width`` × ``height`` pixels shows it."""
    done = _run(
        [f"--virtual-time-budget={wait_ms}", f"--window-size={width},{height}",
         f"--screenshot={out}", url],
        timeout,
    )  # fmt: skip
    if not out.exists():
        raise AssertionError(f"Chromium took no screenshot of {url}: {done.stderr[-2000:]}")
    return out


class _Points(HTMLParser):
    """Counts Plotly's marker paths (``class="point"``) inside the element with one id."""

    _VOID: ClassVar[set[str]] = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
             "source", "track", "wbr"}  # fmt: skip

    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id = element_id
        self.depth = 0  # > 0 while inside the element
        self.found = False
        self.points = 0
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if self.depth == 0 and a.get("id") == self.element_id:
            self.found = True
            self.depth = 1
            return
        if self.depth:
            if tag not in self._VOID:
                self.depth += 1
            if "point" in (a.get("class") or "").split():
                self.points += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth and "point" in (dict(attrs).get("class") or "").split():
            self.points += 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag not in self._VOID:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth and data.strip():
            self.texts.append(data.strip())


def plot_points(dom: str, element_id: str) -> tuple[int, list[str]]:
    """Markers drawn inside the element ``element_id``, and the texts it shows (titles,
    axis labels, legend). Fails when the element is not in the page."""
    parser = _Points(element_id)
    parser.feed(dom)
    if not parser.found:
        raise AssertionError(f"no element with id {element_id!r} in the rendered page")
    return parser.points, parser.texts
