"""``df.remind.apply``, ``s.remind.apply`` / ``map``, ``groupby(...).remind_apply``: the same
results as pandas, one step per call of the function, and the import hook that installs them."""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import json
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _require import REQUIRE_ALL

try:
    import numpy as np
    import pandas as pd
except ImportError:  # pragma: no cover - pandas is in the test extra
    if REQUIRE_ALL:
        raise
    pytest.skip("the pandas tests need pandas (pip install -e .[test])", allow_module_level=True)

import nbremind.pandas as nbp
from _kernel import KernelFactory
from nbremind import TaskState, get_session, remind
from nbremind.testing import CapturedNotices, capture_notices

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cap() -> Iterator[CapturedNotices]:
    nbp.install()
    with capture_notices() as captured:
        yield captured


def frame() -> pd.DataFrame:
    """A small frame with one column of each common dtype, missing values included."""
    return pd.DataFrame(
        {
            "i": [3, 1, 4, 1, 5, 9],
            "f": [2.5, np.nan, 0.5, 8.0, 1.25, np.nan],
            "s": ["a", "bb", None, "dddd", "e", "ff"],
            "o": pd.Series([1, "x", 2.5, None, (1, 2), "y"], dtype=object),
            "t": pd.to_datetime(
                ["2024-01-01", None, "2024-03-01", "2024-04-01", "2024-05-01", "2024-06-01"]
            ),
            "c": pd.Categorical(["x", "y", "x", None, "y", "x"], categories=["x", "y", "z"]),
            "b": [True, False, True, True, False, False],
            "n": pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
        },
        index=pd.Index(list("uvwxyz"), name="key"),
    )


NUMERIC = ["i", "f", "n"]


def probe(fn: Callable[..., Any]) -> Any:
    """``fn``, recording for each call the step count of the task it runs in (None outside)."""

    def probed(*args: Any, **kwargs: Any) -> Any:
        task = get_session().current()
        probed.seen.append(None if task is None else task.n)  # type: ignore[attr-defined]
        return fn(*args, **kwargs)

    probed.seen = []  # type: ignore[attr-defined]
    probed.__name__ = getattr(fn, "__name__", "probed")
    return probed


def assert_same(got: Any, expected: Any) -> None:
    assert type(got) is type(expected)
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    elif isinstance(expected, pd.Series):
        pd.testing.assert_series_equal(got, expected, check_exact=True)
    else:
        assert got == expected or (pd.isna(got) and pd.isna(expected))


