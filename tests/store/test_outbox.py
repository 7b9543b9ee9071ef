"""The durable outbox: a real SQLite file, real processes, a real local HTTP server."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nbremind import Session
from nbremind.channels import Channel
from nbremind.channels.memory import MemoryChannel
from nbremind.core.config import Config
from nbremind.core.notice import Notice, make_notice
from nbremind.core.options import TaskOptions
from nbremind.core.secrets import Secret
from nbremind.core.task import Task, TaskError, TaskState
from nbremind.delivery.replay import DROPPED_BY_RULES
from nbremind.store.outbox import (
    FILE_NAME,
    SCHEMA_VERSION,
    Outbox,
    Owner,
    notice_from_dict,
    notice_to_dict,
    open_outbox,
    owner_alive,
)
from nbremind.testing import FakeClock

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0


def _notice(
    clock: FakeClock,
    name: str = "etl",
    event: str = "success",
    channels: tuple[str, ...] | None = None,
) -> Notice:
    task = Task(name, clock=clock, total=10)
    task.mark_started()
    task.advance(4)
    task.metric(loss=0.25)
    task.note("halfway")
    clock.advance(90)
    task.mark_ended(TaskState.SUCCEEDED)
    return make_notice(event, task.snapshot(), created=clock.time(), key="end", channels=channels)


def _from_another_process(notice: Notice) -> Notice:
    """``notice`` with the id a task of another process would give it (ids start with the
    process's tag: an earlier process cannot have made an id of this one)."""
    return replace(notice, id=f"1.earlier-{notice.id.split('-', 1)[1]}")


def _dead_owner() -> Owner:
    """This process's pid with another start time: a process that ended (pid reused)."""
    return Owner(os.getpid(), 1.0, socket.gethostname())


def _wait_until(condition: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- the file ------------------------------------------------------------------------------------
def test_the_file_is_in_wal_mode_with_a_schema_version(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    assert box.journal_mode == "wal"
    assert box.schema_version == SCHEMA_VERSION
    box.close()
    raw = sqlite3.connect(tmp_path / "o.sqlite3")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "notices", "deliveries"} <= tables
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_a_file_from_a_newer_nbremind_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Outbox(tmp_path / FILE_NAME).close()
    raw = sqlite3.connect(tmp_path / FILE_NAME)
    raw.execute("INSERT INTO schema_version VALUES (99)")
    raw.commit()
    raw.close()
    with pytest.raises(RuntimeError, match="newer nbremind"):
        Outbox(tmp_path / FILE_NAME)
    with caplog.at_level(logging.WARNING, logger="nbremind"):
        assert open_outbox(Config(data_dir=str(tmp_path))) is None
    assert "memory only" in caplog.text and "schema 99" in caplog.text


def test_the_folder_comes_from_the_setting_else_the_environment(
    tmp_path: Path, nbremind_data_dir: Path
) -> None:
    from_env = open_outbox(Config())
    assert from_env is not None and from_env.path == nbremind_data_dir / FILE_NAME
    from_setting = open_outbox(Config().updated(data_dir=str(tmp_path / "mine")))
    assert from_setting is not None and from_setting.path == tmp_path / "mine" / FILE_NAME
    assert open_outbox(Config().updated(outbox=False)) is None
    from_env.close()
    from_setting.close()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("outbox_max_age", "0", "outbox_max_age: '0'"),
        ("outbox_max_age", "soon", "outbox_max_age: 'soon'"),
        ("data_dir", 42, "data_dir: 42"),
        ("outbox", "yes", "outbox: 'yes'"),
    ],
)
def test_bad_outbox_settings_name_the_value(key: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config().updated("nbremind.toml", **{key: value})


def test_outbox_settings_parse() -> None:
    config = Config().updated(outbox_max_age="2h", data_dir="~/x", outbox=False)
    assert (config.outbox_max_age, config.data_dir, config.outbox) == (7200.0, "~/x", False)
    assert Config().outbox_max_age == DAY


# -- notices as JSON -----------------------------------------------------------------------------
def test_a_notice_round_trips_through_json() -> None:
    clock = FakeClock()
    task = Task("train", clock=clock, total=8)
    task.mark_started()
    task.advance(3)
    task.metric(loss=0.5)
    task.metric(epoch=3)
    task.note("warming up")
    task.mark_ended(TaskState.FAILED, TaskError("RuntimeError", "CUDA out of memory"))
    snap = task.snapshot()
    notice = make_notice(
        "failure", snap, created=clock.time(), key="end", channels=("memory", "null")
    )
    again = notice_from_dict(json.loads(json.dumps(notice_to_dict(notice))))
    assert again == notice
    assert again.task.state is TaskState.FAILED and again.task.error == snap.error


def test_a_broken_record_raises_value_error() -> None:
    data = notice_to_dict(_notice(FakeClock()))
    del data["task"]["state"]
    with pytest.raises(ValueError, match="cannot rebuild the notice"):
        notice_from_dict(data)


# -- record and mark -----------------------------------------------------------------------------
def test_record_then_mark_each_channel(tmp_path: Path) -> None:
    clock = FakeClock()
    box = Outbox(tmp_path / FILE_NAME, clock=clock)
    notice = _notice(clock)
    assert box.record(notice, ["memory", "hook"])
    assert [(r.channel, r.state) for r in box.pending()] == [
        ("hook", "pending"),
        ("memory", "pending"),
    ]
    assert not box.delivered(notice.id)
    assert box.mark(notice.id, "memory", True, attempts=1)
    clock.advance(5)
    assert box.mark(notice.id, "hook", False, "HTTP 400: bad request", attempts=1)
    records = {r.channel: r for r in box.records(notice.id)}
    assert records["memory"].state == "delivered" and records["memory"].last_error == ""
    assert records["hook"].state == "failed" and records["hook"].last_error.startswith("HTTP 400")
    assert records["hook"].updated == clock.time() and records["hook"].title == notice.title
    assert box.delivered(notice.id, "memory") and not box.delivered(notice.id, "hook")
    assert box.delivered(notice.id)  # delivered somewhere, nothing left pending
    assert box.stats() == {"pending": 0, "delivered": 1, "failed": 1, "dropped": 0, "notices": 1}
    # recording again (a replay) keeps what is known
    assert box.record(notice, ["memory", "hook"])
    assert box.stats()["pending"] == 0
    assert not box.mark("no-such-id", "memory", True)


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    token = Secret("tok-8d1f0c2a77")
    box = Outbox(tmp_path / FILE_NAME)
    notice = _notice(FakeClock(), name=f"etl {token.reveal()}")
    url = f"https://example.com/hook/{token.reveal()}"
    box.record(notice, [url])
    box.mark(notice.id, url, False, f"HTTP 500 from {url}")
    assert [r.channel for r in box.records()] == ["https://example.com/hook/***"]
    assert box.delivered(notice.id, url) is False and box.records()[0].state == "failed"
    box.close()
    for path in tmp_path.iterdir():
        assert token.reveal().encode() not in path.read_bytes(), path


def test_a_broken_file_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / FILE_NAME)
    raw = sqlite3.connect(tmp_path / FILE_NAME)
    raw.execute("DROP TABLE deliveries")
    raw.commit()
    raw.close()
    notice = _notice(FakeClock())
    with caplog.at_level(logging.WARNING, logger="nbremind"):
        assert box.record(notice, ["memory"]) is False
        assert box.record(notice, ["memory"]) is False
        assert box.mark(notice.id, "memory", True) is False
    lines = [r for r in caplog.records if "record failed" in r.getMessage()]
    assert len(lines) == 1 and "no such table" in lines[0].getMessage()


