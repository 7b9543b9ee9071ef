"""Per-iteration cost of ``track()`` and per-call cost of ``task.advance()``, against tqdm.

All arms run in this one process and are interleaved: each round times every arm once, in
a rotating order, and the table shows the median of the rounds. One sample is one loop
over N items (``for x in ...: pass``), divided by N:

* ``bare list`` -- ``for x in data`` over a list: the physical limit;
* ``tqdm(list)`` -- ``tqdm(data, file=<null file>)`` with default settings: the peer;
* ``track(list)`` -- ``track(data)``: a list iterator has a C ``__length_hint__``, so the
  loop is a bare ``yield from`` and the ticker reads the count from the iterator;
* ``bare generator`` / ``tqdm(generator)`` / ``track(generator)`` -- the same over a
  generator (``yield from data``), which ``track()`` counts with
  ``itertools.compress(it, repeat(True, sys.maxsize))``.

The overhead of an arm is its time minus the bare loop over the same source; the ratio is
nbremind's overhead over tqdm's. The track arms run in a real session (null channel, the
ticker thread ticking every 0.25 s, as in a script), so its tick is part of the cost.

Then the ways of counting that were considered for iterables without a length hint, timed
the same way as bare generators over the list (no task), and ``task.advance()`` against
``tqdm.update()`` per call (``for _ in range(N): f()``, the loop included in both).

Budgets (DESIGN §4): ``track()`` overhead per iteration <= 0.5x tqdm's (aim: 0.2x);
``task.advance()`` <= 0.5x ``tqdm.update()`` and ``task.advance(5)`` <= 1.0x
``tqdm.update(5)``. The session writes to a fresh data folder (never the user's).

    .venv/bin/python benchmarks/track_overhead.py [--items N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import operator
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from _bench import machine, median, print_table, ratio, verdict

TRACK_BUDGET = 0.5
TRACK_AIM = 0.2
ADVANCE_BUDGET = 0.5
ADVANCE_N_BUDGET = 1.0


def consume(iterable: Iterable[Any]) -> None:
    for _ in iterable:
        pass


def timed(fn: Callable[[], None], n: int) -> float:
    """ns per item of one run of ``fn`` over ``n`` items."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) / n * 1e9


