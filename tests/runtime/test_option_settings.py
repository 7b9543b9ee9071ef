"""The settings ``stall``, ``slower``, ``mem_limit`` and ``gpu_mem`` default the task options
of the same names for tasks started in no other task."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from _captured import run_for
from nbremind import configure, remind, track
from nbremind.core.config import Config, format_setting
from nbremind.core.parse import Percent
from nbremind.testing import CapturedNotices, FakeClock


def test_the_settings_parse_as_the_options_do_and_read_back() -> None:
    config = Config().updated("configure()", stall="10m", slower=True, mem_limit="90%")
    assert (config.stall, config.slower, config.mem_limit) == (600.0, 1.5, Percent(0.9))
    assert config.updated("x", gpu_mem="4GB").gpu_mem == 4_000_000_000
    config = config.updated("x", gpu_mem="33.3333333%")  # a share six digits do not tell
    for key in ("stall", "slower", "mem_limit", "gpu_mem"):
        value = getattr(config, key)
        text = format_setting(key, value)
        assert getattr(Config().updated("x", **{key: text}), key) == value, (key, text)
    assert Config().updated("x", stall="off").stall is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("stall", "soon", "configure(): stall: 'soon' is not a duration"),
        ("slower", 0.5, "configure(): slower: 0.5 is not a factor above 1"),
        ("mem_limit", "150%", "configure(): mem_limit: '150%' is not a percent above 0%"),
        ("gpu_mem", "lots", "configure(): gpu_mem: 'lots' is not a size such as 30GB"),
    ],
)
def test_a_bad_setting_names_the_key_and_the_value(key: str, value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Config().updated("configure()", **{key: value})
    assert str(info.value).startswith(message)


def test_a_stall_setting_watches_top_level_tasks_that_have_progress(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    configure(stall="2m")
    with remind("counted", total=3) as task:
        task.advance()
        run_for(cap, clock, 180)
    with remind("uncounted"):  # nothing to watch: no note either (the task did not ask)
        run_for(cap, clock, 180)
    for _ in track(range(2), name="loop"):
        run_for(cap, clock, 180)
    titles = [n.title for n in cap.notices]
    assert "⏸ counted stalled: no progress for 2 min (at 33.3%, 1/3)" in titles
    assert "⏸ loop stalled: no progress for 2 min (at 50%, 1/2)" in titles
    assert not any(t.startswith("⏸ uncounted") for t in titles)
    assert not any("never applied" in n.body for n in cap.notices)


def test_a_tasks_own_option_wins_over_the_setting(cap: CapturedNotices, clock: FakeClock) -> None:
    configure(stall="1m")
    with remind("own", total=3, stall="5m") as task:
        assert task.options.stall == 300.0
        assert task.defaulted == frozenset()
        with remind("nested", total=3) as inner:  # nested: the setting is not its own
            assert inner.options.stall is None


def test_a_mem_limit_setting_stops_a_block_of_a_script(tmp_path: object) -> None:
    """The user's path: a script that sets ``mem_limit`` once; its block that allocates
    past it is stopped with TaskMemoryLimit, the script catches it and goes on."""
    script = textwrap.dedent(
        """
        import psutil, nbremind
        nbremind.configure(channels=[], mem_limit=psutil.Process().memory_info().rss + 200_000_000)
        kept = []
        try:
            with nbremind.remind("grow"):
                while True:
                    kept.append(b"\\1" * 10_000_000)
        except nbremind.TaskMemoryLimit as exc:
            del kept[:]
            print("stopped:", exc)
        task = nbremind.get_session().tasks()[-1]
        print(task.state.value, task.error.type)
        """
    )
    env = {**os.environ, "NBREMIND_DATA_DIR": str(tmp_path), "NBREMIND_HISTORY_KEEP": "off"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("stopped: stopped at ") and lines[0].endswith(": memory limit")
    assert lines[1] == "failed TaskMemoryLimit"
