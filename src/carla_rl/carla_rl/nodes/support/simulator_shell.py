"""The simulator side of the lockstep protocol, shared by the embedded simulator and the direct
CARLA client: publish the sensors of tick t, wait for the command of tick t (or brake on timeout),
step, repeat. The world behind it is any object with ``reset(...) -> SensorFrame`` and
``step(VehicleControl) -> SensorFrame`` (``carla_rl.sim.World`` or ``carla_rl.carla.CarlaWorld``).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

from carla_rl.nodes.support import ros_conversions as conv
from carla_rl.contract import topics
from carla_rl.contract.config import param
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl.nodes.support.diagnostics import DiagnosticsReporter
from carla_rl.nodes.support.sensor_frame_publisher import SensorFramePublisher
from carla_rl.nodes.support.subscriber_check import SubscriberCheck
from carla_rl.contract.scenario import ScenarioConfig
from carla_rl.contract.seeds import evaluation_seed, training_seed
from carla_rl.contract.sensor_frame import SensorFrame, VehicleControl
from carla_rl_interfaces.msg import CurriculumStatus
from carla_rl_interfaces.msg import ScenarioConfig as ScenarioConfigMsg
from carla_rl_interfaces.msg import VehicleCommand
from carla_rl_interfaces.srv import LoadScenario, ResetEpisode

BRAKE = VehicleControl(throttle=0.0, steer=0.0, brake=1.0)
MAX_POLL_S = 0.05  # the shell timer's longest period: start-up (waiting for subscribers) is seen this fast


@dataclass(frozen=True)
class SimulatorShellConfig:
    """Node-level settings of a simulator (the world's own settings are separate)."""

    env_id: int = param(0, "Environment index (the namespace is /env_<env_id>)", low=0, high=1023,
                        read_only=True)
    role_name: str = param(topics.DEFAULT_ROLE_NAME, "Ego role name, as in the CARLA bridge topics",
                           read_only=True)
    seed: int = param(0, "Base seed; episode k of env e uses a seed derived from (seed, e, k); training "
                      "and evaluation episodes draw from disjoint ranges (carla_rl.contract.seeds)", low=0,
                      high=2**31 - 1)
    initial_phase: int = param(1, "Phase whose scenario is loaded until /carla_rl/scenario says otherwise",
                               low=1, high=100)
    control_timeout_s: float = param(0.5, "Wait this long for the command of a tick, then brake and step",
                                     low=0.001, high=60.0)
    time_scale: float = param(0.0, "0 = as fast as possible; 1 = real time; 2 = twice real time",
                              low=0.0, high=100.0)
    required_subscribers: int = param(2, "Start ticking once this many nodes subscribe to the situation "
                                      "topic (preprocessor + reward evaluator)", low=0, high=100)
    wait_for_controller: bool = param(False, "Also wait for a publisher of the env's vehicle_command (the "
                                      "policy) before the first tick: envs on a worker host then start "
                                      "with the learner, and their first episode is stored whole")
    publish_radar: bool = param(True, "Publish the radar point cloud")
    markers_period_ticks: int = param(5, "Publish rviz markers every N ticks (only while subscribed)",
                                      low=1, high=100000)
    topdown_period_ticks: int = param(20, "Publish the human top-down render every N ticks (only while "
                                      "subscribed)", low=1, high=100000)
    topdown_size_px: int = param(256, "Size of the human top-down render", low=32, high=2048)
    diagnostics_period_s: float = param(1.0, "Heartbeat / counters period on /diagnostics", low=0.05,
                                        high=60.0)
    latency_window: int = param(2000, "Ticks over which the publish -> command latency quantiles are "
                                "reported on /diagnostics", low=10, high=1_000_000)
    autopilot: bool = param(False, "Drive with the world's scripted autopilot instead of waiting for "
                            "commands (sim-only runs: rviz2, live view, recordings)")


class SimulatorShell:
    """Endpoints and lockstep logic; owned by a Node subclass that supplies the world."""

    def __init__(self, node: Node, config: SimulatorShellConfig, world: Any,
                 scenario_for_phase: Callable[[int], ScenarioConfig], fixed_delta_seconds: float,
                 markers: Any = None, autopilot_factory: Callable[[Any], Any] | None = None) -> None:
        self.node = node
        self.cfg = config
        self.world = world
        self.dt = fixed_delta_seconds
        self.scenario_for_phase = scenario_for_phase
        self.markers = markers  # optional: object with .dynamic(world, stamp) / .static(world, stamp)
        role = config.role_name
        self.frame_id = role
        self.pending_scenario: tuple[int, ScenarioConfig] | None = None
        self.phase = config.initial_phase
        self.paused = False
        self.episode_index = 0
        self.evaluation_index = 0
        self.awaiting_step: int | None = None
        self.published_at = 0.0
        self.next_tick_due = 0.0
        self.queued_command: VehicleCommand | None = None
        self.static_markers_sent_for = None
        self.last_frame: SensorFrame | None = None
        self.driver = None
        if config.autopilot:
            if autopilot_factory is None:
                raise ValueError("shell.autopilot: this simulator has no scripted autopilot")
            self.driver = autopilot_factory(world)
        self.tf_pub = self._make_tf_publisher()
        self.latencies_s: deque[float] = deque(maxlen=config.latency_window)

        p = node.create_publisher
        self.sensors = SensorFramePublisher(node, role, config.publish_radar)
        self.pub_clock = p(Clock, topics.CLOCK, qos.CLOCK)
        self.pub_markers = p(MarkerArray, topics.MARKERS, qos.SENSOR)
        self.pub_map_markers = p(MarkerArray, topics.MAP_MARKERS, qos.LATCHED)
        self.pub_topdown = p(Image, topics.TOPDOWN_IMAGE, qos.SENSOR)
        # per-tick "does anybody listen" checks of the optional topics (an rmw query each, so cached)
        self.clock_listened = SubscriberCheck(self.pub_clock)
        self.markers_listened = SubscriberCheck(self.pub_markers)
        self.topdown_listened = SubscriberCheck(self.pub_topdown)
        self.tf_listened = SubscriberCheck(self.tf_pub) if self.tf_pub is not None else None

        self.command_sub = node.create_subscription(VehicleCommand, topics.VEHICLE_COMMAND, self.on_command,
                                                    qos.SENSOR)
        node.create_subscription(ScenarioConfigMsg, topics.SCENARIO, self.on_scenario, qos.LATCHED)
        node.create_subscription(CurriculumStatus, topics.CURRICULUM_STATUS, self.on_status, qos.LATCHED)
        node.create_service(ResetEpisode, topics.RESET_SERVICE, self.on_reset_service)
        node.create_service(LoadScenario, topics.LOAD_SCENARIO_SERVICE, self.on_load_scenario)

        self.diag = DiagnosticsReporter(node, config.diagnostics_period_s,
                                        warn_on=("control_timeouts", "invalid_controls"),
                                        before_publish=self.report_latency)
        # one timer drives start-up, pacing and the control timeout; it ticks at twice the tick rate only
        # when it paces the ticks (time_scale > 0, or the autopilot): in lockstep it only has to see a
        # control timeout, and each timer callback costs the container's executor a turn
        paced = config.time_scale > 0.0 or self.driver is not None
        poll = min(config.control_timeout_s / 4.0, MAX_POLL_S)
        if paced:
            poll = min(poll, self.dt / max(config.time_scale, 1.0) / 2.0)
        self.timer = node.create_timer(poll, self.on_timer)
        self.started = False

    # --- lockstep -----------------------------------------------------------------------------
    def on_timer(self) -> None:
        now = time.monotonic()
        if not self.started:
            controller = not self.cfg.wait_for_controller or self.command_sub.get_publisher_count() > 0
            if controller and self.sensors.situation.get_subscription_count() >= self.cfg.required_subscribers:
                self.started = True
                self.reset_episode(evaluation=False)
            return
        if self.driver is not None:
            if now >= self.next_tick_due and not self.paused:
                self.drive_autopilot()
            return
        if self.queued_command is not None and now >= self.next_tick_due:
            command, self.queued_command = self.queued_command, None
            self.execute(command)
        elif (self.awaiting_step is not None and not self.paused
              and now - self.published_at > self.cfg.control_timeout_s):
            self.diag.count("control_timeouts")
            self.advance(BRAKE)

    def on_command(self, msg: VehicleCommand) -> None:
        if self.awaiting_step is None or msg.step_id != self.awaiting_step:
            self.diag.count("stale_commands")
            return
        self.latencies_s.append(time.monotonic() - self.published_at)
        if self.cfg.time_scale > 0.0 and time.monotonic() < self.next_tick_due:
            self.queued_command = msg  # paced: on_timer executes it when due
            return
        self.execute(msg)

    def execute(self, msg: VehicleCommand) -> None:
        if msg.reset_episode:
            self.reset_episode(evaluation=msg.evaluation)
        else:
            self.advance(conv.control_from_msg(msg.control))

    def drive_autopilot(self) -> None:
        frame = self.last_frame
        situation = frame.situation
        scenario = self.scenario_for_phase(self.phase)
        if (situation.goal_reached or frame.collisions or situation.on_sidewalk
                or situation.episode_step >= scenario.max_episode_steps):
            self.reset_episode(evaluation=False)
        else:
            self.advance(self.driver(frame))

    def advance(self, control: VehicleControl) -> None:
        frame = self.world.step(control)
        self.diag.values["invalid_controls"] = str(getattr(self.world, "invalid_controls", 0))
        self.publish(frame)

    def reset_episode(self, evaluation: bool, seed: int | None = None) -> SensorFrame:
        if self.pending_scenario is not None:
            self.phase, scenario = self.pending_scenario
            self.pending_scenario = None
        else:
            scenario = self.scenario_for_phase(self.phase)
        if seed is None and evaluation:
            seed = evaluation_seed(self.cfg.seed, self.cfg.env_id, self.evaluation_index)
            self.evaluation_index += 1
        elif seed is None:
            seed = training_seed(self.cfg.seed, self.cfg.env_id, self.episode_index)
            self.episode_index += 1
        frame = self.world.reset(seed=seed, scenario=scenario, evaluation=evaluation, phase=self.phase)
        self.diag.count("episodes")
        self.publish(frame)
        return frame

    # --- publishing -----------------------------------------------------------------------------
    def _make_tf_publisher(self):
        """/tf map -> ego, where tf2_msgs exists (real ROS installs; not on PyPI)."""
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            return None
        return self.node.create_publisher(TFMessage, "/tf", qos.SENSOR)

    def publish_tf(self, frame: SensorFrame, stamp) -> None:
        from geometry_msgs.msg import TransformStamped
        from tf2_msgs.msg import TFMessage

        t = TransformStamped()
        t.header.stamp, t.header.frame_id = stamp, conv.MAP_FRAME
        t.child_frame_id = self.frame_id
        odom = conv.odometry_msg(frame.odometry, stamp, self.frame_id).pose.pose
        t.transform.translation.x, t.transform.translation.y = odom.position.x, odom.position.y
        t.transform.rotation = odom.orientation
        self.tf_pub.publish(TFMessage(transforms=[t]))

    def publish(self, frame: SensorFrame) -> None:
        self.last_frame = frame
        stamp = conv.time_msg(frame.sim_time)
        if self.clock_listened():  # no node of the graph uses sim time
            self.pub_clock.publish(Clock(clock=stamp))
        self.sensors.publish_sensors(frame, stamp)
        self.publish_views(frame, stamp)
        if self.tf_listened is not None and self.tf_listened():
            self.publish_tf(frame, stamp)
        # last: the situation announces the tick's event counts; consumers complete the tick on it
        self.awaiting_step = frame.step_id
        self.published_at = time.monotonic()
        if self.cfg.time_scale > 0.0:
            self.next_tick_due = self.published_at + self.dt / self.cfg.time_scale
        elif self.driver is not None:
            self.next_tick_due = self.published_at
        self.sensors.publish_situation(frame, stamp)
        self.diag.count("ticks")

    def publish_views(self, frame: SensorFrame, stamp) -> None:
        """Human views: only built while somebody subscribes, and only every N ticks."""
        if self.markers is not None:
            key = id(getattr(self.world, "road_network", None))
            if key != self.static_markers_sent_for:
                self.static_markers_sent_for = key
                self.pub_map_markers.publish(self.markers.static(self.world, stamp))
            if (frame.step_id % self.cfg.markers_period_ticks == 0
                    and self.markers_listened()):
                self.pub_markers.publish(self.markers.dynamic(self.world, stamp))
        render = getattr(self.world, "render_topdown", None)
        if (render is not None and frame.step_id % self.cfg.topdown_period_ticks == 0
                and self.topdown_listened()):
            self.pub_topdown.publish(conv.image_msg(render(self.cfg.topdown_size_px), stamp, "map"))

    def report_latency(self) -> None:
        if self.latencies_s:
            ms = np.asarray(self.latencies_s) * 1000.0
            p50, p99 = np.percentile(ms, [50, 99])
            self.diag.values["latency_p50_ms"] = f"{p50:.3f}"
            self.diag.values["latency_p99_ms"] = f"{p99:.3f}"

    # --- curriculum and services ------------------------------------------------------------------
    def on_scenario(self, msg: ScenarioConfigMsg) -> None:
        try:
            self.pending_scenario = conv.scenario_from_msg(msg)
        except ValueError as exc:
            self.diag.count("rejected_scenarios")
            self.node.get_logger().error(f"rejected scenario for phase {msg.phase}: {exc}")

    def on_status(self, msg: CurriculumStatus) -> None:
        self.paused = bool(msg.paused)

    def on_reset_service(self, request: ResetEpisode.Request, response: ResetEpisode.Response):
        frame = self.reset_episode(evaluation=False, seed=request.seed if request.seed >= 0 else None)
        response.success = True
        response.step_id = frame.step_id
        response.message = f"episode reset at tick {frame.step_id} (phase {self.phase})"
        return response

    def on_load_scenario(self, request: LoadScenario.Request, response: LoadScenario.Response):
        try:
            self.pending_scenario = conv.scenario_from_msg(request.scenario)
        except ValueError as exc:
            response.success, response.message = False, str(exc)
            return response
        if request.apply_now and self.started:
            self.reset_episode(evaluation=False)
            response.message = f"scenario '{request.scenario.name}' loaded and applied"
        else:
            response.message = f"scenario '{request.scenario.name}' applies at the next episode"
        response.success = True
        return response