def _warned(call: Callable[[], Any]) -> tuple[Any, list[tuple[type, str]]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [(type(w.message), str(w.message)) for w in caught]


def compare(
    cap: CapturedNotices,
    plain: Callable[[Any], Any],
    tracked: Callable[[Any], Any],
    fn: Callable[..., Any],
) -> Any:
    """Run ``plain(f)`` and ``tracked(f)`` with the same function; results, warnings and the
    number of calls must match. Returns the tracked call's task."""
    f_plain, f_tracked = probe(fn), probe(fn)
    try:
        expected, plain_warnings = _warned(lambda: plain(f_plain))
    except Exception as exc:  # pandas itself refuses: the tracked call must refuse the same way
        before = len(cap.session.tasks())
        with pytest.raises(type(exc)) as raised:
            tracked(f_tracked)
        assert str(raised.value) == str(exc)
        task = cap.session.tasks()[before]
        assert task.state is TaskState.FAILED
        return task
    before = len(cap.session.tasks())
    got, tracked_warnings = _warned(lambda: tracked(f_tracked))
    assert_same(got, expected)
    assert tracked_warnings == plain_warnings
    assert len(f_tracked.seen) == len(f_plain.seen)
    task = cap.session.tasks()[before]
    assert task.kind == "pandas"
    assert task.state is TaskState.SUCCEEDED
    assert task.n == task.total
    if len(f_plain.seen) == task.total:
        # one step after each call: the k-th call sees k steps done
        assert f_tracked.seen == list(range(task.total))
    return task


# -- DataFrame.apply ----------------------------------------------------------------------------

FRAME_APPLY = {
    "row to scalar": (dict(axis=1), lambda r: r["i"] * 2 if pd.notna(r["f"]) else -r["i"]),
    "row to str": (dict(axis="columns"), lambda r: f"{r['s']}-{r['c']}"),
    "row to Series": (dict(axis=1), lambda r: pd.Series({"a": r["i"], "b": r["f"]})),
    "row to list": (dict(axis=1), lambda r: [r["i"], r["s"]]),
    "row to list, expand": (dict(axis=1, result_type="expand"), lambda r: [r["i"], r["s"]]),
    "row to list, reduce": (dict(axis=1, result_type="reduce"), lambda r: [r["i"], r["s"]]),
    "row to tuple, expand": (dict(axis=1, result_type="expand"), lambda r: (r["b"], r["t"])),
    "column to scalar": (dict(axis=0), lambda c: int(c.isna().sum())),
    "column to Series": (dict(axis="index"), lambda c: c.astype(str).str.len()),
    "column to dtype name": (dict(), lambda c: str(c.dtype)),
    "column identity": (dict(axis="rows"), lambda c: c),
    "args and kwargs": (
        dict(axis=1, args=(10,), scale=2),
        lambda r, k, scale: (r["i"] + k) * scale,
    ),
}


@pytest.mark.parametrize("case", FRAME_APPLY, ids=list(FRAME_APPLY))
def test_frame_apply_matches_pandas(cap: CapturedNotices, case: str) -> None:
    kwargs, fn = FRAME_APPLY[case]
    df = frame()
    task = compare(cap, lambda f: df.apply(f, **kwargs), lambda f: df.remind.apply(f, **kwargs), fn)
    axis = kwargs.get("axis", 0)
    assert task.total == (len(df) if axis in (1, "columns") else len(df.columns))


NUMERIC_APPLY = {
    "broadcast rows": (dict(axis=1, result_type="broadcast"), lambda r: r.sum()),
    "broadcast columns": (dict(axis=0, result_type="broadcast"), lambda c: c.max()),
    "raw rows": (dict(axis=1, raw=True), lambda a: float(np.nansum(a))),
    "raw columns": (dict(axis=0, raw=True), lambda a: a[::-1]),
    "positional axis and raw": ((1, True), lambda a: a.dtype.kind),
    "ufunc": (dict(), np.sqrt),
    "string": (dict(axis=1), "sum"),
    "list": (dict(), ["min", "max"]),
    "dict": (dict(), {"i": "sum", "f": ["min", "max"]}),
    "whole column reduction": (dict(), np.nanmax),
}


@pytest.mark.parametrize("case", NUMERIC_APPLY, ids=list(NUMERIC_APPLY))
def test_frame_apply_fast_paths_and_numeric_options_match_pandas(
    cap: CapturedNotices, case: str
) -> None:
    params, func = NUMERIC_APPLY[case]
    df = frame()[["i", "f"]]
    if isinstance(params, tuple):
        expected, got = df.apply(func, *params), df.remind.apply(func, *params)
    else:
        expected, got = df.apply(func, **params), df.remind.apply(func, **params)
    assert_same(got, expected)
    [task] = cap.session.tasks()
    assert (task.state, task.n, task.total) == (TaskState.SUCCEEDED, task.total, task.total)


def test_frame_apply_bad_axis_raises_what_pandas_raises(cap: CapturedNotices) -> None:
    df = frame()
    with pytest.raises(ValueError) as plain:
        df.apply(len, axis=2)
    with pytest.raises(ValueError) as tracked:
        df.remind.apply(len, axis=2)
    assert str(tracked.value) == str(plain.value)


@pytest.mark.parametrize("axis", [0, 1])
def test_frame_apply_on_an_empty_frame(cap: CapturedNotices, axis: int) -> None:
    # pandas calls the function once on an empty Series to see whether it reduces
    for df in (frame().iloc[:0], frame().iloc[:, :0], pd.DataFrame()):
        task = compare(
            cap,
            lambda f, df=df: df.apply(f, axis=axis),
            lambda f, df=df: df.remind.apply(f, axis=axis),
            len,
        )
        assert task.n <= task.total


def test_frame_map_matches_pandas(cap: CapturedNotices) -> None:
    df = frame()
    for kwargs in ({}, {"na_action": "ignore"}):
        task = compare(
            cap,
            lambda f, kw=kwargs: df.map(f, **kw),
            lambda f, kw=kwargs: df.remind.map(f, **kw),
            repr,
        )
        assert task.name == "map(repr)"


# -- Series.apply and Series.map --------------------------------------------------------------

SERIES_FUNCS = {
    "identity": lambda x: x,
    "to text": lambda x: None if pd.isna(x) else str(x),
    "to Series": lambda x: pd.Series({"v": x, "missing": pd.isna(x)}),
}


@pytest.mark.parametrize("column", list(frame().columns))
@pytest.mark.parametrize("func", SERIES_FUNCS, ids=list(SERIES_FUNCS))
def test_series_apply_matches_pandas(cap: CapturedNotices, column: str, func: str) -> None:
    s = frame()[column]
    fn = SERIES_FUNCS[func]
    task = compare(cap, s.apply, s.remind.apply, fn)
    if isinstance(s.dtype, pd.CategoricalDtype):
        # pandas calls the function per category, and once for the missing value
        assert task.total == len(s.cat.categories) + 1
    else:
        assert task.total == len(s)


@pytest.mark.parametrize("column", list(frame().columns))
@pytest.mark.parametrize("na_action", [None, "ignore"])
def test_series_map_matches_pandas(cap: CapturedNotices, column: str, na_action: Any) -> None:
    s = frame()[column]
    to_text = SERIES_FUNCS["to text"]
    task = compare(
        cap,
        lambda f: s.map(f, na_action=na_action),
        lambda f: s.remind.map(f, na_action=na_action),
        to_text,
    )
    if isinstance(s.dtype, pd.CategoricalDtype):
        assert task.total == len(s.cat.categories) + (na_action is None)
    elif na_action == "ignore":
        assert task.total == s.notna().sum()
    else:
        assert task.total == len(s)


def test_series_apply_options_match_pandas(cap: CapturedNotices) -> None:
    s = frame()["f"]
    for plain, tracked in [
        (
            s.apply(lambda x, k, m=1: x * k + m, args=(2,), m=5),
            s.remind.apply(lambda x, k, m=1: x * k + m, args=(2,), m=5),
        ),
        (s.apply(lambda x: x.sum(), by_row=False), s.remind.apply(lambda x: x.sum(), by_row=False)),
        (s.apply(np.sqrt), s.remind.apply(np.sqrt)),
        (s.apply("cumsum"), s.remind.apply("cumsum")),
        (s.apply(["min", "max"]), s.remind.apply(["min", "max"])),
        (s.iloc[:0].apply(len), s.iloc[:0].remind.apply(len)),
    ]:
        assert_same(tracked, plain)
    tasks = cap.session.tasks()
    assert [t.state for t in tasks] == [TaskState.SUCCEEDED] * 6
    assert [t.n for t in tasks] == [t.total for t in tasks] == [6, 6, 6, 6, 6, 0]


def test_series_map_with_a_mapping_or_kwargs_matches_pandas(cap: CapturedNotices) -> None:
    s = frame()["s"]
    mapping = {"a": 1, "bb": 2}
    assert_same(s.remind.map(mapping), s.map(mapping))
    assert_same(s.remind.map(pd.Series(mapping)), s.map(pd.Series(mapping)))
    assert_same(s.remind.map(mapping, "ignore"), s.map(mapping, "ignore"))
    if pd.__version__ >= "3":  # Series.map passes keywords to the function since pandas 3.0
        fn = lambda x, suffix: f"{x}{suffix}"  # noqa: E731
        assert_same(s.remind.map(fn, suffix="!"), s.map(fn, suffix="!"))
    assert {t.state for t in cap.session.tasks()} == {TaskState.SUCCEEDED}
    assert cap.session.tasks()[0].name == "map(dict)"


# -- groupby(...).remind_apply -----------------------------------------------------------------


def sales() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": ["n", "s", "n", "e", "s", "n", None, "e"],
            "kind": pd.Categorical(list("ababaaba"), categories=["a", "b", "c"]),
            "qty": [1, 2, 3, 4, 5, 6, 7, 8],
            "price": [1.5, 2.0, np.nan, 4.0, 0.5, 1.0, 3.0, 2.5],
        }
    )


