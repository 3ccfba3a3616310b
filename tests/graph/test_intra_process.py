"""Intra-process communication of composed nodes (nodes/support/intra_process.py) and the component
container's command line: in-process subscribers get every message once (the same object), outside
subscribers get it through DDS, DDS copies of in-process messages are dropped, latched messages reach
late in-process subscribers, and a publisher outside the process still reaches in-process subscribers."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from std_msgs.msg import String  # noqa: E402

from carla_rl_interfaces.msg import EgoSituation  # noqa: E402

from carla_rl.nodes.support import qos_profiles as qos  # noqa: E402
from carla_rl.nodes.component_container_node import component_class, parse_components  # noqa: E402
from carla_rl.nodes.support.intra_process import ComposableNode, IntraProcessBus  # noqa: E402
from ros_testing import spin_composed_until  # noqa: E402

TIMEOUT_S = 10.0


def make_executor(kind: str, context):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.experimental import EventsExecutor

    return EventsExecutor(context=context) if kind == "events" else SingleThreadedExecutor(context=context)


def situation(i: int) -> EgoSituation:
    # float32 fields assigned float64 values: a message object differs from its own DDS copy
    return EgoSituation(step_id=i, route_remaining_m=199.97670749423156 - i, nearest_actor_distance_m=31.7334221154)


@pytest.mark.parametrize("executor_kind", ["events", "single"])
def test_in_process_delivery_and_dds_copies(context, executor_kind):
    bus = IntraProcessBus()
    talker = ComposableNode("talker", intra_process=bus, context=context)
    listener = ComposableNode("listener", intra_process=bus, context=context)
    outsider = rclpy.create_node("outsider", context=context)  # no bus: a DDS subscriber, like rviz2
    executor = make_executor(executor_kind, context)
    for n in (talker, listener, outsider):
        executor.add_node(n)
    pub = talker.create_publisher(EgoSituation, "situation", qos.EVENTS)
    local, remote = [], []
    subscription = listener.create_subscription(EgoSituation, "situation", local.append, qos.EVENTS)

    # nobody outside: nothing goes into DDS, the in-process subscriber gets the very object
    first = situation(0)
    pub.publish(first)
    assert spin_composed_until(executor, [bus], lambda: len(local) == 1, TIMEOUT_S)
    assert local[0] is first
    assert pub.get_subscription_count() == 1  # the in-process subscription is a DDS subscription too

    # an outside subscriber: it gets the messages through DDS, the in-process one still exactly once
    outsider.create_subscription(EgoSituation, "situation", remote.append, qos.EVENTS)
    assert spin_composed_until(executor, [bus], lambda: pub.get_subscription_count() == 2, TIMEOUT_S)
    pub._outside.expire()  # do not wait MATCH_REFRESH_S for the publisher to notice
    sent = [situation(i) for i in range(1, 6)]
    for msg in sent:
        pub.publish(msg)
    assert spin_composed_until(executor, [bus], lambda: len(remote) == 5, TIMEOUT_S)
    assert spin_composed_until(executor, [bus], lambda: bus.dds_copies_dropped >= 5, TIMEOUT_S)
    assert [m.step_id for m in local] == [0, 1, 2, 3, 4, 5]
    assert [m.step_id for m in remote] == [1, 2, 3, 4, 5]

    # a publisher outside the process reaches the in-process subscriber through DDS
    outside_pub = outsider.create_publisher(EgoSituation, "situation", qos.EVENTS)
    assert spin_composed_until(executor, [bus], lambda: outside_pub.get_subscription_count() == 2, TIMEOUT_S)
    outside_pub.publish(situation(99))
    assert spin_composed_until(executor, [bus], lambda: local[-1].step_id == 99, TIMEOUT_S)
    assert [m.step_id for m in local].count(99) == 1

    # a destroyed in-process subscription gets nothing more
    listener.destroy_subscription(subscription)
    count = len(local)
    pub.publish(situation(100))
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
    assert spin_composed_until(executor, [bus], lambda: got, TIMEOUT_S)
    bus.drain()
    assert [m.data for m in got] == ["route"]  # depth 1: the last one, once
    talker.destroy_node()
    late.destroy_node()


def test_a_chain_that_closes_in_the_process_yields_to_the_executor(context):
    # simulator -> preprocessor -> policy -> simulator, all hosted: a drain stops after its time
    # budget and says more is queued, so the container's executor gets its turn (timers, services, DDS)
    bus = IntraProcessBus()
    ping = ComposableNode("ping", intra_process=bus, context=context)
    pong = ComposableNode("pong", intra_process=bus, context=context)
    to_pong = ping.create_publisher(String, "to_pong", qos.EVENTS)
    to_ping = pong.create_publisher(String, "to_ping", qos.EVENTS)
    hops = []

    def bounce(publisher):
        def callback(msg):
            hops.append(msg.data)
            publisher.publish(String(data=str(int(msg.data) + 1)))
        return callback

    pong.create_subscription(String, "to_pong", bounce(to_ping), qos.EVENTS)
    ping.create_subscription(String, "to_ping", bounce(to_pong), qos.EVENTS)
    to_pong.publish(String(data="0"))
    for expected in range(1, 4):  # no budget: one hop per drain
        assert bus.drain(budget_s=0.0) is True
        assert hops == [str(i) for i in range(expected)]
    assert bus.drain(budget_s=1.0) is True  # an endless chain: the budget ends the drain (after many hops)
    assert len(hops) > 4 and hops == [str(i) for i in range(len(hops))]
    ping.destroy_node()
    pong.destroy_node()
    assert bus.drain() is False  # the hop queued for a destroyed node is dropped
    assert bus.delivered == len(hops)


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
        component_class("training_monitor")
    with pytest.raises(ValueError, match="no such carla_rl node"):
        component_class("no_such_node")
