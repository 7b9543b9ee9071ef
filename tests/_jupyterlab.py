"""Real JupyterLab in real headless Chromium, for end-to-end tests of the front end.

``lab_server`` (session-scoped) starts ``jupyter lab`` from the test interpreter's
environment on a free 127.0.0.1 port with a token, and with its own Jupyter, IPython, HOME
and XDG directories and a fresh notebook root; it is stopped at the end with every kernel it
started. ``chromium`` (module-scoped) is Playwright driving the system's Chromium (no
browser download: ``playwright install`` is never needed); it stops after each module, as a
running sync Playwright makes ``asyncio.run`` fail in the same thread. ``lab`` (per test)
opens pages in fresh browser contexts, writes notebooks into the server's root and opens
them, and at the end closes its pages and shuts down the kernels of the notebooks it opened.

A :class:`Notebook` runs its cells the way a user does (click, Shift+Enter) and reads the
DOM. Every wait is on a condition with a deadline; a wait that times out saves a screenshot
to ``test-output/e2e/`` and says what it was waiting for. Screenshots a test asks for go to
the same folder.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from _require import missing

__all__ = [
    "CELLS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "KERNEL_IDLE",
    "OUTPUT",
    "Lab",
    "LabServer",
    "Notebook",
    "chromium",
    "lab",
    "lab_server",
    "screenshot",
    "start_lab_server",
    "wait_until",
]

#: The browser Playwright drives; Debian's package puts it here.
CHROMIUM = os.environ.get("NBREMIND_CHROMIUM", "/usr/bin/chromium")
#: Flags that let Chromium run headless as root in a container without reaching the network.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
#: Screenshots and server logs worth keeping after a run.
OUTPUT = Path(__file__).resolve().parent.parent / "test-output" / "e2e"
#: The JupyterLab setting defaults ``make lab`` gives its venv (overrides.d), used by the
#: test server too.
LAB_SETTINGS = Path(__file__).resolve().parent.parent / "etc" / "jupyterlab"
#: The status-bar text once a notebook's kernel is started and idle. (The toolbar's kernel
#: indicator already says "idle" before any kernel exists, so it cannot be trusted.)
KERNEL_IDLE = "Python 3 (ipykernel) | Idle"

SERVER_TIMEOUT = 60.0
OPEN_TIMEOUT = 60.0
RUN_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
#: Variables that would let the server or its kernels reach the caller's own set-up.
_UNSET = (
    "DBUS_SESSION_BUS_ADDRESS",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "JUPYTER_PATH",
    "JUPYTER_CONFIG_PATH",
    "JUPYTER_PLATFORM_DIRS",
    "JUPYTER_TOKEN",
    "JUPYTER_PORT",
    "PYTHONSTARTUP",
    "MPLBACKEND",
)
#: What an IPython error shows in a cell's output.
TRACEBACK = "Traceback (most recent call last)"
_PROMPT_DONE = re.compile(r"^\[\d+\]:$")


# -- the server ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _lab_env(home: Path) -> dict[str, str]:
    dirs = {
        "HOME": home / "home",
        "IPYTHONDIR": home / "ipython",
        "JUPYTER_CONFIG_DIR": home / "jupyter" / "config",
        "JUPYTER_DATA_DIR": home / "jupyter" / "data",
        "JUPYTER_RUNTIME_DIR": home / "jupyter" / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": home / "lab" / "settings",
        "JUPYTERLAB_WORKSPACES_DIR": home / "lab" / "workspaces",
        "XDG_CONFIG_HOME": home / "home" / ".config",
        "XDG_DATA_HOME": home / "home" / ".local" / "share",
        "XDG_CACHE_HOME": home / "home" / ".cache",
        "XDG_STATE_HOME": home / "home" / ".local" / "state",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    # no "official Jupyter news?" toast and no update check over the network
    settings = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    env.update({k: str(v) for k, v in dirs.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _jupyter_command() -> list[str]:
    jupyter = Path(sys.executable).parent / "jupyter"
    return [str(jupyter), "lab"] if jupyter.exists() else [sys.executable, "-m", "jupyterlab"]


class LabServer:
    """A running ``jupyter lab`` serving ``root`` at ``base`` (token auth)."""

    def __init__(
        self, proc: subprocess.Popen[bytes], base: str, token: str, root: Path, log: Path
    ) -> None:
        self.proc = proc
        self.base = base
        self.token = token
        self.root = root
        self.log = log

    def url(self, path: str, **query: str) -> str:
        params = "&".join([f"token={self.token}", *(f"{k}={v}" for k, v in query.items())])
        return f"{self.base}/{path.lstrip('/')}?{params}"

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """Call the server's REST API; returns the decoded JSON answer (or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.base}/api/{path.lstrip('/')}", data=data, method=method
        )
        req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def lab_setting(self, plugin: str, values: dict[str, Any]) -> None:
        """Set the user's settings of JupyterLab ``plugin`` (as Settings does); pages opened
        afterwards use them."""
        req = urllib.request.Request(
            f"{self.base}/lab/api/settings/{plugin}",
            method="PUT",
            data=json.dumps({"raw": json.dumps(values)}).encode(),
        )
        req.add_header("Authorization", f"token {self.token}")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10.0):
            pass

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(
                    f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                self.api("GET", "status", timeout=1.0)
                return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"jupyter lab did not answer /api/status within {timeout:g} s:"
                    f"\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server and every kernel it started; leave no process behind."""
        import psutil

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)  # the server shuts its kernels down first
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        _, alive = psutil.wait_procs(children, timeout=5)
        for proc in alive:  # kernels run in their own sessions: end them one by one
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        _, alive = psutil.wait_procs(alive, timeout=5)
        assert not alive, f"processes left behind by jupyter lab: {alive}"


