"""A real ipykernel driven through jupyter_client, isolated from the user's own set-up.

``kernel_factory`` (function-scoped) starts kernels on demand and shuts them down after the
test; ``kernel`` (module-scoped) is one kernel shared by a test module. Each kernel gets its
own IPYTHONDIR, Jupyter and XDG directories, HOME and working directory, runs the test
interpreter through its own kernel spec, and sees ``JPY_SESSION_NAME=analysis.ipynb`` as if
a notebook server had started it. It never sees the caller's D-Bus session bus or display
unless a test passes them in ``env``.

``Kernel.run(code)`` executes a cell and returns a :class:`Result` with the reply status,
error, streams and displayed values. Requests may be sent back to back with
``Kernel.execute`` and collected later with ``Kernel.result``. Every wait is on a message
(or a condition) with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from _require import missing

__all__ = [
    "NOTEBOOK",
    "Kernel",
    "KernelFactory",
    "Result",
    "kernel",
    "kernel_factory",
    "remind_kernel",
    "start_kernel",
]

#: The notebook the kernels pretend to belong to (``JPY_SESSION_NAME``).
NOTEBOOK = "analysis.ipynb"
STARTUP_TIMEOUT = 60.0
RUN_TIMEOUT = 30.0
#: Variables that would let a kernel reach the caller's desktop, Jupyter or IPython set-up.
_UNSET = (
    "DBUS_SESSION_BUS_ADDRESS",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "JUPYTER_PATH",
    "JUPYTER_CONFIG_PATH",
    "JUPYTER_PLATFORM_DIRS",
    "PYTHONSTARTUP",
    "MPLBACKEND",
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MARK = "@@nbremind-test-query@@ "


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


@dataclass
class Result:
    """Everything one execute request produced."""

    msg_id: str
    code: str
    #: ``"ok"``, ``"error"`` or ``"aborted"`` (the shell reply's status).
    status: str = ""
    execution_count: int | None = None
    ename: str = ""
    evalue: str = ""
    #: The traceback lines of the reply, ANSI colours removed.
    traceback: list[str] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    #: ``text/plain`` of each ``execute_result`` (the cell's displayed last expression).
    results: list[str] = field(default_factory=list)
    #: ``text/plain`` of each ``display_data``.
    displays: list[str] = field(default_factory=list)
    #: Every IOPub message about this request, in order.
    messages: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)

    @property
    def result(self) -> str | None:
        """The displayed value of the cell's last expression, if any."""
        return self.results[-1] if self.results else None

    @property
    def traceback_text(self) -> str:
        return "\n".join(self.traceback)

    @property
    def output(self) -> str:
        """Everything visible in the cell's output area, as text."""
        return "".join(
            [self.stdout, self.stderr, *self.results, *self.displays, self.traceback_text]
        )

    def describe(self) -> str:
        parts = [f"status={self.status!r}"]
        if self.ename:
            parts.append(f"{self.ename}: {self.evalue}")
        shown = "\n".join([*self.results, *self.displays])
        for label, text in (
            ("stdout", self.stdout),
            ("stderr", self.stderr),
            ("displayed", shown),
            ("traceback", self.traceback_text),
        ):
            if text:
                parts.append(f"--- {label} ---\n{text.rstrip()}")
        return "\n".join(parts)

    def assert_ok(self) -> Result:
        assert self.status == "ok", f"cell failed:\n{self.code}\n{self.describe()}"
        return self


class _Pending:
    """What has arrived so far for one request."""

    def __init__(self, msg_id: str, code: str) -> None:
        self.result = Result(msg_id, code)
        self.replied = False
        self.busy = False
        self.idle = False

    @property
    def done(self) -> bool:
        return self.replied and self.idle

    def on_iopub(self, msg: dict[str, Any]) -> None:
        r, kind, content = self.result, msg["msg_type"], msg["content"]
        r.messages.append(msg)
        if kind == "status":
            state = content.get("execution_state")
            self.busy = self.busy or state == "busy"
            self.idle = self.idle or state == "idle"
        elif kind == "stream":
            if content.get("name") == "stderr":
                r.stderr += content.get("text", "")
            else:
                r.stdout += content.get("text", "")
        elif kind == "execute_result":
            r.results.append(content.get("data", {}).get("text/plain", ""))
        elif kind == "display_data":
            r.displays.append(content.get("data", {}).get("text/plain", ""))
        elif kind == "clear_output":
            r.stdout = r.stderr = ""

    def on_reply(self, msg: dict[str, Any]) -> None:
        r, content = self.result, msg["content"]
        self.replied = True
        r.reply = content
        r.status = content.get("status", "")
        r.execution_count = content.get("execution_count")
        if r.status == "error":
            r.ename = content.get("ename", "")
            r.evalue = content.get("evalue", "")
            r.traceback = [strip_ansi(line) for line in content.get("traceback", [])]


