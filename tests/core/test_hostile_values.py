"""Nothing a block hands nbremind can change how the block ends.

A metric of ``nan``, ``inf``, a 5,000-digit int or an object whose ``str``/``repr`` raise, an
exception whose ``str``, ``repr`` or class name cannot be read: the user's process ends
exactly as it would without nbremind (same exit status, same stderr), the user's exception
propagates as the same object with the same traceback, and every payload (the webhook body,
the outbox record, the history row) is strict JSON. Counts that are not whole numbers
(``advance(nan)``, ``set(inf)``, ``total = 2.5``) are refused at the call, with a
``ValueError`` naming the value.

The user-path tests run scripts in fresh processes, once with nbremind and once with a
stand-in that does nothing, against a real local HTTP server for the webhook.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from _require import missing
from _servers import ScriptedHTTPServer
from nbremind import remind
from nbremind.channels.webhook import payload
from nbremind.core.notice import json_value, make_notice, metric_text
from nbremind.core.secrets import Secret
from nbremind.core.task import MAX_COUNT, Task, TaskError, TaskState, value_repr
from nbremind.core.templates import render_for
from nbremind.store.notice_json import notice_to_dict
from nbremind.store.outbox import FILE_NAME
from nbremind.store.runs import History
from nbremind.testing import FakeClock, capture_notices

pytestmark = pytest.mark.timeout(120)

# -- the user's script, with nbremind or with a stand-in that does nothing ------------------

PRELUDE = """\
import os
import sys

WITH_NBREMIND = os.environ["HOSTILE_WITH"] == "1"


class Unprintable:
    def __str__(self):
        raise RuntimeError("str() of this object fails")

    def __repr__(self):
        raise RuntimeError("repr() of this object fails")


class StrFails(ValueError):
    def __str__(self):
        raise RuntimeError("str() of this exception fails")


class ReprFails(ValueError):
    def __repr__(self):
        raise RuntimeError("repr() of this exception fails")


class NameFails(type):
    @property
    def __name__(cls):
        raise RuntimeError("the name of this class cannot be read")


class NothingReadable(ValueError, metaclass=NameFails):
    def __str__(self):
        raise RuntimeError("str() of this exception fails")

    def __repr__(self):
        raise RuntimeError("repr() of this exception fails")


if WITH_NBREMIND:
    from nbremind import remind

    block = remind("job", channels=[os.environ["HOSTILE_CHANNEL"]])
else:
    import contextlib

    class StandIn:
        total = None

        def metric(self, **values):
            pass

        def advance(self, n=1):
            pass

        def set(self, n):
            pass

    block = contextlib.nullcontext(StandIn())

with block as task:
"""


def _script(body: str) -> str:
    return PRELUDE + textwrap.indent(textwrap.dedent(body).strip() + "\n", "    ")


def _run(body: str, cwd: Path, channel: str, *, nbremind: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOSTILE_WITH": "1" if nbremind else "0", "HOSTILE_CHANNEL": channel}
    return subprocess.run(
        [sys.executable, "-c", _script(body)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def _same_outcome(body: str, cwd: Path, channel: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` with and without nbremind; both must end alike. Returns the nbremind run."""
    plain = _run(body, cwd, channel, nbremind=False)
    with_nbremind = _run(body, cwd, channel, nbremind=True)
    assert (with_nbremind.returncode, with_nbremind.stderr) == (plain.returncode, plain.stderr)
    assert with_nbremind.stdout == plain.stdout
    return with_nbremind


def _strict(text: str | bytes) -> Any:
    """``text`` parsed as strict JSON: ``NaN``, ``Infinity`` and ``-Infinity`` fail the test."""

    def refuse(constant: str) -> Any:
        pytest.fail(f"not strict JSON: {constant} in {text!r:.300}")

    return json.loads(text, parse_constant=refuse)


def _outbox_payloads(data_dir: Path) -> list[Any]:
    with sqlite3.connect(data_dir / FILE_NAME) as db:
        rows = db.execute("SELECT payload FROM notices").fetchall()
    return [_strict(payload) for (payload,) in rows]


