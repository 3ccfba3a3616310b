"""Whether a publisher has subscribers, asked of the middleware at most every ``refresh_s``.

The simulators publish some topics only while somebody listens (radar, speedometer, /clock, views);
``get_subscription_count()`` is an rmw query, and asking it for each of them on every tick costs more
than the answer is worth: a subscriber that appears gets the topic from at most ``refresh_s`` later
(as :class:`carla_rl.nodes.intra_process.IntraProcessPublisher` decides its DDS copies).
"""

from __future__ import annotations

import time
from typing import Any

DEFAULT_REFRESH_S = 0.1  # how long an answer is trusted


class SubscriberCheck:
    def __init__(self, publisher: Any, refresh_s: float = DEFAULT_REFRESH_S) -> None:
        self._publisher = publisher
        self._refresh_s = refresh_s
        self._answer = False
        self._asked_at = -float("inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._asked_at > self._refresh_s:
            self._answer = self._publisher.get_subscription_count() > 0
            self._asked_at = now
        return self._answer
