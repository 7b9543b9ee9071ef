"""``%load_ext nbremind`` in a real ipykernel, driven through jupyter_client as a notebook is.

Most tests share one kernel (``remind_kernel`` resets nbremind in it and sends notices to
the in-memory channel); tests whose set-up must not leak (nest_asyncio, no session bus)
start their own.
"""

from __future__ import annotations

import time

import pytest

from _config_lines import setting
from _kernel import NOTEBOOK, Kernel, KernelFactory
from _require import missing

pytestmark = pytest.mark.kernel


def new_tasks(k: Kernel, before: int) -> list[dict[str, object]]:
    return k.tasks()[before:]


# -- a %%remind cell is a plain cell, plus a notice ------------------------------------------


def test_remind_cell_displays_its_value_keeps_names_and_notifies(remind_kernel: Kernel) -> None:
    k = remind_kernel
    r = k.ok("%%remind etl\nrows = [3, 4, 5]\ntotal = sum(rows)\ntotal * 2")

    assert r.results == ["24"]
    assert k.ok("rows, total").result == "([3, 4, 5], 12)"
    [notice] = k.notices()
    assert notice["title"] == "✓ etl finished"
    assert notice["event"] == "success"
    assert notice["state"] == "succeeded"
    assert notice["kind"] == "cell"
    assert NOTEBOOK in notice["body"].splitlines()[-1]


def test_top_level_await_works_in_a_remind_cell(remind_kernel: Kernel) -> None:
    k = remind_kernel
    r = k.ok(
        "%%remind fetch\n"
        "import asyncio\n"
        "await asyncio.sleep(0.01)\n"
        "fetched = await asyncio.sleep(0, result='payload')\n"
        "fetched"
    )

    assert r.result == "'payload'"
    assert k.titles() == ["✓ fetch finished"]


def test_another_cell_magic_may_follow_on_the_next_line(remind_kernel: Kernel) -> None:
    k = remind_kernel
    timed = k.ok("%%remind timed\n%%time\nsquares = sum(i * i for i in range(10))")
    captured = k.ok("%%remind captured\n%%capture cap\nprint('hidden from the output')")

    assert "Wall time" in timed.stdout
    assert "hidden" not in captured.output
    assert k.ok("squares, cap.stdout").result == "(285, 'hidden from the output\\n')"
    assert k.titles() == ["✓ timed finished", "✓ captured finished"]


def test_default_name_is_the_first_meaningful_line(remind_kernel: Kernel) -> None:
    k = remind_kernel
    k.ok("%%remind\n# load the data\nimport os\n\nframe = list(range(3))\nlen(frame)")
    k.ok("%%remind\nresult_of_a_really_long_computation_name = sum(range(1000))")

    assert k.titles() == [
        "✓ frame = list(range(3)) finished",
        "✓ result_of_a_really_long_computation_nam… finished",
    ]


def test_blocks_inside_a_remind_cell_are_its_children(remind_kernel: Kernel) -> None:
    k = remind_kernel
    before = len(k.tasks())
    k.ok("%%remind outer\nimport nbremind\nwith nbremind.remind('inner'):\n    pass")

    assert [(t["name"], t["parent"]) for t in new_tasks(k, before)] == [
        ("outer", None),
        ("inner", "outer"),
    ]
    assert k.titles() == ["✓ inner finished", "✓ outer finished"]


# -- failures: the user's error, unchanged, and Run All stops --------------------------------

FAILING_BODY = "rows = [1, 2]\nraise ValueError(f'bad row {len(rows)}')"


def test_failure_keeps_the_error_and_its_line_and_notifies(remind_kernel: Kernel) -> None:
    k = remind_kernel
    plain = k.run(f"# plain\n{FAILING_BODY}")
    r = k.run(f"%%remind etl\n{FAILING_BODY}")

    assert (plain.status, plain.ename, plain.evalue) == ("error", "ValueError", "bad row 2")
    assert (r.status, r.ename, r.evalue) == (plain.status, plain.ename, plain.evalue)
    # the traceback points at the raising line of the cell as the user typed it
    assert f"Cell In[{r.execution_count}], line 3" in r.traceback_text
    assert "----> 3 raise ValueError(f'bad row {len(rows)}')" in r.traceback_text
    assert "nbremind" not in r.traceback_text
    [notice] = k.notices()
    assert notice["title"] == "✗ etl failed"
    assert notice["body"].splitlines()[0] == "ValueError: bad row 2"
    assert notice["urgency"] == "critical"
    assert notice["state"] == "failed"


