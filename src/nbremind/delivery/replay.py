"""Delivering what ended processes left in the outbox, once, from the next session.

Runs on the session's loop thread when its ticker first starts. Claimed notices go through
the dispatcher again (so de-duplication, mute, quiet hours and templates still apply) with
options that let the event and minimum-duration rules pass: those were decided when the
notice was first made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..core.log import logger
from ..core.options import TaskOptions

if TYPE_CHECKING:
    from ..core.config import Config
    from ..store.outbox import Outbox, Replay
    from .dispatcher import Dispatcher

__all__ = ["DROPPED_BY_RULES", "deliver_leftovers", "real_channel_name"]

log = logger()

#: Why a replayed notice the rules dropped is no longer pending (it is not replayed again by
#: yet another process). One held for quiet hours stays pending until its digest goes out.
DROPPED_BY_RULES = (
    "not sent when replayed: the rules dropped it (muted, rate limit, already delivered)"
)


def real_channel_name(stored: str, config: Config, extra: Iterable[str] = ()) -> str:
    """The channel name a stored (redacted) one stands for in this process's settings.

    A name holding a secret (a known one, or a URL's password or token) is stored with it
    replaced by ``***``; the settings of this process (``channels``, named channels) give
    it back when they hold the same one.
    Otherwise the stored name is returned (its delivery then fails, and is recorded).
    """
    from ..store.notice_json import stored_channel_name

    if "***" not in stored:
        return stored
    candidates: list[str] = [*config.channels, *config.channel_defs, *extra]
    for name in candidates:
        if stored_channel_name(name) == stored:
            return name
    return stored


async def deliver_leftovers(outbox: Outbox, dispatcher: Dispatcher, config: Config) -> Replay:
    """Claim what dead processes left undelivered and deliver it; never raises."""
    from ..store.outbox import Replay
    from .dispatcher import Delivery

    try:
        replay = outbox.claim(config.outbox_max_age)
    except Exception:
        log.warning("nbremind outbox: looking for undelivered notices failed", exc_info=True)
        return Replay()
    for dropped in replay.dropped:
        dispatcher.add_outcome(
            Delivery(dropped.notice_id, dropped.title, dropped.channel, False, dropped.reason)
        )
    sends = []
    for claimed in replay.claimed:
        notice = claimed.notice
        names = tuple(real_channel_name(name, config) for name in claimed.channels)
        options = TaskOptions(on=(notice.event,), min_duration=0.0)
        sends.append(dispatcher.dispatch(replace(notice, channels=names), options, config))
    if sends:
        log.info("nbremind outbox: delivering %d notice(s) left by ended processes", len(sends))
        await asyncio.gather(*sends, return_exceptions=True)
    for claimed in replay.claimed:
        notice_id = claimed.notice.id
        if dispatcher.was_sent(notice_id) or dispatcher.rule_state.quiet.holds(notice_id):
            continue  # sent, or held for this process's digest (still pending, owned here)
        outbox.settle(notice_id, "dropped", DROPPED_BY_RULES)
    return replay
