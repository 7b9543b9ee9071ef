"""pandas calls that run as tracked tasks: one step per call of your function.

>>> import nbremind.pandas  # doctest: +SKIP
>>> df.remind.apply(score, axis=1, after="10m", progress=[0.5])  # doctest: +SKIP
>>> s.remind.map(clean)  # doctest: +SKIP
>>> df.remind.map(str.strip)  # doctest: +SKIP
>>> df.groupby("region").remind_apply(summarise)  # doctest: +SKIP

Each method returns exactly what the plain pandas call returns, and runs it inside a task
made the way ``remind()`` makes one: it nests under the running cell or ``remind()`` block,
takes ``remind()``'s options as keywords (``name=``, ``after=``, ``every=``, ``progress=``,
``mem=``, ``mem_limit=``, ``gpu_mem=``, ``stall=``, ``slower=``, ``timeout=``,
``interrupt=``, ``on=``, ``channels=``, ``min_duration=``, ``when=``, ``session=``) and
notifies the same way. Every other argument goes to pandas unchanged (a keyword your
function takes under one of those names: use ``functools.partial``). The total is the number
of times pandas calls your function: rows for ``axis=1``, columns for ``axis=0``, elements
of a Series (non-missing ones with ``na_action="ignore"``, categories of a categorical),
groups for a groupby. When pandas takes a path that does not call the function once per unit
(a NumPy ufunc, a string or a list of functions, ``by_row=False``, another ``engine``), the
task ends at its total.

``import nbremind.pandas`` or ``%load_ext nbremind`` adds the ``remind`` accessor to
DataFrame and Series and ``remind_apply`` to DataFrameGroupBy and SeriesGroupBy, at once if
pandas is already imported, otherwise as soon as it is. Importing this module does not
import pandas. Only public pandas APIs are used (``pandas.api``; pandas >= 2.1).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from .api.reminder import Reminder, remind
from .core.options import CALL_OPTIONS
from .core.task import Task

__all__ = [
    "FrameReminder",
    "SeriesReminder",
    "install",
    "install_when_imported",
    "remind_apply",
]

log = logging.getLogger("nbremind")

#: Keywords taken by the task rather than passed to pandas (``remind()``'s options).
OPTIONS = frozenset({"name", "session", *CALL_OPTIONS})

_AXES = {0: 0, "index": 0, "rows": 0, 1: 1, "columns": 1}
_MIN_PANDAS = "2.1"


# -- running one pandas call as a task ----------------------------------------------------------


def _pop_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: kwargs.pop(key) for key in OPTIONS & kwargs.keys()}


def _func_name(func: object) -> str:
    if isinstance(func, str):
        return repr(func)
    if isinstance(func, functools.partial):
        return _func_name(func.func)
    name = getattr(func, "__name__", None)
    return name if isinstance(name, str) else type(func).__name__


def _counted(func: Callable[..., Any], task: Task, total: int) -> Callable[..., Any]:
    """``func``, advancing ``task`` by one after each call that returns, up to ``total``."""
    done = 0

    # keep __name__, which pandas reads (groupby's no-group check), but not the attributes of
    # ``func`` (a class such as ``str`` has ``__iter__``: pandas would take it for a list)
    @functools.wraps(func, updated=())
    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal done
        result = func(*args, **kwargs)
        if done < total:  # pandas may probe the function once more than there are units
            done += 1
            task.advance()
        return result

    return counted


def _run(
    call: Callable[[Any], Any],
    func: Any,
    wrap: bool,
    label: str,
    total: int,
    options: dict[str, Any],
) -> Any:
    """Run ``call(func)`` (``func`` counted when ``wrap``) inside a task of ``total`` steps."""
    name = options.pop("name", None)
    checked = remind(label if name is None or name == "" else name, total=int(total), **options)
    reminder = Reminder(
        checked.name, checked.options, checked.total, checked.session, kind="pandas"
    )
    with reminder as task:
        result = call(_counted(func, task, task.total or 0) if wrap else func)
        if task.total is not None and task.n < task.total:
            task.set(task.total)  # a vectorised path did the work without per-unit calls
    return result


def _wraps_per_unit(func: Any, engine: Any = None) -> bool:
    """Whether pandas calls ``func`` once per unit, so that counting its calls is progress."""
    if not callable(func) or engine not in (None, "python"):
        return False
    import numpy as np
    from pandas.api.types import is_list_like

    return not isinstance(func, np.ufunc) and not is_list_like(func)


def _series_calls(series: Any, na_action: Any) -> int:
    """How many times ``Series.map`` calls a function on ``series``."""
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        # pandas maps the categories, then NaN once if there is one and it is not skipped
        calls = len(dtype.categories)
        if na_action is None and bool(series.isna().any()):
            calls += 1
        return calls
    if na_action == "ignore":
        return int(series.notna().sum())
    return len(series)


# -- the accessors ------------------------------------------------------------------------------


class FrameReminder:
    """``df.remind``: DataFrame methods that run as tracked tasks."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def apply(self, func: Any, axis: Any = 0, *args: Any, **kwargs: Any) -> Any:
        """``df.apply(func, axis, ...)`` as a task: one step per column (``axis=0``) or per
        row (``axis=1``). Takes ``remind()``'s options as keywords; the rest go to pandas."""
        df = self._obj
        options = _pop_options(kwargs)
        try:
            number = _AXES[axis]
        except (KeyError, TypeError):
            return df.apply(func, axis, *args, **kwargs)  # pandas names the bad axis
        # positional after axis: raw, result_type, args, by_row, engine, engine_kwargs
        engine = kwargs.get("engine", args[4] if len(args) > 4 else None)
        total = len(df.columns) if number == 0 else len(df.index)
        return _run(
            lambda f: df.apply(f, axis, *args, **kwargs),
            func,
            _wraps_per_unit(func, engine),
            f"apply({_func_name(func)})",
            total,
            options,
        )

    def map(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """``df.map(func, ...)`` (element-wise) as a task: one step per element."""
        df = self._obj
        options = _pop_options(kwargs)
        na_action = kwargs.get("na_action", args[0] if args else None)
        if callable(func):
            total = sum(_series_calls(df.iloc[:, i], na_action) for i in range(df.shape[1]))
        else:
            total = df.size
        return _run(
            lambda f: df.map(f, *args, **kwargs),
            func,
            _wraps_per_unit(func),
            f"map({_func_name(func)})",
            total,
            options,
        )


class SeriesReminder:
    """``s.remind``: Series methods that run as tracked tasks."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def apply(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """``s.apply(func, ...)`` as a task: one step per element. Takes ``remind()``'s
        options as keywords; the rest go to pandas."""
        s = self._obj
        options = _pop_options(kwargs)
        total = _series_calls(s, None) if len(s) else 0
        return _run(
            lambda f: s.apply(f, *args, **kwargs),
            func,
            _wraps_per_unit(func),
            f"apply({_func_name(func)})",
            total,
            options,
        )

    def map(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """``s.map(func, ...)`` as a task: one step per element (per non-missing element
        with ``na_action="ignore"``). A dict or Series mapping has no per-element calls to
        count: the task ends at its total."""
        s = self._obj
        options = _pop_options(kwargs)
        na_action = kwargs.get("na_action", args[0] if args else None)
        engine = kwargs.get("engine", args[1] if len(args) > 1 else None)
        total = _series_calls(s, na_action) if callable(func) else len(s)
        return _run(
            lambda f: s.map(f, *args, **kwargs),
            func,
            _wraps_per_unit(func, engine),
            f"map({_func_name(func)})",
            total,
            options,
        )


def remind_apply(self: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
    """``gb.remind_apply(func, *args, **kwargs)``: ``gb.apply(func, *args, **kwargs)`` as a
    task, one step per group. Takes ``remind()``'s options as keywords (``name=``,
    ``after=``, ``progress=``, ...); the rest go to pandas and your function."""
    options = _pop_options(kwargs)
    total = int(self.ngroups)
    return _run(
        lambda f: self.apply(f, *args, **kwargs),
        func,
        _wraps_per_unit(func),
        f"groupby.apply({_func_name(func)})",
        total,
        options,
    )


# -- registration -------------------------------------------------------------------------------

_lock = threading.RLock()


def install() -> None:
    """Add the accessors to pandas now (importing it). Idempotent.

    Raises ``ImportError`` when pandas is missing or older than 2.1.
    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(
            f"nbremind.pandas needs pandas>={_MIN_PANDAS} (pip install 'nbremind[pandas]')"
        ) from exc
    with _lock:
        groupbys = _groupby_classes(pd)
        extensions = pd.api.extensions
        _register(extensions.register_dataframe_accessor, pd.DataFrame, FrameReminder)
        _register(extensions.register_series_accessor, pd.Series, SeriesReminder)
        for cls in groupbys:
            if getattr(cls, "remind_apply", None) is not remind_apply:
                cls.remind_apply = remind_apply  # type: ignore[attr-defined]
        _remove_hook()


