"""The frozen value classes ``import nbremind`` defines without dataclasses behave as values."""

from __future__ import annotations

import copy
import pickle

import pytest

from nbremind import Config, Task
from nbremind.core.options import OPTIONS, TaskOptions
from nbremind.core.task import TaskError, TaskSnapshot, TaskState
from nbremind.testing import FakeClock


def _snapshot() -> TaskSnapshot:
    task = Task("etl", clock=FakeClock(), total=4)
    task.mark_started()
    task.advance(3)
    task.metric(loss=0.5)
    return task.snapshot()


def test_fields_are_the_annotations_in_order() -> None:
    assert TaskError.FIELDS == ("type", "message")
    assert TaskOptions.FIELDS[:3] == ("after", "every", "progress")
    assert Config.FIELDS[0] == "channels" and "history_min" in Config.FIELDS
    assert "FIELDS" not in Config.FIELDS  # a ClassVar is not a field
    assert OPTIONS[0].FIELDS[:2] == ("name", "flag")


def test_equal_by_value_and_type_hashable_when_the_values_are() -> None:
    assert TaskError("KeyError", "'x'") == TaskError("KeyError", "'x'")
    assert TaskError("KeyError", "'x'") != TaskError("KeyError", "'y'")
    assert TaskError("KeyError", "'x'") != ("KeyError", "'x'")
    assert len({TaskError("A", ""), TaskError("A", ""), TaskError("B", "")}) == 2
    assert TaskOptions(after=5.0) == TaskOptions(after=5.0) != TaskOptions(after=6.0)
    assert hash(TaskOptions(after=5.0)) == hash(TaskOptions(after=5.0))


def test_a_cached_answer_is_not_a_field() -> None:
    options = TaskOptions(after=5.0)
    assert "after" in options.events()  # cached on the instance
    assert options == TaskOptions(after=5.0)
    assert options.as_dict() == TaskOptions(after=5.0).as_dict()


def test_assigning_or_deleting_a_field_raises() -> None:
    snap = _snapshot()
    with pytest.raises(AttributeError, match=r"cannot assign to 'n': a TaskSnapshot is frozen"):
        snap.n = 9  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot delete 'name'"):
        del snap.name  # type: ignore[misc]
    assert snap.n == 3


def test_replace_makes_a_checked_copy() -> None:
    config = Config()
    changed = config.replace(muted=True)
    assert (changed.muted, config.muted) == (True, False)
    assert changed.replace(muted=False) == config
    with pytest.raises(TypeError, match="Config has no field 'mutted'"):
        config.replace(mutted=True)


def test_repr_names_every_field() -> None:
    assert repr(TaskError("KeyError", "'x'")) == "TaskError(type='KeyError', message=\"'x'\")"
    shown = repr(_snapshot())
    assert shown.startswith("TaskSnapshot(id=") and "n=3" in shown and "metrics=" in shown


def test_pickle_and_copy_keep_every_field() -> None:
    snap = _snapshot()
    for again in (pickle.loads(pickle.dumps(snap)), copy.copy(snap), copy.deepcopy(snap)):
        assert again == snap and again is not snap
        assert again.state is TaskState.RUNNING and again.metrics == {"loss": 0.5}
        with pytest.raises(AttributeError, match="frozen"):
            again.n = 1  # type: ignore[misc]
    options = TaskOptions(after=5.0, on=("success",))
    assert pickle.loads(pickle.dumps(options)) == options
