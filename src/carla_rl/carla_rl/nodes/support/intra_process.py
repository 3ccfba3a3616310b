"""Intra-process communication for nodes composed into one process (``component_container``).

rclpy has no counterpart of rclcpp's intra-process manager: two rclpy nodes in one process still
serialise every message into DDS and deserialise it again. The training graph's lockstep chain moves
a camera image, a lidar cloud, odometry and the situation from each simulator to its preprocessor
every tick, so :class:`IntraProcessBus` does what rclcpp does for composed nodes:

- a publisher hands each message object straight to the subscriptions of the same topic (and type)
  in the process, through a FIFO that the container drains after every executor turn;
- it publishes into DDS only while a subscriber outside the process matches
  (``get_subscription_count()`` greater than the in-process subscriptions of the topic, asked again
  every ``MATCH_REFRESH_S``), so rviz2, a recorder or the policy in another process get every message
  from at most ``MATCH_REFRESH_S`` after they subscribed;
- in-process subscriptions keep their DDS subscription (publishers outside the process still reach
  them) and drop the DDS copies of messages that a publisher in the process sent while someone outside
  listened. Such a publisher serialises the message once, publishes those bytes and remembers them; the
  DDS subscriptions of hosted nodes take raw samples and drop one whose bytes equal one of the topic's
  last ``RECENT_WINDOW`` in-process samples (a dropped copy is never deserialised). rclcpp filters by
  publisher GID; rclpy's EventsExecutor cannot hand a callback the sample's MessageInfo. Messages here
  carry stamps, so a byte-equal sample from another publisher does not occur in practice. (Comparing
  message objects would not do: a float32 field holds the float64 that was assigned until the sample is
  serialised.)
- a transient-local (latched) publisher keeps its last ``depth`` messages and hands them to an
  in-process subscription created later, as DDS does for late joiners.

Rules for composed nodes, as for rclcpp components with intra-process communication: a published
message object is shared with the in-process subscribers, so a publisher must not change it after
``publish()`` (every node here builds a new message per publish). Delivery is asynchronous and in
publish order; KEEP_LAST depths are not enforced on the in-process FIFO (the lockstep graph never
has more than one message per topic in flight).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Any, Callable

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.serialization import deserialize_message, serialize_message

from carla_rl.nodes.support.deadlines import PROCESS_SCHEDULE, Deadline
from carla_rl.nodes.support.subscriber_check import MATCH_REFRESH_S, SubscriberCheck


class _LocalSubscription:
    def __init__(self, topic: str, msg_type: type, callback: Callable) -> None:
        self.topic = topic
        self.msg_type = msg_type
        self.callback = callback


RECENT_WINDOW = 8  # in-process messages per topic remembered to recognise their DDS copies
DRAIN_BUDGET_S = 0.02  # longest the in-process queue keeps the container's executor waiting


class IntraProcessBus:
    """The in-process topic table of one container process."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, list[_LocalSubscription]] = defaultdict(list)
        self.latched: dict[str, deque] = {}
        self.pending: deque[tuple[_LocalSubscription, Any]] = deque()
        self.recent: dict[str, deque] = {}           # topic -> serialised in-process messages sent into DDS too
        self.idle_callbacks: list[Callable[[], None]] = []  # run when a drain empties the queue
        self.delivered = 0                           # in-process deliveries (for diagnostics and tests)
        self.dds_copies_dropped = 0

    # --- registration (called by ComposableNode) --------------------------------------------------
    def add_subscription(self, topic: str, msg_type: type, callback: Callable) -> _LocalSubscription:
        local = _LocalSubscription(topic, msg_type, callback)
        self.subscriptions[topic].append(local)
        for msg in self.latched.get(topic, ()):
            if isinstance(msg, msg_type):
                self.pending.append((local, msg))
        return local

    def remove_subscription(self, local: _LocalSubscription) -> None:
        entries = self.subscriptions.get(local.topic, [])
        if local in entries:
            entries.remove(local)
        self.pending = deque(item for item in self.pending if item[0] is not local)

    def add_idle_callback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` each time a drain has run every queued message (nothing in flight in the
        process): a node that batches what the process produced in one executor turn sends it there."""
        self.idle_callbacks.append(callback)

    def local_subscription_count(self, topic: str) -> int:
        return len(self.subscriptions.get(topic, ()))

    # --- data path ----------------------------------------------------------------------------------
    def publish(self, topic: str, msg: Any, latched_depth: int = 0, serialized: bytes | None = None) -> None:
        """Queue ``msg`` for the hosted subscriptions of ``topic``; ``serialized``: the bytes that also go
        into DDS (remembered to recognise their copies)."""
        if serialized is not None and topic in self.subscriptions:
            self.recent.setdefault(topic, deque(maxlen=RECENT_WINDOW)).append(serialized)
        if latched_depth:
            self.latched.setdefault(topic, deque(maxlen=latched_depth)).append(msg)
        for local in self.subscriptions.get(topic, ()):
            if isinstance(msg, local.msg_type):
                self.pending.append((local, msg))

    def drain(self, budget_s: float = DRAIN_BUDGET_S) -> bool:
        """Run the callbacks of the queued messages, and of those they publish in turn, for up to
        ``budget_s`` seconds (at least one message); returns whether messages are still queued.

        The budget matters where a chain closes inside the process (simulator -> preprocessor ->
        policy -> simulator): the container's timers, services and DDS subscriptions get their
        executor turn at least that often. A drain that ran messages and emptied the queue then runs
        the idle callbacks (what they publish is queued for the next drain)."""
        deadline = time.monotonic() + budget_s
        n = 0
        while self.pending:
            local, msg = self.pending.popleft()
            local.callback(msg)
            n += 1
            if time.monotonic() >= deadline:
                break
        self.delivered += n
        if not self.pending and n:
            for callback in self.idle_callbacks:
                callback()
        return bool(self.pending)

    def is_copy_of_local(self, topic: str, serialized: bytes) -> bool:
        """Is this raw DDS sample the copy of a message published in this process?"""
        recent = self.recent.get(topic)
        return bool(recent) and serialized in recent  # kept: each hosted subscription receives a copy


class IntraProcessPublisher:
    """A publisher of a composed node: in-process subscribers first, DDS when someone outside listens."""

    def __init__(self, bus: IntraProcessBus, publisher: Any, qos: QoSProfile) -> None:
        self._bus = bus
        self._publisher = publisher
        self.topic_name = publisher.topic_name
        latched = qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
        self._latched_depth = max(1, qos.depth) if latched else 0
        # someone outside listens: more subscriptions than the in-process ones of the topic
        self._outside = SubscriberCheck(publisher, MATCH_REFRESH_S,
                                        local=lambda: bus.local_subscription_count(self.topic_name))

    def publish(self, msg: Any) -> None:
        topic = self.topic_name
        if not self._outside():
            self._bus.publish(topic, msg, self._latched_depth)
            return
        serialized = serialize_message(msg)  # once: remembered, and what DDS sends
        self._bus.publish(topic, msg, self._latched_depth, serialized)
        self._publisher.publish(serialized)

    def __getattr__(self, name: str) -> Any:  # get_subscription_count, destroy, handle, ...
        return getattr(self._publisher, name)


class ComposableNode(Node):
    """A node that can run alone (``python -m carla_rl.nodes.<exe>_node``) or composed in a
    ``component_container`` with others. ``intra_process`` is the container's bus (None when alone);
    the other keyword arguments go to rclpy's Node (``cli_args``, ``use_global_arguments``)."""

    def __init__(self, node_name: str, *, intra_process: IntraProcessBus | None = None, **node_kwargs: Any) -> None:
        self._intra_process = intra_process  # before Node's own endpoints (/parameter_events, /rosout)
        self._local_subscriptions: dict = {}  # rclpy Subscription -> its in-process entry
        self._deadlines: list[Deadline] = []
        super().__init__(node_name, **node_kwargs)

    def create_deadline(self, callback) -> Deadline:
        """A one-shot wait run by the process's spin loop (:mod:`carla_rl.nodes.support.deadlines`): for waits
        that start and end many times a second, where an rclpy timer would be cancelled and reset."""
        deadline = PROCESS_SCHEDULE.create(callback)
        self._deadlines.append(deadline)
        return deadline

    def create_publisher(self, msg_type, topic, qos_profile, **kwargs):  # noqa: D102 (rclpy's signature)
        publisher = super().create_publisher(msg_type, topic, qos_profile, **kwargs)
        if self._intra_process is None:
            return publisher
        qos = qos_profile if isinstance(qos_profile, QoSProfile) else QoSProfile(depth=int(qos_profile))
        return IntraProcessPublisher(self._intra_process, publisher, qos)

    def create_subscription(self, msg_type, topic, callback, qos_profile, **kwargs):  # noqa: D102
        bus = self._intra_process
        if bus is None:
            return super().create_subscription(msg_type, topic, callback, qos_profile, **kwargs)
        holder: dict[str, str] = {}

        def from_dds(serialized: bytes) -> None:  # DDS copies of in-process messages are dropped
            if bus.is_copy_of_local(holder["topic"], serialized):
                bus.dds_copies_dropped += 1
                return
            callback(deserialize_message(serialized, msg_type))

        kwargs["raw"] = True
        subscription = super().create_subscription(msg_type, topic, from_dds, qos_profile, **kwargs)
        holder["topic"] = subscription.topic_name
        self._local_subscriptions[subscription] = bus.add_subscription(subscription.topic_name, msg_type, callback)
        return subscription

    def destroy_node(self) -> None:  # noqa: D102 (rclpy's signature)
        for deadline in self._deadlines:
            PROCESS_SCHEDULE.remove(deadline)
        self._deadlines.clear()
        super().destroy_node()

    def destroy_subscription(self, subscription) -> bool:  # noqa: D102 (rclpy's signature)
        local = self._local_subscriptions.pop(subscription, None) if self._intra_process is not None else None
        if local is not None:
            self._intra_process.remove_subscription(local)
        return super().destroy_subscription(subscription)