def run_rounds(arms: dict[str, Callable[[], None]], n: int, rounds: int) -> dict[str, float]:
    """Median ns/item of each arm over ``rounds`` interleaved rounds (after a warm-up one)."""
    names = list(arms)
    for name in names:
        arms[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(timed(arms[name], n))
    return {name: median(values) for name, values in samples.items()}


# -- ways of counting an iterable without a length hint (no task; the design measurements) --


class _Holder:
    _n = 0


def count_attr(it: Iterator[Any], task: _Holder) -> Iterator[Any]:
    n = 0
    for x in it:
        n += 1  # noqa: SIM113 - the pattern measured
        task._n = n
        yield x


def count_enumerate(it: Iterator[Any], task: _Holder) -> Iterator[Any]:
    for task._n, x in enumerate(it, 1):
        yield x


def count_zip_count(it: Iterator[Any]) -> Iterator[Any]:
    yield from map(operator.itemgetter(0), zip(it, itertools.count(1)))


def count_compress_count(it: Iterator[Any]) -> Iterator[Any]:
    yield from itertools.compress(it, itertools.count(1))


def count_compress_repeat(it: Iterator[Any]) -> Iterator[Any]:
    yield from itertools.compress(it, itertools.repeat(True, sys.maxsize))


def plain_yield_from(it: Iterator[Any]) -> Iterator[Any]:
    yield from it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200_000, help="items per timed loop")
    parser.add_argument("--rounds", type=int, default=31, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    n = 50_000 if args.quick else args.items
    rounds = 3 if args.quick else args.rounds

    import tempfile

    os.environ["NBREMIND_DATA_DIR"] = tempfile.mkdtemp(prefix="nbremind-bench-")
    from tqdm import tqdm

    import nbremind
    from nbremind import Session, track
    from nbremind.core.config import Config

    print(f"track_overhead: {machine()}")
    print(f"{n:,} items per loop, {rounds} interleaved rounds, median per arm")
    null = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the run
    session = Session(Config(channels=("null",)))
    previous = nbremind.runtime.session.set_session(session)
    data = list(range(n))

    def gen() -> Iterator[int]:
        yield from data

    # sanity: the counts are right
    for x in (tracked := track(data)):
        if x == 9:
            break
    assert tracked.task is not None and tracked.task.n == 10, tracked.task
    for _ in (tracked_gen := track(gen())):
        pass
    assert tracked_gen.task is not None and tracked_gen.task.n == n, tracked_gen.task

    loops = run_rounds(
        {
            "bare list": lambda: consume(data),
            "tqdm(list)": lambda: consume(tqdm(data, file=null)),
            "track(list)": lambda: consume(track(data)),
            "bare generator": lambda: consume(gen()),
            "tqdm(generator)": lambda: consume(tqdm(gen(), file=null)),
            "track(generator)": lambda: consume(track(gen())),
        },
        n,
        rounds,
    )
    failed = False
    rows = []
    verdicts = {}
    for source in ("list", "generator"):
        bare = loops[f"bare {source}"]
        peer = loops[f"tqdm({source})"] - bare
        ours = loops[f"track({source})"] - bare
        ok = ours <= TRACK_BUDGET * peer
        failed |= not ok
        verdicts[source] = (ours, peer, ok)
        rows.append([f"bare {source}", f"{bare:.1f}", "-", "-", "-", "floor"])
        rows.append(
            [
                f"tqdm({source})",
                f"{bare + peer:.1f}",
                f"{peer:.1f}",
                "1.00x",
                ratio(bare + peer, bare),
                "peer",
            ]
        )
        aim = "aim met" if ours <= TRACK_AIM * peer else "aim missed"
        rows.append(
            [
                f"track({source})",
                f"{bare + ours:.1f}",
                f"{ours:.1f}",
                ratio(ours, peer),
                ratio(bare + ours, bare),
                f"<= {TRACK_BUDGET:.2f}x: {verdict(ok)} ({aim})",
            ]
        )
    print_table(
        "Per-iteration cost of a loop (ns per item)",
        ["loop", "ns/item", "overhead", "overhead vs tqdm", "vs bare", "budget"],
        rows,
    )

    counting = run_rounds(
        {
            "bare list": lambda: consume(data),
            "yield from (hint path)": lambda: consume(plain_yield_from(iter(data))),
            "n += 1; task._n = n": lambda: consume(count_attr(iter(data), _Holder())),
            "for task._n, x in enumerate()": lambda: consume(
                count_enumerate(iter(data), _Holder())
            ),
            "map(itemgetter(0), zip(it, count()))": lambda: consume(count_zip_count(iter(data))),
            "compress(it, count())": lambda: consume(count_compress_count(iter(data))),
            "compress(it, repeat(True, maxsize))": lambda: consume(
                count_compress_repeat(iter(data))
            ),
        },
        n,
        rounds,
    )
    bare = counting["bare list"]
    chosen = counting["compress(it, repeat(True, maxsize))"] - bare
    print_table(
        "Ways of counting, as a generator over the list with no task (ns per item)",
        ["generator", "ns/item", "overhead", "vs chosen", "note"],
        [
            [
                name,
                f"{value:.1f}",
                "-" if name == "bare list" else f"{value - bare:.1f}",
                "-" if name == "bare list" else ratio(value - bare, chosen),
                {
                    "bare list": "floor",
                    "yield from (hint path)": "track() over list/range/dict/...",
                    "compress(it, repeat(True, maxsize))": "track() over anything else",
                }.get(name, ""),
            ]
            for name, value in counting.items()
        ],
    )

    task = session.new_task("advance", kind="block")
    token = session.start(task)
    bar = tqdm(total=10**15, file=null)
    calls = range(n)

    class _Nothing:
        def call(self, k: int = 1) -> None:
            pass

    nothing = _Nothing().call

    def repeat_call(fn: Callable[..., Any], *a: int) -> Callable[[], None]:
        def run() -> None:
            for _ in calls:
                fn(*a)

        return run

    per_call = run_rounds(
        {
            "task.advance()": repeat_call(task.advance),
            "tqdm.update()": repeat_call(bar.update),
            "task.advance(5)": repeat_call(task.advance, 5),
            "tqdm.update(5)": repeat_call(bar.update, 5),
            "a method doing nothing": repeat_call(nothing),
        },
        n,
        rounds,
    )
    bar.close()
    session.finish(task, None, token)
    adv_ok = per_call["task.advance()"] <= ADVANCE_BUDGET * per_call["tqdm.update()"]
    adv_n_ok = per_call["task.advance(5)"] <= ADVANCE_N_BUDGET * per_call["tqdm.update(5)"]
    failed |= not (adv_ok and adv_n_ok)
    print_table(
        "Reporting progress by hand (ns per call, loop included)",
        ["call", "ns/call", "vs tqdm.update", "budget"],
        [
            [
                "task.advance()",
                f"{per_call['task.advance()']:.1f}",
                ratio(per_call["task.advance()"], per_call["tqdm.update()"]),
                f"<= {ADVANCE_BUDGET:.2f}x: {verdict(adv_ok)}",
            ],
            ["tqdm.update()", f"{per_call['tqdm.update()']:.1f}", "1.00x", "peer"],
            [
                "task.advance(5)",
                f"{per_call['task.advance(5)']:.1f}",
                ratio(per_call["task.advance(5)"], per_call["tqdm.update(5)"]),
                f"<= {ADVANCE_N_BUDGET:.2f}x tqdm.update(5): {verdict(adv_n_ok)}",
            ],
            [
                "tqdm.update(5)",
                f"{per_call['tqdm.update(5)']:.1f}",
                ratio(per_call["tqdm.update(5)"], per_call["tqdm.update()"]),
                "-",
            ],
            [
                "a method doing nothing",
                f"{per_call['a method doing nothing']:.1f}",
                ratio(per_call["a method doing nothing"], per_call["tqdm.update()"]),
                "floor",
            ],
        ],
    )

    small = 10
    few = list(range(small))
    loops_small = 100 if args.quick else 500

    def many(make: Callable[[], Iterable[int]]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(loops_small):
                consume(make())

        return run

    def nested() -> None:
        # a loop inside another task sends no end notice: no hand-over to the loop thread
        with nbremind.remind("outer"):
            many(lambda: track(few))()

    setup = run_rounds(
        {
            "bare": many(lambda: few),
            "tqdm": many(lambda: tqdm(few, file=null)),
            "track": many(lambda: track(few)),
            "track in a remind() block": nested,
        },
        loops_small,
        max(3, rounds // 3),
    )
    print_table(
        f"A whole loop of {small} items, start to end (µs per loop; not budgeted)",
        ["loop", "µs/loop", "vs tqdm"],
        [
            [name, f"{value / 1e3:.2f}", ratio(value, setup["tqdm"])]
            for name, value in setup.items()
        ],
    )

    nbremind.runtime.session.set_session(previous)
    session.close()
    for source, (ours, peer, ok) in verdicts.items():
        print(
            f"budget: track({source}) overhead <= {TRACK_BUDGET:.2f}x tqdm's: "
            f"{ours:.1f} vs {peer:.1f} ns = {ours / peer:.2f}x -> {verdict(ok)}"
        )
    print(
        f"budget: task.advance() <= {ADVANCE_BUDGET:.2f}x tqdm.update(): "
        f"{per_call['task.advance()']:.1f} vs {per_call['tqdm.update()']:.1f} ns = "
        f"{per_call['task.advance()'] / per_call['tqdm.update()']:.2f}x -> {verdict(adv_ok)}"
    )
    print(
        f"budget: task.advance(5) <= {ADVANCE_N_BUDGET:.2f}x tqdm.update(5): "
        f"{per_call['task.advance(5)']:.1f} vs {per_call['tqdm.update(5)']:.1f} ns = "
        f"{per_call['task.advance(5)'] / per_call['tqdm.update(5)']:.2f}x -> "
        f"{verdict(adv_n_ok)}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