def _history_rows(data_dir: Path) -> list[dict[str, Any]]:
    history = History(data_dir / FILE_NAME)
    try:
        return history.query(name="job")
    finally:
        history.close()


# -- hostile metrics -------------------------------------------------------------------------

#: (how the script makes the value, what the webhook carries, what the notice's body shows)
METRICS = {
    "nan": ('float("nan")', None, "loss=nan"),
    "inf": ('float("inf")', None, "loss=inf"),
    "-inf": ('-float("inf")', None, "loss=-inf"),
    "2**64": ("2**64", str(2**64), f"loss={2**64}"),
    "10**5000": ("10**5000", "<int of about 5001 digits>", "loss=<int of about 5001 digits>"),
    "unprintable": ("Unprintable()", "<unprintable Unprintable>", "loss=<unprintable Unprintable>"),
    "nested": (
        '[1.5, float("nan"), {"deep": float("inf")}]',
        [1.5, None, {"deep": None}],
        "loss=[1.5, nan, {'deep': inf}]",
    ),
    "odd keys": (
        "{1: 2, (3,): Unprintable()}",
        {"1": 2, "(3,)": "<unprintable Unprintable>"},
        "loss=<unprintable dict>",
    ),
    "set": ("{1, 2}", "{1, 2}", "loss={1, 2}"),
}


@pytest.mark.parametrize("case", list(METRICS))
def test_a_hostile_metric_leaves_the_block_alone_and_the_json_strict(
    case: str,
    tmp_path: Path,
    nbremind_data_dir: Path,
    http_server: ScriptedHTTPServer,
) -> None:
    expression, carried, shown = METRICS[case]
    done = _same_outcome(
        f"task.metric(loss={expression}, epoch=3)", tmp_path, http_server.url("/hook")
    )
    assert (done.returncode, done.stderr) == (0, "")
    (request,) = http_server.wait_for(1)
    body = _strict(request.body)
    assert body["event"] == "success" and body["state"] == "succeeded"
    assert body["metrics"] == {"loss": carried, "epoch": 3}
    assert f"{shown}, epoch=3" in body["body"].splitlines()
    # stored whole (its record written before its outcome) or, delivered for good within
    # the same write, only counted: strict JSON whenever stored (notice_to_dict's hostile
    # values are tested below too)
    stored = [p for p in _outbox_payloads(nbremind_data_dir) if p["event"] == "success"]
    assert [p["task"]["name"] for p in stored] in ([], ["job"])
    if stored:
        assert stored[0]["task"]["metrics"] == {"loss": carried, "epoch": 3}
    else:
        with sqlite3.connect(nbremind_data_dir / FILE_NAME) as db:
            (counted,) = db.execute("SELECT SUM(notices) FROM delivered_counts").fetchone()
        assert counted == 1
    (row,) = _history_rows(nbremind_data_dir)
    assert row["state"] == "succeeded"


def test_a_metric_that_contains_itself_is_cut_at_a_depth(
    tmp_path: Path,
    http_server: ScriptedHTTPServer,
) -> None:
    done = _same_outcome(
        "loop = []\nloop.append(loop)\ntask.metric(loss=loop)", tmp_path, http_server.url("/hook")
    )
    assert (done.returncode, done.stderr) == (0, "")
    (request,) = http_server.wait_for(1)
    value, depth = _strict(request.body)["metrics"]["loss"], 0
    while isinstance(value, list):
        (value,) = value
        depth += 1
    assert isinstance(value, str) and 1 < depth <= 16  # the rest as text: "[[...]]"


# -- exceptions that cannot be printed --------------------------------------------------------

#: (the exception raised, its type as the notice names it, its message there)
EXCEPTIONS = {
    "str raises": ("StrFails()", "StrFails", "<unprintable StrFails>"),
    "repr raises": ('ReprFails("bad row")', "ReprFails", "bad row"),
    "nothing readable": ("NothingReadable()", "NothingReadable", "<unprintable NothingReadable>"),
}