def test_run_all_stops_at_a_failing_remind_cell(remind_kernel: Kernel) -> None:
    k = remind_kernel
    go = k.workdir / "go"
    go.unlink(missing_ok=True)
    # The first cell holds the kernel until all three requests are on their way, as when
    # a notebook sends every cell at once.
    first = k.execute(
        "import pathlib, time\n"
        "deadline = time.monotonic() + 20\n"
        "while not pathlib.Path('go').exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.005)\n"
        "first_ran = True"
    )
    second = k.execute("%%remind step two\nraise RuntimeError('disk full')")
    third = k.execute("third_ran = True")
    go.touch()

    assert k.result(first).status == "ok"
    failed = k.result(second)
    assert (failed.status, failed.ename, failed.evalue) == ("error", "RuntimeError", "disk full")
    assert k.result(third).status == "aborted"
    assert k.ok("'first_ran' in dir(), 'third_ran' in dir()").result == "(True, False)"
    assert k.titles() == ["✗ step two failed"]


def test_bad_option_names_it_and_the_body_does_not_run(remind_kernel: Kernel) -> None:
    k = remind_kernel
    before = len(k.tasks())
    r = k.run("%%remind --after banana\nbody_ran = True")

    assert r.status == "error"
    assert r.ename == "UsageError"
    assert "--after" in r.evalue and "'banana'" in r.evalue
    assert k.ok("'body_ran' in dir()").result == "False"
    assert new_tasks(k, before) == []
    assert k.notices() == []


# -- stopping a cell ---------------------------------------------------------------------------


def test_kernel_interrupt_cancels_the_task(remind_kernel: Kernel) -> None:
    k = remind_kernel
    msg_id = k.execute(
        "%%remind sleepy\nimport time\nprint('sleeping', flush=True)\ntime.sleep(60)"
    )
    k.wait_for_output(msg_id, "sleeping")
    k.interrupt()
    r = k.result(msg_id, timeout=20)

    assert (r.status, r.ename) == ("error", "KeyboardInterrupt")
    [notice] = k.notices()
    assert notice["title"].startswith("■")
    assert notice["title"] == "■ sleepy cancelled"
    assert [t["state"] for t in k.tasks() if t["name"] == "sleepy"] == ["cancelled"]


def test_timeout_with_interrupt_stops_the_cell(remind_kernel: Kernel) -> None:
    k = remind_kernel
    started = time.monotonic()
    r = k.run("%%remind slow --timeout 1 --interrupt\nimport time\ntime.sleep(60)", timeout=20)
    took = time.monotonic() - started

    assert r.status == "error"
    assert 1 <= took < 10, f"interrupted after {took:.1f} s"
    [notice] = k.notices()
    assert notice["title"].startswith("⏱ slow timed out")
    assert notice["state"] == "timed_out"
    assert [t["state"] for t in k.tasks() if t["name"] == "slow"] == ["timed_out"]


def test_timeout_with_interrupt_stops_an_awaiting_cell(remind_kernel: Kernel) -> None:
    k = remind_kernel
    started = time.monotonic()
    r = k.run(
        "%%remind waiting --timeout 1 --interrupt\nimport asyncio\nawait asyncio.sleep(4)",
        timeout=20,
    )
    took = time.monotonic() - started

    assert r.status == "error"
    [notice] = k.notices()
    assert (notice["state"], notice["title"][:19]) == ("timed_out", "⏱ waiting timed out")
    assert took < 3.5, f"interrupted after {took:.1f} s"


# -- %remind auto ------------------------------------------------------------------------------


def test_auto_mode_notifies_long_cells_only_until_turned_off(remind_kernel: Kernel) -> None:
    k = remind_kernel
    on = k.ok("%remind auto 1s")
    k.ok("import time\ntime.sleep(1.05)")
    k.ok("quick = 1")
    auto = k.notices()
    off = k.ok("%remind auto off")
    k.ok("time.sleep(1.05)")

    assert "longer than 1s" in on.stdout
    assert [(n["title"], n["kind"]) for n in auto] == [("✓ time.sleep(1.05) finished", "auto")]
    assert "auto mode off" in off.stdout
    assert k.titles() == ["✓ time.sleep(1.05) finished"]


# -- loading and unloading ---------------------------------------------------------------------


def test_loading_twice_or_reloading_adds_no_second_hook(remind_kernel: Kernel) -> None:
    k = remind_kernel
    before = len(k.tasks())
    k.ok("%load_ext nbremind")
    k.ok("%load_ext nbremind")
    k.ok("%%remind once\npass")
    assert k.titles() == ["✓ once finished"]

    k.ok("%reload_ext nbremind")
    k.ok("%%remind again\npass")
    assert k.titles() == ["✓ once finished", "✓ again finished"]
    assert [t["name"] for t in new_tasks(k, before)] == ["once", "again"]


def test_unload_stops_tracking_and_plain_cells_still_work(remind_kernel: Kernel) -> None:
    k = remind_kernel
    k.ok("%unload_ext nbremind")
    before = len(k.tasks())
    gone = k.run("%%remind gone\nnot_tracked = True")
    plain = k.run("21 * 2")
    line = k.run("%remind status")

    assert gone.status == "error" and "remind" in gone.evalue
    assert plain.status == "ok" and plain.result == "42"
    assert line.status == "error"
    assert new_tasks(k, before) == []
    assert k.notices() == []

    k.ok("%load_ext nbremind")
    k.ok("%%remind back\npass")
    assert k.titles() == ["✓ back finished"]


