"""What the Dask tests share: a real LocalCluster of two worker processes, a small task of
which one raises, a task held until the test lets it go. The workers cannot import the test
modules: the functions here travel by value."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["BAD", "gate", "held", "local_cluster", "work"]

BAD = 137  # the index whose task raises KeyError('x')


def work(i: int) -> int:
    """A small task; the one at ``BAD`` raises."""
    if i == BAD:
        raise KeyError("x")
    return i * 2


def held(i: int, name: str) -> int:
    """A task that waits for the test to set event ``name``, leaving its worker's thread
    to the other tasks meanwhile."""
    import distributed

    distributed.secede()
    distributed.Event(name).wait()
    distributed.rejoin()
    return i


def gate(client: Any) -> Any:
    """An event the ``held`` tasks wait for."""
    import distributed

    return distributed.Event(f"gate-{uuid.uuid4().hex}", client=client)


@contextmanager
def local_cluster() -> Iterator[Any]:
    """Two worker processes of one thread each, no dashboard; closed at the end."""
    import cloudpickle
    import distributed

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    try:
        yield cluster
    finally:
        cluster.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