@pytest.mark.parametrize("case", list(EXCEPTIONS))
def test_an_unprintable_exception_ends_the_process_as_without_nbremind(
    case: str,
    tmp_path: Path,
    nbremind_data_dir: Path,
    http_server: ScriptedHTTPServer,
) -> None:
    raised, type_name, message = EXCEPTIONS[case]
    done = _same_outcome(
        f"task.metric(epoch=1)\nraise {raised}", tmp_path, http_server.url("/hook")
    )
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):")
    (request,) = http_server.wait_for(1)
    body = _strict(request.body)
    assert body["event"] == "failure" and body["state"] == "failed"
    assert body["error"] == {"type": type_name, "message": message}
    assert body["body"].splitlines()[0] == f"{type_name}: {message}"
    (row,) = _history_rows(nbremind_data_dir)
    assert (row["state"], row["error_type"], row["error_message"]) == ("failed", type_name, message)


class _Unprintable(ValueError):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")

    def __repr__(self) -> str:
        raise RuntimeError("repr() of this exception fails")


def test_the_users_exception_is_the_same_object_with_the_same_traceback() -> None:
    error = _Unprintable()
    with capture_notices(FakeClock()) as cap:
        with pytest.raises(_Unprintable) as caught, remind("job"):
            raise error
        (notice,) = cap.notices
    assert caught.value is error
    assert error.__context__ is None and error.__cause__ is None  # nothing of nbremind's
    frames = traceback.extract_tb(error.__traceback__)
    assert [f.name for f in frames] == [
        "test_the_users_exception_is_the_same_object_with_the_same_traceback"
    ]
    assert frames[-1].line == "raise error"
    assert notice.event == "failure"
    assert notice.task.error == TaskError("_Unprintable", "<unprintable _Unprintable>")


def test_a_secret_across_the_200_character_cut_is_masked_whole() -> None:
    secret = Secret("tok-51c7e2d9a0b4").reveal()
    for at in range(186, 200):  # the secret starts before the cut and ends after it
        error = TaskError.from_exception(RuntimeError("x" * at + secret + " and more"))
        masked = "x" * at + "*** and more"
        assert error.message == (masked if len(masked) <= 200 else masked[:200] + "…"), at
        assert secret[:4] not in error.message


# -- counts: refused at the call, named ---------------------------------------------------------

BAD_COUNTS = [
    ("advance", float("nan")),
    ("advance", float("inf")),
    ("advance", -float("inf")),
    ("advance", 0.5),
    ("advance", "3"),
    ("advance", None),
    ("advance", True),
    ("advance", 10**30),
    ("advance", 10**5000),
    ("set", float("nan")),
    ("set", float("-inf")),
    ("set", 2**63),
    ("set", [1]),
    ("total", float("nan")),
    ("total", float("inf")),
    ("total", -1),
    ("total", 2.5),
    ("total", MAX_COUNT + 1),
]


def _report(task: Task, call: str, value: object) -> None:
    if call == "total":
        task.total = value  # type: ignore[assignment]
    else:
        getattr(task, call)(value)


@pytest.mark.parametrize(
    ("call", "value"), BAD_COUNTS, ids=[f"{c}-{value_repr(v, 20)}" for c, v in BAD_COUNTS]
)
def test_a_bad_count_is_refused_at_the_call_naming_it(call: str, value: object) -> None:
    with capture_notices(FakeClock()) as cap:
        with remind("job", total=10) as task:
            task.advance(2)
            with pytest.raises(ValueError) as refused:
                _report(task, call, value)
            assert str(refused.value).startswith(f"{call}: ")
            assert value_repr(value) in str(refused.value)
            assert (task.n, task.total) == (2, 10)  # nothing changed
        (notice,) = cap.notices
    assert notice.event == "success"
    assert "Progress: 20% (2/10)" in notice.body.splitlines()


def test_whole_numbers_of_other_types_are_counted() -> None:
    try:
        import numpy
    except ImportError:
        missing("numpy is not installed (pip install -e '.[test]')")
    with capture_notices(FakeClock()), remind("job") as task:
        task.advance(2.0)
        task.advance(numpy.int64(3))
        task.advance(numpy.float32(1))
        assert task.n == 6 and type(task.n) is int
        task.set(numpy.int32(8))
        task.total = 10.0  # type: ignore[assignment]
        assert (task.n, task.total, type(task.total)) == (8, 10, int)