def _groupby_classes(pd: Any) -> tuple[type, type]:
    try:
        from pandas.api import typing as pd_typing

        return pd_typing.DataFrameGroupBy, pd_typing.SeriesGroupBy
    except (ImportError, AttributeError):
        version = getattr(pd, "__version__", "?")
        raise ImportError(
            f"nbremind.pandas needs pandas>={_MIN_PANDAS} for pandas.api.typing."
            f"DataFrameGroupBy and SeriesGroupBy; pandas {version} is installed"
        ) from None


def _register(register: Callable[[str], Any], cls: type, accessor: type) -> None:
    current = getattr(cls, "remind", None)  # on the class, an accessor is its own class
    if current is accessor:
        return
    same = (getattr(current, "__module__", None), getattr(current, "__qualname__", None)) == (
        accessor.__module__,
        accessor.__qualname__,
    )
    with warnings.catch_warnings():
        if same:  # this module was reloaded: replace our own accessor without a warning
            warnings.simplefilter("ignore", UserWarning)
        register("remind")(accessor)


def install_when_imported() -> None:
    """Add the accessors as soon as pandas is imported (at once if it already is).

    Never raises and never imports pandas: if adding them fails (pandas too old, say), the
    reason is logged and ``import pandas`` works as usual.
    """
    if "pandas" in sys.modules:
        try:
            install()
        except Exception as exc:
            log.warning("nbremind: the pandas accessors were not added: %s", exc)
        return
    with _lock:
        if _hook is None or _hook not in sys.meta_path:
            _set_hook(_ImportHook("pandas", _installed_by_hook))