GROUPBY = {
    "scalar": (dict(by="region"), lambda g: g["qty"].sum()),
    "Series": (dict(by="region"), lambda g: g[["qty", "price"]].max()),
    "frame, group_keys": (dict(by="region", group_keys=True), lambda g: g.head(2)),
    "frame, no group_keys": (dict(by="region", group_keys=False), lambda g: g.head(2)),
    "same index, group_keys": (dict(by="region", group_keys=True), lambda g: g - g.mean()),
    "same index, no group_keys": (dict(by="region", group_keys=False), lambda g: g * 2),
    "as_index False": (dict(by="region", as_index=False), lambda g: g["price"].mean()),
    "dropna False": (dict(by="region", dropna=False), lambda g: len(g)),
    "unobserved categories": (dict(by="kind", observed=False), lambda g: g["qty"].sum()),
    "two keys": (dict(by=["region", "kind"], observed=True), lambda g: g["qty"].tolist()),
    "level": (dict(level=0), lambda g: g["qty"].iloc[0]),
    "sort False": (dict(by="region", sort=False), lambda g: g.index.tolist()),
}


@pytest.mark.parametrize("case", GROUPBY, ids=list(GROUPBY))
def test_frame_groupby_remind_apply_matches_pandas(cap: CapturedNotices, case: str) -> None:
    kwargs, fn = GROUPBY[case]
    df = sales().drop(columns=["kind"]) if case.startswith("same index") else sales()
    gb = df.groupby(**kwargs)
    task = compare(cap, gb.apply, gb.remind_apply, fn)
    assert task.total == gb.ngroups


