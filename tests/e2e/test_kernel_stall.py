"""``%%remind --stall`` in a real kernel: the cell's own ``track()`` loop or tqdm bar feeds
the progress it watches (the user's path: nothing but the magic and the loop)."""

from __future__ import annotations

import pytest

from _kernel import Kernel

pytestmark = pytest.mark.kernel


def stall_titles(notices: list[dict[str, object]]) -> list[str]:
    return [str(n["title"]) for n in notices if n["event"] == "stall"]


def test_a_cells_track_loop_stalls_and_moves_again(remind_kernel: Kernel) -> None:
    k = remind_kernel
    k.ok("nbremind.configure(tick_interval='50ms')", silent=True, store_history=False)
    try:
        r = k.ok(
            "%%remind train --stall 0.5s\n"
            "import time\n"
            "from nbremind import track\n"
            "for step in track(range(4), name='steps'):\n"
            "    time.sleep(1.5 if step == 2 else 0.05)\n"
            "'trained'"
        )
    finally:
        k.ok("nbremind.configure(tick_interval='250ms')", silent=True, store_history=False)
    assert r.result == "'trained'"
    notices = k.wait_for_notices(lambda ns: any(n["event"] == "success" for n in ns))
    titles = stall_titles(notices)
    assert len(titles) == 2, titles
    assert titles[0].startswith("⏸ train stalled: no progress for ")
    assert titles[0].endswith("(at 75%, 3/4)")
    assert titles[1].startswith("▶ train moving again after ")
    assert [n["event"] for n in notices][-1] == "success"


def test_a_cells_tqdm_bar_stalls(remind_kernel: Kernel) -> None:
    pytest.importorskip("tqdm")  # (the test extra brings it)
    k = remind_kernel
    k.ok("nbremind.configure(tick_interval='50ms')", silent=True, store_history=False)
    try:
        k.ok(
            "%%remind download --stall 0.5s\n"
            "import io, time\n"
            "from tqdm import tqdm\n"
            "with tqdm(total=10, file=io.StringIO()) as bar:\n"
            "    bar.update(4)\n"
            "    time.sleep(1.5)\n"
            "    bar.update(6)\n"
        )
    finally:
        k.ok("nbremind.configure(tick_interval='250ms')", silent=True, store_history=False)
    notices = k.wait_for_notices(lambda ns: any(n["event"] == "success" for n in ns))
    titles = stall_titles(notices)
    assert titles and titles[0].startswith("⏸ download stalled: no progress for ")
    assert titles[0].endswith("(at 40%, 4/10)")


def test_a_bad_stall_is_a_usage_error_and_the_cell_does_not_run(remind_kernel: Kernel) -> None:
    k = remind_kernel
    r = k.run("%%remind train --stall soon\nran = True")
    assert r.status == "error"
    assert r.ename == "UsageError"
    assert "%%remind --stall: 'soon' is not a duration" in r.evalue
    assert k.ok("'ran' in dir()").result == "False"