class Kernel:
    """A running ipykernel and a client for it."""

    def __init__(self, km: Any, kc: Any, env: dict[str, str], workdir: Path, log: Path) -> None:
        import zmq

        self.km = km
        self.kc = kc
        self.env = env
        self.workdir = workdir
        self.log = log
        self._pending: dict[str, _Pending] = {}
        self._poller = zmq.Poller()
        self._poller.register(kc.iopub_channel.socket, zmq.POLLIN)
        self._poller.register(kc.shell_channel.socket, zmq.POLLIN)
        self._poller.register(kc.stdin_channel.socket, zmq.POLLIN)
        #: The ``input_request`` messages received and not yet taken by
        #: :meth:`wait_for_input_request`.
        self.input_requests: list[dict[str, Any]] = []

    def reconnect(self) -> None:
        """Talk to the kernel through a new client (after another client, such as
        nbclient's, closed the channels this one shared with it)."""
        import zmq

        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=STARTUP_TIMEOUT)
        self._poller = zmq.Poller()
        self._poller.register(self.kc.iopub_channel.socket, zmq.POLLIN)
        self._poller.register(self.kc.shell_channel.socket, zmq.POLLIN)
        self._poller.register(self.kc.stdin_channel.socket, zmq.POLLIN)

    # -- messages ---------------------------------------------------------------------------
    def _pump(self, timeout: float) -> None:
        """Route whatever arrives within ``timeout`` seconds to the request it answers."""
        if not self._poller.poll(max(0, int(timeout * 1000))):
            return
        for channel, on in (
            (self.kc.iopub_channel, "on_iopub"),
            (self.kc.shell_channel, "on_reply"),
        ):
            while channel.msg_ready():
                msg = channel.get_msg(timeout=0)
                pending = self._pending.get(msg.get("parent_header", {}).get("msg_id", ""))
                if pending is not None:
                    getattr(pending, on)(msg)
        while self.kc.stdin_channel.msg_ready():
            msg = self.kc.stdin_channel.get_msg(timeout=0)
            if msg["msg_type"] == "input_request":
                self.input_requests.append(msg)

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"timed out after {timeout:g} s waiting for {what}{self._dead_note()}"
                )
            self._pump(min(left, 0.5))

    def _dead_note(self) -> str:
        if self.km.is_alive():
            return ""
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        return f"; the kernel died. Its log ends:\n{tail}"

    # -- executing --------------------------------------------------------------------------
    def execute(
        self,
        code: str,
        *,
        silent: bool = False,
        store_history: bool = True,
        stop_on_error: bool = True,
        cell_id: str | None = None,
        allow_stdin: bool = False,
    ) -> str:
        """Send an execute request without waiting; returns its id for :meth:`result`.
        ``cell_id``: sent as JupyterLab sends a cell's id (the request's ``cellId``);
        ``allow_stdin``: the cell may ask for input (answer with :meth:`answer_input`)."""
        if cell_id is None:
            msg_id: str = self.kc.execute(
                code,
                silent=silent,
                store_history=store_history,
                stop_on_error=stop_on_error,
                allow_stdin=allow_stdin,
            )
        else:
            content = {
                "code": code,
                "silent": silent,
                "store_history": store_history,
                "user_expressions": {},
                "allow_stdin": allow_stdin,
                "stop_on_error": stop_on_error,
            }
            msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
            self.kc.shell_channel.send(msg)
            msg_id = msg["header"]["msg_id"]
        self._pending[msg_id] = _Pending(msg_id, code)
        return msg_id

    def result(self, msg_id: str, timeout: float = RUN_TIMEOUT) -> Result:
        """Wait until the request was answered and the kernel went idle after it."""
        pending = self._pending[msg_id]
        self._wait(lambda: pending.done, timeout, f"the reply to {pending.result.code!r}")
        del self._pending[msg_id]
        return pending.result

    def wait_for_input_request(self, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """Wait until a running cell asks for input; return (and take) its request."""
        self._wait(lambda: bool(self.input_requests), timeout, "an input request")
        return self.input_requests.pop(0)

    def answer_input(self, text: str) -> None:
        """Answer the running cell's input request (from :meth:`wait_for_input_request`)
        with ``text``: call it after a delay or once a condition holds."""
        self.kc.input(text)

    def partial(self, msg_id: str) -> Result:
        """What a request still running has produced so far."""
        self._pump(0)
        return self._pending[msg_id].result

    def run(self, code: str, timeout: float = RUN_TIMEOUT, **kw: Any) -> Result:
        """Execute ``code`` as a cell and return what it produced."""
        return self.result(self.execute(code, **kw), timeout)

    def ok(self, code: str, timeout: float = RUN_TIMEOUT, **kw: Any) -> Result:
        """Like :meth:`run`, failing the test unless the reply status is ``ok``."""
        return self.run(code, timeout, **kw).assert_ok()

    def wait_for_output(self, msg_id: str, text: str, timeout: float = RUN_TIMEOUT) -> Result:
        """Wait until the running request ``msg_id`` printed ``text`` to stdout."""
        pending = self._pending[msg_id]
        self._wait(
            lambda: pending.busy and text in pending.result.stdout,
            timeout,
            f"{text!r} from {pending.result.code!r}",
        )
        return pending.result

    def query(self, code: str, timeout: float = RUN_TIMEOUT) -> Any:
        """Run ``code`` (which sets ``result``) in a private namespace; return ``result``.

        The request is ``silent``: no history, no execute count, no ``pre_run_cell`` hooks,
        so querying never creates a cell task of its own.
        """
        body = f"import json\n{code}\nprint({_MARK!r} + json.dumps(result, default=str))\n"
        r = self.run(f"exec({body!r}, {{}})", timeout, silent=True, store_history=False)
        assert r.status == "ok", f"query failed:\n{code}\n{r.describe()}"
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith(_MARK)), None)
        assert line is not None, f"query printed no result:\n{code}\n{r.describe()}"
        return json.loads(line[len(_MARK) :])

    def interrupt(self) -> None:
        """Send the kernel an interrupt, as the notebook's stop button does."""
        self.km.interrupt_kernel()

    def settle(self, timeout: float = RUN_TIMEOUT) -> None:
        """Interrupt and collect whatever requests are still outstanding (after a failure)."""
        if not self._pending:
            return
        self.interrupt()
        for msg_id in list(self._pending):
            with contextlib.suppress(TimeoutError):
                self.result(msg_id, timeout)

    # -- nbremind in the kernel ---------------------------------------------------------------
    def use_memory_channel(self) -> None:
        """Send this kernel's notices to nbremind's in-memory channel only."""
        self.ok(
            'import nbremind\nnbremind.configure(channels=["memory"])\n',
            silent=True,
            store_history=False,
        )

    def notices(self) -> list[dict[str, Any]]:
        """Every notice the memory channel received (after delivering pending ones)."""
        result: list[dict[str, Any]] = self.query(_NOTICES)
        return result

    def wait_for_notices(
        self,
        done: Callable[[list[dict[str, Any]]], bool],
        timeout: float = RUN_TIMEOUT,
        what: str = "the notices",
    ) -> list[dict[str, Any]]:
        """Read :meth:`notices` until ``done(notices)`` holds; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.notices()
            if done(found):
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}: {found}")
            self._pump(0.05)  # a pause that also routes messages of running requests

    def wait_for_tasks(
        self,
        done: Callable[[list[dict[str, Any]]], bool],
        timeout: float = RUN_TIMEOUT,
        what: str = "the tasks",
    ) -> list[dict[str, Any]]:
        """Read :meth:`tasks` until ``done(tasks)`` holds; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.tasks()
            if done(found):
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}: {found}")
            self._pump(0.05)

    def titles(self) -> list[str]:
        return [n["title"] for n in self.notices()]

    def clear_notices(self) -> None:
        self.query(_NOTICES + "\nif ch is not None:\n    ch.clear()\n")

    def tasks(self) -> list[dict[str, Any]]:
        """The session's tasks, oldest first."""
        result: list[dict[str, Any]] = self.query(_TASKS)
        return result

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        with contextlib.suppress(Exception):
            self.km.shutdown_kernel(now=True)