SERIES_GROUPBY = [case for case, (kwargs, _) in GROUPBY.items() if "as_index" not in kwargs]


@pytest.mark.parametrize("case", SERIES_GROUPBY)
def test_series_groupby_remind_apply_matches_pandas(cap: CapturedNotices, case: str) -> None:
    kwargs, _fn = GROUPBY[case]
    gb = sales().groupby(**kwargs)["price"]
    for fn in (lambda s: s.max() - s.min(), lambda s: s.head(2), lambda s: s.fillna(0)):
        task = compare(cap, gb.apply, gb.remind_apply, fn)
        assert task.total == gb.ngroups


def test_groupby_remind_apply_args_strings_and_no_groups(cap: CapturedNotices) -> None:
    df = sales().drop(columns=["kind"])
    gb = df.groupby("region")
    fn = lambda g, k, scale=1: g["qty"].sum() * k + scale  # noqa: E731
    assert_same(gb.remind_apply(fn, 2, scale=10), gb.apply(fn, 2, scale=10))
    assert_same(gb.remind_apply("sum"), gb.apply("sum"))
    empty = df.iloc[:0][["region", "qty"]].groupby("region")
    assert_same(empty.remind_apply(lambda g: len(g)), empty.apply(lambda g: len(g)))
    # pandas calls a function named sum once on the empty frame when there are no groups
    probed = probe(lambda g: g["qty"].sum())
    probed.__name__ = "sum"
    assert_same(empty.remind_apply(probed), empty.apply(probed))
    assert len(probed.seen) == 2
    s_gb = df.set_index("region")["qty"].groupby(level=0)
    assert_same(s_gb.remind_apply(np.sum), s_gb.apply(np.sum))
    tasks = cap.session.tasks()
    assert [(t.state, t.n, t.total) for t in tasks] == [
        (TaskState.SUCCEEDED, 3, 3),
        (TaskState.SUCCEEDED, 3, 3),
        (TaskState.SUCCEEDED, 0, 0),
        (TaskState.SUCCEEDED, 0, 0),
        (TaskState.SUCCEEDED, 3, 3),
    ]
    assert [t.name for t in tasks] == [
        "groupby.apply(<lambda>)",
        "groupby.apply('sum')",
        "groupby.apply(<lambda>)",
        "groupby.apply(sum)",
        "groupby.apply(sum)",
    ]


