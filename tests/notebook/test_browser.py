"""The real thing: JupyterLab in headless Chromium runs notebooks/quickstart.ipynb, then survives a kernel restart.

1. Starts JupyterLab on 127.0.0.1 with a random token (config, runtime, data, settings and workspaces in a
   tmp folder), with a copy of the quickstart as its only notebook.
2. Opens it in Debian's Chromium (the machine's set-up installs it: .ci/run; playwright drives it, no
   browser download), runs all cells from the Run menu, and checks from the DOM that both dashboards show every
   child with a final status, the chart, and a confusion matrix image. Screenshots go to test-artifacts/.
3. Starts another sweep in a new cell, restarts the kernel while it runs, runs ``%avml attach`` in a new cell
   and checks that the dashboard comes back and shows the sweep finished (its driver outlived the kernel).

The server, the browser and any sweep driver still alive are stopped at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
FINAL = ("completed", "early_terminated", "stopped", "failed", "invalid")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

RESTART_CELL = """%%avml restart-demo
task: image-classification
training_data: data/quickstart/multiclass.jsonl
model_name: resnet18
pretrained: 0
number_of_epochs: 2
train_crop_size: 32
valid_resize_size: 32
valid_crop_size: 32
cpu_threads: 1"""
ATTACH_CELL = "%load_ext jupyter_avml\n%avml attach restart-demo"

# What the page tells about the dashboards, all at once.
DASHBOARDS_JS = """() => [...document.querySelectorAll('.jp-Notebook .avml-dashboard')].map(d => ({
    status: d.querySelector('.avml-header[data-status]')?.dataset.status,
    name: d.querySelector('.avml-header[data-status]')?.dataset.name,
    rows: [...d.querySelectorAll('tr.avml-row')].map(r => r.dataset.status),
    series: d.querySelectorAll('svg.avml-chart polyline.avml-series').length,
    confusion: [...d.querySelectorAll('img.avml-confusion-matrix')]
        .filter(i => i.complete && i.naturalWidth > 0 && i.offsetParent !== null).length,
}))"""
PROMPTS_JS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
    .map(p => p.textContent.trim())"""
ERRORS_JS = """() => [...document.querySelectorAll(
    '.jp-Notebook .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .map(e => e.textContent).filter(t => /Traceback|UsageError|Error displaying widget/.test(t))"""


def ensure_chromium() -> Path:
    """Debian's chromium, which the machine's set-up installs (.ci/run; by hand: apt-get install chromium)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: this test drives Debian's chromium, which .ci/run installs "
                    f"(by hand: apt-get install chromium)")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """A JupyterLab server of its own: tmp config/runtime/data/settings, one root folder, a random token."""

    def __init__(self, tmp: Path, root: Path, workspace: Path):
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.root = root
        home = tmp / "jupyter"
        settings = home / "settings"
        # Every cell stays in the DOM (no windowing), and no news or update pop-ups.
        for plugin, values in (("@jupyterlab/notebook-extension/tracker", {"windowingMode": "none"}),
                               ("@jupyterlab/apputils-extension/notification",
                                {"fetchNews": "false", "checkForUpdates": False})):
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
               "JUPYTER_DATA_DIR": str(home / "data"), "IPYTHONDIR": str(home / "ipython"),
               "AVML_WORKSPACE": str(workspace), "AVML_NB_EPOCHS": "1", "AVML_NB_IMAGES": "48",
               "JUPYTER_PLATFORM_DIRS": "1"}
        env.pop("MPLBACKEND", None)
        self.log = open(tmp / "jupyterlab.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", f"--IdentityProvider.token={self.token}",
             f"--port={self.port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={settings}",
             f"--LabApp.workspaces_dir={home / 'workspaces'}", *(["--allow-root"] if os.geteuid() == 0 else [])],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait_ready()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def _wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({self.process.returncode}); see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer within {timeout} s; see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server shuts its kernels down
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()


def stop_sweeps(workspace: Path) -> None:
    """End every driver (and so its workers) of the workspace that still runs."""
    import psutil

    for info_file in workspace.glob("experiments/*/driver.json"):
        try:
            info = json.loads(info_file.read_text())
            process = psutil.Process(int(info["pid"]))
            if info.get("create_time") and abs(process.create_time() - float(info["create_time"])) > 0.05:
                continue  # the pid was reused: not our driver
        except (OSError, ValueError, KeyError, psutil.Error):
            continue
        try:
            os.killpg(process.pid, signal.SIGTERM)  # the driver leads its own session: workers go too
            process.wait(20)
        except (psutil.Error, OSError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass


def retry(action, attempts: int = 4, pause: float = 1.0):
    """JupyterLab's menus and focus settle asynchronously: try an interaction again before failing."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(pause)


def menu(page, top: str, item: str) -> None:
    def click():
        page.keyboard.press("Escape")
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).first.click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}")).first.click(timeout=5000)
    retry(click)


def wait_kernel_idle(page, timeout: float = 120) -> None:
    """The kernel is connected and idle (the status bar says so, not only the toolbar's default)."""
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout * 1000)
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle")).first.wait_for(timeout=timeout * 1000)


def run_all(page) -> None:
    """Run > Run All Cells, again if the first click came before the notebook was ready for it."""
    def started() -> bool:
        return any(p != "[ ]:" for p in page.evaluate(PROMPTS_JS))

    for _ in range(4):
        menu(page, "Run", "Run All Cells")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if started():
                return
            time.sleep(0.5)
    raise AssertionError("Run All Cells did not start the cells")


