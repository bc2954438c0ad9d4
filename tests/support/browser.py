"""Headless Chromium for tests: screenshots and rendered DOM of local pages (loopback/file only)."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make test` should have installed it")
        pytest.skip("chromium is not installed (make test installs it with apt-get)")
    return exe


def _run(args, timeout=90):
    with tempfile.TemporaryDirectory(prefix="dolphin-chromium-") as prof:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={prof}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def screenshot(url: str, out: Path, width=1280, height=2400, wait_ms=1500) -> Path:
    out = Path(out)
    r = _run([f"--screenshot={out}", f"--window-size={width},{height}",
              f"--virtual-time-budget={wait_ms}", url])
    if not out.exists():
        raise AssertionError(f"chromium wrote no screenshot (rc={r.returncode}): {r.stderr[-2000:]}")
    return out


def rendered_dom(url: str, wait_ms=1500, width=None, height=None) -> str:
    size = [f"--window-size={width},{height}"] if width and height else []
    r = _run(["--dump-dom", *size, f"--virtual-time-budget={wait_ms}", url])
    if r.returncode != 0 or not r.stdout:
        raise AssertionError(f"chromium --dump-dom failed (rc={r.returncode}): {r.stderr[-2000:]}")
    return r.stdout


def non_blank_fraction(png: Path) -> float:
    """Share of pixels that differ from the most common colour (0 = blank page)."""
    from PIL import Image

    im = Image.open(png).convert("RGB")
    small = im.resize((im.width // 4, im.height // 4))
    colors = small.getcolors(maxcolors=small.width * small.height)
    top = max(c for c, _ in colors)
    return 1.0 - top / (small.width * small.height)
