"""The live view renders offscreen (SDL_VIDEODRIVER=dummy): bird's-eye image + HUD from the topics."""

from __future__ import annotations

import os

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from carla_rl.contract import topics  # noqa: E402
from carla_rl.nodes.support import qos_profiles as qos  # noqa: E402
from carla_rl.nodes.support.live_display import BACKGROUND, LiveDisplay, LiveDisplayConfig  # noqa: E402
from carla_rl_interfaces.msg import CurriculumStatus, StepReward, VehicleCommand  # noqa: E402
from ops_helpers import solid_image  # noqa: E402
from ros_testing import spin_until  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")  # pygame's default font loader
ROLE = f"/env_0/carla/{topics.DEFAULT_ROLE_NAME}"
CONFIG = LiveDisplayConfig(view_size_px=128, hud_width_px=320, font_size=14, topdown_stale_s=60.0)


@pytest.fixture
def graph():
    rclpy.init()
    viewer = rclpy.create_node("live_view_test")
    talker = rclpy.create_node("live_view_talker")
    executor = SingleThreadedExecutor()
    executor.add_node(viewer)
    executor.add_node(talker)
    display = LiveDisplay(viewer, num_envs=2, config=CONFIG)
    try:
        yield viewer, talker, executor, display
    finally:
        display.close()
        executor.shutdown()
        talker.destroy_node()
        viewer.destroy_node()
        rclpy.try_shutdown()


def deliver(viewer, executor, publish, predicate, attempts: int = 10) -> bool:
    """Best-effort subscriptions: publish again until the display has it."""
    for _ in range(attempts):
        publish()
        if spin_until(viewer, predicate, 1.0, executor=executor):
            return True
    return False


def test_renders_view_and_hud(graph):
    viewer, talker, executor, display = graph
    pub = talker.create_publisher
    status = pub(CurriculumStatus, topics.CURRICULUM_STATUS, qos.LATCHED)
    topdown = pub(Image, f"/env_0/{topics.TOPDOWN_IMAGE}", qos.SENSOR)
    command = pub(VehicleCommand, f"/env_0/{topics.VEHICLE_COMMAND}", qos.SENSOR)
    reward = pub(StepReward, f"/env_0/{topics.STEP_REWARD}", qos.SENSOR)
    odometry = pub(Odometry, f"{ROLE}/{topics.ODOMETRY}", qos.SENSOR)
    assert spin_until(viewer, lambda: all(p.get_subscription_count() > 0
                                          for p in (status, topdown, command, reward, odometry)), 20.0,
                      executor=executor)
    status.publish(CurriculumStatus(phase=3, phase_name="town", num_phases=10, evaluating=True))
    assert spin_until(viewer, lambda: display.phase == 3, 10.0, executor=executor)
    cmd = VehicleCommand(env_id=0, step_id=9, action_index=4, q_value=1.25)
    cmd.control.throttle = 0.5
    assert deliver(viewer, executor, lambda: command.publish(cmd), lambda: display.view.action == 4)
    step = StepReward(env_id=0, episode_id=2, episode_step=5, reward=0.5, term_names=["progress", "collision"],
                      term_values=[0.75, -0.25])
    assert deliver(viewer, executor, lambda: reward.publish(step), lambda: display.view.terms)
    odom = Odometry()
    odom.twist.twist.linear.x = 10.0
    assert deliver(viewer, executor, lambda: odometry.publish(odom), lambda: display.view.speed_mps > 0)
    assert deliver(viewer, executor, lambda: topdown.publish(solid_image((200, 50, 50), 32, 1.0)),
                   lambda: display.view.image is not None)

    display.render()
    frame = display.frame()
    assert frame.shape == (128, 128 + 320, 3) and frame.dtype == np.uint8
    assert tuple(frame[64, 64]) == (200, 50, 50)                     # the bird's-eye view, scaled
    hud = frame[:, 128:]
    assert (hud != np.array(BACKGROUND, np.uint8)).any(axis=2).sum() > 500  # text was drawn
    lines = [text for text, _, _ in display.hud_lines()]
    assert "phase 3/10 town" in lines and "evaluating" in lines
    assert "speed  36.0 km/h" in lines
    assert "action 4  Q 1.25" in lines
    assert "reward +0.500  return +0.50" in lines
    assert any("progress" in line and "+0.750" in line for line in lines)
    assert any("collision" in line and "-0.250" in line for line in lines)


def test_falls_back_to_the_semantic_camera(graph):
    viewer, talker, executor, display = graph
    camera = talker.create_publisher(Image, f"{ROLE}/{topics.CAMERA}", qos.SENSOR)
    assert spin_until(viewer, lambda: camera.get_subscription_count() > 0, 20.0, executor=executor)
    assert deliver(viewer, executor, lambda: camera.publish(solid_image((10, 120, 30), 16, 1.0)),
                   lambda: display.view.camera is not None)
    display.render()
    assert tuple(display.frame()[10, 10]) == (10, 120, 30)
    display.select_env(1)  # another env: its own subscriptions, nothing received yet
    display.render()
    assert tuple(display.frame()[10, 10]) == BACKGROUND
    assert display.hud_lines()[0][0] == "env 1 of 2"
