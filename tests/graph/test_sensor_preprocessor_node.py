"""sensor_preprocessor over DDS: a consistent tick becomes one Observation with env id, step id and
the frame stack; a wrong encoding, a wrong size, a truncated buffer or NaN lidar is dropped, counted
by reason on /diagnostics, and never crashes the node."""

import math

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from nav_msgs.msg import Odometry as OdometryMsg  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

from carla_rl.nodes.support import ros_conversions as conv  # noqa: E402
from carla_rl.contract import topics  # noqa: E402
from carla_rl.nodes.support import qos_profiles as qos  # noqa: E402
from carla_rl.contract.semantic_palette import SemanticTag, tags_to_colours  # noqa: E402
from carla_rl.contract.sensor_frame import EgoSituation, Odometry  # noqa: E402
from carla_rl_interfaces.msg import EgoSituation as EgoSituationMsg  # noqa: E402
from carla_rl_interfaces.msg import Observation  # noqa: E402
from ros_testing import CONFIG_DIR, NodeProcess, spin_until, watch_diagnostics  # noqa: E402

TIMEOUT_S = 60.0
DT = 0.05
NS = "/env_2"
ROLE = topics.DEFAULT_ROLE_NAME


class Publisher:
    def __init__(self, node):
        c = lambda name: f"{NS}/{topics.carla_topic(ROLE, name)}"  # noqa: E731
        self.camera = node.create_publisher(Image, c(topics.CAMERA), qos.SENSOR)
        self.lidar = node.create_publisher(PointCloud2, c(topics.LIDAR), qos.SENSOR)
        self.odom = node.create_publisher(OdometryMsg, c(topics.ODOMETRY), qos.SENSOR)
        self.situation = node.create_publisher(EgoSituationMsg, c(topics.SITUATION), qos.SENSOR)

    def tick(self, step, image=None, lidar=None, episode_step=None):
        stamp = conv.time_msg(step * DT)
        tags = np.full((84, 84), SemanticTag.ROAD, np.uint8)
        tags[40:44, 40:44] = SemanticTag.CAR
        img = conv.image_msg(tags_to_colours(tags), stamp, ROLE) if image is None else image(stamp)
        points = np.array([[5.0, 0.0, 0.0, 1.0], [0.0, 3.0, 0.0, 1.0]], np.float32) if lidar is None else lidar
        self.camera.publish(img)
        self.lidar.publish(conv.point_cloud_msg(points, conv.LIDAR_FIELDS, stamp, ROLE))
        self.odom.publish(conv.odometry_msg(Odometry(vx=3.0), stamp, ROLE))
        sit = EgoSituation(step_id=step, episode_id=1, episode_step=step - 100 if episode_step is None
                           else episode_step, phase=2, route_remaining_m=50.0)
        self.situation.publish(conv.situation_msg(sit, stamp, ROLE))


@pytest.mark.ros
def test_observations_and_bad_input(tmp_path):
    rclpy.init()
    node = rclpy.create_node("preprocessor_test")
    observations = []
    observation_sub = node.create_subscription(Observation, f"{NS}/{topics.OBSERVATION}", observations.append,
                                               qos.SENSOR)
    counters = watch_diagnostics(node, f"{NS}/sensor_preprocessor")
    pub = Publisher(node)
    proc = NodeProcess.node("sensor_preprocessor",
                            ["--params-file", str(CONFIG_DIR / "preprocess.yaml"),
                             "--params-file", str(CONFIG_DIR / "curriculum.yaml")], tmp_path, namespace=NS,
                            overrides={"env_id": 2, "diagnostics_period_s": 0.2})
    try:
        # every topic matched both ways first: a best-effort message sent before its reader matched is lost
        assert spin_until(node, lambda: all(p.get_subscription_count() > 0
                                            for p in (pub.camera, pub.lidar, pub.odom, pub.situation))
                          and observation_sub.get_publisher_count() > 0, TIMEOUT_S), proc.output()
        pub.tick(100, episode_step=0)
        assert spin_until(node, lambda: len(observations) == 1, TIMEOUT_S), proc.output()
        obs = observations[0]
        assert (obs.env_id, obs.step_id, obs.episode_step, obs.phase) == (2, 100, 0, 2)
        frames = np.frombuffer(obs.frames, np.uint8).reshape(obs.frame_stack, obs.height, obs.width)
        assert frames.shape == (4, 84, 84)
        assert (frames == frames[-1]).all(), "episode start: the stack repeats the first frame"
        assert frames[-1, 41, 41] != frames[-1, 0, 0], "vehicles and road map to different intensities"
        assert len(obs.vector_names) == len(obs.vector) > 0
        assert list(obs.action_mask) == [1, 1, 1, 1, 1, 0], "phase 2 allows actions 0-4"

        bad_inputs = {
            "dropped_wrong_encoding": dict(image=lambda s: conv.image_msg(np.zeros((84, 84), np.uint8), s, ROLE,
                                                                          "mono8")),
            "dropped_wrong_size": dict(image=lambda s: conv.image_msg(np.zeros((64, 84, 3), np.uint8), s, ROLE)),
            "dropped_non_finite_lidar": dict(lidar=np.array([[math.nan, 0, 0, 1]], np.float32)),
        }
        for step, (reason, kwargs) in enumerate(bad_inputs.items(), start=101):
            pub.tick(step, **kwargs)
            assert spin_until(node, lambda: int(counters.get(reason, 0)) >= 1, TIMEOUT_S), \
                (reason, counters, proc.output())
        truncated = conv.image_msg(tags_to_colours(np.ones((84, 84), np.uint8)), conv.time_msg(0), ROLE)
        truncated.data = truncated.data[:100]
        pub.tick(104, image=lambda s: (setattr(truncated.header, "stamp", s), truncated)[1])
        assert spin_until(node, lambda: int(counters.get("dropped_truncated_buffer", 0)) >= 1, TIMEOUT_S), counters
        assert len(observations) == 1, "bad ticks publish nothing"
        pub.tick(105)
        assert spin_until(node, lambda: len(observations) == 2, TIMEOUT_S), proc.output()
        assert observations[1].step_id == 105 and proc.alive()
        assert int(counters["dropped_samples"]) == 4
    finally:
        code = proc.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    assert code == 0, proc.output()