# -- %remind commands --------------------------------------------------------------------------


def test_status_test_mute_unmute_and_config(remind_kernel: Kernel) -> None:
    k = remind_kernel
    status = k.ok("%remind status").stdout.splitlines()
    assert status[:5] + status[-1:] == [
        "nbremind status",
        "  channel memory: available",
        "  auto mode: off",
        "  batch mode: off",
        "  muted: no",
        "  running tasks: 0",
    ]
    # what this machine's limits are (the memory guard's, the GPUs') depends on it
    memory, gpu = status[5:-1]
    assert memory.startswith("  memory limit: ")
    assert memory.endswith(" — mem_limit percents are of it")
    assert gpu.startswith("  GPU: ")

    assert k.ok("%remind test").stdout.splitlines() == ["memory: delivered"]
    assert k.titles() == ["nbremind test notice"]
    k.clear_notices()

    assert "muted" in k.ok("%remind mute").stdout
    assert "  muted: yes" in k.ok("%remind status").stdout.splitlines()
    k.ok("%%remind hushed\npass")
    assert k.notices() == []
    assert [t["state"] for t in k.tasks() if t["name"] == "hushed"] == ["succeeded"]

    assert "notifications on" in k.ok("%remind unmute").stdout
    k.ok("%%remind loud\npass")
    assert k.titles() == ["✓ loud finished"]

    config = k.ok("%remind config").stdout.splitlines()
    assert setting(config, "channels") == ("memory", "configure()")
    assert setting(config, "muted") == ("False", "%remind unmute")
    assert setting(config, "tick_interval") == ("250ms", "default")


@pytest.mark.parametrize("line", ["%remind nonsense", "%remind"])
def test_unknown_or_missing_command_lists_the_commands(remind_kernel: Kernel, line: str) -> None:
    r = remind_kernel.run(line)

    assert (r.status, r.ename) == ("error", "UsageError")
    if line != "%remind":
        assert "'nonsense'" in r.evalue
    for command in ("auto", "status", "test", "mute", "unmute", "config"):
        assert command in r.evalue


# -- kernels set up differently ----------------------------------------------------------------


def test_nest_asyncio_applied_first_does_not_stop_notices(kernel_factory: KernelFactory) -> None:
    try:
        import nest_asyncio  # noqa: F401  (the kernel imports it; this only checks it is there)
    except ImportError:
        missing("the nest_asyncio test needs nest-asyncio (pip install -e .[test])")
    k = kernel_factory()
    k.ok("import asyncio, nest_asyncio\nnest_asyncio.apply()")
    assert k.ok("asyncio.get_event_loop()._nest_patched").result == "True"
    k.use_memory_channel()
    k.ok("%load_ext nbremind")

    k.ok("%%remind sync\nx = 1")
    assert k.ok("%%remind awaiting\nawait asyncio.sleep(0.01)\n'done'").result == "'done'"
    k.ok("import nbremind\nwith nbremind.remind('block'):\n    y = 2")
    k.ok("async with nbremind.remind('async block'):\n    await asyncio.sleep(0)")
    k.ok("asyncio.run(asyncio.sleep(0))")  # nest_asyncio's re-entrant run still works

    assert k.titles() == [
        "✓ sync finished",
        "✓ awaiting finished",
        "✓ block finished",
        "✓ async block finished",
    ]


def test_without_a_session_bus_desktop_is_unavailable_and_cells_stay_quiet(
    kernel_factory: KernelFactory,
) -> None:
    k = kernel_factory()  # the kernel's environment has no DBUS_SESSION_BUS_ADDRESS
    assert k.ok("import os\n'DBUS_SESSION_BUS_ADDRESS' in os.environ").result == "False"

    loaded = k.ok("%load_ext nbremind")
    status = k.ok("%remind status")
    tried = k.ok("%remind test")
    cell = k.ok("%%remind etl\nvalue = 3\nvalue")
    delivered = k.query(
        "import nbremind\ns = nbremind.get_session()\ns.flush()\n"
        "result = [(d.channel, d.ok, d.error) for d in s.dispatcher.deliveries\n"
        "          if d.title == '✓ etl finished']"
    )
    after = k.ok("'next cell'")

    assert "  channel desktop: unavailable: no D-Bus session bus" in status.stdout
    assert "DBUS_SESSION_BUS_ADDRESS" in status.stdout
    assert tried.stdout.startswith("desktop: unavailable: no D-Bus session bus")
    assert cell.result == "3"
    assert [(c, ok) for c, ok, _ in delivered] == [("desktop", False)]
    assert delivered[0][2].startswith("unavailable: ")
    for r in (loaded, status, tried, after):
        assert r.stderr == "" and r.displays == [], r.describe()
    # the cell shows its live status line, and nothing about the missing desktop
    assert cell.stderr == "" and [d[:6] for d in cell.displays] == ["▶ etl "], cell.describe()
    assert after.stdout == ""
