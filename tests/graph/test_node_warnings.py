"""A node warning on /diagnostics (a drop or bad-input counter growing) reaches the console of `carla-rl
train`: NodeWarnings decides when (fake clock, no processes), ProgressMonitor hands each status over with
the growing counters' values (over DDS, from a node's DiagnosticsReporter)."""

import pytest

from carla_rl.graph.supervisor import NodeWarnings, SupervisorConfig, load_supervisor_config
from ros_testing import CONFIG_DIR, FakeClock, spin_until

REPEAT_S = 60.0
NODE = "/dqn_policy"


def test_a_warning_is_told_when_it_starts_then_once_per_repeat_while_it_lasts():
    clock = FakeClock()
    warnings = NodeWarnings(REPEAT_S, clock)
    assert warnings.update(NODE, False, "ok") is None  # never warned: nothing to say
    assert warnings.update(NODE, True, "growing: dropped_ticks (dropped_ticks=3)") == \
        f"warning: {NODE}: growing: dropped_ticks (dropped_ticks=3)"
    lines = []
    for _ in range(59):  # a status a second, flipping as the counter grows now and then
        clock.now += 1.0
        lines.append(warnings.update(NODE, clock.now % 2 == 0, "growing: dropped_ticks"))
    assert lines == [None] * 59
    clock.now += 1.0
    assert warnings.update(NODE, True, "growing: dropped_ticks (dropped_ticks=40)") == \
        f"warning: {NODE}: growing: dropped_ticks (dropped_ticks=40) (still)"
    assert warnings.update("/reward_evaluator", True, "growing: dropped_ticks") is not None, "per node"


def test_a_node_ok_again_for_the_repeat_interval_is_told_once_and_a_new_warning_is_told_at_once():
    clock = FakeClock()
    warnings = NodeWarnings(REPEAT_S, clock)
    assert warnings.update(NODE, True, "growing: non_finite_inputs") is not None
    said = []
    for _ in range(int(REPEAT_S) + 5):
        clock.now += 1.0
        line = warnings.update(NODE, False, "ok")
        if line:
            said.append(line)
    assert said == [f"{NODE}: no warning for {REPEAT_S:.0f} s"]
    clock.now += 1.0
    assert warnings.update(NODE, True, "growing: non_finite_inputs") == f"warning: {NODE}: growing: non_finite_inputs"


def test_the_shipped_config_sets_the_repeat_interval():
    config = load_supervisor_config(CONFIG_DIR)
    assert config.warning_repeat_s == SupervisorConfig().warning_repeat_s == REPEAT_S


@pytest.mark.ros
def test_the_cli_monitor_hands_over_a_nodes_warning_with_its_counter(ros_node):
    from rclpy.executors import SingleThreadedExecutor

    from carla_rl.nodes.support.diagnostics import DiagnosticsReporter
    from carla_rl.nodes.support.progress_monitor import ProgressMonitor

    statuses = []
    reporter = DiagnosticsReporter(ros_node, 3600.0, warn_on=("dropped_ticks",))  # published by hand below
    monitor = ProgressMonitor(on_status=lambda *status: statuses.append(status))
    executor = SingleThreadedExecutor()
    for node in (ros_node, monitor):
        executor.add_node(node)
    try:
        assert spin_until(ros_node, lambda: reporter._pub.get_subscription_count() > 0, 30.0, executor=executor)
        reporter.count("dropped_ticks", 3)
        reporter.count("episodes", 7)
        reporter.publish()
        assert spin_until(ros_node, lambda: statuses, 30.0, executor=executor)
        assert statuses[-1] == (ros_node.get_fully_qualified_name(), True, "growing: dropped_ticks (dropped_ticks=3)")
        reporter.publish()  # nothing grew since: OK again
        assert spin_until(ros_node, lambda: len(statuses) == 2, 30.0, executor=executor)
        assert statuses[-1] == (ros_node.get_fully_qualified_name(), False, "ok")
    finally:
        executor.shutdown()
        monitor.destroy_node()
