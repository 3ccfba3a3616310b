"""Calling an idempotent service from outside the graph (the CLI, the tests) without losing the answer.

With rmw_fastrtps a client can see a service as available (its request writer has matched the
server's request reader) before the server's response writer has matched the client's response
reader. A response sent in that window is dropped after a 100 ms wait and the call never completes
(ros2/rmw_fastrtps#842, ros2/ros2#1253); it happens under load, e.g. in CI right after the server
starts. A caller of an *idempotent* service (SetPhase, GetStatus, ResetEpisode with a seed) therefore
re-sends the request when no answer came within an attempt period, doubling the period each time,
and takes the first answer that arrives, until the overall timeout.
"""

from __future__ import annotations

import time

FIRST_ATTEMPT_S = 1.0  # well above a local service's answer time (ms), well below a user's patience
SPIN_STEP_S = 0.05


def call_idempotent(node, client, request, timeout: float, first_attempt_s: float = FIRST_ATTEMPT_S):
    """Send ``request`` on ``client`` (re-sending as described above) and return the first response,
    or ``None`` when none arrived within ``timeout`` seconds. ``node`` is spun by rclpy's global
    executor; ``client`` must belong to it."""
    import rclpy

    deadline = time.monotonic() + timeout
    attempt_s = first_attempt_s
    pending = []
    try:
        while True:
            pending.append(client.call_async(request))
            attempt_end = min(deadline, time.monotonic() + attempt_s)
            while time.monotonic() < attempt_end:
                answered = next((future for future in pending if future.done()), None)
                if answered is not None:
                    return answered.result()
                rclpy.spin_once(node, timeout_sec=SPIN_STEP_S)
            if time.monotonic() >= deadline:
                return None
            attempt_s *= 2.0
    finally:
        for future in pending:  # late answers to the other attempts are dropped, not kept forever
            if not future.done():
                client.remove_pending_request(future)
