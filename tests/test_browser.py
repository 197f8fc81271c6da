"""The sliders in a real browser: JupyterLab on localhost, driven in headless Chromium by Playwright.

Run with ``make test-browser`` (installs the ``browser`` extra, checks for /usr/bin/chromium);
``make test`` leaves these tests out (marker ``browser``, deselected in pyproject's addopts): they
start a Jupyter server and run a notebook in a browser, a minute or more on 2 cores.

For each row of :data:`SLIDERS` the test copies the notebook into a temporary folder (so that
JupyterLab's autosave never writes outputs into the repository), runs all its cells in quick mode,
drags the slider named ``description`` and checks, from screenshots of the slider's figure, that
both panels change (for notebook 00: the map on the left and its P(k) on the right). Rows whose
notebook does not exist yet are skipped. The last test opens ``build/index.html`` (``make run``'s
gallery) if it exists, and checks every card's thumbnail loads.

Playwright drives Debian's Chromium (``executable_path``); it never downloads a browser.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("COSMONB_CHROMIUM", "/usr/bin/chromium")
RUN_TIMEOUT = float(os.environ.get("COSMONB_BROWSER_TIMEOUT", "600"))  # seconds for Run All

pytestmark = pytest.mark.browser

#: (notebook glob in notebooks/, slider description, panels that must change).
#: A panel is (name, left, right) as fractions of the figure's width. 03-05 are ready for their
#: notebooks: a row is skipped while its notebook does not exist; fix the description to the
#: slider the notebook shows once it does.
SLIDERS = [
    ("00_*.ipynb", "Omega_m", (("map", 0.0, 0.45), ("P(k)", 0.55, 1.0))),
    ("03_*.ipynb", "Omega_m", (("map", 0.0, 0.45), ("P(k)", 0.55, 1.0))),
    ("04_*.ipynb", "Omega_m", (("map", 0.0, 0.45), ("P(k)", 0.55, 1.0))),
    ("05_*.ipynb", "Omega_m", (("map", 0.0, 0.45), ("P(k)", 0.55, 1.0))),
]


def _requirements():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: make test-browser installs it (pip install -e '.[browser]')")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set COSMONB_CHROMIUM)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    _requirements()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a temporary folder; yields (url, folder)."""
    _requirements()
    folder = tmp_path_factory.mktemp("lab")
    port = _free_port()
    settings = folder / ".settings"
    # every cell in the DOM (JupyterLab 4 renders only the cells in view by default), and no news prompt
    for plugin, value in (("notebook-extension/tracker", {"windowingMode": "none"}),
                          ("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False})):
        target = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value))
    env = dict(os.environ, COSMONB_QUICK="1", OMP_NUM_THREADS="1", JUPYTER_CONFIG_DIR=str(folder / ".config"),
               JUPYTERLAB_WORKSPACES_DIR=str(folder / ".workspaces"), JUPYTERLAB_SETTINGS_DIR=str(settings))
    env.pop("COSMONB_HEADLESS", None)  # live widgets: the point of this test
    env.pop("MPLBACKEND", None)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={folder}",
           "--LabApp.news_url=", "--LabApp.expose_app_in_browser=True", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # JupyterLab exits at once as root without it (CI runs as root)
    log = open(folder / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=5)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"JupyterLab did not start:\n{(folder / 'lab.log').read_text()[-3000:]}")
            time.sleep(1)
    yield url, folder
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _image(png: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("L")


def _changed(before: bytes, after: bytes, left: float, right: float) -> float:
    """Fraction of pixels (over 16 grey levels apart) that differ in the columns [left, right) of two screenshots."""
    import numpy as np

    a, b = np.asarray(_image(before), float), np.asarray(_image(after), float)
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    cols = slice(int(left * w), int(right * w))
    rows = slice(int(0.12 * h), h)  # below the titles: the drawing itself must change
    return float((np.abs(a[rows, cols] - b[rows, cols]) > 16).mean())


def _idle(page) -> bool:
    return page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() > 0


def _prompts(page) -> list[str]:
    """The input prompts of every code cell: ``[ ]:`` not run, ``[*]:`` running, ``[n]:`` done."""
    return [p.strip() for p in page.locator(".jp-Cell.jp-CodeCell .jp-InputPrompt").all_inner_texts()]


def _started(page) -> bool:
    """Whether any code cell has run or is running (a prompt other than ``[ ]:``)."""
    return any(p not in ("", "[ ]:") for p in _prompts(page))


def _run_all(page, timeout_s: float) -> None:
    """Run > Run All Cells, then wait until every code cell has an execution count and the kernel is idle.

    On a loaded machine the menu click is sometimes lost (the menu has not rendered yet, and every
    prompt stays ``[ ]``): if nothing has started 30 s after the click, the same command,
    ``notebook:run-all-cells``, is sent through the application (``expose_app_in_browser``).
    """
    deadline = time.monotonic() + 240
    while not _idle(page):  # the kernel starts (slowly on a busy machine)
        assert time.monotonic() < deadline, "the kernel did not become idle"
        page.wait_for_timeout(1000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    item = page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first
    item.wait_for(state="visible", timeout=30_000)
    item.click()
    for _ in range(30):
        if _started(page):
            break
        page.wait_for_timeout(1000)
    else:
        print("the Run All menu click started nothing after 30 s; running the command through the app")
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_timeout(3000)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        prompts = _prompts(page)
        if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts) and _idle(page):
            return
        page.wait_for_timeout(2000)
    raise AssertionError(f"Run All did not finish in {timeout_s:.0f} s: prompts {prompts}")


def _slider(page, description: str):
    """The ipywidgets 8 float slider whose label is ``description`` (the visible one)."""
    label = page.locator(".widget-slider .widget-label", has_text=description)
    label.first.wait_for(state="visible", timeout=60_000)
    return label.first.locator("xpath=..")


@pytest.mark.parametrize("pattern, description, panels", SLIDERS, ids=[row[0][:2] for row in SLIDERS])
def test_slider_redraws_the_figure_in_jupyterlab(browser, lab, pattern, description, panels):
    matches = sorted((ROOT / "notebooks").glob(pattern))
    if not matches:
        pytest.skip(f"no notebook {pattern} yet")
    url, folder = lab
    nb = matches[0]
    shutil.copy(nb, folder / nb.name)
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        page.goto(f"{url}/lab/tree/{nb.name}?reset", wait_until="domcontentloaded", timeout=120_000)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
        start = time.monotonic()
        _run_all(page, RUN_TIMEOUT)
        print(f"{nb.name}: Run All took {time.monotonic() - start:.0f} s in the browser")
        tracebacks = page.locator("[data-mime-type='application/vnd.jupyter.stderr']", has_text="Traceback")
        assert tracebacks.count() == 0, tracebacks.first.inner_text()[:2000]

        slider = _slider(page, description)
        box = slider.locator("xpath=ancestor::div[contains(@class, 'widget-vbox')][1]")
        figure = box.locator(".widget-output img").first
        figure.scroll_into_view_if_needed()
        figure.wait_for(state="visible", timeout=60_000)
        readout = slider.locator(".widget-readout").first
        value_before = readout.inner_text()
        before = figure.screenshot()
        page.wait_for_timeout(1000)
        control = {name: _changed(before, figure.screenshot(), lo, hi) for name, lo, hi in panels}
        assert all(f < 0.001 for f in control.values()), f"the figure changes without a slider move: {control}"

        handle = slider.locator(".noUi-handle").first
        hb = handle.bounding_box()
        page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
        page.mouse.down()
        page.mouse.move(hb["x"] + hb["width"] / 2 + 40, hb["y"] + hb["height"] / 2, steps=8)
        page.mouse.up()
        value_after = readout.inner_text()
        assert value_after != value_before, f"the {description} readout stayed at {value_before}"
        assert float(value_after) > float(value_before)

        deadline = time.monotonic() + 60
        fractions = {}
        while time.monotonic() < deadline:
            page.wait_for_timeout(1000)
            figure = box.locator(".widget-output img").first
            if figure.count() == 0:
                continue  # cleared, being redrawn
            after = figure.screenshot()
            fractions = {name: _changed(before, after, lo, hi) for name, lo, hi in panels}
            if all(f > 0.005 for f in fractions.values()):
                break
        print(f"{nb.name}: {description} {value_before} -> {value_after}; changed pixels {fractions}")
        assert fractions and all(f > 0.005 for f in fractions.values()), \
            f"moving {description} ({value_before} -> {value_after}) did not redraw every panel: {fractions}"
        assert not errors, errors
    except BaseException:
        keep = ROOT / "build" / "browser"  # outside pytest's temporary folders, which pytest prunes
        keep.mkdir(parents=True, exist_ok=True)
        shot = keep / f"failure_{nb.stem}.png"
        page.screenshot(path=str(shot), full_page=True)
        shutil.copy(folder / "lab.log", keep / "lab.log")
        print(f"screenshot of the failure: {shot}; JupyterLab's log: {keep / 'lab.log'}")
        raise
    finally:
        page.close()


def test_gallery_page_opens_with_every_thumbnail(browser):
    index = ROOT / "build" / "index.html"
    if not index.is_file():
        pytest.skip("no build/index.html: `make run` (or python -m cosmonb run) writes it")
    page = browser.new_page()
    try:
        page.goto(index.as_uri())
        cards = page.locator(".card")
        executed = sorted(p.stem for p in index.parent.glob("[0-9][0-9]_*.ipynb"))
        assert sorted(cards.evaluate_all("cs => cs.map(c => c.id)")) == executed
        widths = page.locator("img.thumbnail").evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert widths and all(w > 0 for w in widths), widths
        for href in page.locator(".card h2 a").evaluate_all("links => links.map(a => a.getAttribute('href'))"):
            assert (index.parent / href).is_file(), href
        assert page.locator(".card .time").count() == len(executed)
    finally:
        page.close()