@contextlib.contextmanager
def start_lab_server(home: Path) -> Iterator[LabServer]:
    """Run ``jupyter lab`` with all of its state under ``home``; stop it on exit."""
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        missing("browser tests need JupyterLab (pip install -e .[test,lab])")
    try:
        import psutil  # noqa: F401
    except ImportError:
        missing("browser tests need psutil to stop the server's kernels")
    root = home / "notebooks"
    root.mkdir(parents=True, exist_ok=True)
    env = _lab_env(home)
    port, token = _free_port(), os.urandom(16).hex()
    log = home / "jupyter-lab.log"
    app_settings = home / "lab" / "app-settings"
    shutil.copytree(LAB_SETTINGS, app_settings, dirs_exist_ok=True)
    cmd = [
        *_jupyter_command(),
        "--no-browser",
        "--allow-root",
        f"--LabApp.app_settings_dir={app_settings}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = LabServer(proc, f"http://127.0.0.1:{port}", token, root, log)
    try:
        server._wait_ready(SERVER_TIMEOUT)
        yield server
    finally:
        try:
            server.stop()
        finally:
            OUTPUT.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copyfile(log, OUTPUT / "jupyter-lab.log")


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """One JupyterLab server for the whole run, isolated from the user's Jupyter set-up."""
    with start_lab_server(tmp_path_factory.mktemp("jupyterlab")) as server:
        yield server


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Playwright's handle on the system Chromium, headless, for one test module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("browser tests need playwright (pip install -e .[test])")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        pw.stop()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "page"


def screenshot(target: Any, name: str) -> Path:
    """Save a PNG of a page or locator to the test output folder; returns its path."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / (name if name.endswith(".png") else f"{name}.png")
    target.screenshot(path=str(path))
    return path


def wait_until(
    page: Any,
    expression: str,
    arg: Any = None,
    *,
    timeout: float = RUN_TIMEOUT,
    what: str = "",
    shot: str = "timeout",
) -> Any:
    """Wait until the JS ``expression`` (a function of ``arg``) returns something truthy in
    ``page``; return that value. On timeout save a screenshot and fail saying ``what``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        handle = page.wait_for_function(expression, arg=arg, timeout=timeout * 1000, polling=100)
    except PlaywrightTimeout:
        path = None
        with contextlib.suppress(Exception):
            path = screenshot(page, f"{shot}-{time.strftime('%H%M%S')}")
        pytest.fail(
            f"timed out after {timeout:g} s waiting for {what or expression}"
            f"{f' (screenshot: {path})' if path else ''}"
        )
    return handle.json_value()


# -- notebooks in the browser ------------------------------------------------------------------

#: The cells of the notebook on show (several notebooks may be open in one page).
CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"
_CELL_STATE = """([sel, i]) => {
  const c = document.querySelectorAll(sel)[i];
  if (!c) return null;
  const p = c.querySelector('.jp-InputPrompt');
  const o = c.querySelector('.jp-OutputArea');
  return {prompt: p ? p.textContent.trim() : '', output: o ? o.textContent : ''};
}"""
_PROMPT_IS = "([sel, i, before]) => { const c = document.querySelectorAll(sel)[i];"


class Notebook:
    """One notebook open in a page (the visible notebook panel when several are open)."""

    def __init__(self, page: Any, path: str) -> None:
        self.page = page
        self.path = path

    @property
    def cells(self) -> Any:
        return self.page.locator(CELLS)

    def cell(self, index: int) -> Any:
        return self.cells.nth(index)

    def state(self, index: int) -> dict[str, str]:
        """``{"prompt": "[*]:", "output": "..."}`` for cell ``index`` right now."""
        state: dict[str, str] | None = self.page.evaluate(_CELL_STATE, [CELLS, index])
        assert state is not None, f"{self.path} has no cell {index}"
        return state

    def prompt(self, index: int) -> str:
        return self.state(index)["prompt"]

    def run(self, index: int, *, timeout: float = RUN_TIMEOUT) -> None:
        """Run cell ``index`` as a user does (click into it, Shift+Enter) and return once the
        kernel took it: its prompt changed (to ``[*]:``, or to its count if it was quick)."""
        before = self.prompt(index)
        self.cell(index).locator(".cm-content").click()
        self.page.keyboard.press("Shift+Enter")
        changed = "return c && c.querySelector('.jp-InputPrompt').textContent.trim() !== before; }"
        wait_until(
            self.page,
            _PROMPT_IS + changed,
            [CELLS, index, before],
            timeout=timeout,
            what=f"cell {index} of {self.path} to start",
            shot="run",
        )

    def wait_done(self, index: int, *, timeout: float = RUN_TIMEOUT) -> dict[str, str]:
        """Wait until cell ``index`` finished (its prompt shows its count); return its state."""
        done = (
            "return c && /^\\[\\d+\\]:$/.test(c.querySelector('.jp-InputPrompt')"
            ".textContent.trim()); }"
        )
        wait_until(
            self.page,
            _PROMPT_IS + done,
            [CELLS, index, None],
            timeout=timeout,
            what=f"cell {index} of {self.path} to finish",
            shot="cell",
        )
        return self.state(index)

    def run_and_wait(self, index: int, *, timeout: float = RUN_TIMEOUT) -> dict[str, str]:
        self.run(index, timeout=timeout)
        state = self.wait_done(index, timeout=timeout)
        assert _PROMPT_DONE.match(state["prompt"]), state
        return state

    def run_ok(self, index: int, *, timeout: float = RUN_TIMEOUT) -> dict[str, str]:
        """Like :meth:`run_and_wait`, failing the test if the cell shows a traceback."""
        state = self.run_and_wait(index, timeout=timeout)
        assert TRACEBACK not in state["output"], (
            f"cell {index} of {self.path} failed:\n{state['output'][-2000:]}"
        )
        return state

    def wait_idle(self, *, timeout: float = OPEN_TIMEOUT) -> None:
        """Wait for the status bar's "Python 3 (ipykernel) | Idle"."""
        wait_until(
            self.page,
            "([text]) => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
            ".some(e => e.textContent.trim() === text)",
            [KERNEL_IDLE],
            timeout=timeout,
            what=f"{self.path}'s kernel to be idle",
            shot="kernel",
        )


class Lab:
    """Per-test access to the server and the browser; cleans up after the test."""

    _workspaces = itertools.count(1)

    def __init__(self, server: LabServer, browser: Any, name: str) -> None:
        self.server = server
        self.browser = browser
        self.name = _slug(name)
        self.contexts: list[Any] = []
        self.paths: set[str] = set()
        #: Uncaught errors of every page this test opened (``pageerror`` events).
        self.page_errors: list[str] = []
        #: ``(type, text)`` of every console warning and error of those pages.
        self.console: list[tuple[str, str]] = []

    @property
    def base(self) -> str:
        return self.server.base

    def new_context(self, **options: Any) -> Any:
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = self.browser.new_context(**options)
        context.set_default_timeout(RUN_TIMEOUT * 1000)
        self.contexts.append(context)
        return context

    def new_page(self, context: Any = None) -> Any:
        page = (context or self.new_context()).new_page()
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: (
                self.console.append((msg.type, msg.text))
                if msg.type in ("warning", "error")
                else None
            ),
        )
        return page

    def write_notebook(self, name: str, cells: Sequence[str]) -> str:
        """Write a notebook of code ``cells`` (Python 3 kernel) into the server's root."""
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        nbformat.write(nb, self.server.root / name)
        self.paths.add(name)
        return name

    def open(self, name: str, page: Any = None, *, timeout: float = OPEN_TIMEOUT) -> Notebook:
        """Open notebook ``name`` in ``page`` (a new page if None) in a workspace of its own,
        and wait until its kernel is idle."""
        page = page or self.new_page()
        workspace = f"{self.name}-{next(self._workspaces)}"
        page.goto(self.server.url(f"lab/workspaces/{workspace}/tree/{name}"))
        notebook = Notebook(page, name)
        notebook.wait_idle(timeout=timeout)
        self.paths.add(name)
        return notebook

    def notebook(self, name: str, cells: Sequence[str], page: Any = None) -> Notebook:
        """Write and open a notebook."""
        return self.open(self.write_notebook(name, cells), page)

    def save(self, notebook: Notebook, *, timeout: float = RUN_TIMEOUT) -> str:
        """Save ``notebook`` as a user does (Ctrl+S); return the file's text once written."""
        path = self.server.root / notebook.path
        before = path.stat().st_mtime_ns
        notebook.page.keyboard.press("Control+s")
        deadline = time.monotonic() + timeout
        while path.stat().st_mtime_ns == before:
            assert time.monotonic() < deadline, f"{notebook.path} was not saved in {timeout:g} s"
            time.sleep(0.05)
        return path.read_text()

    def shutdown_kernels(self) -> None:
        """Shut down the sessions (and kernels) of the notebooks this test used."""
        with contextlib.suppress(OSError):
            for session in self.server.api("GET", "sessions") or []:
                if session.get("path") in self.paths:
                    with contextlib.suppress(OSError):
                        self.server.api("DELETE", f"sessions/{session['id']}")

    def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Exception):
                context.close()
        self.shutdown_kernels()


@pytest.fixture
def lab(chromium: Any, lab_server: LabServer, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """JupyterLab in Chromium for one test."""
    if not lab_server.alive():
        pytest.fail(f"jupyter lab died:\n{lab_server.log_tail()}")
    helper = Lab(lab_server, chromium, request.node.name)
    try:
        yield helper
    finally:
        helper.close()
