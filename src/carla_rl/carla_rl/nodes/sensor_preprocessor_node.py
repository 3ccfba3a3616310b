"""sensor_preprocessor: the bridge-contract sensors of one env -> carla_rl_interfaces/Observation.

Syncs camera + lidar + odometry + situation of a tick (by stamp), validates each sample (bad ones
are dropped, counted by reason and reported on /diagnostics), builds the frame stack and vector
features with :class:`carla_rl.preprocess.ObservationBuilder`, publishes one Observation per tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nav_msgs.msg import Odometry as OdometryMsg
from nav_msgs.msg import Path
from sensor_msgs.msg import Image, PointCloud2

from carla_rl.nodes.support import ros_conversions as conv
from carla_rl.contract import topics
from carla_rl.contract.config import param
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl.nodes.support.diagnostics import DiagnosticsReporter
from carla_rl.nodes.support.intra_process import ComposableNode
from carla_rl.nodes.support.node_runner import run_node
from carla_rl.nodes.support.ros_parameters import declare_config, declare_phases
from carla_rl.preprocess import (ObservationBuilder, PreprocessConfig, SensorDataError, StepSynchronizer,
                                 action_mask)
from carla_rl_interfaces.msg import EgoSituation, Observation

REQUIRED = ("camera", "lidar", "odometry", "situation")


@dataclass(frozen=True)
class PreprocessorNodeConfig:
    env_id: int = param(0, "Environment index", low=0, high=1023, read_only=True)
    role_name: str = param(topics.DEFAULT_ROLE_NAME, "Ego role name in the bridge topics", read_only=True)
    diagnostics_period_s: float = param(1.0, "Heartbeat / counters period", low=0.05, high=60.0,
                                        runtime=True)



class SensorPreprocessorNode(ComposableNode):
    def __init__(self, **node_options) -> None:  # alone, or composed: see nodes/component_container.py
        super().__init__("sensor_preprocessor", **node_options)
        self.cfg = declare_config(self, PreprocessorNodeConfig, apply=self.apply_config)
        self.pre_cfg = declare_config(self, PreprocessConfig)
        self.phases = declare_phases(self)
        self.builder = ObservationBuilder(self.pre_cfg)
        self.sync = StepSynchronizer(REQUIRED, max_pending_steps=self.pre_cfg.sync_max_pending_steps)
        self.diag = DiagnosticsReporter(self, self.cfg.diagnostics_period_s, warn_on=("dropped_samples",))
        self.current_episode: int | None = None
        self.last_key = -1
        role = self.cfg.role_name
        sub = self.create_subscription
        sub(Image, topics.carla_topic(role, topics.CAMERA), lambda m: self.on_sample("camera", m), qos.SENSOR)
        sub(PointCloud2, topics.carla_topic(role, topics.LIDAR), lambda m: self.on_sample("lidar", m), qos.SENSOR)
        sub(OdometryMsg, topics.carla_topic(role, topics.ODOMETRY), lambda m: self.on_sample("odometry", m),
            qos.SENSOR)
        sub(EgoSituation, topics.carla_topic(role, topics.SITUATION), lambda m: self.on_sample("situation", m),
            qos.SENSOR)
        sub(Path, topics.carla_topic(role, topics.ROUTE), self.on_route, qos.LATCHED)
        self.pub = self.create_publisher(Observation, topics.OBSERVATION, qos.SENSOR)
        self.vector_names = list(self.builder.vector_names)

    def apply_config(self, cfg: PreprocessorNodeConfig) -> None:
        """A run-time parameter was set (the heartbeat period)."""
        self.cfg = cfg
        self.diag.set_period(cfg.diagnostics_period_s)

    def on_route(self, msg: Path) -> None:
        self.builder.set_route(conv.path_array(msg))
        self.diag.count("routes")

    def on_sample(self, kind: str, msg) -> None:
        key = conv.stamp_nanoseconds(msg.header.stamp)
        if kind == "situation" and key <= self.last_key:  # the simulator restarted (time went back)
            self.sync.reset()
            self.last_key = -1  # forget the old clock, or every new tick would look like a restart
            self.diag.count("simulator_restarts")
        bundle = self.sync.add(kind, key, msg)
        if bundle is None:
            return
        self.last_key = key
        try:
            self.publish_observation(bundle.messages)
        except SensorDataError as exc:
            self.diag.count("dropped_samples")
            self.diag.count(f"dropped_{exc.reason}")
            self.get_logger().warn(f"dropped tick: {exc}", throttle_duration_sec=5.0)

    def publish_observation(self, messages: dict) -> None:
        image: Image = messages["camera"]
        cloud: PointCloud2 = messages["lidar"]
        situation_msg: EgoSituation = messages["situation"]
        camera = self.builder.validate_image(np.frombuffer(image.data, dtype=np.uint8), image.height,
                                             image.width, image.encoding, image.step)
        lidar = self.builder.validate_lidar(np.frombuffer(cloud.data, dtype=np.uint8),
                                            num_points=cloud.width * cloud.height, point_step=cloud.point_step,
                                            field_names=tuple(f.name for f in cloud.fields))
        odometry = conv.odometry_from_msg(messages["odometry"])
        speed = float(np.hypot(odometry.vx, odometry.vy))
        self.builder.validate_odometry(odometry, speed)
        situation = conv.situation_from_msg(situation_msg)
        if situation.episode_step == 0 or situation.episode_id != self.current_episode:
            self.builder.reset()
            self.current_episode = situation.episode_id
        frames, vector = self.builder.build(camera, lidar, odometry, speed, situation)
        obs = Observation()
        obs.header = situation_msg.header
        obs.env_id = self.cfg.env_id
        obs.step_id = situation.step_id
        obs.episode_id = situation.episode_id
        obs.episode_step = situation.episode_step
        obs.phase = situation.phase
        obs.evaluation = situation.evaluation
        obs.frame_stack, obs.height, obs.width = (int(v) for v in frames.shape)
        obs.frames = conv.uint8_sequence(frames)
        obs.vector = conv.float32_sequence(vector)
        if situation.episode_step == 0:
            obs.vector_names = self.vector_names
        if 1 <= situation.phase <= len(self.phases):
            obs.action_mask = conv.uint8_sequence(
                action_mask(self.phases[situation.phase - 1].scenario.allowed_actions))
        self.pub.publish(obs)
        self.diag.count("observations")


COMPONENT = SensorPreprocessorNode  # for component_container


def main(args: list[str] | None = None) -> int:
    return run_node(SensorPreprocessorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
