"""embedded_simulator over DDS: lockstep with wait-for-control (a stalled controller never
deadlocks it: it brakes on timeout and counts it), the command of the awaited tick advances it, NaN
controls are rejected and counted, the reset service starts a new episode, map markers are latched."""

import math

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402
from std_msgs.msg import Float32  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from carla_rl.contract import topics  # noqa: E402
from carla_rl.nodes.support import qos_profiles as qos  # noqa: E402
from carla_rl_interfaces.msg import EgoSituation, VehicleCommand  # noqa: E402
from carla_rl_interfaces.srv import ResetEpisode  # noqa: E402
from ros_testing import (CONFIG_DIR, NodeProcess, call, spin_until, wait_for_service,  # noqa: E402
                         watch_diagnostics)

NS = "/env_3"
TIMEOUT_S = 60.0


@pytest.mark.ros
@pytest.mark.parametrize("executor", ["events", "single"])  # node_runner's two executors
def test_lockstep_timeouts_commands_and_reset(tmp_path, executor):
    rclpy.init()
    node = rclpy.create_node("simulator_test")
    situations, map_markers = [], []
    situation_topic = f"{NS}/{topics.carla_topic(topics.DEFAULT_ROLE_NAME, topics.SITUATION)}"
    node.create_subscription(EgoSituation, situation_topic, situations.append, qos.SENSOR)
    # the bridge topics that nothing in the training graph reads are published while subscribed
    extras = {"radar": [], "speedometer": [], "clock": []}
    node.create_subscription(PointCloud2, f"{NS}/{topics.carla_topic(topics.DEFAULT_ROLE_NAME, topics.RADAR)}",
                             extras["radar"].append, qos.SENSOR)
    node.create_subscription(Float32, f"{NS}/{topics.carla_topic(topics.DEFAULT_ROLE_NAME, topics.SPEEDOMETER)}",
                             extras["speedometer"].append, qos.SENSOR)
    node.create_subscription(Clock, f"{NS}/{topics.CLOCK}", extras["clock"].append, qos.CLOCK)
    node.create_subscription(MarkerArray, f"{NS}/{topics.MAP_MARKERS}", map_markers.append, qos.LATCHED)
    counters = watch_diagnostics(node, f"{NS}/embedded_simulator")
    commands = node.create_publisher(VehicleCommand, f"{NS}/{topics.VEHICLE_COMMAND}", qos.SENSOR)
    proc = NodeProcess.node("embedded_simulator",
                            ["--params-file", str(CONFIG_DIR / "sim.yaml"),
                             "--params-file", str(CONFIG_DIR / "curriculum.yaml")], tmp_path, namespace=NS,
                            overrides={"shell.env_id": 3, "shell.required_subscribers": 1,
                                       "shell.control_timeout_s": 0.2, "shell.diagnostics_period_s": 0.2,
                                       "shell.initial_phase": 2},
                            CARLA_RL_EXECUTOR=executor)
    try:
        # nobody answers: the simulator keeps ticking on timeouts (full brake), and says so
        assert spin_until(node, lambda: len(situations) >= 5 and int(counters.get("control_timeouts", 0)) >= 3,
                          TIMEOUT_S), proc.output()
        assert situations[-1].phase == 2 and situations[0].episode_step == 0
        assert spin_until(node, lambda: all(len(v) >= 2 for v in extras.values()), TIMEOUT_S), \
            {k: len(v) for k, v in extras.items()}
        assert spin_until(node, lambda: len(map_markers) >= 1, TIMEOUT_S), "map markers are latched"
        assert any(m.ns == "lanes" for m in map_markers[-1].markers)
        # restart the simulator's clock to lockstep: answer every tick quickly from now on
        answered, mode = [], {"nan": False}

        def answer(msg):  # one answer per tick (a second one would be stale)
            cmd = VehicleCommand(env_id=3, step_id=msg.step_id, action_index=0)
            cmd.control.throttle = math.nan if mode["nan"] else 1.0
            commands.publish(cmd)
            answered.append(msg.step_id)

        assert spin_until(node, lambda: commands.get_subscription_count() > 0, TIMEOUT_S)
        node.create_subscription(EgoSituation, situation_topic, answer, qos.SENSOR)
        assert spin_until(node, lambda: len(answered) >= 40, TIMEOUT_S), proc.output()
        steps = [s.episode_step for s in situations[-20:]]
        assert steps == sorted(steps), "ticks advance one by one"
        # a NaN control is rejected (CARLA rule: brake) and counted, the simulator lives on
        mode["nan"] = True
        assert spin_until(node, lambda: int(counters.get("invalid_controls", 0)) > 0, TIMEOUT_S), counters
        client = wait_for_service(node, ResetEpisode, f"{NS}/{topics.RESET_SERVICE}", TIMEOUT_S)
        episode = situations[-1].episode_id
        response = call(node, client, ResetEpisode.Request(seed=7), TIMEOUT_S)
        assert response.success, response.message
        assert spin_until(node, lambda: any(s.episode_id > episode and s.episode_step == 0 for s in situations),
                          TIMEOUT_S)
        assert proc.alive(), proc.output()
    finally:
        code = proc.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    assert code == 0, proc.output()


def test_unknown_executor_is_a_configuration_error(monkeypatch):
    from carla_rl.contract.config import ConfigError
    from carla_rl.nodes.support.node_runner import EXECUTOR_ENV, make_executor

    monkeypatch.setenv(EXECUTOR_ENV, "fastest")
    with pytest.raises(ConfigError, match="CARLA_RL_EXECUTOR='fastest': expected 'events' or 'single'"):
        make_executor()


@pytest.mark.ros
def test_a_worker_hosts_simulator_waits_for_the_policy(tmp_path):
    """shell.wait_for_controller (envs on a worker host): no tick while nobody publishes the env's
    commands, though its other subscribers listen; the first tick once a controller appears."""
    from diagnostic_msgs.msg import DiagnosticArray

    rclpy.init()
    node = rclpy.create_node("simulator_wait_test")
    situations, heartbeats = [], []
    situation_topic = f"{NS}/{topics.carla_topic(topics.DEFAULT_ROLE_NAME, topics.SITUATION)}"
    node.create_subscription(EgoSituation, situation_topic, situations.append, qos.SENSOR)
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: heartbeats.extend(s for s in m.status if s.name == f"{NS}/embedded_simulator"),
                             10)
    proc = NodeProcess.node("embedded_simulator",
                            ["--params-file", str(CONFIG_DIR / "sim.yaml"),
                             "--params-file", str(CONFIG_DIR / "curriculum.yaml")], tmp_path, namespace=NS,
                            overrides={"shell.env_id": 3, "shell.required_subscribers": 1,
                                       "shell.wait_for_controller": True, "shell.diagnostics_period_s": 0.1})
    try:
        # up and heard 10 times (1 s), its situation subscribed: still no tick without a controller
        assert spin_until(node, lambda: len(heartbeats) >= 10, TIMEOUT_S), proc.output()
        assert not situations
        commands = node.create_publisher(VehicleCommand, f"{NS}/{topics.VEHICLE_COMMAND}", qos.SENSOR)
        assert spin_until(node, lambda: situations, TIMEOUT_S), proc.output()
        assert situations[0].episode_step == 0 and commands.get_subscription_count() == 1
    finally:
        code = proc.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    assert code == 0, proc.output()