def wait_until(predicate, timeout: float, what: str, page=None, pause: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if page is not None:
            errors = page.evaluate(ERRORS_JS)
            assert not errors, f"an error appeared while waiting for {what}: {errors[0][:2000]}"
        last = predicate()
        if last:
            return last
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def add_cell_and_run(page, source: str) -> None:
    """A new code cell at the end of the notebook, with ``source``, run with Shift+Enter."""
    def add():
        page.locator(".jp-Notebook .jp-Cell").last.locator(".jp-InputArea-prompt").click()
        page.keyboard.press("Escape")
        page.keyboard.press("b")
        page.keyboard.press("Enter")
        page.keyboard.insert_text(source)  # no key events: the editor does not re-indent the YAML
    before = page.locator(".jp-Notebook .jp-Cell").count()
    retry(add)
    wait_until(lambda: page.locator(".jp-Notebook .jp-Cell").count() == before + 1, 10, "the new cell")
    assert page.locator(".jp-Notebook .jp-Cell").last.locator(".cm-content").inner_text().startswith(
        source.splitlines()[0])
    page.keyboard.press("Shift+Enter")


def saved_fallbacks(path: Path) -> list[tuple[list[str], bool]]:
    """For each dashboard output of a saved notebook: its text/html's child statuses, and whether it embeds a
    confusion matrix PNG."""
    out = []
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data and "text/html" in data:
                html = "".join(data["text/html"])
                rows = re.findall(r'class="avml-row[^"]*" data-child="\d+" data-status="(\w+)"', html)
                out.append((rows, 'class="avml-confusion-matrix"' in html and "data:image/png;base64," in html))
    return out


def read_state(workspace: Path, name: str) -> dict:
    try:
        return json.loads((workspace / "experiments" / name / "state.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.browser
@pytest.mark.slow(seconds=100)
def test_quickstart_in_jupyterlab_and_attach_after_a_kernel_restart(tmp_path):
    chromium = ensure_chromium()
    from playwright.sync_api import sync_playwright

    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "quickstart.ipynb", root / "quickstart.ipynb")
    workspace = tmp_path / "workspace"
    ARTIFACTS.mkdir(exist_ok=True)
    lab = Lab(tmp_path, root, workspace)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1800})
                page.goto(lab.url("lab/tree/quickstart.ipynb"))
                page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120_000)
                wait_kernel_idle(page)

                # -- 1. Run all cells, then read the dashboards from the DOM ----------------------------------
                run_all(page)
                wait_until(lambda: all(re.fullmatch(r"\[\d+\]:", p) for p in page.evaluate(PROMPTS_JS)),
                           900, "every cell to run", page=page, pause=2)
                boards = wait_until(
                    lambda: (lambda b: b if len(b) == 2 and all(d["status"] == "completed" and d["confusion"]
                                                                  for d in b) else None)(page.evaluate(DASHBOARDS_JS)),
                    60, "two finished dashboards with a confusion matrix")
                baseline, sweep = boards
                assert baseline["rows"] == ["completed"] and baseline["series"] == 1, baseline
                assert len(sweep["rows"]) == 4 and all(s in FINAL for s in sweep["rows"]), sweep
                assert sweep["series"] == 4, sweep
                page.locator(".avml-dashboard").nth(1).screenshot(path=str(ARTIFACTS / "quickstart-dashboard.png"))
                page.screenshot(path=str(ARTIFACTS / "quickstart.png"))
                # Saved, the notebook carries the static fallback: the final leaderboard and its plots.
                saved_before = (root / "quickstart.ipynb").stat().st_mtime
                retry(lambda: (page.keyboard.press("Escape"), page.keyboard.press("Control+s")))
                wait_until(lambda: (root / "quickstart.ipynb").stat().st_mtime > saved_before, 30, "the save")
                fallback = saved_fallbacks(root / "quickstart.ipynb")
                assert [len(rows) for rows, _ in fallback] == [1, 4], fallback
                assert all(all(s in FINAL for s in rows) and images for rows, images in fallback), fallback

                # -- 2. A sweep, a kernel restart while it runs, %avml attach ------------------------------------
                add_cell_and_run(page, RESTART_CELL)
                wait_until(lambda: len(page.evaluate(DASHBOARDS_JS)) == 3, 60, "the new sweep's dashboard", page=page)
                wait_until(lambda: read_state(workspace, "restart-demo").get("status") in ("queued", "running"),
                           30, "the sweep to start")
                menu(page, "Kernel", "Restart Kernel")
                retry(lambda: page.locator(".jp-Dialog .jp-mod-accept").click(timeout=5000))
                wait_kernel_idle(page)
                state = read_state(workspace, "restart-demo")
                assert state["status"] in ("queued", "running"), "the sweep ended before the restart: too fast"
                add_cell_and_run(page, ATTACH_CELL)
                attached = wait_until(
                    lambda: (lambda b: b[-1] if len(b) >= 4 and b[-1]["name"] == "restart-demo" and
                             b[-1]["status"] == "completed" and b[-1]["confusion"] else None)(
                        page.evaluate(DASHBOARDS_JS)),
                    600, "the attached dashboard to show the sweep finished", page=page, pause=2)
                assert attached["rows"] == ["completed"] and attached["series"] == 1, attached
                page.locator(".avml-dashboard").last.screenshot(path=str(ARTIFACTS / "attach-after-restart.png"))
                final = read_state(workspace, "restart-demo")
                assert final["status"] == "completed" and final["children"][0]["status"] == "completed"
            finally:
                browser.close()
    finally:
        lab.stop()
        stop_sweeps(workspace)
