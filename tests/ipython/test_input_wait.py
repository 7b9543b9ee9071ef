"""The ``input`` notice: a task that waits in ``input()`` or ``getpass()`` longer than
``input_wait`` says so, in a real kernel (a cell asking through the stdin channel) and in a
terminal script (``input()`` reading a pipe the test writes to only after the notice came).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from _kernel import Kernel
from _servers import ScriptedHTTPServer

pytest_plugins = ["_kernel", "_servers"]

pytestmark = pytest.mark.kernel

_TITLE = "⌨ {} is waiting for your input"


def _inputs(notices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in notices if n["event"] == "input"]


def _to_server(k: Kernel, server: ScriptedHTTPServer, wait: float) -> None:
    url = server.url("/hook")
    k.ok(
        f"import nbremind\nnbremind.configure(channels=['memory', {url!r}], input_wait={wait})",
        silent=True,
        store_history=False,
    )


@pytest.mark.parametrize("ask", ["input('name? ')", "__import__('getpass').getpass('pin? ')"])
def test_a_cell_waiting_for_input_notifies_once_then_goes_on(
    remind_kernel: Kernel, http_server: ScriptedHTTPServer, ask: str
) -> None:
    k = remind_kernel
    _to_server(k, http_server, 0.3)
    msg_id = k.execute(f"%%remind ask\nanswer = {ask}\nanswer", allow_stdin=True)
    request = k.wait_for_input_request()
    assert request["content"]["password"] is ("getpass" in ask)
    # the cell still waits: the notice must come now, before the answer
    [posted] = http_server.wait_for(1)
    assert posted.json()["title"] == _TITLE.format("ask")
    k.answer_input("bob")
    r = k.result(msg_id).assert_ok()
    assert r.result == "'bob'"

    notices = k.notices()
    assert [n["title"] for n in _inputs(notices)] == [_TITLE.format("ask")]
    assert _inputs(notices)[0]["urgency"] == "critical"
    assert [n["title"] for n in notices if n["event"] == "success"] == ["✓ ask finished"]
    # in a cell, input is ipykernel's own, wrapped for the cell's length
    assert k.ok("input.__wrapped__ == get_ipython().kernel.raw_input").result == "True"


def test_an_answer_in_time_notifies_nothing(remind_kernel: Kernel) -> None:
    k = remind_kernel
    k.ok("import nbremind\nnbremind.configure(input_wait=5)", silent=True, store_history=False)
    msg_id = k.execute("%%remind quick\nreply = input()\nreply", allow_stdin=True)
    k.wait_for_input_request()
    k.answer_input("yes")
    assert k.result(msg_id).assert_ok().result == "'yes'"
    notices = k.notices()
    assert _inputs(notices) == []
    assert [n["title"] for n in notices] == ["✓ quick finished"]


def test_what_input_raises_is_unchanged_and_on_leaves_it_out(
    remind_kernel: Kernel, http_server: ScriptedHTTPServer
) -> None:
    k = remind_kernel
    # no stdin allowed: ipykernel's own error, as without nbremind
    r = k.run("%%remind denied\ninput()")
    assert (r.status, r.ename) == ("error", "StdinNotImplementedError")
    k.clear_notices()
    _to_server(k, http_server, 0.1)
    # a task whose events leave input out: nothing, however long it waits; a block on a
    # thread of the cell tells (by its "after" notice) that the wait lasted past input_wait
    code = textwrap.dedent(
        """\
        %%remind silent --on failure
        import threading, nbremind
        done = threading.Event()
        def probe():
            with nbremind.remind("probe", after="0.5s", on=["after"]):
                done.wait(30)
        threading.Thread(target=probe).start()
        x = input()
        done.set()
        """
    )
    msg_id = k.execute(code, allow_stdin=True)
    k.wait_for_input_request()
    [posted] = http_server.wait_for(1)
    assert posted.json()["title"].startswith("⏱ probe still running"), posted.json()
    k.answer_input("")
    k.result(msg_id).assert_ok()
    assert _inputs(k.notices()) == []
    assert [r.json()["event"] for r in http_server.requests] == ["after"]


def test_a_terminal_script_waiting_for_input_notifies(
    http_server: ScriptedHTTPServer, tmp_path: Path
) -> None:
    script = tmp_path / "ask.py"
    script.write_text(
        textwrap.dedent(
            """
            import builtins, nbremind
            original = builtins.input
            with nbremind.remind("train"):
                answer = input("continue? ")
            assert builtins.input is original
            print("got", answer)
            """
        )
    )
    env = {
        **os.environ,
        "NBREMIND_CHANNELS": http_server.url("/hook"),
        "NBREMIND_INPUT_WAIT": "300ms",
        "NBREMIND_OUTBOX": "false",
        "NBREMIND_DATA_DIR": str(tmp_path / "data"),
        "HOME": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        [posted] = http_server.wait_for(1, timeout=30)
        assert posted.json()["title"] == _TITLE.format("train")
        out, err = proc.communicate("yes\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.endswith("got yes\n"), out
    titles = [r.json()["title"] for r in http_server.wait_for(2, timeout=30)]
    assert titles == [_TITLE.format("train"), "✓ train finished"]
