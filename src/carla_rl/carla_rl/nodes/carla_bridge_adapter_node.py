"""carla_bridge_adapter: the real carla-ros-bridge behind our topic contract (one env, namespace /env_<i>).

    CARLA server <-> carla_ros_bridge (synchronous_mode:=True,
                                       synchronous_mode_wait_for_vehicle_control_command:=True)
        /carla/<role>/{semantic_bev/image, lidar, radar_front, odometry, collision, lane_invasion}
        /carla/status, /carla/world_info, /carla/traffic_lights/{info,status}
    -> this node -> /env_<i>/carla/<role>/{semantic_bev/image, lidar, radar_front, odometry, speedometer,
                                          collision, lane_invasion, waypoints, situation (last)}
    <- /env_<i>/vehicle_command (VehicleCommand)
       -> /carla/<role>/vehicle_control_cmd (CarlaEgoVehicleControl)
          (reset: /carla/<role>/control/set_transform + a brake command)

Lockstep: the bridge ticks, publishes the sensors of frame F and waits for our control; this node
assembles the tick (all sensors with F's stamp, then ``event_settle_s`` for its events), publishes it
in the contract's format (the same ``ros_conversions`` as the embedded simulator, situation last), and
forwards the policy's command, which makes the bridge tick again. A stalled server (no /carla/status
frame advance) and a restarted one (frame counter backwards) are detected and reported on /diagnostics;
after a restart the ego and sensors are spawned again and a new episode starts.

This is the only module that imports carla_msgs (lazily, with a clear error if it is missing).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from typing import Any

from rclpy.node import Node

from carla_rl.carla import bridge_adapter as ba
from carla_rl.carla.carla_config import BridgeAdapterConfig
from carla_rl.contract.config import ConfigError
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl.nodes.support.diagnostics import DiagnosticsReporter
from carla_rl.nodes.support.node_runner import run_node
from carla_rl.nodes.support.ros_parameters import declare_config, declare_phases
from carla_rl.nodes.support.sensor_frame_publisher import SensorFramePublisher
from carla_rl.nodes.support.simulator_shell import SimulatorShellConfig

CARLA_MSGS_MISSING = ("the carla_msgs package is not installed: build carla-simulator/ros-carla-msgs (ROS 2 "
                      "branch) into your workspace and source it, or use the 'bridge' profile of "
                      "docker/compose.yaml")


def import_carla_msgs() -> tuple[Any, Any]:
    """(carla_msgs.msg, carla_msgs.srv), or ConfigError with what to do."""
    try:
        import carla_msgs.msg as msg
        import carla_msgs.srv as srv
    except ImportError as exc:
        raise ConfigError(f"{CARLA_MSGS_MISSING} ({exc})") from None
    return msg, srv


class CarlaBridgeAdapterNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("carla_bridge_adapter", **node_kwargs)  # kwargs: e.g. context (tests)
        self.shell: SimulatorShellConfig = declare_config(self, SimulatorShellConfig, "shell.")
        self.cfg: BridgeAdapterConfig = declare_config(self, BridgeAdapterConfig, "bridge.")
        self.phases = declare_phases(self)
        if not 1 <= self.shell.initial_phase <= len(self.phases):
            raise ConfigError(f"shell.initial_phase {self.shell.initial_phase} is outside "
                              f"1..{len(self.phases)}")
        if self.get_namespace() == "/":
            raise ConfigError(f"run carla_bridge_adapter in the env namespace (--ros-args -r __ns:=/env_"
                              f"{self.shell.env_id}): at / its carla/<role>/... topics are the bridge's own")
        carla_msgs, carla_srvs = import_carla_msgs()
        self.carla_msgs, self.carla_srvs = carla_msgs, carla_srvs

        from diagnostic_msgs.msg import KeyValue
        from geometry_msgs.msg import Pose
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import Image, PointCloud2

        from carla_rl_interfaces.msg import ScenarioConfig, VehicleCommand

        self._KeyValue, self._Pose = KeyValue, Pose
        cfg, role = self.cfg, self.shell.role_name
        bridge = ba.bridge_topics(role)
        ours = ba.contract_topics(role)
        now = time.monotonic()
        self.monitor = ba.StatusMonitor(cfg.status_timeout_s)
        self.monitor.start(now)
        self.assembler = ba.TickAssembler(cfg.event_settle_s, cfg.tick_timeout_s)
        self.situation = ba.SituationTracker(cfg, seed=self.shell.seed * 1000 + self.shell.env_id)
        self.gate = ba.ResetGate()
        self.phase = self.shell.initial_phase
        self.scenario: Any = self.phases[self.phase - 1].scenario
        self.queued_control: Any = None
        self.next_tick_due = 0.0
        self.episode_started = False
        self.awaiting_step: int | None = None
        self.spawning = False
        self.diag = DiagnosticsReporter(self, 1.0, warn_on=("stalls", "server_restarts", "dropped_ticks"))

        # our contract (relative names, inside /env_<i>)
        p = self.create_publisher
        self.sensors = SensorFramePublisher(self, role)
        self.create_subscription(VehicleCommand, ours["vehicle_command"], self.on_command, qos.SENSOR)
        self.create_subscription(ScenarioConfig, ours["scenario"], self.on_scenario, qos.LATCHED)

        # the bridge's contract (absolute /carla/...; the bridge publishes with depth 10, reliable)
        self.pub_control = p(carla_msgs.CarlaEgoVehicleControl, bridge["vehicle_control_cmd"], 10)
        self.pub_set_transform = p(Pose, bridge["set_transform"], 10)
        self.pub_carla_control = p(carla_msgs.CarlaControl, "/carla/control", 10)
        s = self.create_subscription
        for name, msg_type in (("camera", Image), ("lidar", PointCloud2), ("radar", PointCloud2),
                               ("odometry", Odometry)):
            s(msg_type, bridge[name], self._on_sensor(name), 10)
        s(carla_msgs.CarlaCollisionEvent, bridge["collision"], self._on_event("collision"), 10)
        s(carla_msgs.CarlaLaneInvasionEvent, bridge["lane_invasion"], self._on_event("lane_invasion"), 10)
        s(carla_msgs.CarlaStatus, bridge["status"], self.on_status, 10)
        s(carla_msgs.CarlaWorldInfo, bridge["world_info"], self.on_world_info, qos.LATCHED)
        latched10 = qos.LATCHED
        s(carla_msgs.CarlaTrafficLightInfoList, bridge["traffic_lights_info"], self.on_lights_info, latched10)
        s(carla_msgs.CarlaTrafficLightStatusList, bridge["traffic_lights_status"], self.on_lights_status,
          latched10)
        self.spawn_client = self.create_client(carla_srvs.SpawnObject, bridge["spawn_object"])

        self.create_timer(max(cfg.event_settle_s / 2.0, 0.005), self.on_release_timer)
        self.create_timer(cfg.check_period_s, self.on_watchdog)
        if cfg.objects_definition_out:
            with open(cfg.objects_definition_out, "w", encoding="utf-8") as handle:
                handle.write(ba.objects_definition_json(cfg, role))
        if cfg.spawn_ego:
            self.spawn_ego()
        self.get_logger().info(f"env {self.shell.env_id}: adapting the carla-ros-bridge (role {role}), phase "
                               f"{self.phase} ({self.scenario.name}); waiting for /carla/status")

    # --- bridge input -------------------------------------------------------------------------------
    def _on_sensor(self, name: str):
        def callback(msg: Any) -> None:
            self.assembler.add(name, ba.stamp_to_ns(msg.header.stamp), msg, time.monotonic())
        return callback

    def _on_event(self, name: str):
        def callback(msg: Any) -> None:
            self.assembler.add_event(name, ba.stamp_to_ns(msg.header.stamp), msg, time.monotonic())
        return callback

    def on_status(self, msg: Any) -> None:
        advice = self.monitor.on_status(ba.status_from_msg(msg), time.monotonic())
        self.diag.values["frame"] = str(msg.frame)
        self.handle_advice(advice)

    def on_world_info(self, msg: Any) -> None:
        try:
            carla_map = ba.map_from_opendrive(msg.map_name, msg.opendrive)
        except ImportError:
            self.get_logger().warning("the carla wheel is missing: no map (route, lane flags) for "
                                      "the situation")
            return
        except RuntimeError as exc:
            self.get_logger().error(f"cannot parse the OpenDRIVE of {msg.map_name}: {exc}")
            return
        self.situation.set_map(carla_map)
        self.get_logger().info(f"map {msg.map_name} loaded from /carla/world_info")

    def on_lights_info(self, msg: Any) -> None:
        states = {i: light.state for i, light in self.situation.lights.items()}
        self.situation.lights = ba.lights_from_info(msg)
        for i, state in states.items():
            if i in self.situation.lights:
                self.situation.lights[i].state = state

    def on_lights_status(self, msg: Any) -> None:
        ba.apply_light_status(self.situation.lights, msg)

    def on_scenario(self, msg: Any) -> None:
        from carla_rl.nodes.support.ros_conversions import scenario_from_msg

        try:
            self.phase, self.scenario = scenario_from_msg(msg)
        except ConfigError as exc:
            self.get_logger().error(f"ignoring invalid scenario: {exc}")

    # --- lockstep -------------------------------------------------------------------------------------
    def on_release_timer(self) -> None:
        if self.queued_control is not None and time.monotonic() >= self.next_tick_due:
            control, self.queued_control = self.queued_control, None
            self.pub_control.publish(control)
        before = self.assembler.dropped
        for tick in self.assembler.release(time.monotonic()):
            self.process(tick)
        if self.assembler.dropped > before:
            self.diag.count("dropped_ticks", self.assembler.dropped - before)

    def process(self, tick: ba.Tick) -> None:
        if not self.episode_started:
            if self.sensors.situation.get_subscription_count() < self.shell.required_subscribers:
                self.send_brake()  # keep the bridge ticking until the stack is up
                return
            self.start_episode(evaluation=False)
            self.send_brake()
            return
        odom = tick.messages["odometry"].pose.pose.position
        if not self.gate.passes(odom.x, odom.y):
            self.send_brake()
            return
        frame = ba.frame_from_tick(tick, self.situation, self.cfg.fixed_delta_seconds)
        self.publish(frame)

    def on_command(self, msg: Any) -> None:
        if self.awaiting_step is None or msg.step_id != self.awaiting_step:
            self.diag.count("stale_commands")
            return
        self.awaiting_step = None
        if msg.reset_episode:
            self.start_episode(evaluation=msg.evaluation)
        out, invalid = ba.fill_ego_control_msg(self.carla_msgs.CarlaEgoVehicleControl(), msg)
        out.header.stamp = self.get_clock().now().to_msg()
        if invalid:
            self.diag.count("invalid_controls")
        if self.shell.time_scale > 0.0 and time.monotonic() < self.next_tick_due:
            self.queued_control = out  # paced (watching): sent by the release timer when due
            return
        self.pub_control.publish(out)

    def send_brake(self) -> None:
        out = self.carla_msgs.CarlaEgoVehicleControl(brake=1.0)
        out.header.stamp = self.get_clock().now().to_msg()
        self.pub_control.publish(out)

    def start_episode(self, evaluation: bool) -> None:
        pose = self.situation.new_episode(evaluation, scenario=self.scenario, phase=self.phase)
        self.episode_started = True
        if pose is not None:
            x, y, z, yaw = pose
            self.pub_set_transform.publish(ba.fill_pose(self._Pose(), x, y, z, 0.0, 0.0, yaw))
            self.gate.arm((x, y))
        else:
            self.gate.arm(None)
        self.diag.count("episodes")

    def publish(self, frame: Any) -> None:
        from carla_rl.nodes.support import ros_conversions as conv

        stamp = conv.time_msg(frame.sim_time)
        self.sensors.publish_sensors(frame, stamp)
        self.awaiting_step = frame.step_id
        if self.shell.time_scale > 0.0:
            self.next_tick_due = time.monotonic() + self.cfg.fixed_delta_seconds / self.shell.time_scale
        self.sensors.publish_situation(frame, stamp)  # last
        self.diag.count("ticks")

    # --- recovery ---------------------------------------------------------------------------------------
    def on_watchdog(self) -> None:
        self.handle_advice(self.monitor.check(time.monotonic()))

    def handle_advice(self, advice: ba.RecoveryAdvice) -> None:
        if advice.action is ba.Recovery.NONE:
            return
        log = self.get_logger()
        if advice.action is ba.Recovery.WAIT_FOR_BRIDGE:
            log.warning(advice.reason, throttle_duration_sec=10.0)
        elif advice.action is ba.Recovery.RESUME:
            log.info(f"{advice.reason}: sending PLAY", throttle_duration_sec=5.0)
            play = self.carla_msgs.CarlaControl(command=self.carla_msgs.CarlaControl.PLAY)
            self.pub_carla_control.publish(play)
        elif advice.action is ba.Recovery.RESTART_SERVER:
            self.diag.count("stalls")
            if self.cfg.restart_command:
                log.error(f"{advice.reason}; running restart_command: {self.cfg.restart_command}")
                subprocess.Popen(shlex.split(self.cfg.restart_command))  # noqa: S603 - configured by the user
            else:
                log.error(f"{advice.reason}; restart the CARLA server and the bridge "
                          f"(carla_bridge_adapter.restart_command is empty)")
        elif advice.action is ba.Recovery.RESPAWN_EGO:
            self.diag.count("server_restarts")
            log.warning(f"{advice.reason}: spawning the ego again and starting a new episode")
            self.assembler.clear()
            self.awaiting_step = None
            self.episode_started = False
            if self.cfg.spawn_ego:
                self.spawn_ego()

    # --- spawning -----------------------------------------------------------------------------------------
    def spawn_ego(self) -> None:
        """Spawn the objects definition through /carla/spawn_object, parents first (async chain)."""
        if self.spawning:
            return
        self.spawning = True
        specs = ba.spawn_specs(ba.objects_definition(self.cfg, self.shell.role_name))
        ids: dict[int, int] = {}

        def call(index: int) -> None:
            if index >= len(specs):
                self.spawning = False
                self.get_logger().info(f"spawned {len(ids)} objects for {self.shell.role_name}")
                return
            spec = specs[index]
            parent = ids.get(spec.parent, 0) if spec.parent >= 0 else 0
            req = ba.fill_spawn_request(self.carla_srvs.SpawnObject.Request(), spec, parent, self._KeyValue)
            future = self.spawn_client.call_async(req)

            def done(fut: Any) -> None:
                result = fut.result()
                if result is None or result.id < 0:
                    error = getattr(result, "error_string", "no response")
                    self.get_logger().error(f"spawning {spec.type} '{spec.id}' failed: {error}")
                    if spec.parent < 0 and spec.type.startswith("vehicle"):
                        self.spawning = False  # without the ego its sensors cannot be attached
                        return
                else:
                    ids[index] = int(result.id)
                call(index + 1)

            future.add_done_callback(done)

        def when_ready() -> None:
            if self.spawn_client.service_is_ready():
                self._spawn_wait_timer.cancel()
                call(0)

        self._spawn_wait_timer = self.create_timer(0.5, when_ready)


def main(args: list[str] | None = None) -> int:
    try:
        import_carla_msgs()
    except ConfigError as exc:
        print(f"carla_bridge_adapter: {exc}", file=sys.stderr)
        return 2
    return run_node(CarlaBridgeAdapterNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
