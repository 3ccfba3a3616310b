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


class ServiceUnavailable(RuntimeError):
    """The service did not appear, or did not answer, within the caller's timeout."""


def call_from_outside(srv_type: str, name: str, timeout: float, **fields):
    """Call the idempotent service ``name`` of the running graph from a process outside it (the CLI):
    rclpy initialised for this call, a request of ``srv_type`` (``package/Type``, e.g.
    ``carla_rl_interfaces/SetPhase``) with ``fields``, re-sent as :func:`call_idempotent` does. Returns the
    response; raises :class:`ServiceUnavailable` naming the service."""
    import importlib

    import rclpy

    package, type_name = srv_type.split("/")
    srv = getattr(importlib.import_module(f"{package}.srv"), type_name)
    rclpy.init(args=[])
    node = rclpy.create_node("carla_rl_cli_client")
    try:
        client = node.create_client(srv, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise ServiceUnavailable(f"service {name} is not available (is the graph running? same "
                                     f"ROS_DOMAIN_ID?) after {timeout:.0f} s")
        response = call_idempotent(node, client, srv.Request(**fields), timeout)
        if response is None:
            raise ServiceUnavailable(f"service {name} did not answer within {timeout:.0f} s")
        return response
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


class ResentRequests:
    """Idempotent requests from a node of the graph to another node's service, kept until answered.

    ``submit(key, request)`` sends at once when the service is ready; :meth:`poll` (the node's timer)
    sends every unanswered request again once its last attempt is ``resend_s`` old, or as soon as the
    service becomes ready: a request is never dropped because its server was not up yet (starting,
    restarted by the supervisor) or its answer was lost (ros2/rmw_fastrtps#842, see above). A newer request
    under the same key replaces an unanswered one (the latest wish wins: pause after resume); an answer
    clears its key only if it answers the request pending there. With ``resend_s`` None a request is only
    held until its service is up and sent once (for requests that may take long to serve, such as saving
    a checkpoint with its replay: a re-send would queue another save). ``client`` is an rclpy client (its
    ``service_is_ready``, ``call_async`` and ``remove_pending_request``); the callbacks run on the node's
    executor. Counts: ``sent`` (first attempts), ``resent``, ``answered``."""

    def __init__(self, client, resend_s: float | None, on_answer=None, clock=time.monotonic) -> None:
        self.client = client
        self.resend_s = resend_s
        self.on_answer = on_answer  # (key, request, response)
        self.clock = clock
        self.pending: dict = {}  # key -> [request, future or None, time of the last attempt]
        self.counts = {"sent": 0, "resent": 0, "answered": 0}

    def submit(self, key, request) -> None:
        old = self.pending.get(key)
        if old is not None and old[1] is not None and not old[1].done():
            self.client.remove_pending_request(old[1])
        self.pending[key] = [request, None, None]
        self._send(key)

    def poll(self) -> None:
        now = self.clock()
        for key, (_, future, sent_at) in list(self.pending.items()):
            if future is None or (self.resend_s is not None and now - sent_at >= self.resend_s):
                self._send(key)

    def _send(self, key) -> None:
        entry = self.pending[key]
        request, future, _ = entry
        if not self.client.service_is_ready():
            return
        if future is not None and not future.done():
            self.client.remove_pending_request(future)
        self.counts["resent" if future is not None else "sent"] += 1
        entry[1] = self.client.call_async(request)
        entry[2] = self.clock()
        entry[1].add_done_callback(lambda f, key=key, request=request: self._answered(key, request, f))
        if self.resend_s is None:  # sent once: nothing more to do for it
            del self.pending[key]

    def _answered(self, key, request, future) -> None:
        entry = self.pending.get(key)
        response = future.result() if not future.cancelled() else None
        if response is None or (self.resend_s is not None and (entry is None or entry[0] is not request)):
            return  # no answer (poll() sends it again), or an answer to a superseded request
        if entry is not None and entry[0] is request:
            del self.pending[key]
        self.counts["answered"] += 1
        if self.on_answer is not None:
            self.on_answer(key, request, response)