def test_groupby_include_groups_is_passed_to_pandas(cap: CapturedNotices) -> None:
    gb = sales().groupby("region")
    with pytest.raises((ValueError, TypeError)) as plain:
        gb.apply(len, include_groups=True)
    with pytest.raises(type(plain.value)) as tracked:
        gb.remind_apply(len, include_groups=True)
    assert str(tracked.value) == str(plain.value)


# -- a task like remind()'s ---------------------------------------------------------------------


def test_default_names_say_what_ran(cap: CapturedNotices) -> None:
    import functools

    def score(row: Any) -> Any:
        return row["i"]

    df = frame()
    df.remind.apply(score, axis=1)
    df["i"].remind.map(functools.partial(max, 2))
    df["i"].remind.apply(str)
    df.groupby("b").remind_apply(len)
    df.remind.apply(score, axis=1, name="")
    assert [t.name for t in cap.session.tasks()] == [
        "apply(score)",
        "map(max)",
        "apply(str)",
        "groupby.apply(len)",
        "apply(score)",
    ]
    assert cap.titles() == [
        "✓ apply(score) finished",
        "✓ map(max) finished",
        "✓ apply(str) finished",
        "✓ groupby.apply(len) finished",
        "✓ apply(score) finished",
    ]


def test_remind_options_are_taken_as_keywords(cap: CapturedNotices) -> None:
    df = frame()

    def check(task: Any) -> bool:
        return False

    df.remind.apply(
        lambda r: r["i"],
        axis=1,
        name="score",
        after="10m",
        every="1m",
        progress=[0.5],
        mem="8GB",
        timeout="1h",
        on=["failure"],
        channels=["memory"],
        min_duration="2s",
        when=check,
    )
    [task] = cap.session.tasks()
    o = task.options
    assert task.name == "score"
    assert (o.after, o.every, o.progress, o.mem, o.timeout) == (600, 60, (0.5,), 8 * 10**9, 3600)
    assert (o.on, o.channels, o.min_duration, o.when) == (("failure",), ("memory",), 2, check)
    assert cap.titles() == []  # on=["failure"]: a success says nothing


@pytest.mark.parametrize(
    ("call", "option"),
    [
        (lambda df: df.remind.apply(len, axis=1, after="banana"), "after"),
        (lambda df: df["i"].remind.apply(len, progress="150%"), "progress"),
        (lambda df: df["i"].remind.map(len, mem="lots"), "mem"),
        (lambda df: df.groupby("b").remind_apply(len, on=["explode"]), "on"),
        (lambda df: df.remind.apply(len, interrupt=True), "interrupt"),
        (lambda df: df.remind.apply(len, name=3), "name"),
    ],
)
def test_bad_options_raise_like_remind_and_nothing_runs(
    cap: CapturedNotices, call: Callable[[pd.DataFrame], Any], option: str
) -> None:
    with pytest.raises(ValueError, match=option):
        call(frame())
    assert cap.session.tasks() == []


def test_same_messages_as_remind_for_bad_options(cap: CapturedNotices) -> None:
    with pytest.raises(ValueError) as direct:
        remind("x", after="banana")
    with pytest.raises(ValueError) as via_pandas:
        frame().remind.apply(len, after="banana")
    assert str(via_pandas.value) == str(direct.value)


