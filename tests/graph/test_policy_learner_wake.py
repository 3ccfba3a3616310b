"""dqn_policy's learner thread sleeps on ``new_data``: acts set it only while learning is on (a paused
learner is not woken per act), so switching learning on must wake it."""

import threading
import types

import pytest

pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from std_srvs.srv import SetBool  # noqa: E402

from carla_rl.nodes.dqn_policy_node import DQNPolicyNode, PolicyNodeConfig  # noqa: E402


def fake_node(training: bool = True):
    return types.SimpleNamespace(cfg=PolicyNodeConfig(training=training), learning=threading.Event(),
                                 new_data=threading.Event())


def set_learning(node, on: bool) -> SetBool.Response:
    return DQNPolicyNode.on_set_learning(node, SetBool.Request(data=on), SetBool.Response())


def test_switching_learning_on_wakes_the_learner():
    node = fake_node()
    response = set_learning(node, True)
    assert response.success and node.learning.is_set() and node.new_data.is_set()
    node.new_data.clear()
    set_learning(node, False)
    assert not node.learning.is_set() and not node.new_data.is_set()


def test_a_policy_that_does_not_train_never_starts_learning():
    node = fake_node(training=False)
    set_learning(node, True)
    assert not node.learning.is_set() and not node.new_data.is_set()