# -- claiming what dead processes left -----------------------------------------------------------
def test_claim_takes_notices_of_dead_owners_only(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / FILE_NAME
    dead = Outbox(path, clock=clock, owner=_dead_owner())
    parent = os.getppid()
    alive = Outbox(path, clock=clock, owner=Owner(parent, _start_of(parent), socket.gethostname()))
    left, running = _notice(clock, "left"), _notice(clock, "running")
    dead.record(left, ["memory", "null"])
    dead.mark(left.id, "null", True)
    alive.record(running, ["memory"])
    me = Outbox(path, clock=clock)
    replay = me.claim(DAY)
    assert [(c.notice, c.channels) for c in replay.claimed] == [(left, ("memory",))]
    assert replay.dropped == ()
    # the claim moved ownership: nobody else gets it while this process lives
    other = Outbox(path, clock=clock, owner=Owner(os.getpid(), 2.0, socket.gethostname()))
    assert other.claim(DAY).claimed == ()
    assert me.claim(DAY).claimed == ()  # its own notices are in flight, not left over


def test_claim_drops_old_notices_with_a_record_and_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    path = tmp_path / FILE_NAME
    dead = Outbox(path, clock=clock, owner=_dead_owner())
    old = _notice(clock, "old")
    dead.record(old, ["memory"])
    clock.advance(DAY + 1)
    young = _notice(clock, "young")
    dead.record(young, ["memory"])
    with caplog.at_level(logging.WARNING, logger="nbremind"):
        replay = Outbox(path, clock=clock).claim(DAY)
    assert [c.notice.id for c in replay.claimed] == [young.id]
    assert [(d.notice_id, d.channel) for d in replay.dropped] == [(old.id, "memory")]
    (record,) = Outbox(path).records(old.id)
    assert record.state == "dropped" and "outbox_max_age (1 d)" in record.last_error
    assert "given up" in caplog.text and "old finished" in caplog.text


def test_other_hosts_are_left_alone_until_too_old(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / FILE_NAME
    far = Outbox(path, clock=clock, owner=Owner(1, 1.0, "another-host.example"))
    notice = _notice(clock)
    far.record(notice, ["memory"])
    me = Outbox(path, clock=clock)
    assert me.claim(DAY).claimed == ()
    clock.advance(DAY + 1)
    assert [d.notice_id for d in me.claim(DAY).dropped] == [notice.id]


def test_finished_notices_are_forgotten_after_thirty_days(tmp_path: Path) -> None:
    clock = FakeClock()
    box = Outbox(tmp_path / FILE_NAME, clock=clock)
    done, waiting = _notice(clock, "done"), _notice(clock, "waiting")
    box.record(done, ["memory"])
    box.mark(done.id, "memory", True)
    Outbox(tmp_path / FILE_NAME, clock=clock, owner=Owner(1, 1.0, "elsewhere")).record(
        waiting, ["memory"]
    )
    clock.advance(29 * DAY)
    box.claim(40 * DAY)
    assert box.stats()["notices"] == 2
    clock.advance(2 * DAY)
    box.claim(40 * DAY)
    assert [r.notice_id for r in box.records()] == [waiting.id]  # pending ones are kept


@pytest.mark.skipif(sys.platform == "win32", reason="Windows has no zombie processes")
def test_owner_alive_knows_running_ended_and_zombie_processes() -> None:
    import psutil

    host = socket.gethostname()
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        start = float(psutil.Process(child.pid).create_time())
        assert owner_alive(Owner(child.pid, start, host))
        assert not owner_alive(Owner(child.pid, start - 100, host))  # pid reused
        assert owner_alive(Owner(child.pid, start, "another-host"))  # cannot tell: alive
        child.kill()
        _wait_until(
            lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE,
            what="the child to become a zombie",
        )
        assert not owner_alive(Owner(child.pid, start, host))
    finally:
        child.kill()
        child.wait()
    assert not owner_alive(Owner(child.pid, start, host))


_CLAIMER = textwrap.dedent(
    """
    import json, sys
    from nbremind.store.outbox import Outbox
    box = Outbox(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps([c.notice.id for c in box.claim(86400.0).claimed]), flush=True)
    """
)


def test_two_processes_claiming_at_once_never_share_a_notice(tmp_path: Path) -> None:
    clock = FakeClock(wall=time.time())
    path = tmp_path / FILE_NAME
    dead = Outbox(path, clock=clock, owner=_dead_owner())
    ids = set()
    for i in range(40):
        notice = _notice(clock, f"task{i}")
        dead.record(notice, ["memory", "null"])
        ids.add(notice.id)
    dead.close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:  # both start claiming together
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        claims = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            claims.append(set(json.loads(out.strip().splitlines()[-1])))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    first, second = claims
    assert not first & second
    assert first | second == ids


# -- a session writes, marks, replays ------------------------------------------------------------
@pytest.fixture
def memory_session() -> Iterator[tuple[Session, MemoryChannel]]:
    channel = MemoryChannel()
    session = Session(
        Config(channels=("memory",)), channels={"memory": channel}, tick_interval=None
    )
    yield session, channel
    session.close()


def test_a_session_writes_each_notice_and_marks_each_channel(
    memory_session: tuple[Session, MemoryChannel], nbremind_data_dir: Path
) -> None:
    session, channel = memory_session
    notice = _notice(FakeClock(), channels=("memory", "no-such-channel-xyz"))
    session.send(notice, TaskOptions())
    assert session.flush(10)
    assert [n.id for n in channel.notices] == [notice.id]
    box = Outbox(nbremind_data_dir / FILE_NAME)
    states = {r.channel: (r.state, r.attempts) for r in box.records(notice.id)}
    assert states["memory"] == ("delivered", 1)
    assert states["no-such-channel-xyz"][0] == "failed"
    assert session.outbox_link.already_sent(notice.id)


def test_delivery_goes_on_when_the_outbox_cannot_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    monkeypatch.setenv("NBREMIND_DATA_DIR", str(blocker))
    channel = MemoryChannel()
    session = Session(
        Config(channels=("memory",)), channels={"memory": channel}, tick_interval=None
    )
    try:
        with caplog.at_level(logging.WARNING, logger="nbremind"):
            session.send(_notice(FakeClock()), TaskOptions())
            assert session.flush(10)
        assert len(channel.notices) == 1
        assert session.outbox is None
        assert caplog.text.count("outbox unavailable") == 1
    finally:
        session.close()


def test_a_new_session_delivers_what_a_dead_process_left_once(
    memory_session: tuple[Session, MemoryChannel], nbremind_data_dir: Path
) -> None:
    clock = FakeClock(wall=time.time())
    path = nbremind_data_dir / FILE_NAME
    dead = Outbox(path, clock=clock, owner=_dead_owner())
    left = _notice(clock, "left", channels=("memory",))
    quiet = replace(_notice(clock, "short", event="success"), channels=("memory",))
    dead.record(left, ["memory"])
    dead.record(quiet, ["memory", "null"])
    dead.mark(quiet.id, "memory", True)  # delivered there before the process died
    session, channel = memory_session
    future = session.replay_outbox()
    assert future is not None
    future.result(10)
    assert session.flush(10)
    assert [n.id for n in channel.notices] == [left.id]  # only what was still pending there
    assert channel.notices[0].title == left.title
    assert session.last_replay is not None and len(session.last_replay.claimed) == 2
    assert Outbox(path).stats()["pending"] == 0
    assert session.replay_outbox() is None  # once per session
    second_channel = MemoryChannel()
    second = Session(
        Config(channels=("memory",)), channels={"memory": second_channel}, tick_interval=None
    )
    try:
        fut = second.replay_outbox()
        assert fut is not None
        fut.result(10)
        assert second.flush(10) and second_channel.notices == []
    finally:
        second.close()


def test_a_replayed_notice_the_rules_hold_back_is_not_left_pending(
    memory_session: tuple[Session, MemoryChannel], nbremind_data_dir: Path
) -> None:
    clock = FakeClock(wall=time.time())
    dead = Outbox(nbremind_data_dir / FILE_NAME, clock=clock, owner=_dead_owner())
    notice = _notice(clock, channels=("memory",))
    dead.record(notice, ["memory"])
    session, channel = memory_session
    session.configure(muted=True)
    future = session.replay_outbox()
    assert future is not None
    future.result(10)
    assert session.flush(10) and channel.notices == []
    (record,) = Outbox(nbremind_data_dir / FILE_NAME).records(notice.id)
    assert record.state == "dropped" and record.last_error == DROPPED_BY_RULES


def test_a_notice_delivered_before_a_restart_is_not_sent_again(
    memory_session: tuple[Session, MemoryChannel], nbremind_data_dir: Path
) -> None:
    clock = FakeClock(wall=time.time())
    dead = Outbox(nbremind_data_dir / FILE_NAME, clock=clock, owner=_dead_owner())
    notice = _from_another_process(_notice(clock, channels=("memory",)))
    dead.record(notice, ["memory"])
    dead.mark(notice.id, "memory", True)
    session, channel = memory_session
    session.send(notice, TaskOptions())
    other = _notice(clock, "other", channels=("memory",))
    session.send(other, TaskOptions())
    assert session.flush(10)
    assert [n.id for n in channel.notices] == [other.id]


class _Peeking(Channel):
    """Notes what the outbox holds for each notice at the moment it is sent."""

    name = "peek"

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.seen: list[list[tuple[str, str]]] = []

    async def _send(self, notice: Notice) -> None:
        box = self.session.outbox
        assert box is not None
        self.seen.append([(r.channel, r.state) for r in box.records(notice.id)])


def test_a_notice_is_written_before_it_is_delivered() -> None:
    session = Session(Config(channels=("peek",)), tick_interval=None)
    peek = _Peeking(session)
    session.dispatcher._channels["peek"] = peek
    try:
        notice = _notice(FakeClock(wall=time.time()))
        session.send(notice, TaskOptions())
        assert session.flush(10)
        assert peek.seen == [[("peek", "pending")]]
        box = session.outbox
        assert box is not None and [r.state for r in box.records(notice.id)] == ["delivered"]
    finally:
        session.close()


def test_a_named_channel_that_does_not_take_the_event_is_not_left_pending(
    memory_session: tuple[Session, MemoryChannel],
) -> None:
    session, channel = memory_session
    session.configure(
        channel_defs={"team": {"url": "http://127.0.0.1:9/x", "on": ["failure"]}},
        channels=["memory", "team"],
    )
    notice = _notice(FakeClock(wall=time.time()))
    session.send(notice, TaskOptions())
    assert session.flush(10) and len(channel.notices) == 1
    box = session.outbox
    assert box is not None
    states = {r.channel: (r.state, r.last_error) for r in box.records(notice.id)}
    assert states["memory"] == ("delivered", "")
    assert states["team"] == ("dropped", "not sent: the channel does not take this event")


def test_a_url_with_a_password_is_stored_masked_and_found_again(
    nbremind_data_dir: Path,
) -> None:
    hook = _Hook(failing=False)
    url = f"http://nb:pw-s3cret-77@127.0.0.1:{hook.port}/hook"
    try:
        clock = FakeClock(wall=time.time())
        dead = Outbox(nbremind_data_dir / FILE_NAME, clock=clock, owner=_dead_owner())
        notice = _notice(clock, channels=(url,))
        dead.record(notice, [url])
        dead.close()
        stored = [r.channel for r in Outbox(nbremind_data_dir / FILE_NAME).records()]
        assert stored == [f"http://nb:***@127.0.0.1:{hook.port}/hook"]
        assert b"pw-s3cret-77" not in (nbremind_data_dir / FILE_NAME).read_bytes()
        assert b"pw-s3cret-77" not in (nbremind_data_dir / (FILE_NAME + "-wal")).read_bytes()
        session = Session(Config().updated(channels=[url]), tick_interval=None)
        try:
            future = session.replay_outbox()
            assert future is not None
            future.result(15)
            assert session.flush(15)
        finally:
            session.close()
        assert [body["id"] for status, body in hook.seen] == [notice.id]
        (record,) = Outbox(nbremind_data_dir / FILE_NAME).records(notice.id)
        assert record.state == "delivered"
    finally:
        hook.stop()


def test_the_session_follows_a_new_data_dir(
    memory_session: tuple[Session, MemoryChannel], tmp_path: Path, nbremind_data_dir: Path
) -> None:
    session, _ = memory_session
    first = session.outbox
    assert first is not None and first.path == nbremind_data_dir / FILE_NAME
    session.configure(data_dir=str(tmp_path / "elsewhere"))
    second = session.outbox
    assert second is not None and second.path == tmp_path / "elsewhere" / FILE_NAME
    assert first.stats() == {}  # the old one was closed
    session.configure(outbox=False)
    assert session.outbox is None


def test_task_ids_differ_between_processes_that_share_a_pid() -> None:
    from nbremind.core import task as task_module

    clock = FakeClock()
    first = Task("a", clock=clock).id
    assert first.split(".", 1)[0] == str(os.getpid())
    saved = task_module._tag
    try:
        task_module._tag = (0, "")  # as in a new process that got the same pid
        _wait_until(
            lambda: Task("b", clock=clock).id.split("-")[0] != first.split("-")[0],
            timeout=5,
            what="a new process tag",
        )
    finally:
        task_module._tag = saved


def _start_of(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).create_time())


# -- SIGKILL in the middle of retries ------------------------------------------------------------
class _Hook:
    """A local HTTP endpoint that answers 500 (``failing``) or 200, and keeps every POST."""

    def __init__(self, port: int = 0, failing: bool = True) -> None:
        self.failing = failing
        self.lock = threading.Condition()
        self.seen: list[tuple[int, dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook.lock:
                    status = 500 if hook.failing else 200
                    hook.seen.append((status, json.loads(body)))
                    hook.lock.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        """Whether ``count`` requests arrived within ``timeout`` seconds."""
        with self.lock:
            return self.lock.wait_for(lambda: len(self.seen) >= count, timeout)

    def stop(self) -> None:
        """Stop serving; requests being answered are answered first."""
        self.server.shutdown()
        self.server.server_close()


_SENDER = textwrap.dedent(
    """
    import sys
    import nbremind
    from nbremind import remind
    nbremind.configure(channels=[sys.argv[1]], retry_attempts=100, retry_max_time="1h",
                       send_timeout=5)
    with remind("nightly-etl"):
        pass
    print("sent", flush=True)
    sys.stdin.read()  # keep retrying until killed
    """
)

_NEXT_PROCESS = textwrap.dedent(
    """
    import json
    import nbremind
    from nbremind import remind
    session = nbremind.get_session()
    with remind("next", on=[]):
        pass
    assert session.flush(30)
    replay = session.last_replay
    print(json.dumps([c.notice.id for c in replay.claimed] if replay else None), flush=True)
    """
)


def _run(script: str, *args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX only")
def test_a_process_killed_while_retrying_is_delivered_once_by_the_next(
    tmp_path: Path, nbremind_data_dir: Path
) -> None:
    hook = _Hook(failing=True)
    url = f"http://127.0.0.1:{hook.port}/hook"
    sender = subprocess.Popen(
        [sys.executable, "-c", _SENDER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        if not hook.wait_for(2):  # the first try and at least one retry: it is retrying now
            sender.kill()
            pytest.fail(f"the sender never retried: {sender.communicate()[1]}")
        assert sender.poll() is None
        sender.send_signal(signal.SIGKILL)
        sender.wait(30)
        assert sender.returncode == -signal.SIGKILL
    finally:
        if sender.poll() is None:
            sender.kill()
        hook.stop()
    notice_ids = {body["id"] for _, body in hook.seen}
    assert len(notice_ids) == 1 and all(status == 500 for status, _ in hook.seen)
    (notice_id,) = notice_ids
    (left,) = Outbox(nbremind_data_dir / FILE_NAME).pending()
    assert (left.notice_id, left.channel, left.task_name) == (notice_id, url, "nightly-etl")

    healthy = _Hook(port=hook.port, failing=False)  # the server is back
    try:
        claimed = json.loads(_run(_NEXT_PROCESS, cwd=tmp_path))
        assert claimed == [notice_id]
        delivered = [body for status, body in healthy.seen if status == 200]
        assert [body["id"] for body in delivered] == [notice_id]
        assert delivered[0]["task"]["name"] == "nightly-etl"
        assert delivered[0]["event"] == "success"

        assert json.loads(_run(_NEXT_PROCESS, cwd=tmp_path)) == []  # a third process: nothing
        assert len(healthy.seen) == 1
    finally:
        healthy.stop()
    (record,) = Outbox(nbremind_data_dir / FILE_NAME).records(notice_id)
    assert record.state == "delivered" and record.channel == url


def test_a_notice_held_for_quiet_hours_outlives_its_process(nbremind_data_dir: Path) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    window = f"{(now - dt.timedelta(hours=1)):%H:%M}-{(now + dt.timedelta(hours=1)):%H:%M}"
    script = (
        "import nbremind\n"
        f"nbremind.configure(channels=['memory'], quiet_hours={window!r}, timezone='UTC')\n"
        "with nbremind.remind('night'):\n"
        "    pass\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    (held,) = Outbox(nbremind_data_dir / FILE_NAME).records()
    assert held.state == "pending"  # held for the digest, not lost with its process

    clock = FakeClock(wall=time.time())
    channel = MemoryChannel()
    config = Config(channels=("memory",)).updated(quiet_hours=window, timezone="UTC")
    second = Session(config, clock=clock, channels={"memory": channel}, tick_interval=None)
    try:
        future = second.replay_outbox()
        assert future is not None
        future.result(10)
        assert second.flush(10) and channel.notices == []  # still quiet: held here now
        (record,) = Outbox(nbremind_data_dir / FILE_NAME).records(held.notice_id)
        assert record.state == "pending"
        clock.advance(2 * 3600)  # the quiet hours are over
        second.tick()
        assert second.flush(10)
        assert channel.titles() == ["nbremind: 1 notice during quiet hours"]
        assert "✓ night finished" in channel.notices[0].body
        (record,) = Outbox(nbremind_data_dir / FILE_NAME).records(held.notice_id)
        assert record.state == "delivered" and "digest" in record.last_error
    finally:
        second.close()


def test_a_notice_delivered_at_once_on_every_channel_is_counted_not_stored(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    box = Outbox(tmp_path / FILE_NAME, clock=clock)
    quick = _notice(clock, "quick")
    half = _notice(clock, "half")
    theirs = _from_another_process(_notice(clock, "theirs"))
    for notice in (quick, half, theirs):
        assert box.queue_record(notice, ["memory", "hook"])
        box.queue_mark(notice.id, "memory", True, attempts=1)
    box.queue_mark(quick.id, "hook", True, attempts=2)
    box.queue_mark(half.id, "hook", False, "HTTP 400: bad request", attempts=1)
    box.queue_mark(theirs.id, "hook", True, attempts=1)
    assert box.flush() and box.queued == 0
    # this process's notice, delivered everywhere in its batch: two deliveries counted
    assert box.records(quick.id) == []
    assert {r.notice_id for r in box.records()} == {half.id, theirs.id}
    assert box.stats() == {"pending": 0, "delivered": 5, "failed": 1, "dropped": 0, "notices": 3}
    # another process's notice keeps its rows: the de-duplication rule asks about it
    assert box.delivered(theirs.id) and not box.delivered(quick.id)
    (failed,) = box.records(half.id, state="failed")
    assert failed.channel == "hook" and failed.last_error.startswith("HTTP 400")


def test_a_notice_still_sending_at_the_write_keeps_its_rows(tmp_path: Path) -> None:
    clock = FakeClock()
    box = Outbox(tmp_path / FILE_NAME, clock=clock)
    slow = _notice(clock, "slow")
    box.queue_record(slow, ["memory"])
    assert box.flush()
    assert [r.state for r in box.pending()] == ["pending"]  # on disk before its outcome
    box.queue_mark(slow.id, "memory", True, attempts=1)
    assert box.flush()
    assert [(r.state, r.attempts) for r in box.records(slow.id)] == [("delivered", 1)]
    assert box.stats() == {"pending": 0, "delivered": 1, "failed": 0, "dropped": 0, "notices": 1}


def test_a_claimed_notice_delivered_at_once_keeps_its_rows(tmp_path: Path) -> None:
    clock = FakeClock(wall=time.time())
    path = tmp_path / FILE_NAME
    left = _notice(clock, "left")  # (a task of this process, as tests make them)
    Outbox(path, clock=clock, owner=_dead_owner()).record(left, ["memory"])
    box = Outbox(path, clock=clock)
    (claimed,) = box.claim(DAY).claimed
    box.queue_record(claimed.notice, ["memory"])
    box.queue_mark(left.id, "memory", True, attempts=1)
    assert box.flush()
    assert [r.state for r in box.records(left.id)] == ["delivered"]
    assert box.stats()["pending"] == 0 and box.stats()["notices"] == 1


def test_counted_notices_are_forgotten_after_thirty_days(tmp_path: Path) -> None:
    clock = FakeClock()
    box = Outbox(tmp_path / FILE_NAME, clock=clock)
    old = _notice(clock, "old")
    box.queue_record(old, ["memory"])
    box.queue_mark(old.id, "memory", True, attempts=1)
    assert box.flush()
    clock.advance(20 * DAY)
    new = _notice(clock, "new")
    box.queue_record(new, ["memory"])
    box.queue_mark(new.id, "memory", True, attempts=1)
    assert box.flush()
    assert box.stats()["delivered"] == 2
    clock.advance(12 * DAY)  # the first one is 32 days old, the second 12
    box.claim(40 * DAY)
    assert box.stats() == {"pending": 0, "delivered": 1, "failed": 0, "dropped": 0, "notices": 1}


def test_a_file_of_the_first_schema_gets_the_counts(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    clock = FakeClock()
    kept = _notice(clock, "kept")
    box = Outbox(path, clock=clock)
    box.record(kept, ["memory"])
    box.close()
    raw = sqlite3.connect(path)
    raw.execute("DROP TABLE delivered_counts")
    raw.execute("DELETE FROM schema_version")
    raw.execute("INSERT INTO schema_version VALUES (1)")
    raw.commit()
    raw.close()
    box = Outbox(path, clock=clock)
    assert box.schema_version == SCHEMA_VERSION == 2
    assert [r.notice_id for r in box.pending()] == [kept.id]  # what it held is kept
    quick = _notice(clock, "quick")
    box.queue_record(quick, ["memory"])
    box.queue_mark(quick.id, "memory", True, attempts=1)
    assert box.flush()
    assert box.stats() == {"pending": 1, "delivered": 1, "failed": 0, "dropped": 0, "notices": 2}


def test_a_notice_recorded_at_once_then_queued_keeps_its_rows(tmp_path: Path) -> None:
    clock = FakeClock()
    box = Outbox(tmp_path / FILE_NAME, clock=clock)
    notice = _notice(clock)
    assert box.record(notice, ["memory"])
    box.queue_record(notice, ["memory"])
    box.queue_mark(notice.id, "memory", True, attempts=1)
    assert box.flush()
    assert [r.state for r in box.records(notice.id)] == ["delivered"]  # not left pending


def test_a_notice_sent_right_after_data_dir_changes_goes_to_the_new_file(
    memory_session: tuple[Session, MemoryChannel], tmp_path: Path, nbremind_data_dir: Path
) -> None:
    session, channel = memory_session
    clock = FakeClock(wall=time.time())
    first = _notice(clock, "first", channels=("memory", "no-such-channel-xyz"))
    second = _notice(clock, "second", channels=("memory", "no-such-channel-xyz"))
    session.send(first, TaskOptions())
    channel.wait_for(1)  # delivered: its write is still to come
    session.configure(data_dir=str(tmp_path / "elsewhere"))
    session.send(second, TaskOptions())
    assert session.flush(10) and len(channel.notices) == 2
    old = Outbox(nbremind_data_dir / FILE_NAME)
    new = Outbox(tmp_path / "elsewhere" / FILE_NAME)
    assert {r.notice_id for r in old.records()} == {first.id}
    assert {r.notice_id for r in new.records()} == {second.id}
