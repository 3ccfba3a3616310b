"""batch_link (composition halves): the core that decides when a tick's batch is complete, and a pair
of link nodes in two 'containers' (two intra-process buses, so everything between them goes through
DDS): the observations and rewards of several envs cross as one EnvStepBatch and come out on the
usual per-env topics, the policy's commands cross back as one VehicleCommandBatch and come out on the
envs' link topics; envs a link does not serve are dropped and counted."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from carla_rl.graph.batch_link import TickGatherer, split_by_env, split_groups
from ros_testing import spin_composed_until

TIMEOUT_S = 15.0


# --- the core --------------------------------------------------------------------------------------
def test_batch_completes_when_every_awaited_env_delivered_every_kind():
    gatherer = TickGatherer([2, 0, 1], ("observation", "reward"))
    assert gatherer.env_ids == (0, 1, 2)
    gatherer.await_envs([0, 2])
    assert not gatherer.add("observation", 2, "o2")
    assert not gatherer.add("reward", 0, "r0")
    assert not gatherer.add("observation", 1, "o1")  # env 1 is not awaited: kept, completes nothing
    assert not gatherer.add("reward", 2, "r2")
    assert gatherer.add("observation", 0, "o0")      # the last awaited item
    assert gatherer.pending == 5
    batch = gatherer.take()
    assert batch == {"observation": ["o0", "o1", "o2"], "reward": ["r0", "r2"]}  # env order
    assert gatherer.pending == 0 and not gatherer.complete()
    assert not gatherer.add("reward", 0, "late")     # nothing awaited after a batch went out
    assert gatherer.take() == {"observation": [], "reward": ["late"]}


def test_items_of_one_env_keep_their_arrival_order():
    gatherer = TickGatherer([0, 1], ("command",))
    gatherer.await_envs([0, 1])
    for item in ("a0", "b1", "c0"):
        gatherer.add("command", int(item[1]), item)
    assert gatherer.take() == {"command": ["a0", "c0", "b1"]}


def test_an_env_awaited_after_it_delivered_counts_as_delivered():
    gatherer = TickGatherer([0, 1], ("observation", "reward"))
    gatherer.add("observation", 1, "o1")
    gatherer.add("observation", 1, "o1 again")  # a repeat delivers nothing new
    gatherer.await_envs([1])
    gatherer.await_envs([1])                    # awaiting twice waits for nothing more
    assert not gatherer.complete()              # the reward is missing
    assert gatherer.add("reward", 1, "r1")
    gatherer.await_envs([0])                    # a new env: incomplete again
    assert not gatherer.complete()
    assert not gatherer.add("reward", 0, "r0")
    assert gatherer.add("observation", 0, "o0")


def test_nothing_awaited_is_never_complete():
    gatherer = TickGatherer([0], ("command",))
    assert not gatherer.add("command", 0, "x")
    gatherer.await_envs([0])
    assert gatherer.complete()


@pytest.mark.parametrize("call,message", [
    (lambda g: g.add("command", 0, "x"), "unknown item kind 'command'"),
    (lambda g: g.add("reward", 5, "x"), r"env 5 is not served by this link \(env_ids \[0, 1\]\)"),
    (lambda g: g.await_envs([1, 7]), r"env 7 is not served"),
])
def test_bad_items_are_refused_by_name(call, message):
    gatherer = TickGatherer([0, 1], ("observation", "reward"))
    with pytest.raises(ValueError, match=message):
        call(gatherer)
    assert gatherer.pending == 0 and not gatherer.awaited


@pytest.mark.parametrize("env_ids,kinds,message", [([], ("command",), "at least one env id"),
                                                    ([0, 2, 0], ("command",), r"env ids \[0, 2, 0\] repeat an env"),
                                                    ([0], (), "at least one item kind")])
def test_bad_links_are_refused(env_ids, kinds, message):
    with pytest.raises(ValueError, match=message):
        TickGatherer(env_ids, kinds)


def test_split_by_env():
    items = [SimpleNamespace(env_id=e) for e in (3, 0, 9, 3)]
    kept, foreign = split_by_env(items, [0, 3])
    assert [i.env_id for i in kept] == [3, 0, 3] and [i.env_id for i in foreign] == [9]


@pytest.mark.parametrize("env_ids,groups,expected", [
    ([3, 0, 1, 2, 4], 2, [[0, 1], [2, 3, 4]]),
    ([0, 1, 2, 3], 2, [[0, 1], [2, 3]]),
    ([5, 6], 4, [[5], [6]]),          # fewer envs than groups: one env per group
    ([7], 1, [[7]]),
])
def test_split_groups(env_ids, groups, expected):
    assert split_groups(env_ids, groups) == expected


def test_split_groups_refuses_zero_groups():
    with pytest.raises(ValueError, match="groups must be at least 1, got 0"):
        split_groups([0, 1], 0)


# --- two link nodes in two buses --------------------------------------------------------------------
rclpy_required = pytest.mark.ros


def link_args(side: str, env_ids: list[int], groups: int = 1) -> list[str]:
    return ["--ros-args", "-r", f"__node:=batch_link_{side}", "-r", "__ns:=/half_1", "-p", f"side:={side}",
            "-p", f"env_ids:={env_ids}", "-p", f"groups:={groups}", "-p", "max_wait_s:=5.0"]


@rclpy_required
def test_ticks_cross_as_one_batch_each_way(context):
    from rclpy.experimental import EventsExecutor

    from carla_rl.contract import topics
    from carla_rl.nodes.support import qos_profiles as qos
    from carla_rl.nodes.batch_link_node import BatchLinkNode
    from carla_rl.nodes.support.intra_process import ComposableNode, IntraProcessBus
    from carla_rl_interfaces.msg import Observation, StepReward, VehicleCommand

    env_bus, policy_bus = IntraProcessBus(), IntraProcessBus()
    envs_link = BatchLinkNode(intra_process=env_bus, context=context, cli_args=link_args("envs", [0, 1]),
                              use_global_arguments=False)
    policy_link = BatchLinkNode(intra_process=policy_bus, context=context,
                                cli_args=link_args("policy", [0, 1]), use_global_arguments=False)
    envs = ComposableNode("fake_envs", intra_process=env_bus, context=context)        # sims + preprocessors
    policy = ComposableNode("fake_policy", intra_process=policy_bus, context=context)
    got = {"observation": [], "reward": [], "command": []}
    obs_pubs, reward_pubs, command_pubs = {}, {}, {}
    for env_id in (0, 1, 2):
        ns = topics.env_namespace(env_id)
        obs_pubs[env_id] = envs.create_publisher(Observation, f"{ns}/{topics.linked(topics.OBSERVATION)}",
                                                 qos.SENSOR)
        reward_pubs[env_id] = envs.create_publisher(StepReward, f"{ns}/{topics.linked(topics.STEP_REWARD)}",
                                                    qos.SENSOR)
        envs.create_subscription(VehicleCommand, f"{ns}/{topics.linked(topics.VEHICLE_COMMAND)}",
                                 got["command"].append, qos.SENSOR)
        policy.create_subscription(Observation, f"{ns}/{topics.OBSERVATION}", got["observation"].append,
                                   qos.SENSOR)
        policy.create_subscription(StepReward, f"{ns}/{topics.STEP_REWARD}", got["reward"].append, qos.SENSOR)
        command_pubs[env_id] = policy.create_publisher(VehicleCommand, f"{ns}/{topics.VEHICLE_COMMAND}",
                                                       qos.SENSOR)
    executor = EventsExecutor(context=context)
    nodes = (envs_link, policy_link, envs, policy)
    for node in nodes:
        executor.add_node(node)

    def spin_until(predicate) -> bool:
        return spin_composed_until(executor, (env_bus, policy_bus), predicate, TIMEOUT_S)

    def wait_matched() -> bool:  # every link endpoint sees its peer in the other bus
        return spin_until(lambda: envs_link.batch_pub.get_subscription_count() >= 1
                          and policy_link.batch_pub.get_subscription_count() >= 1)

    try:
        assert wait_matched()
        # one tick of envs 0 and 1; env 2 is not the link's (not even subscribed), and a reward that names
        # env 7 on env 1's topic is dropped and counted
        reward_pubs[1].publish(StepReward(env_id=7, step_id=3))
        for env_id in (1, 0, 2):
            obs_pubs[env_id].publish(Observation(env_id=env_id, step_id=10 + env_id, frames=bytes(range(6))))
            reward_pubs[env_id].publish(StepReward(env_id=env_id, step_id=10 + env_id, reward=0.5 * env_id))
        env_bus.drain()  # the tick's in-process messages; complete with the last of envs 0 and 1: one batch
        assert envs_link.diag.counters["batches_sent"] == 1
        assert envs_link.diag.counters["items_sent"] == 4
        assert envs_link.diag.counters["incomplete_batches"] == 0
        assert envs_link.diag.counters["foreign_envs"] == 1
        assert spin_until(lambda: len(got["observation"]) == 2 and len(got["reward"]) == 2)
        assert sorted((o.env_id, o.step_id, bytes(o.frames)) for o in got["observation"]) == [
            (0, 10, bytes(range(6))), (1, 11, bytes(range(6)))]
        assert sorted((r.env_id, r.reward) for r in got["reward"]) == [(0, 0.0), (1, 0.5)]
        assert policy_link.diag.counters["batches_received"] == 1
        assert policy_link.gatherers[0].awaited == {0, 1}

        # the policy answers both envs in one callback: one batch, complete
        command_pubs[1].publish(VehicleCommand(env_id=1, step_id=11, action_index=4))
        command_pubs[0].publish(VehicleCommand(env_id=0, step_id=10, action_index=3))
        policy_bus.drain()
        assert policy_link.diag.counters["batches_sent"] == 1
        assert policy_link.diag.counters["incomplete_batches"] == 0
        assert spin_until(lambda: len(got["command"]) == 2)
        assert sorted((c.env_id, c.step_id, c.action_index) for c in got["command"]) == [(0, 10, 3), (1, 11, 4)]
        assert envs_link.diag.counters["batches_received"] == 1
        assert envs_link.gatherers[0].awaited == {0, 1}  # the next batch waits for the envs that were commanded

        # the next tick of env 0 alone is not complete: it goes out when the bus has run everything queued
        obs_pubs[0].publish(Observation(env_id=0, step_id=12))
        reward_pubs[0].publish(StepReward(env_id=0, step_id=12))
        assert envs_link.gatherers[0].pending == 0
        env_bus.drain()
        assert envs_link.diag.counters["batches_sent"] == 2
        assert envs_link.diag.counters["incomplete_batches"] == 1
        assert spin_until(lambda: len(got["observation"]) == 3 and len(got["reward"]) == 3)
        assert got["observation"][-1].step_id == 12
    finally:
        for node in nodes:
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()


@rclpy_required
@pytest.mark.parametrize("args,message", [
    (["-p", "side:=envs"], "env_ids: a batch link needs at least one env id"),
    (["-p", "side:=middle", "-p", "env_ids:=[0]"], "side"),
    (["-p", "side:=envs", "-p", "env_ids:=[1, 1]"], r"env_ids: env ids \[1, 1\] repeat an env"),
])
def test_bad_link_parameters_are_refused(context, args, message):
    from carla_rl.contract.config import ConfigError
    from carla_rl.nodes.batch_link_node import BatchLinkNode
    from carla_rl.nodes.support.intra_process import IntraProcessBus

    with pytest.raises(ConfigError, match=message):
        BatchLinkNode(intra_process=IntraProcessBus(), context=context, cli_args=["--ros-args", *args],
                      use_global_arguments=False)


@rclpy_required
def test_each_group_goes_out_as_soon_as_it_is_complete(context):
    """groups 2 over envs 0 and 1: env 0's tick leaves on its own while env 1 is still stepping; what env 1
    has when the bus runs dry leaves too, as an incomplete batch of its group."""
    from carla_rl.contract import topics
    from carla_rl.nodes.support import qos_profiles as qos
    from carla_rl.nodes.batch_link_node import BatchLinkNode
    from carla_rl.nodes.support.intra_process import ComposableNode, IntraProcessBus
    from carla_rl_interfaces.msg import Observation, StepReward

    bus = IntraProcessBus()
    link = BatchLinkNode(intra_process=bus, context=context, cli_args=link_args("envs", [0, 1], groups=2),
                         use_global_arguments=False)
    envs = ComposableNode("fake_envs", intra_process=bus, context=context)
    try:
        assert [g.env_ids for g in link.gatherers] == [(0,), (1,)]
        pub = {(env_id, kind): envs.create_publisher(msg_type, f"{topics.env_namespace(env_id)}/"
                                                     f"{topics.linked(name)}", qos.SENSOR)
               for env_id in (0, 1) for kind, msg_type, name in (("obs", Observation, topics.OBSERVATION),
                                                                 ("reward", StepReward, topics.STEP_REWARD))}
        pub[(0, "obs")].publish(Observation(env_id=0, step_id=1))
        pub[(1, "obs")].publish(Observation(env_id=1, step_id=1))
        pub[(0, "reward")].publish(StepReward(env_id=0, step_id=1))
        bus.drain()
        # env 0's group completed with its reward and left at once; env 1's left when the bus ran dry
        assert link.diag.counters["batches_sent"] == 2 and link.diag.counters["incomplete_batches"] == 1
        assert link.diag.counters["items_sent"] == 3
        assert [g.pending for g in link.gatherers] == [0, 0]
    finally:
        link.destroy_node()
        envs.destroy_node()
