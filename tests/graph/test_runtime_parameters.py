"""``ros2 param set`` on a running node either takes effect or is refused with a reason.

A run-time parameter (``param(..., runtime=True)``) is validated like the config file and applied to
the node (here the heartbeat timer of dqn_policy, observed on /diagnostics); a read-only one and an
out-of-range value are refused, and the node keeps its value.
"""

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ros_testing import NodeProcess, spin_until  # noqa: E402

from carla_rl.contract.config import ConfigError, param  # noqa: E402

TIMEOUT_S = 30.0


def _result(node, future, timeout: float):
    assert spin_until(node, future.done, timeout), "the parameter service did not answer"
    return future.result()


@pytest.mark.ros
def test_set_parameter_on_a_running_node(ros_node, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    heartbeats: list[object] = []

    def on_diagnostics(msg) -> None:
        heartbeats.extend(s for s in msg.status if s.name == "/dqn_policy")

    ros_node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    # a 60 s heartbeat: none comes within the test unless the new period is applied
    with NodeProcess.node("dqn_policy", [], tmp_path,
                          overrides={"save_dir": str(tmp_path), "diagnostics_period_s": 60.0}) as proc:
        client = AsyncParameterClient(ros_node, "dqn_policy")
        assert client.wait_for_services(timeout_sec=TIMEOUT_S), proc.output()

        set_ok = _result(ros_node, client.set_parameters([Parameter("diagnostics_period_s", value=0.1)]),
                         TIMEOUT_S)
        assert [r.successful for r in set_ok.results] == [True], set_ok.results
        assert spin_until(ros_node, lambda: len(heartbeats) >= 5, TIMEOUT_S), (
            f"{len(heartbeats)} heartbeats after setting a 0.1 s period\n{proc.output()}")
        got = _result(ros_node, client.get_parameters(["diagnostics_period_s"]), TIMEOUT_S)
        assert got.values[0].double_value == pytest.approx(0.1)

        read_only = _result(ros_node, client.set_parameters([Parameter("num_envs", value=4)]), TIMEOUT_S)
        assert not read_only.results[0].successful
        assert "read-only" in read_only.results[0].reason

        out_of_range = _result(ros_node, client.set_parameters([Parameter("stats_period_s", value=100.0)]),
                               TIMEOUT_S)
        assert not out_of_range.results[0].successful
        assert "range" in out_of_range.results[0].reason
        kept = _result(ros_node, client.get_parameters(["stats_period_s", "num_envs"]), TIMEOUT_S)
        assert (kept.values[0].double_value, kept.values[1].integer_value) == (1.0, 1)
        assert proc.alive(), proc.output()


@dataclasses.dataclass(frozen=True)
class _Schedule:
    period_s: float = param(1.0, "A period", low=0.0, runtime=True)  # no upper bound: no ROS range
    first_s: float = param(0.0, "Before the first", low=0.0, runtime=True)
    name: str = param("a", "Fixed at start")

    def validate(self) -> None:
        if self.first_s > self.period_s:
            raise ConfigError("first_s must not exceed period_s")


@pytest.mark.ros
def test_runtime_values_are_checked_like_the_config_file(context):
    """What the descriptor cannot say (a one-sided bound, ``validate()``) is refused by the config
    check, with its reason; an accepted set reaches the apply hook with the new config."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from carla_rl.nodes.support.ros_parameters import declare_config

    node = Node("runtime_parameters_test", context=context, start_parameter_services=False)
    try:
        applied: list[_Schedule] = []
        cfg = declare_config(node, _Schedule, "schedule.", apply=applied.append)
        assert cfg == _Schedule() and applied == []

        refused = node.set_parameters([Parameter("schedule.period_s", value=-1.0)])[0]
        assert not refused.successful and "schedule.period_s" in refused.reason
        refused = node.set_parameters([Parameter("schedule.first_s", value=2.0)])[0]
        assert not refused.successful and "first_s must not exceed period_s" in refused.reason
        assert not node.set_parameters([Parameter("schedule.name", value="b")])[0].successful
        assert applied == []

        assert node.set_parameters([Parameter("schedule.period_s", value=3.0)])[0].successful
        assert node.set_parameters([Parameter("schedule.first_s", value=2.0)])[0].successful
        assert applied == [_Schedule(period_s=3.0), _Schedule(period_s=3.0, first_s=2.0)]

        with pytest.raises(TypeError, match="apply hook"):
            declare_config(node, _Schedule, "other.")
    finally:
        node.destroy_node()
