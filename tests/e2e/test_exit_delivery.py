"""Notices made just before the interpreter exits reach their channel, and exit stays bounded.

Every test runs what a user runs: a script in a fresh process that ends right after its
block (or ``nbremind run``), against real servers on 127.0.0.1 that record what they got.
What a process could not deliver before it exited is left ``pending`` in the outbox, and
the next nbremind process (even one that exits at once) delivers it, exactly once.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _desktop_bus import DesktopBus
from _pythons import SUPPORTED, env_for_src, python_for, run_in
from _servers import HANG, Reply, ScriptedHTTPServer, SmtpServer
from nbremind.store.outbox import FILE_NAME, Outbox

pytestmark = pytest.mark.timeout(180)

#: How the user's process ends, as the last lines of a script (``CH`` is the channel).
EXITS: dict[str, tuple[str, int, str]] = {
    # name: (script, exit status, event of the notice)
    "end of script": ('with remind("job", channels=[CH]):\n    x = 1\n', 0, "success"),
    "uncaught exception": (
        'with remind("job", channels=[CH]):\n    raise ValueError("boom")\n',
        1,
        "failure",
    ),
    "sys.exit": ('with remind("job", channels=[CH]):\n    sys.exit(3)\n', 3, "failure"),
    "track() loop raising at top level": (
        'for i in track(range(3), name="job", channels=[CH]):\n'
        '    if i == 1:\n        raise ValueError("boom")\n',
        1,
        "failure",
    ),
}


def _script(body: str, channel: str, prelude: str = "") -> str:
    head = "import sys\nimport nbremind\nfrom nbremind import remind, track\n"
    return head + prelude + f"CH = {channel!r}\n" + body


def _run(
    code: str, cwd: Path, python: str = sys.executable, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return run_in(cwd, python, "-c", code, timeout=timeout, **env)


def _outbox(data_dir: Path) -> Outbox:
    return Outbox(data_dir / FILE_NAME)


def _states(data_dir: Path) -> dict[str, int]:
    box = _outbox(data_dir)
    try:
        return {k: v for k, v in box.stats().items() if v}
    finally:
        box.close()


def _channel_url(kind: str, http: ScriptedHTTPServer, smtp: SmtpServer | None) -> str:
    if kind == "webhook":
        return http.url("/hook")
    if kind == "apprise":
        return f"json://127.0.0.1:{http.port}/hook"
    assert smtp is not None
    return f"smtp://{smtp.host}:{smtp.port}?to=me@example.org&starttls=no"


def _received(kind: str, http: ScriptedHTTPServer, smtp: SmtpServer | None) -> list[str]:
    """What the server got: one text per notice (the webhook's event, else the title)."""
    if kind == "smtp":
        assert smtp is not None
        return [str(m["Subject"]) for m in smtp.wait_for(1)]
    requests = http.wait_for(1)
    if kind == "webhook":
        return [r.json()["event"] for r in requests]
    return [r.json()["title"] for r in requests]


def _expect(kind: str, received: list[str], event: str) -> None:
    assert len(received) == 1, received
    if kind == "webhook":
        assert received == [event]
    else:
        mark = "✓" if event == "success" else "✗"
        assert received[0].startswith(mark) and "job" in received[0], received


@pytest.mark.parametrize("kind", ["webhook", "smtp", "apprise"])
@pytest.mark.parametrize("how", list(EXITS))
def test_a_notice_made_just_before_exit_is_delivered(
    kind: str,
    how: str,
    http_server: ScriptedHTTPServer,
    smtp_factory: Callable[..., SmtpServer],
    nbremind_data_dir: Path,
    tmp_path: Path,
) -> None:
    smtp = smtp_factory() if kind == "smtp" else None
    body, status, event = EXITS[how]
    done = _run(_script(body, _channel_url(kind, http_server, smtp)), tmp_path)
    assert done.returncode == status, done.stderr
    if status == 1:  # the user's traceback, unchanged
        assert done.stderr.rstrip().endswith("ValueError: boom"), done.stderr
    _expect(kind, _received(kind, http_server, smtp), event)
    assert _states(nbremind_data_dir) == {"delivered": 1, "notices": 1}
    assert "nbremind" not in done.stderr, done.stderr


@pytest.mark.desktop
@pytest.mark.parametrize("how", list(EXITS))
def test_a_desktop_toast_made_just_before_exit_is_shown(
    how: str, desktop_bus: DesktopBus, nbremind_data_dir: Path, tmp_path: Path
) -> None:
    body, status, event = EXITS[how]
    name = f"job-{how.split()[0]}"
    code = _script(body.replace('"job"', repr(name)), "desktop")
    done = _run(code, tmp_path, **desktop_bus.extra_env)
    assert done.returncode == status, done.stderr
    title = f"✓ {name} finished" if event == "success" else f"✗ {name} failed"
    assert desktop_bus.wait_in_history(title)  # dunst itself received and displayed it
    assert _states(nbremind_data_dir) == {"delivered": 1, "notices": 1}


@pytest.mark.parametrize("kind", ["webhook", "smtp", "apprise"])
def test_nbremind_run_delivers_its_notice_before_it_exits(
    kind: str,
    http_server: ScriptedHTTPServer,
    smtp_factory: Callable[..., SmtpServer],
    nbremind_data_dir: Path,
    tmp_path: Path,
) -> None:
    smtp = smtp_factory() if kind == "smtp" else None
    url = _channel_url(kind, http_server, smtp)
    done = run_in(
        tmp_path,
        sys.executable,
        "-m",
        "nbremind",
        "run",
        "--name",
        "job",
        "--channels",
        url,
        "--",
        sys.executable,
        "-c",
        "raise SystemExit(4)",
    )
    assert done.returncode == 4, done.stderr
    _expect(kind, _received(kind, http_server, smtp), "failure")
    assert _states(nbremind_data_dir) == {"delivered": 1, "notices": 1}


@pytest.mark.parametrize("version", SUPPORTED)
def test_every_python_delivers_at_exit(
    version: str,
    http_server: ScriptedHTTPServer,
    smtp_factory: Callable[..., SmtpServer],
    nbremind_data_dir: Path,
    tmp_path: Path,
) -> None:
    python = python_for(version)
    smtp = smtp_factory()
    channels = [_channel_url(k, http_server, smtp) for k in ("webhook", "smtp", "apprise")]
    code = (
        "import sys\nfrom nbremind import remind\n"
        f"print('%d.%d' % sys.version_info[:2])\n"
        f"with remind('job', channels={channels!r}):\n    raise ValueError('boom')\n"
    )
    done = _run(code, tmp_path, python=python)
    assert done.stdout.strip() == version
    assert done.returncode == 1 and done.stderr.rstrip().endswith("ValueError: boom"), done.stderr
    events = sorted(r.json().get("event") or r.json()["title"] for r in http_server.wait_for(2))
    assert events[0] == "failure" and events[1].startswith("✗ job"), events
    assert str(smtp.wait_for(1)[0]["Subject"]).startswith("✗ job")
    run = run_in(
        tmp_path,
        python,
        "-m",
        "nbremind",
        "run",
        "--name",
        "cmd",
        "--channels",
        channels[0],
        "--",
        python,
        "-c",
        "pass",
    )
    assert run.returncode == 0, run.stderr
    assert http_server.wait_for(3)[-1].json()["task"]["name"] == "cmd"
    assert _states(nbremind_data_dir) == {"delivered": 4, "notices": 2}


_MANY = """
import threading
exits = threading.Barrier({count})
def work(i):
    with remind(f"t{{i}}", channels=[CH]):
        exits.wait()
threads = [threading.Thread(target=work, args=(i,)) for i in range({count})]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_a_hung_server_cannot_hold_exit_past_exit_timeout_and_the_next_process_delivers(
    http_server: ScriptedHTTPServer, nbremind_data_dir: Path, tmp_path: Path
) -> None:
    http_server.default = HANG
    code = _script(
        _MANY.format(count=200), http_server.url(), prelude="nbremind.configure(exit_timeout=2)\n"
    )
    began = time.monotonic()
    done = _run(code, tmp_path)
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    assert took < 2 + 4, f"exit took {took:.1f} s with exit_timeout=2"
    assert _states(nbremind_data_dir) == {"pending": 200, "notices": 200}
    assert "not delivered" in done.stderr  # the user is told what was left for later

    # the server answers again; a fresh short process delivers everything, exactly once
    http_server.default = Reply()
    http_server.release()
    later = _run(_script('with remind("next", channels=["null"]):\n    pass\n', "null"), tmp_path)
    assert later.returncode == 0, later.stderr
    delivered = http_server.answered(200)
    names = sorted(r.json()["task"]["name"] for r in delivered)
    assert names == sorted(f"t{i}" for i in range(200))
    assert _states(nbremind_data_dir) == {"delivered": 201, "notices": 201}


def test_a_normal_exit_while_the_server_answers_500_leaves_the_notice_pending(
    http_server: ScriptedHTTPServer, nbremind_data_dir: Path, tmp_path: Path
) -> None:
    http_server.default = Reply(500, body=b"down")
    code = _script(
        EXITS["end of script"][0],
        http_server.url(),
        prelude="nbremind.configure(exit_timeout=1.5)\n",
    )
    began = time.monotonic()
    done = _run(code, tmp_path)
    assert done.returncode == 0 and time.monotonic() - began < 1.5 + 4
    assert len(http_server.answered(500)) >= 1
    assert _states(nbremind_data_dir) == {"pending": 1, "notices": 1}
    box = _outbox(nbremind_data_dir)
    try:
        [row] = box.pending()
        assert row.channel == http_server.url()
        assert "HTTP 500" in row.last_error and row.attempts >= 1
    finally:
        box.close()

    http_server.default = Reply()
    again = _run(_script('with remind("next", channels=["null"]):\n    pass\n', "null"), tmp_path)
    assert again.returncode == 0, again.stderr
    [ok] = http_server.answered(200)
    assert ok.json()["task"]["name"] == "job" and ok.json()["event"] == "success"
    assert _states(nbremind_data_dir) == {"delivered": 2, "notices": 2}
    # a third process finds nothing left to do
    third = _run(_script('with remind("third", channels=["null"]):\n    pass\n', "null"), tmp_path)
    assert third.returncode == 0 and len(http_server.answered(200)) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_process_killed_while_retrying_leaves_it_to_a_short_next_process(
    http_server: ScriptedHTTPServer, nbremind_data_dir: Path, tmp_path: Path
) -> None:
    http_server.default = Reply(503, body=b"busy")
    code = _script(EXITS["end of script"][0] + "import time\ntime.sleep(120)\n", http_server.url())
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env_for_src(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        http_server.wait_answered(503, 2, timeout=30)  # retrying
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert _states(nbremind_data_dir) == {"pending": 1, "notices": 1}
    http_server.default = Reply()
    short = _run(
        "import nbremind\nwith nbremind.remind('x', channels=['null']):\n    pass\n", tmp_path
    )
    assert short.returncode == 0, short.stderr
    [ok] = http_server.answered(200)
    assert ok.json()["event"] == "success" and ok.json()["task"]["name"] == "job"
    assert _states(nbremind_data_dir) == {"delivered": 2, "notices": 2}


def test_nothing_pending_means_no_wait_at_exit(
    http_server: ScriptedHTTPServer, nbremind_data_dir: Path, tmp_path: Path
) -> None:
    """exit_timeout bounds the wait; it is not a wait: a delivered notice ends it at once."""
    code = _script(
        EXITS["end of script"][0],
        http_server.url(),
        prelude="nbremind.configure(exit_timeout=30)\n",
    )
    began = time.monotonic()
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - began < 10
    assert [r.json()["event"] for r in http_server.requests] == ["success"]


_THREADS = """
import threading, nbremind
from nbremind import remind
go = threading.Barrier(128)
errors = []
def first_use(i):
    go.wait()
    try:
        with remind(f"t{i}", channels=["null"]):
            pass
    except BaseException as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=first_use, args=(i,)) for i in range(128)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(errors), errors[:3])
