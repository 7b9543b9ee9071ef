"""Title and body templates: named fields only, checked when loaded, unable to run code."""

from __future__ import annotations

import types
from typing import Any

import pytest

from nbremind import Config, remind
from nbremind.core.notice import Notice, make_notice
from nbremind.core.task import Task, TaskError, TaskState
from nbremind.core.templates import FIELDS, check_template, fields_of, parse_templates, render_for
from nbremind.testing import FakeClock, capture_notices


def _notice(event: str = "success", **metrics: Any) -> Notice:
    clock = FakeClock()
    task = Task("etl", clock=clock, total=200, source="train.ipynb", host="gpu1")
    task.mark_started()
    task.advance(50)
    task.metric(**metrics)
    clock.advance(125)
    if event == "failure":
        task.mark_ended(TaskState.FAILED, TaskError("MemoryError", "CUDA out of memory"))
    elif event == "success":
        task.mark_ended(TaskState.SUCCEEDED)
    return make_notice(event, task.snapshot(), created=clock.time(), key=1)


def test_every_documented_field_renders() -> None:
    notice = _notice("failure", loss=0.123456, epoch=3)
    template = " | ".join(f"{{{name}}}" for name in FIELDS if name not in ("title", "body"))
    out = render_for(notice, {"failure": {"title": template}})
    assert out.title == (
        "etl | failure | failed | 2 min 5 s | 25% |  | MemoryError: CUDA out of memory"
        " | train.ipynb | gpu1 |  | loss=0.1235, epoch=3"
    )
    assert out.body == notice.body  # only the parts given are replaced
    assert out.id == notice.id and out.task == notice.task


def test_metrics_title_body_and_format_specs() -> None:
    notice = _notice(loss=0.123456, note="warm start")
    templates = parse_templates(
        {
            "success": {
                "title": "[{host}] {title}",
                "body": "loss {metrics.loss:.3f}, {metrics.note!r}, {metrics.gone}|{name:>5}|{{x}}",
            }
        }
    )
    out = render_for(notice, templates)
    assert out.title == "[gpu1] ✓ etl finished"
    assert out.body == "loss 0.123, 'warm start', |  etl|{x}"


def test_a_metric_that_does_not_fit_its_spec_renders_as_text() -> None:
    notice = _notice(loss="n/a")
    out = render_for(notice, parse_templates({"success": {"title": "{metrics.loss:.3f}"}}))
    assert out.title == "n/a"


def test_templates_only_apply_to_their_event() -> None:
    notice = _notice("success")
    templates = parse_templates({"failure": {"title": "boom"}})
    assert render_for(notice, templates) is notice
    assert render_for(notice, None) is notice
    assert render_for(notice, {}) is notice


def test_configured_templates_reach_the_channel() -> None:
    clock = FakeClock()
    with capture_notices(clock) as cap:
        cap.session.configure(
            templates={
                "success": {"title": "{name} done in {elapsed}", "body": "{metrics.acc:.1%}"},
            }
        )
        with remind("train") as task:
            task.metric(acc=0.9123)
            clock.advance(41 * 60)
        with pytest.raises(KeyError), remind("other"):
            raise KeyError("x")
        first = cap.notices[0]
        assert (first.title, first.body) == ("train done in 41 min", "91.2%")
        assert cap.titles()[1] == "✗ other failed"  # no failure template: the default


def test_a_user_objects_format_is_never_called() -> None:
    calls: list[str] = []

    class Sneaky:
        def __format__(self, spec: str) -> str:
            calls.append(spec)
            return "formatted"

        def __str__(self) -> str:
            return "sneaky"

    notice = _notice(obj=Sneaky())
    before = list(calls)  # the default body shows metrics with format(value, "")
    out = render_for(notice, parse_templates({"success": {"title": "{metrics.obj:>8}"}}))
    assert out.title == "  sneaky"
    assert calls == before and ">8" not in calls


@pytest.mark.parametrize(
    ("template", "shown"),
    [
        ("{nmae} finished", "{nmae}"),
        ("{name.__class__}", "{name.__class__}"),
        ("{error.__init__.__globals__}", "{error.__init__.__globals__}"),
        ("{0}", "positional field {0}"),
        ("{}", "positional field {}"),
        ("{metrics[loss]}", "{metrics[loss]}"),
        ("{metrics.a.b}", "{metrics.a.b}"),
        ("{name:{body}}", "format spec '{body}'"),
        ("{name!x}", "conversion !x"),
        ("{name:99999999}", "format spec '99999999'"),
        ("{name:.2f}", "Unknown format code 'f'"),
        ("{name", "expected '}'"),
        ("}", "Single '}'"),
    ],
)
def test_bad_templates_name_the_template_and_the_problem(template: str, shown: str) -> None:
    with pytest.raises(ValueError) as info:
        Config().updated("config.toml", templates={"success": {"title": "ok", "body": template}})
    message = str(info.value)
    assert message.startswith("config.toml: templates.success.body: ")
    assert shown in message
    assert repr(template) in message


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"lunch": {"title": "x"}}, "templates.lunch: 'lunch' is not an event"),
        ({"success": {"subject": "x"}}, "templates.success.subject: 'subject' is not one of"),
        ({"success": "x"}, "templates.success: 'x' is not a table"),
        ({"success": {"title": 3}}, "templates.success.title: 3 is not a text"),
        (["x"], "templates: ['x'] is not a table"),
    ],
)
def test_bad_template_tables(value: object, where: str) -> None:
    with pytest.raises(
        ValueError, match="^configure\\(\\): " + where.replace("[", "\\[").replace("]", "\\]")
    ):
        Config().updated(templates=value)


def test_the_loaded_templates_are_frozen() -> None:
    config = Config().updated(templates={"success": {"title": "{name}"}})
    assert isinstance(config.templates, types.MappingProxyType)
    with pytest.raises(TypeError):
        config.templates["failure"] = {}  # type: ignore[index]
    assert Config().updated(templates=None).templates == {}


def test_check_template_returns_the_text() -> None:
    assert check_template("{name}: {metrics.val-loss:.2e}") == "{name}: {metrics.val-loss:.2e}"


def test_fields_of_a_running_task() -> None:
    values = fields_of(_notice("after"))
    assert values["state"] == "running" and values["error"] == ""
    assert values["progress"] == "25%"
