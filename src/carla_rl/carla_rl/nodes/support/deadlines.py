"""One-shot deadlines that the process's spin loop runs between executor turns.

A node that waits "at most this long" for something (the policy's micro-batching window, a batch link's
wait for the rest of a tick) arms a :class:`Deadline` when the wait starts and disarms it when the wait
ends early. Such waits start and end hundreds of times a second; done with an rclpy timer that is
cancelled and reset each time, rclpy's EventsExecutor stopped dispatching the process's timers and
services after a few seconds to minutes in composed graphs (docs/ARCHITECTURE.md, "Deadlines"). Here
arming and disarming only change a number: nothing in the executor is touched. The spin loop
(:func:`carla_rl.nodes.support.node_runner.run_nodes`) waits for events no longer than the next deadline and
runs the due ones after each turn, in the thread that runs every other callback of the process.

One :class:`DeadlineSchedule` serves a process (``PROCESS_SCHEDULE``); a test that spins nodes with
its own executor calls :meth:`DeadlineSchedule.run_due` between turns, as the spin loop does.
"""

from __future__ import annotations

import time
from typing import Callable


class Deadline:
    """A callback due at one point in time, or not armed."""

    def __init__(self, schedule: "DeadlineSchedule", callback: Callable[[], None]) -> None:
        self._schedule = schedule
        self.callback = callback
        self.due: float | None = None  # the schedule's clock; None = not armed

    @property
    def armed(self) -> bool:
        return self.due is not None

    def arm(self, delay_s: float) -> None:
        """Run the callback ``delay_s`` from now (an armed deadline moves to the new time)."""
        self.due = self._schedule.clock() + max(0.0, delay_s)

    def arm_if_idle(self, delay_s: float) -> None:
        """Arm unless already armed: the wait counts from its first event."""
        if self.due is None:
            self.arm(delay_s)

    def disarm(self) -> None:
        self.due = None


class DeadlineSchedule:
    """The deadlines of one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._deadlines: list[Deadline] = []

    def create(self, callback: Callable[[], None]) -> Deadline:
        deadline = Deadline(self, callback)
        self._deadlines.append(deadline)
        return deadline

    def remove(self, deadline: Deadline) -> None:
        deadline.disarm()
        if deadline in self._deadlines:
            self._deadlines.remove(deadline)

    def wait_timeout(self, longest_s: float) -> float:
        """How long the spin loop may wait for events: ``longest_s``, or less when a deadline comes first
        (0 when one is already due)."""
        dues = [d.due for d in self._deadlines if d.due is not None]
        if not dues:
            return longest_s
        return min(longest_s, max(0.0, min(dues) - self.clock()))

    def run_due(self) -> int:
        """Run the callbacks of the deadlines that are due (each disarmed first, so a callback may arm
        it again); returns how many ran."""
        now = self.clock()
        due = [d for d in self._deadlines if d.due is not None and d.due <= now]
        due.sort(key=lambda d: d.due)
        ran = 0
        for deadline in due:
            if deadline.due is not None and deadline.due <= now:  # an earlier callback may have moved it
                deadline.disarm()
                deadline.callback()
                ran += 1
        return ran


PROCESS_SCHEDULE = DeadlineSchedule()