def test_a_refused_count_in_a_script_leaves_its_end_alone(
    tmp_path: Path,
    http_server: ScriptedHTTPServer,
) -> None:
    body = """
    task.advance(4)
    try:
        task.advance(float("nan"))
    except ValueError as exc:
        print(exc)
    """
    done = _run(body, tmp_path, http_server.url("/hook"), nbremind=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "advance: nan is not a finite whole number of steps\n"
    (request,) = http_server.wait_for(1)
    assert _strict(request.body)["progress"]["n"] == 4


# -- serialising what cannot be refused -----------------------------------------------------------


def test_a_rate_decayed_to_nothing_gives_no_eta_instead_of_an_error(clock: FakeClock) -> None:
    task = Task("job", clock=clock, total=10)
    task.mark_started()
    task.advance(2)
    clock.advance(5)
    task._rate = 5e-324  # what smoothing leaves of a rate after long without progress
    assert task.eta is None
    notice = make_notice("after", task.snapshot(), created=clock.time())
    assert "ETA" not in notice.body and "Running for 5.0 s" in notice.body.splitlines()


def test_a_history_row_takes_only_what_sqlite_can_store(
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    task = Task("job", clock=clock)
    task.mark_started()
    task.mark_ended(TaskState.SUCCEEDED)
    snapshot = task.snapshot().replace(n=10**30, total=2**63, elapsed=math.nan)
    history = History(tmp_path / FILE_NAME)
    try:
        assert history.record_many([(snapshot, 0)])
        (row,) = history.query()
    finally:
        history.close()
    assert (row["id"], row["state"]) == (task.id, "succeeded")
    assert (row["n"], row["total"], row["duration"]) == (None, None, None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- the property: anything goes in, nothing comes out at the end -------------------------------


class _Hostile:
    """Every hook raises, even ``__class__`` (which ``isinstance`` asks)."""

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    __hash__ = object.__hash__

    def __index__(self) -> int:
        raise RuntimeError("index")

    def __float__(self) -> float:
        raise RuntimeError("float")

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("class")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how hypothesis shows it
        printer.text("_Hostile()")


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**70),
    st.builds(pow, st.just(10), st.integers(min_value=190, max_value=4000)),  # repr-able
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.binary(max_size=3),
    st.builds(_Hostile),
    st.sampled_from([{1, 2}, frozenset(), complex(1, 2), range(3), type, len]),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(
            st.one_of(st.text(max_size=3), st.integers(), st.none()), inner, max_size=3
        ),
    ),
    max_leaves=8,
)
calls = st.lists(
    st.tuples(st.sampled_from(["advance", "set", "total", "metric"]), values),
    min_size=1,
    max_size=5,
)
TEMPLATES = {"success": {"title": "{name}: {metrics}", "body": "{metrics.m0:.3f} {progress}"}}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls)
@example([("metric", float("nan")), ("advance", float("inf"))])
@example([("metric", 10**5000), ("set", 10**5000), ("total", 10**5000)])
@example([("metric", _Hostile()), ("advance", _Hostile()), ("total", _Hostile())])
def test_any_value_is_taken_or_refused_at_the_call_never_at_the_end(
    ops: list[tuple[str, object]],
) -> None:
    with capture_notices(FakeClock()) as cap:
        with remind("job") as task:
            for at, (call, value) in enumerate(ops):
                if call == "metric":
                    task.metric(**{f"m{at}": value})  # a metric is always taken
                    continue
                try:
                    _report(task, call, value)
                except ValueError as exc:  # refused: naming the value, at the call
                    assert str(exc).startswith(f"{call}: ")
                    assert value_repr(value) in str(exc)
        (notice,) = cap.notices
    assert notice.event == "success" and notice.task.state is TaskState.SUCCEEDED
    for carried in (payload(notice), notice_to_dict(notice)):
        json.dumps(carried, allow_nan=False)  # strict JSON, or this raises
    rendered = render_for(notice, TEMPLATES)
    assert isinstance(rendered.title, str) and isinstance(rendered.body, str)
    for value in notice.task.metrics.values():
        assert isinstance(metric_text(value), str)
        json.dumps(json_value(value), allow_nan=False)
