"""Whether a publisher has subscribers, asked of the middleware at most every ``refresh_s``.

``get_subscription_count()`` is an rmw query, and asking it on every publish costs more than the answer is
worth: a subscriber that appears gets the topic from at most ``refresh_s`` later. Used where the simulators
publish a topic only while somebody listens (radar, speedometer, /clock, views), and by
:class:`carla_rl.nodes.support.intra_process.IntraProcessPublisher` to decide whether a message needs a DDS copy
(subscribers beyond the in-process ones).
"""

from __future__ import annotations

import time
from typing import Any, Callable

MATCH_REFRESH_S = 0.1  # how long an answer is trusted


class SubscriberCheck:
    """``publisher.get_subscription_count() > local()`` (``local``: none by default), cached for
    ``refresh_s``."""

    def __init__(self, publisher: Any, refresh_s: float = MATCH_REFRESH_S,
                 local: Callable[[], int] | None = None) -> None:
        self._publisher = publisher
        self._refresh_s = refresh_s
        self._local = local
        self._answer = False
        self._asked_at = -float("inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._asked_at > self._refresh_s:
            local = self._local() if self._local is not None else 0
            self._answer = self._publisher.get_subscription_count() > local
            self._asked_at = now
        return self._answer

    def expire(self) -> None:
        """Ask the middleware again on the next call."""
        self._asked_at = -float("inf")
