"""Two nodes in two processes exchange a carla_rl_interfaces message over DDS."""

import sys
import textwrap

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test` (bootstraps the venv)")

from carla_rl_interfaces.msg import VehicleCommand  # noqa: E402
from ros_testing import NodeProcess, ros_env, spin_until  # noqa: E402

PUBLISHER = textwrap.dedent("""
    import rclpy
    from carla_rl_interfaces.msg import VehicleCommand
    rclpy.init()
    node = rclpy.create_node("talker")
    pub = node.create_publisher(VehicleCommand, "/foundation_test/command", 10)
    count = 0
    def tick():
        global count
        msg = VehicleCommand(env_id=3, step_id=1000 + count, action_index=2)
        msg.control.throttle = 0.5
        msg.control.steer = -0.25
        msg.control.reverse = True
        pub.publish(msg)
        count += 1
    node.create_timer(0.02, tick)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    node.destroy_node()
    rclpy.try_shutdown()
""")


@pytest.mark.ros
def test_message_crosses_processes(tmp_path):
    received = []
    rclpy.init()
    node = rclpy.create_node("listener")
    node.create_subscription(VehicleCommand, "/foundation_test/command", received.append, 10)
    talker = NodeProcess([sys.executable, "-c", PUBLISHER], tmp_path / "talker.log", ros_env())
    try:
        assert spin_until(node, lambda: len(received) >= 3, timeout=30.0), talker.output()
    finally:
        code = talker.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    msg = received[-1]
    assert msg.env_id == 3 and msg.step_id >= 1000 and msg.action_index == 2
    assert msg.control.throttle == pytest.approx(0.5)
    assert msg.control.steer == pytest.approx(-0.25)
    assert msg.control.reverse is True
    assert code == 0, talker.output()