def _installed_by_hook(module: object) -> None:
    try:
        install()
    except Exception as exc:
        log.warning(
            "nbremind: the pandas accessors were not added: %s",
            exc,
            exc_info=not isinstance(exc, ImportError),
        )


class _ImportHook:
    """A ``sys.meta_path`` finder that runs ``callback(module)`` once the top-level module
    ``name`` has been executed, then removes itself.

    It finds the module with the finders after it and wraps the loader's ``exec_module``
    for that one call, so the module, its spec and its loader stay what they would be.
    Anything that goes wrong here is logged and the import goes on as if the hook were not
    there.
    """

    def __init__(self, name: str, callback: Callable[[object], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name or path is not None:
            return None
        try:
            spec = self._find(fullname, path, target)
            if spec is None or spec.loader is None:
                return None
            if not self._wrap(spec):
                return None
            return spec
        except Exception:
            log.warning("nbremind: could not watch the import of %s", fullname, exc_info=True)
            return None

    def _find(self, fullname: str, path: Any, target: Any) -> Any:
        for finder in list(sys.meta_path):
            if finder is self or isinstance(finder, _ImportHook):
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None

    def _wrap(self, spec: Any) -> bool:
        loader = spec.loader
        real = getattr(loader, "exec_module", None)
        if real is None:
            return False  # a legacy loader: leave the import alone
        hook = self

        def exec_module(module: Any) -> None:
            if getattr(module, "__name__", None) != hook.name:
                real(module)  # a loader shared by several modules (a zip): not ours
                return
            unwrap()
            real(module)  # an error here is the import's own: it propagates, the hook stays
            hook.remove()
            try:
                hook.callback(module)
            except Exception:
                log.warning("nbremind: after importing %s", hook.name, exc_info=True)

        def unwrap() -> None:
            if proxy is None:
                with contextlib.suppress(AttributeError):
                    del loader.exec_module
            else:
                spec.loader = loader

        proxy: _LoaderProxy | None = None
        try:
            loader.exec_module = exec_module  # shadows the method on this loader only
        except (AttributeError, TypeError):
            proxy = _LoaderProxy(loader, exec_module)
            spec.loader = proxy
        return True

    def remove(self) -> None:
        with _lock:
            while self in sys.meta_path:
                try:
                    sys.meta_path.remove(self)
                except ValueError:
                    break


class _LoaderProxy:
    """Stands in for a loader whose ``exec_module`` cannot be replaced on the instance."""

    def __init__(self, loader: Any, exec_module: Callable[[Any], None]) -> None:
        self._loader = loader
        self._exec_module = exec_module

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        loader = self._loader
        try:
            self._exec_module(module)
        finally:
            # the module keeps the real loader, as it would without the hook
            module.__loader__ = loader
            spec = getattr(module, "__spec__", None)
            if spec is not None and spec.loader is self:
                spec.loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


_hook: _ImportHook | None = None


def _set_hook(hook: _ImportHook) -> None:
    global _hook
    _remove_hook()
    _hook = hook
    sys.meta_path.insert(0, hook)


def _remove_hook() -> None:
    global _hook
    with _lock:
        if _hook is not None:
            _hook.remove()
            _hook = None


install_when_imported()