def test_progress_marks_fire_while_pandas_runs(cap: CapturedNotices) -> None:
    s = pd.Series(range(10))
    marks = []

    def f(x: int) -> int:
        cap.session.tick()  # the ticker's work, done by hand at each step
        cap.session.flush()
        marks.append(cap.channel.titles())
        return x

    s.remind.apply(f, name="rows", progress=["30%", 0.75])
    # the k-th call sees k steps done: the 30% mark is seen at the fourth call
    assert "rows reached 30%" in marks[3] and "rows reached 30%" not in marks[2]
    assert cap.titles() == ["rows reached 30%", "rows reached 75%", "✓ rows finished"]


def test_nested_inside_remind_and_inside_each_other(cap: CapturedNotices) -> None:
    df = frame()
    inner_parents = []

    def per_group(g: pd.DataFrame) -> int:
        def per_row(r: pd.Series) -> Any:
            task = cap.session.current()
            inner_parents.append(task.parent.name if task and task.parent else None)
            return r["i"]

        return int(g.remind.apply(per_row, axis=1, name="rows").sum())

    with remind("etl", total=1) as outer:
        df.groupby("b").remind_apply(per_group, name="groups")
        outer.advance()
    tasks = {t.name: t for t in cap.session.tasks() if t.name != "rows"}
    assert tasks["groups"].parent is outer
    assert set(inner_parents) == {"groups"}
    assert [t.parent for t in cap.session.tasks() if t.name == "rows"] == [tasks["groups"]] * 2
    assert cap.titles()[-2:] == ["✓ groups finished", "✓ etl finished"]


class Boom(Exception):
    pass


@pytest.mark.parametrize(
    "call",
    [
        lambda df, f: df.remind.apply(f, axis=1),
        lambda df, f: df.remind.apply(f, axis=0, raw=True),
        lambda df, f: df["i"].remind.apply(f),
        lambda df, f: df["s"].remind.map(f, na_action="ignore"),
        lambda df, f: df.groupby("b").remind_apply(f),
        lambda df, f: df.groupby("b")["i"].remind_apply(f),
    ],
    ids=["frame apply", "raw", "series apply", "series map", "groupby", "series groupby"],
)
def test_an_error_in_the_function_propagates_unchanged_and_fails_the_task(
    cap: CapturedNotices, call: Callable[[pd.DataFrame, Any], Any]
) -> None:
    error = Boom("bad row 3")
    calls = []

    def f(x: Any) -> Any:
        calls.append(x)
        if len(calls) == 2:
            raise error
        return 1

    with pytest.raises(Boom) as raised:
        call(frame(), f)
    assert raised.value is error
    [task] = cap.session.tasks()
    assert task.state is TaskState.FAILED
    assert task.n == 1
    assert (task.error.type, task.error.message) == ("Boom", "bad row 3")
    [notice] = cap.notices
    assert notice.title.startswith("✗") and notice.body.splitlines()[0] == "Boom: bad row 3"


def test_keyboard_interrupt_cancels_the_task(cap: CapturedNotices) -> None:
    def f(x: Any) -> Any:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pd.Series([1, 2]).remind.apply(f)
    assert [t.state for t in cap.session.tasks()] == [TaskState.CANCELLED]


def test_a_swallowed_probe_error_does_not_fail_the_task(cap: CapturedNotices) -> None:
    df = frame().iloc[:0]

    def f(row: pd.Series) -> Any:
        return row["missing column"]  # raises on pandas's empty probe, which pandas ignores

    assert_same(df.remind.apply(f, axis=1), df.apply(f, axis=1))
    assert [t.state for t in cap.session.tasks()] == [TaskState.SUCCEEDED]


# -- registration -------------------------------------------------------------------------------


