"""The bit browser in a real browser: JupyterLab on 127.0.0.1, headless Debian Chromium driven by Playwright."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tiny_results, tmp_path):
    results, _ = tiny_results
    port = _free_port()
    jd = ROOT / ".jupyter"
    # a copy of the notebooks: JupyterLab saves what it runs, and the checkout's notebooks must stay clean
    nbdir = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", nbdir)
    env = {**os.environ, "BITLENS_RESULTS": str(results.parent), "BITLENS_ROOT": str(ROOT), "BITLENS_PROGRESS": "off",
           "JUPYTER_CONFIG_DIR": str(jd / "config"), "JUPYTER_DATA_DIR": str(jd / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           f"--ServerApp.root_dir={nbdir}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=nbdir)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/api/status", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("JupyterLab exited:\n" + (tmp_path / "lab.log").read_text()[-3000:])
            time.sleep(1)
    else:
        proc.terminate()
        pytest.fail("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
    yield url
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)")
def test_bit_browser_updates_label_and_image_in_a_real_browser(lab, tiny_results):
    import json

    from playwright.sync_api import sync_playwright

    # the first bit whose top images differ from bit 1's, from the run's own dissection (bits that never fire
    # share one "top" order, so a neighbour can show the same images); the tiny model must have such a bit
    dissected = next(p for p in sorted((tiny_results[0] / "21_ibc_dissect").glob("*/units.json")))
    units = json.loads(dissected.read_text())
    first = units[0]["top_images"][:6]
    target = next((u["unit"] for u in units[1:] if u["top_images"][:6] != first), None)
    assert target is not None, f"{dissected}: every bit has the same top images (no bit fires?)"

    shot = ROOT / "results" / "browser" / "bit_browser.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--no-first-run", "--disable-sync",
                                          "--disable-quic"])
        page = browser.new_page(viewport={"width": 1300, "height": 1100})
        page.goto(f"{lab}/lab/tree/23_bit_browser.ipynb", wait_until="domcontentloaded")
        page.wait_for_selector(".jp-NotebookPanel", timeout=90_000)
        # a slow kernel start makes JupyterLab ask which kernel to use: take the notebook's own
        try:
            page.get_by_role("button", name="Select", exact=True).click(timeout=20_000)
        except Exception:
            pass
        # wait until the kernel is idle, then Run → Run All Cells
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        page.wait_for_timeout(2_000)
        page.get_by_role("menuitem", name="Run", exact=True).click(timeout=30_000)
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=30_000)
        label = page.locator(".bitlens-bit-label").first
        # when JupyterLab has not started the notebook's kernel yet, Run All asks which one: accept the preselected
        # "Python (bitlens)" (the notebook's own kernelspec), and the cells then run
        accept = page.locator(".jp-Dialog .jp-mod-accept")
        deadline = time.time() + 60
        while time.time() < deadline and not label.is_visible():
            if accept.count() and accept.first.is_visible():
                accept.first.click()
                # the Run All that raised the dialog is dropped once the kernel starts: issue it again
                page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
                page.get_by_role("menuitem", name="Run", exact=True).click(timeout=30_000)
                page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=30_000)
                break
            time.sleep(0.5)
        try:
            label.wait_for(timeout=180_000)
        except Exception:
            page.screenshot(path=str(shot.with_name("bit_browser_failure.png")), full_page=True)
            raise
        page.wait_for_function("document.querySelector('.bitlens-bit-image img, img.bitlens-bit-image')"
                               " && (document.querySelector('.bitlens-bit-image img, img.bitlens-bit-image')"
                               ".naturalWidth > 0)", timeout=60_000)
        before = label.inner_text()
        img = page.locator(".bitlens-bit-image").first
        src_before = img.evaluate("e => (e.tagName === 'IMG' ? e : e.querySelector('img')).src")
        label.scroll_into_view_if_needed()
        handle = page.locator(".bitlens-bit-slider .noUi-handle").first
        handle.focus()
        src_js = ("() => { const e = document.querySelector('.bitlens-bit-image');"
                  " return (e.tagName === 'IMG' ? e : e.querySelector('img')).src; }")
        labels, src_after = [before], src_before
        # step to the target bit; the label must follow every step
        while len(labels) < target:
            handle.press("ArrowRight")
            page.wait_for_function("t => document.querySelector('.bitlens-bit-label').innerText !== t",
                                   arg=labels[-1], timeout=30_000)
            labels.append(label.inner_text())
        try:
            page.wait_for_function(f"s => ({src_js})() !== s", arg=src_before, timeout=30_000)
        except Exception:
            pass  # the assertion below says what did not change
        src_after = img.evaluate("e => (e.tagName === 'IMG' ? e : e.querySelector('img')).src")
        page.screenshot(path=str(shot), full_page=False)
        browser.close()
    assert [f"bit {i + 1}" in t for i, t in enumerate(labels)] == [True] * len(labels), labels
    assert src_after != src_before, f"the top images did not change from bit 1 to bit {target}: {labels}"
    assert shot.exists() and shot.stat().st_size > 10_000
