"""track() of Ray object refs and the Ray Tune callback, on a real local Ray instance (two
CPUs, started once for the module): progress as refs complete, the end at the first error,
cancellation or lost worker, iteration in completion order, refs done before the call, a
remind() block in a script, and a two-trial Tune experiment whose one trial raises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _deadline import eventually, within
from _require import missing
from nbremind import TaskState, remind, track
from nbremind.testing import capture_notices

try:
    import ray
except ImportError:  # the extra is not installed: every test here says so
    ray = None

pytestmark = pytest.mark.timeout(180)

BAD = 7  # the index whose task raises ValueError("bad 7")


def work(i: int) -> int:
    """A small task; the one at ``BAD`` raises."""
    if i == BAD:
        raise ValueError(f"bad {i}")
    return i * 2


def held(i: int, gate: str) -> int:
    """A task that ends once the test created the file ``gate`` (it says it runs first)."""
    with open(f"{gate}.running-{i}", "w"):
        pass
    while not os.path.exists(gate):
        time.sleep(0.02)
    return i


def big(size: int) -> bytes:
    """A result of ``size`` bytes (in the object store: ``ray.get`` copies it)."""
    return b"x" * size


def big_error(size: int) -> None:
    """An error over 100 KB: stored in the object store, not in the driver's memory."""
    raise ValueError("y" * size)


def handed(i: int) -> list[Any]:
    """Refs owned by this task's worker, not by the driver."""
    return [ray.remote(max_retries=0)(work).remote(i)]


def crash() -> None:
    """The worker process dies under its task."""
    os._exit(1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if ray is None:
        missing("ray is not installed (pip install 'nbremind[ray]')")
    from ray import cloudpickle

    # the workers cannot import this test module: its functions travel by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    temp = tmp_path_factory.mktemp("ray")
    context = ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(temp),
        log_to_driver=False,
        configure_logging=False,
    )
    remote = {
        name: ray.remote(max_retries=0)(fn)
        for name, fn in (
            ("work", work),
            ("held", held),
            ("big", big),
            ("big_error", big_error),
            ("handed", handed),
        )
    }
    remote["crash"] = ray.remote(max_retries=0)(crash)
    try:
        yield {"address": context.address_info["gcs_address"], **remote}
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """The file that ends the ``held`` tasks: made at the test's end whatever happened, so
    a failed test's held tasks do not keep the cluster's two CPUs from the next tests."""
    path = tmp_path / "gate"
    try:
        yield path
    finally:
        path.touch()


#: Seconds a ``ray.get`` of the tests waits at most (a starved cluster fails, not hangs).
GET_TIMEOUT = 60


def test_refs_of_which_one_fails_end_failed_with_the_users_error(cluster: Any) -> None:
    with capture_notices(tick=True) as cap:
        refs = [cluster["work"].remote(i) for i in range(20)]
        followed = track(refs)
        task = followed.task
        assert len(followed) == 20
        assert (task.kind, task.name, task.total, task.parent) == ("ray", "ray: 20 refs", 20, None)
        eventually(lambda: task.done, 60, "the ray task's end")
        notices = cap.notices
    assert task.state is TaskState.FAILED
    assert task.error is not None
    assert (task.error.type, task.error.message) == ("ValueError", "bad 7")  # not Ray's wrapper
    assert [n.event for n in notices] == ["failure"]
    (notice,) = notices
    assert notice.title == "✗ ray: 20 refs failed" and notice.urgency == "critical"
    lines = notice.body.splitlines()
    assert lines[0] == "ValueError: bad 7"
    assert re.fullmatch(r"After \d+\.\d s", lines[1]), lines
    pattern = r"ref ([0-9a-f]{16})… \((\S*work)\) erred: (\d+) of 20 done"
    notes = [m for m in (re.fullmatch(pattern, line) for line in lines) if m]
    assert len(notes) == 1, lines
    note = notes[0]
    assert refs[BAD].hex().startswith(note.group(1))
    assert int(note.group(3)) == task.n < 20
    assert lines[2] == f"Progress: {task.n * 5}% ({task.n}/20)"