"""


@pytest.mark.parametrize("trial", range(4))
def test_first_use_from_128_threads_at_once_is_safe(trial: int, tmp_path: Path) -> None:
    done = _run(_THREADS, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 []", done.stdout
    assert "Traceback" not in done.stderr, done.stderr


def _ask_for_the_loop(ticker: Any, count: int) -> tuple[list[Any], list[BaseException]]:
    """``count`` threads ask ``ticker`` for its loop at the same moment."""
    import threading

    go = threading.Barrier(count)
    loops: list[Any] = []
    errors: list[BaseException] = []

    def use() -> None:
        go.wait()
        try:
            loops.append(ticker.loop)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return loops, errors


def test_the_loop_thread_starts_once_whatever_the_number_of_threads() -> None:
    from nbremind.core.ticker import Ticker

    class SlowToStart(Ticker):
        """A loop thread slow to get going: the window where others ask for its loop."""

        def _run(self, *args: Any) -> None:
            time.sleep(0.05)
            super()._run(*args)

    for _trial in range(5):
        ticker = SlowToStart(lambda: False, interval=None)
        starts: list[int] = []
        ticker.on_start = functools.partial(starts.append, 1)
        try:
            loops, errors = _ask_for_the_loop(ticker, 64)
            assert errors == []
            assert len(loops) == 64 and len({id(loop) for loop in loops}) == 1
            assert starts == [1]
        finally:
            ticker.stop()


def test_webhook_payload_of_an_exit_notice_is_strict_json(
    http_server: ScriptedHTTPServer, tmp_path: Path
) -> None:
    done = _run(_script(EXITS["uncaught exception"][0], http_server.url()), tmp_path)
    assert done.returncode == 1

    def refuse(constant: str) -> Any:
        raise AssertionError(f"not strict JSON: {constant}")

    body = json.loads(http_server.wait_for(1)[0].body, parse_constant=refuse)
    assert body["error"] == {"type": "ValueError", "message": "boom"}
