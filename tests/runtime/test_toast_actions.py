"""What a desktop toast's click and buttons do, on the runtime's side: the notebook URL from
the Jupyter servers' runtime info, the browser through ``$BROWSER``, the page asked to show
the task, **Snooze 1 h** holding the repeating notices, **Interrupt** cancelling a block,
and the ``sound`` setting. The toasts themselves (real dunst) are in ``tests/e2e``."""

from __future__ import annotations

import json
import os
import threading
import time
import webbrowser
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _desktop_bus import poll
from nbremind import Config, remind
from nbremind.channels.desktop import SNOOZE_SECONDS, DesktopChannel
from nbremind.core.browser_views import get_connection
from nbremind.core.notice import Notice, make_notice
from nbremind.core.options import TaskOptions
from nbremind.core.task import TaskState
from nbremind.runtime.toast_actions import INTERRUPTED, notebook_url, servers
from nbremind.testing import FakeClock, capture_notices


def server_file(folder: Path, name: str, **info: Any) -> Path:
    path = folder / f"jpserver-{name}.json"
    path.write_text(json.dumps(info))
    return path


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "runtime"
    folder.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(folder))
    return folder


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$BROWSER`` is a script that writes the URL it is given to the returned file."""
    opened = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{opened}'\n")
    script.chmod(0o755)
    monkeypatch.setenv("BROWSER", str(script))
    monkeypatch.setattr(webbrowser, "_tryorder", None)  # read $BROWSER again
    return opened


class Page:
    """A widget of a connected notebook page: keeps what the kernel sends it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, content: dict[str, Any]) -> None:
        self.sent.append(content)


@pytest.fixture
def page() -> Iterator[Page]:
    widget = Page()
    get_connection().hello(widget, "view-1", "granted")
    yield widget
    get_connection().forget(widget)


def test_the_url_is_the_server_holding_the_notebook(tmp_path: Path, runtime: Path) -> None:
    work, other = tmp_path / "work", tmp_path / "other"
    (work / "my runs").mkdir(parents=True)
    other.mkdir()
    server_file(runtime, "1", url="http://localhost:8890/", root_dir=str(other), token="x", pid=1)
    server_file(
        runtime, "2", url="http://127.0.0.1:8888/", root_dir=str(work), token="t/k", pid=os.getpid()
    )
    infos = servers(runtime)
    notebook = str(work / "my runs" / "train #1.ipynb")
    assert notebook_url(notebook, infos) == (
        "http://127.0.0.1:8888/lab/tree/my%20runs/train%20%231.ipynb?token=t/k"
    )
    assert notebook_url(str(tmp_path / "elsewhere.ipynb"), infos) is None


def test_dead_servers_and_broken_files_are_skipped(tmp_path: Path, runtime: Path) -> None:
    dead = 2**22 + 12345  # above the usual pid_max
    server_file(runtime, "dead", url="http://localhost:9999/", root_dir=str(tmp_path), pid=dead)
    (runtime / "jpserver-broken.json").write_text("{not json")
    server_file(runtime, "up", url="http://localhost:8888", root_dir=str(tmp_path), token="")
    infos = servers(runtime)
    assert [info["url"] for info in infos] == ["http://localhost:8888"]
    assert (
        notebook_url(str(tmp_path / "a.ipynb"), infos) == "http://localhost:8888/lab/tree/a.ipynb"
    )
    # a relative name (a server older than absolute session names): the only server's
    assert notebook_url("sub/b.ipynb", infos) == "http://localhost:8888/lab/tree/sub/b.ipynb"


def notebook_notice(session: Any, notebook: str | None, event: str = "success") -> Notice:
    task = session.new_task("train", kind="cell")
    task.notebook, task.cell_id = notebook, "cell-1" if notebook else None
    task.mark_started()
    return make_notice(event, task.snapshot(), created=time.time())


def test_a_click_opens_the_notebook_and_shows_the_task_in_the_page(
    tmp_path: Path, runtime: Path, browser: Path, page: Page
) -> None:
    server_file(runtime, "1", url="http://127.0.0.1:8888/", root_dir=str(tmp_path), token="abc")
    with capture_notices() as cap:
        n = notebook_notice(cap.session, str(tmp_path / "analysis.ipynb"))
        cap.session.toast_actions.open(n)
        url = poll(lambda: browser.exists() and browser.read_text(), 10, "the browser to open")
    assert url == "http://127.0.0.1:8888/lab/tree/analysis.ipynb?token=abc\n"
    assert page.sent == [
        {"type": "focus", "id": n.id, "task_id": n.task.id, "parent_id": n.task.parent_id}
    ]