def test_refs_that_succeed_end_succeeded(cluster: Any) -> None:
    with capture_notices(tick=True) as cap:
        refs = [cluster["work"].remote(i) for i in range(BAD)]  # (all below the bad one)
        task = track(refs, name="load").task
        eventually(lambda: task.done, 60, "the ray task's end")
        notices = cap.notices
    assert task.state is TaskState.SUCCEEDED
    assert (task.n, task.total) == (BAD, BAD)
    assert [n.title for n in notices] == ["✓ load finished"]
    assert f"Progress: 100% ({BAD}/{BAD})" in notices[0].body.splitlines()


def test_iteration_yields_refs_as_they_complete(cluster: Any, gate: Path) -> None:
    with capture_notices(tick=True) as cap:
        slow = cluster["held"].remote(0, str(gate))
        fast = [cluster["work"].remote(i) for i in (1, 2)]
        followed = track([slow, *fast])
        seen: list[Any] = []

        def iterate() -> None:
            seen.extend(followed)

        thread = threading.Thread(target=iterate, daemon=True)
        thread.start()
        eventually(lambda: len(seen) == 2, 60, "the fast refs")
        assert set(seen) == set(fast)
        assert thread.is_alive() and followed.task.n == 2  # counted before it was yielded
        gate.touch()
        thread.join(60)
        assert seen[2] is slow and len(seen) == 3
        assert followed.task.state is TaskState.SUCCEEDED  # ended before the last was yielded
        assert cap.events() == ["success"]


def test_refs_done_before_the_call_count_at_once(cluster: Any) -> None:
    with capture_notices() as cap:  # (no tick: what is ready is read at the call)
        refs = [cluster["work"].remote(i) for i in range(BAD)]
        ray.wait(refs, num_returns=len(refs), timeout=GET_TIMEOUT)
        task = track(refs).task
        assert (task.state, task.n) == (TaskState.SUCCEEDED, BAD)  # at the call itself
        assert cap.events() == ["success"]

        erred = [cluster["work"].remote(i) for i in range(BAD + 1)]
        ray.wait(erred, num_returns=len(erred), timeout=GET_TIMEOUT)
        task = track(erred).task
        assert task.state is TaskState.FAILED and task.n == BAD
        assert task.error is not None and task.error.type == "ValueError"
        assert cap.events() == ["success", "failure"]


def test_a_cancelled_ref_ends_the_task_cancelled(cluster: Any, gate: Path) -> None:
    with capture_notices(tick=True) as cap:
        refs = [cluster["held"].remote(i, str(gate)) for i in range(2)]
        task = track(refs, name="c").task
        # (a cancel while its worker is being leased can be lost: cancelled once it runs)
        eventually(lambda: Path(f"{gate}.running-1").exists(), 60, "the held task's start")
        asked: list[float] = []

        def cancelled() -> bool:
            if not task.done and (not asked or time.monotonic() - asked[-1] > 2):
                asked.append(time.monotonic())  # (best effort in Ray: asked again if lost)
                ray.cancel(refs[1])
            return task.done

        eventually(cancelled, 60, "the ray task's end")
        gate.touch()
        assert ray.get(refs[0], timeout=GET_TIMEOUT) == 0
        notices = cap.notices
    assert task.state is TaskState.CANCELLED
    assert [n.title for n in notices] == ["■ c cancelled"]
    # (a running task's cancellation names its function; a pending one's does not)
    words = rf"ref {refs[1].hex()[:16]}…(?: \(\S*held\))? was cancelled: 0 of 2 done"
    assert re.fullmatch(words, task.snapshot().notes[-1]), task.snapshot().notes


def test_a_worker_that_dies_ends_the_task_failed_with_rays_words(cluster: Any) -> None:
    with capture_notices(tick=True) as cap:
        refs = [cluster["work"].remote(1), cluster["crash"].remote()]
        task = track(refs, name="crash").task
        eventually(lambda: task.done, 60, "the ray task's end")
        assert cap.events() == ["failure"]
    assert task.state is TaskState.FAILED
    assert task.error is not None and task.error.type == "WorkerCrashedError"
    assert "worker died" in task.error.message.lower()
    assert task.snapshot().notes[-1].endswith(" failed: 1 of 2 done")