_NOTICES = """
import nbremind
s = nbremind.get_session()
s.flush()
ch = s.dispatcher.channels.get("memory")
result = [
    {"title": n.title, "body": n.body, "event": n.event, "urgency": n.urgency,
     "name": n.task.name, "kind": n.task.kind, "state": n.task.state.value,
     "notebook": n.task.notebook, "cell_id": n.task.cell_id,
     "error": None if n.task.error is None else [n.task.error.type, n.task.error.message]}
    for n in (ch.notices if ch is not None else [])
]
"""

_TASKS = """
import nbremind
result = [
    {"name": t.name, "state": t.state.value, "kind": t.kind,
     "parent": None if t.parent is None else t.parent.name}
    for t in nbremind.get_session().tasks()
]
"""


def _kernel_env(
    root: Path, env: Mapping[str, str] | None, unset: tuple[str, ...]
) -> dict[str, str]:
    home = root / "home"
    dirs = {
        "HOME": home,
        "IPYTHONDIR": root / "ipython",
        "JUPYTER_CONFIG_DIR": root / "jupyter" / "config",
        "JUPYTER_DATA_DIR": root / "jupyter" / "data",
        "JUPYTER_RUNTIME_DIR": root / "jupyter" / "runtime",
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local" / "share",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_STATE_HOME": home / ".local" / "state",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    out = {k: v for k, v in os.environ.items() if k not in _UNSET and k not in unset}
    out.update({k: str(v) for k, v in dirs.items()})
    out["JPY_SESSION_NAME"] = NOTEBOOK
    out["PYTHONUNBUFFERED"] = "1"
    out.update(env or {})
    return out


@contextlib.contextmanager
def start_kernel(
    root: Path,
    env: Mapping[str, str] | None = None,
    unset: tuple[str, ...] = (),
) -> Iterator[Kernel]:
    """Start an isolated kernel under ``root``; ``env`` adds or overrides variables, ``unset``
    removes more of the caller's. Shut it down on exit."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager
    except ImportError:
        missing("kernel tests need jupyter_client (pip install -e .[test])")
    try:
        import ipykernel  # noqa: F401
    except ImportError:
        missing("kernel tests need ipykernel (pip install -e .[test])")

    root.mkdir(parents=True, exist_ok=True)
    spec_dir = root / "kernels" / "nbremind-test"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "nbremind test kernel",
                "language": "python",
            }
        )
    )
    kernel_env = _kernel_env(root, env, unset)
    workdir = root / "work"
    workdir.mkdir(exist_ok=True)
    ksm = KernelSpecManager(kernel_dirs=[str(root / "kernels")], ensure_native_kernel=False)
    km = KernelManager(
        kernel_name="nbremind-test",
        kernel_spec_manager=ksm,
        connection_file=str(root / "jupyter" / "runtime" / "kernel-test.json"),
    )
    log = root / "kernel.log"
    with log.open("wb") as log_file:
        km.start_kernel(env=kernel_env, cwd=str(workdir), stdout=log_file, stderr=log_file)
        kc = km.client()
        kernel = None
        try:
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=STARTUP_TIMEOUT)
            except RuntimeError as exc:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"kernel did not start: {exc}\n{tail}") from None
            kernel = Kernel(km, kc, kernel_env, workdir, log)
            yield kernel
        finally:
            if kernel is not None:
                kernel.shutdown()
            else:
                with contextlib.suppress(Exception):
                    kc.stop_channels()
                km.shutdown_kernel(now=True)


#: ``kernel_factory``'s type: ``(env=None, unset=()) -> Kernel``.
KernelFactory = Callable[..., Kernel]


@pytest.fixture
def kernel_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelFactory]:
    """``kernel_factory(env=None, unset=())`` starts a fresh kernel, shut down after the test."""
    with contextlib.ExitStack() as stack:

        def start(env: Mapping[str, str] | None = None, unset: tuple[str, ...] = ()) -> Kernel:
            root = tmp_path_factory.mktemp("kernel")
            return stack.enter_context(start_kernel(root, env, unset))

        yield start


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """One kernel shared by the tests of a module (reset what you change)."""
    with start_kernel(tmp_path_factory.mktemp("kernel")) as k:
        yield k


@pytest.fixture
def remind_kernel(kernel: Kernel) -> Kernel:
    """The module's kernel with ``%load_ext nbremind`` done, notices going to the memory
    channel (emptied), unmuted, auto mode off, and no request left running."""
    kernel.settle()
    kernel.ok(
        "import nbremind\n"
        'nbremind.configure(channels=["memory"], muted=False, on=None, min_duration=None)\n'
        "nbremind.configure(input_wait=10)\n"
        "get_ipython().run_line_magic('load_ext', 'nbremind')\n"
        "get_ipython().run_line_magic('remind', 'auto off')\n"
        "get_ipython().run_line_magic('remind', 'batch off')\n",
        silent=True,
        store_history=False,
    )
    kernel.clear_notices()
    return kernel