def test_a_click_on_a_script_task_opens_nothing(
    runtime: Path, browser: Path, page: Page, tmp_path: Path
) -> None:
    server_file(runtime, "1", url="http://127.0.0.1:8888/", root_dir=str(tmp_path))
    before = {t.ident for t in threading.enumerate()}
    with capture_notices() as cap:
        cap.session.toast_actions.open(notebook_notice(cap.session, None))
    started = [t for t in threading.enumerate() if t.ident not in before]
    assert [t.name for t in started if t.name == "nbremind-open"] == []
    assert page.sent == []
    assert not browser.exists()


def test_no_server_for_the_notebook_opens_nothing_and_raises_nothing(
    runtime: Path, browser: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="nbremind.runtime.toast_actions")
    with capture_notices() as cap:
        cap.session.toast_actions.open(notebook_notice(cap.session, str(tmp_path / "x.ipynb")))
        poll(lambda: "no running Jupyter server" in caplog.text, 10, "the debug line")
    assert not browser.exists()


def test_snooze_holds_the_repeating_notices_for_an_hour() -> None:
    clock = FakeClock()
    with capture_notices(clock=clock) as cap:
        options = TaskOptions(every=60.0, progress=(0.5,))
        task = cap.session.new_task("train", options=options, total=10)
        cap.session.start(task)
        clock.advance(61)
        cap.session.tick()
        assert cap.events() == ["after"]

        cap.session.toast_actions.snooze(task.id, SNOOZE_SECONDS)
        clock.advance(60)
        task.set(5)
        cap.session.tick()  # an every notice and a progress mark: only the latter goes out
        clock.advance(SNOOZE_SECONDS - 200)
        cap.session.tick()
        assert cap.events() == ["after", "progress"]

        clock.advance(200)  # the hour is over
        cap.session.tick()
        cap.session.finish(task)
        assert cap.events() == ["after", "progress", "after", "success"]


def test_the_session_hands_its_actions_to_the_desktop_channel() -> None:
    with capture_notices() as cap:
        made = cap.session.dispatcher.make_channel
        assert made is not None
        channel = made("desktop", cap.session.config)
    assert isinstance(channel, DesktopChannel)
    assert channel.actions is cap.session.toast_actions


def test_interrupt_cancels_a_block_running_in_another_thread() -> None:
    started, outcome = threading.Event(), {}
    with capture_notices() as cap:

        def work() -> None:
            try:
                with remind("etl"):
                    started.set()
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline:
                        time.sleep(0.01)
            except KeyboardInterrupt:
                outcome["raised"] = "KeyboardInterrupt"

        thread = threading.Thread(target=work)
        thread.start()
        assert started.wait(10)
        task = next(t for t in cap.session.tasks() if t.name == "etl")
        cap.session.toast_actions.interrupt(task.id)
        thread.join(10)
        assert not thread.is_alive()
        assert outcome == {"raised": "KeyboardInterrupt"}
        assert task.state is TaskState.CANCELLED
        assert INTERRUPTED in task.snapshot().notes
        (end,) = [n for n in cap.notices if n.event == "cancel"]
        assert INTERRUPTED in end.body
        cap.session.toast_actions.interrupt(task.id)  # ended: nothing happens


@pytest.mark.parametrize(
    ("setting", "success", "failure"),
    [
        (True, True, True),
        ("failure", False, True),
        (False, False, False),
        ("FAILURE ", False, True),
    ],
)
def test_the_sound_setting(setting: object, success: bool, failure: bool) -> None:
    with capture_notices() as cap:
        cap.session.configure(sound=setting)
        actions = cap.session.toast_actions
        good = notebook_notice(cap.session, None, "success")
        bad = notebook_notice(cap.session, None, "failure")
        assert (actions.sound(good), actions.sound(bad)) == (success, failure)


@pytest.mark.parametrize("value", ["loud", 3, None])
def test_a_bad_sound_value_names_it_and_where_it_came_from(value: object) -> None:
    with pytest.raises(
        ValueError, match=r"^settings\.toml: sound: .* is not True, False or 'failure'"
    ):
        Config().updated("settings.toml", sound=value)


def test_sound_in_a_settings_file_and_the_environment(tmp_path: Path) -> None:
    from nbremind.settings.files import load_settings

    assert Config().sound is False
    (tmp_path / "nbremind.toml").write_text('sound = "failure"\n')
    assert load_settings(tmp_path, environ={}).config.sound == "failure"
    empty = tmp_path / "empty"
    empty.mkdir()
    loaded = load_settings(empty, environ={"NBREMIND_SOUND": "true"})
    assert (loaded.config.sound, loaded.errors) == (True, ())
    for text, value in (("failure", "failure"), ("false", False), ("0", False)):
        loaded = load_settings(empty, environ={"NBREMIND_SOUND": text})
        assert (loaded.config.sound, loaded.errors) == (value, ()), text
    loaded = load_settings(empty, environ={"NBREMIND_SOUND": "loud"})
    assert loaded.config.sound == "failure"  # the bad variable is reported, the file's kept
    assert any("NBREMIND_SOUND" in error and "'loud'" in error for error in loaded.errors)