def test_a_ref_owned_by_another_process_is_read_from_its_owner(cluster: Any) -> None:
    with capture_notices(tick=True) as cap:
        (ok,) = ray.get(cluster["handed"].remote(1), timeout=GET_TIMEOUT)
        (bad,) = ray.get(cluster["handed"].remote(BAD), timeout=GET_TIMEOUT)
        from ray.experimental import get_local_object_locations

        # the driver is not its owner: it does not know where the object is
        assert get_local_object_locations([bad]).get(bad, {}).get("object_size") is None
        task = track([ok, bad], name="handed").task
        eventually(lambda: task.done, 60, "the ray task's end")
        assert cap.events() == ["failure"]
    assert task.error is not None
    assert (task.error.type, task.error.message) == ("ValueError", "bad 7")


def test_in_a_block_the_block_tells_the_end(cluster: Any) -> None:
    with capture_notices(tick=True) as cap:
        with remind("etl") as block:
            followed = track([cluster["work"].remote(i) for i in range(BAD)])
            assert followed.task.parent is block
            total = sum(ray.get(ref, timeout=GET_TIMEOUT) for ref in followed)
            assert followed.task.state is TaskState.SUCCEEDED  # the loop's end is its end
        notices = cap.notices
    assert total == sum(2 * i for i in range(BAD))
    assert [n.title for n in notices] == ["✓ etl finished"]


def test_errors_are_read_without_moving_large_results(cluster: Any) -> None:
    """What the reading of one ready ref costs (printed with ``-s``): a 100 MB result, a
    100 MB ``ray.get`` for comparison, and 2,000 small results."""
    from nbremind.integrations.ray import read_errors

    size = 100_000_000
    large, large_error = cluster["big"].remote(size), cluster["big_error"].remote(300_000)
    small = [cluster["work"].remote(i) for i in range(2000)]
    ray.wait(
        [large, large_error, *small],
        num_returns=len(small) + 2,
        fetch_local=False,
        timeout=GET_TIMEOUT,
    )
    start = time.perf_counter()
    outcomes = read_errors([large])
    read_large = time.perf_counter() - start
    assert outcomes == [None]
    start = time.perf_counter()
    assert len(ray.get(large, timeout=GET_TIMEOUT)) == size
    get_large = time.perf_counter() - start
    (error,) = read_errors([large_error])  # (over 100 KB: in the object store too)
    assert error is not None and type(error[0]) is ValueError and error[1].endswith("big_error")
    start = time.perf_counter()
    outcomes = read_errors(small)
    per_ref = (time.perf_counter() - start) / len(small)
    assert [i for i, outcome in enumerate(outcomes) if outcome is not None] == [BAD]
    print(
        f"\nread 100 MB result: {read_large * 1e3:.2f} ms (ray.get: {get_large * 1e3:.1f} ms); "
        f"2000 small results: {per_ref * 1e6:.1f} µs per ref"
    )
    assert read_large < get_large  # the data was neither copied nor deserialized


def test_a_generator_of_refs_is_a_plain_loop(cluster: Any) -> None:
    @ray.remote(num_returns="streaming")
    def numbers() -> Iterator[int]:
        for i in range(3):  # noqa: UP028 (Ray sends into it: a range's iterator cannot)
            yield i

    with capture_notices() as cap:
        followed = track(numbers.remote())
        assert [ray.get(ref, timeout=GET_TIMEOUT) for ref in followed] == [0, 1, 2]
        assert followed.task is not None and followed.task.kind == "loop"
        assert cap.titles() == ["✓ ObjectRefGenerator finished"]


def train(config: dict[str, int]) -> None:
    """A Tune trainable: trial ``x=2`` raises."""
    from ray import tune

    if config["x"] == 2:
        raise ValueError("bad x")
    tune.report({"loss": 0.12 * config["x"]})