def test_install_is_idempotent_and_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nbp.install()
        nbp.install()
        nbp.install_when_imported()
    assert pd.DataFrame.remind is nbp.FrameReminder
    assert pd.Series.remind is nbp.SeriesReminder
    assert pd.api.typing.DataFrameGroupBy.remind_apply is nbp.remind_apply
    assert pd.api.typing.SeriesGroupBy.remind_apply is nbp.remind_apply
    assert not any(isinstance(f, nbp._ImportHook) for f in sys.meta_path)


def test_only_public_pandas_modules_are_imported() -> None:
    source = Path(nbp.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module)
    pandas_modules = {m for m in imported if m.split(".")[0] == "pandas"}
    assert pandas_modules == {"pandas", "pandas.api", "pandas.api.types"}
    assert "pandas.core" not in source


def test_old_pandas_gets_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # pandas < 2.1 has no pandas.api.typing
    monkeypatch.delattr(pd.api, "typing")
    monkeypatch.setitem(sys.modules, "pandas.api.typing", None)
    with pytest.raises(ImportError, match=r"pandas>=2\.1.*pandas\.api\.typing"):
        nbp.install()


def _run(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object last."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    out["stderr"] = result.stderr
    return out


def test_import_hook_installs_the_accessors_when_pandas_is_imported() -> None:
    out = _run(
        """
        import importlib.util, json, sys
        import nbremind.pandas as nbp
        before = "pandas" in sys.modules
        hooked = sum(isinstance(f, nbp._ImportHook) for f in sys.meta_path)
        nbp.install_when_imported(); nbp.install_when_imported()  # idempotent
        hooked_twice = sum(isinstance(f, nbp._ImportHook) for f in sys.meta_path)
        importlib.util.find_spec("pandas")  # looking pandas up is not importing it
        still_hooked = any(isinstance(f, nbp._ImportHook) for f in sys.meta_path)
        import pandas as pd
        df = pd.DataFrame({"a": [1, 2, 3], "b": [4.0, 5.0, 6.0]})
        from nbremind.testing import capture_notices
        with capture_notices() as cap:
            got = df.remind.apply(lambda r: r["a"] * r["b"], axis=1).tolist()
            groups = df.groupby("a").remind_apply(lambda g: float(g["b"].sum())).tolist()
            titles = cap.titles()
        print(json.dumps({
            "before": before, "hooked": hooked, "hooked_twice": hooked_twice,
            "still_hooked": still_hooked,
            "after": any(isinstance(f, nbp._ImportHook) for f in sys.meta_path),
            "got": got, "groups": groups, "titles": titles,
            "loader": type(pd.__loader__).__name__,
            "same_loader": pd.__spec__.loader is pd.__loader__,
            "patched": "exec_module" in vars(pd.__loader__),
        }))
        """
    )
    assert (out["before"], out["hooked"], out["hooked_twice"]) == (False, 1, 1)
    assert out["still_hooked"] and not out["after"]
    assert out["got"] == [4.0, 10.0, 18.0]
    assert out["groups"] == [4.0, 5.0, 6.0]
    assert out["titles"] == ["✓ apply(<lambda>) finished", "✓ groupby.apply(<lambda>) finished"]
    assert (out["loader"], out["same_loader"], out["patched"]) == ("SourceFileLoader", True, False)


def test_import_nbremind_pandas_does_not_import_pandas() -> None:
    out = _run(
        """
        import json, sys
        import nbremind.pandas
        print(json.dumps({"pandas": "pandas" in sys.modules}))
        """
    )
    assert out["pandas"] is False


def test_a_failing_install_does_not_break_import_pandas() -> None:
    out = _run(
        """
        import json
        import nbremind.pandas as nbp
        def broken():
            raise RuntimeError("registry on fire")
        nbp.install = broken
        import pandas as pd
        print(json.dumps({"sum": int(pd.Series([1, 2]).sum()),
                          "has": hasattr(pd.DataFrame, "remind")}))
        """
    )
    assert out["sum"] == 3
    assert out["has"] is False
    assert "registry on fire" in out["stderr"]


def test_a_failing_import_of_pandas_keeps_the_hook(tmp_path: Path) -> None:
    # a broken pandas first on the path: the import fails as usual and the hook waits on
    (tmp_path / "pandas").mkdir()
    (tmp_path / "pandas" / "__init__.py").write_text("raise ImportError('half installed')\n")
    out = _run(
        f"""
        import json, sys
        sys.path.insert(0, {str(tmp_path)!r})
        import nbremind.pandas as nbp
        try:
            import pandas
            error = None
        except ImportError as exc:
            error = str(exc)
        print(json.dumps({{"error": error,
                           "hooked": any(isinstance(f, nbp._ImportHook) for f in sys.meta_path)}}))
        """
    )
    assert out == {"error": "half installed", "hooked": True, "stderr": out["stderr"]}


# -- the hook itself, on a module of our own ------------------------------------------------------


class _SlottedLoader(importlib.machinery.SourceFileLoader):
    __slots__ = ()


class _SlottedFinder:
    """Finds one module with a loader whose methods cannot be replaced on the instance."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        loader = _SlottedLoader(fullname, str(self.path))
        return importlib.util.spec_from_file_location(fullname, self.path, loader=loader)


@pytest.mark.parametrize("slotted", [False, True], ids=["patched loader", "proxied loader"])
def test_import_hook_runs_once_after_the_module_and_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slotted: bool
) -> None:
    name = f"nbremind_hook_probe_{'slotted' if slotted else 'plain'}"
    path = tmp_path / f"{name}.py"
    path.write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    if slotted:
        sys.meta_path.insert(0, _SlottedFinder(name, path))
    seen = []
    hook = nbp._ImportHook(name, lambda module: seen.append(module.VALUE))
    sys.meta_path.insert(0, hook)
    try:
        module = importlib.import_module(name)
    finally:
        sys.modules.pop(name, None)
    assert seen == [42]
    assert hook not in sys.meta_path
    assert module.__spec__.loader is module.__loader__
    assert type(module.__loader__) is (
        _SlottedLoader if slotted else importlib.machinery.SourceFileLoader
    )
    assert "exec_module" not in getattr(module.__loader__, "__dict__", {})


def test_import_hook_survives_a_failing_callback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    name = "nbremind_hook_probe_callback"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))

    def callback(module: Any) -> None:
        raise RuntimeError("callback broke")

    sys.meta_path.insert(0, nbp._ImportHook(name, callback))
    try:
        assert importlib.import_module(name).VALUE == 1
    finally:
        sys.modules.pop(name, None)
    assert "callback broke" in caplog.text


# -- in a real kernel ---------------------------------------------------------------------------

KERNEL_CHECK = """
import sys
df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "x"]})
f = lambda r: f"{r['b']}{r['a']}"
got = df.remind.apply(f, axis=1)
pd.testing.assert_series_equal(got, df.apply(f, axis=1))
by = df.groupby("b").remind_apply(lambda g: int(g["a"].sum()))
print(got.tolist(), by.to_dict())
"""


@pytest.mark.kernel
@pytest.mark.parametrize("pandas_first", [False, True], ids=["load_ext first", "pandas first"])
def test_load_ext_gives_the_accessors_whether_pandas_came_before_or_after(
    kernel_factory: KernelFactory, pandas_first: bool
) -> None:
    k = kernel_factory()
    assert k.query("import sys\nresult = 'pandas' in sys.modules") is False
    k.use_memory_channel()
    if pandas_first:
        k.ok("import pandas as pd")
    k.ok("%load_ext nbremind")
    loaded = k.query("import sys\nresult = 'pandas' in sys.modules")
    assert loaded is pandas_first  # %load_ext does not import pandas
    if not pandas_first:
        k.ok("import pandas as pd")
    r = k.ok(KERNEL_CHECK)
    assert r.stdout.strip() == "['x1', 'y2', 'x3'] {'x': 4, 'y': 2}"
    assert r.stderr == ""
    assert k.titles() == ["✓ apply(<lambda>) finished", "✓ groupby.apply(<lambda>) finished"]
