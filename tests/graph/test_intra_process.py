"""Intra-process communication of composed nodes (nodes/intra_process.py) and the component
container's command line: in-process subscribers get every message once (the same object), outside
subscribers get it through DDS, DDS copies of in-process messages are dropped, latched messages reach
late in-process subscribers, and a publisher outside the process still reaches in-process subscribers."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from std_msgs.msg import Header, String  # noqa: E402

from carla_rl.nodes import qos_profiles as qos  # noqa: E402
from carla_rl.nodes.component_container_node import component_class, parse_components  # noqa: E402
from carla_rl.nodes.intra_process import ComposableNode, IntraProcessBus  # noqa: E402

TIMEOUT_S = 10.0


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def spin_until(executor, bus, predicate, timeout=TIMEOUT_S) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        executor.spin_once(timeout_sec=0.05)
        bus.drain()
    return True


def test_in_process_delivery_and_dds_copies(context):
    from rclpy.executors import SingleThreadedExecutor

    bus = IntraProcessBus()
    talker = ComposableNode("talker", intra_process=bus, context=context)
    listener = ComposableNode("listener", intra_process=bus, context=context)
    outsider = rclpy.create_node("outsider", context=context)  # no bus: a DDS subscriber, like rviz2
    executor = SingleThreadedExecutor(context=context)
    for n in (talker, listener, outsider):
        executor.add_node(n)
    pub = talker.create_publisher(Header, "chatter", qos.EVENTS)
    local, remote = [], []
    subscription = listener.create_subscription(Header, "chatter", local.append, qos.EVENTS)

    # nobody outside: nothing goes into DDS, the in-process subscriber gets the very object
    first = Header(frame_id="first")
    pub.publish(first)
    assert spin_until(executor, bus, lambda: len(local) == 1)
    assert local[0] is first
    assert pub.get_subscription_count() == 1  # the in-process subscription is a DDS subscription too

    # an outside subscriber: it gets the messages through DDS, the in-process one still exactly once
    outsider.create_subscription(Header, "chatter", remote.append, qos.EVENTS)
    assert spin_until(executor, bus, lambda: pub.get_subscription_count() == 2)
    pub._outside_checked_at = -1.0  # do not wait MATCH_REFRESH_S for the publisher to notice
    sent = [Header(frame_id=f"m{i}") for i in range(5)]
    for msg in sent:
        pub.publish(msg)
    assert spin_until(executor, bus, lambda: len(remote) == 5)
    assert spin_until(executor, bus, lambda: bus.dds_copies_dropped >= 5)
    assert [m.frame_id for m in local] == ["first"] + [m.frame_id for m in sent]
    assert [m.frame_id for m in remote] == [m.frame_id for m in sent]

    # a publisher outside the process reaches the in-process subscriber through DDS
    outside_pub = outsider.create_publisher(Header, "chatter", qos.EVENTS)
    assert spin_until(executor, bus, lambda: outside_pub.get_subscription_count() == 2)
    outside_pub.publish(Header(frame_id="from_outside"))
    assert spin_until(executor, bus, lambda: local[-1].frame_id == "from_outside")
    assert [m.frame_id for m in local].count("from_outside") == 1

    # a destroyed in-process subscription gets nothing more
    listener.destroy_subscription(subscription)
    count = len(local)
    pub.publish(Header(frame_id="after"))
    bus.drain()
    assert len(local) == count and bus.local_subscription_count(pub.topic_name) == 0
    for n in (talker, listener, outsider):
        n.destroy_node()


def test_latched_message_reaches_a_late_in_process_subscriber(context):
    from rclpy.executors import SingleThreadedExecutor

    bus = IntraProcessBus()
    talker = ComposableNode("latched_talker", intra_process=bus, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(talker)
    pub = talker.create_publisher(String, "route", qos.LATCHED)
    pub.publish(String(data="old"))
    pub.publish(String(data="route"))
    late = ComposableNode("late_listener", intra_process=bus, context=context)
    executor.add_node(late)
    got = []
    late.create_subscription(String, "route", got.append, qos.LATCHED)
    assert spin_until(executor, bus, lambda: got)
    bus.drain()
    assert [m.data for m in got] == ["route"]  # depth 1: the last one, once
    talker.destroy_node()
    late.destroy_node()


def test_container_command_line():
    components, rest = parse_components(
        ["--component", "embedded_simulator", "--ros-args", "-r", "__ns:=/env_0", "--",
         "--component", "sensor_preprocessor", "--ros-args", "-r", "__ns:=/env_0", "--",
         "--ros-args", "--log-level", "warn"])
    assert components == [("embedded_simulator", ["--ros-args", "-r", "__ns:=/env_0"]),
                          ("sensor_preprocessor", ["--ros-args", "-r", "__ns:=/env_0"])]
    assert rest == ["--ros-args", "--log-level", "warn"]
    with pytest.raises(ValueError, match="must end with '--'"):
        parse_components(["--component", "embedded_simulator", "--ros-args", "-r", "__ns:=/env_0"])
    with pytest.raises(ValueError, match="no --component"):
        parse_components(["--ros-args"])
    with pytest.raises(ValueError, match="cannot be composed"):
        component_class("dqn_policy")
    with pytest.raises(ValueError, match="no such carla_rl node"):
        component_class("no_such_node")