def test_a_tune_run_tells_a_trial_error_at_once_and_the_best_trial_at_its_end(
    cluster: Any, tmp_path: Path
) -> None:
    from ray import tune

    from nbremind.integrations.ray import RemindCallback

    seen_at_end: list[list[str]] = []

    class Probe(tune.Callback):  # runs before ours: what was told before the end
        def __init__(self, events: Any) -> None:
            self.events = events

        def __getstate__(self) -> dict[str, Any]:  # (the Tuner pickles its run config)
            return {}

        def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
            seen_at_end.append(self.events())

    with capture_notices(tick=True) as cap:
        callback = RemindCallback(metric="loss", mode="min")
        tuner = tune.Tuner(
            train,
            param_space={"x": tune.grid_search([1, 2])},
            run_config=tune.RunConfig(
                name="sweep",
                storage_path=str(tmp_path / "tune"),
                callbacks=[Probe(lambda: cap.events()), callback],
                verbose=0,
            ),
        )
        results = within(120, tuner.fit)
        notices = cap.notices
    assert len(results.errors) == 1
    ok = next(r for r in results if r.error is None)
    best_id = ok.metrics["trial_id"]
    bad_id = next(r for r in results if r.error is not None).metrics.get("trial_id")
    task = callback.task
    assert (task.kind, task.name, task.total, task.n) == ("tune", "tune: sweep", 2, 2)
    assert task.state is TaskState.SUCCEEDED
    assert seen_at_end == [["failure"]]  # the trial's error came while the experiment ran
    assert [n.event for n in notices] == ["failure", "success"]
    failure, end = notices
    assert re.fullmatch(r"✗ tune: sweep: trial (\S+) failed: ValueError: bad x", failure.title)
    assert bad_id is None or bad_id in failure.title
    assert failure.urgency == "critical"
    assert "config: x=2" in failure.body.splitlines()
    assert end.title == "✓ tune: sweep finished"
    assert f"2 trials, 1 erred; best trial {best_id}: loss=0.12" in end.body.splitlines()


def test_a_script_block_has_its_task_and_notice_at_exit(cluster: Any, tmp_path: Path) -> None:
    script = tmp_path / "etl.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import atexit, json
            import ray
            from nbremind import Session, remind, track
            from nbremind.channels.memory import MemoryChannel
            from nbremind.core.config import Config
            from nbremind.runtime.session import set_session

            channel = MemoryChannel()
            tasks = []

            def report():  # runs after the session was closed and its notices delivered
                print(json.dumps({{
                    "notices": [[n.title, n.body.splitlines()[-1]] for n in channel.notices],
                    "tasks": [[t.kind, t.state, t.n, t.total] for t in tasks],
                }}))

            atexit.register(report)
            set_session(Session(Config(channels=("memory",)), channels={{"memory": channel}}))
            ray.init(address={cluster["address"]!r}, log_to_driver=False)

            @ray.remote
            def double(i):
                return 2 * i

            refs = [double.remote(i) for i in range(30)]
            with remind("etl"):
                followed = track(refs)
                tasks.append(followed.task)
                total = sum(ray.get(r) for r in followed)
            print("total", total)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert f"total {sum(2 * i for i in range(30))}" in lines
    report = json.loads(lines[-1])
    assert report["tasks"] == [["ray", "succeeded", 30, 30]]
    assert [title for title, _ in report["notices"]] == ["✓ etl finished"]


def test_a_tune_run_whose_every_trial_erred_ends_failed(cluster: Any, tmp_path: Path) -> None:
    from ray import tune

    from nbremind.integrations.ray import RemindCallback

    with capture_notices(tick=True) as cap:
        callback = RemindCallback("all bad")
        tuner = tune.Tuner(
            train,
            param_space={"x": tune.grid_search([2])},
            run_config=tune.RunConfig(
                storage_path=str(tmp_path / "tune"), callbacks=[callback], verbose=0
            ),
        )
        within(120, tuner.fit)
        notices = cap.notices
    assert callback.task.state is TaskState.FAILED
    assert [n.event for n in notices] == ["failure", "failure"]
    assert notices[0].title.startswith("✗ all bad: trial ")
    assert notices[1].title == "✗ all bad failed"
    lines = notices[1].body.splitlines()
    assert lines[0] == "every trial erred; the last: ValueError: bad x"
    assert "1 trial, 1 erred" in lines
