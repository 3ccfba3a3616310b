"""Pure core of the carla-ros-bridge adapter (no rclpy, no message imports: messages are duck-typed).

The real bridge (carla-simulator/ros-bridge, ROS 2) publishes under ``/carla/...``:

    /carla/status                              carla_msgs/CarlaStatus (frame, fixed_delta_seconds, ...)
    /carla/world_info                          carla_msgs/CarlaWorldInfo (map_name, opendrive; latched)
    /carla/traffic_lights/{info,status}        carla_msgs/CarlaTrafficLightInfoList / StatusList (latched)
    /carla/<role>/<sensor id>[/image]          sensor_msgs (camera: <id>/image, bgra8 CityScapes colours)
    /carla/<role>/odometry                     nav_msgs/Odometry (pseudo sensor; twist in the body frame)
    /carla/<role>/collision, lane_invasion     carla_msgs/CarlaCollisionEvent, CarlaLaneInvasionEvent
    /carla/<role>/vehicle_status               carla_msgs/CarlaEgoVehicleStatus
    /carla/<role>/vehicle_control_cmd          carla_msgs/CarlaEgoVehicleControl (subscribed by the bridge)
    /carla/<role>/control/set_transform        geometry_msgs/Pose (the actor.pseudo.control child)

This module converts those into our contract (``sensor_frame`` dataclasses; our interface messages have
the same fields as carla_msgs' events), converts our VehicleCommand into CarlaEgoVehicleControl,
assembles the messages of one tick (:class:`TickAssembler`), watches ``/carla/status`` for a stalled or
restarted server (:class:`StatusMonitor`), builds the objects definition for spawning the ego + sensors
(:func:`objects_definition`, :func:`spawn_specs`), and computes the EgoSituation from odometry + the map
from ``/carla/world_info`` (:class:`SituationTracker`).
"""

from __future__ import annotations

import enum
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from carla_rl.carla.carla_config import BridgeAdapterConfig, SensorMount
from carla_rl.carla.carla_conversions import quaternion_to_yaw, rpy_to_quaternion
from carla_rl.carla.map_route import RouteTracker, StopLine
from carla_rl.contract.sensor_frame import (
    CollisionEvent,
    EgoSituation,
    LaneInvasionEvent,
    Odometry,
    TrafficLightState,
    VehicleControl,
)

# Sensor ids in the objects definition; the bridge's topics are /carla/<role>/<id>
CAMERA_ID = "semantic_bev"
LIDAR_ID = "lidar"
RADAR_ID = "radar_front"
COLLISION_ID = "collision"
LANE_INVASION_ID = "lane_invasion"
ODOMETRY_ID = "odometry"
SPEEDOMETER_ID = "speedometer"
CONTROL_ID = "control"

# Topics of one tick that must all arrive (same stamp) before the tick is complete. The bridge's
# speedometer (std_msgs/Float32) has no header, so it cannot be matched to a tick: the speed is the
# odometry's body-frame forward velocity, which is what the speedometer computes.
REQUIRED_TOPICS = ("camera", "lidar", "radar", "odometry")
EVENT_TOPICS = ("collision", "lane_invasion")


def bridge_topics(role_name: str) -> dict[str, str]:
    """The bridge's absolute topic names for our ego (keys: our short names)."""
    p = f"/carla/{role_name}"
    return {
        "camera": f"{p}/{CAMERA_ID}/image",
        "lidar": f"{p}/{LIDAR_ID}",
        "radar": f"{p}/{RADAR_ID}",
        "odometry": f"{p}/{ODOMETRY_ID}",
        "speedometer": f"{p}/{SPEEDOMETER_ID}",
        "collision": f"{p}/{COLLISION_ID}",
        "lane_invasion": f"{p}/{LANE_INVASION_ID}",
        "vehicle_status": f"{p}/vehicle_status",
        "vehicle_control_cmd": f"{p}/vehicle_control_cmd",
        "set_transform": f"{p}/{CONTROL_ID}/set_transform",
        "status": "/carla/status",
        "world_info": "/carla/world_info",
        "traffic_lights_info": "/carla/traffic_lights/info",
        "traffic_lights_status": "/carla/traffic_lights/status",
        "spawn_object": "/carla/spawn_object",
        "destroy_object": "/carla/destroy_object",
    }


def contract_topics(role_name: str) -> dict[str, str]:
    """Our contract's topics (relative: the node runs in namespace /env_<i>), as the embedded simulator
    publishes them (``carla_rl.contract.topics``)."""
    from carla_rl.contract import topics as t

    return {
        "camera": t.carla_topic(role_name, t.CAMERA),
        "lidar": t.carla_topic(role_name, t.LIDAR),
        "radar": t.carla_topic(role_name, t.RADAR),
        "odometry": t.carla_topic(role_name, t.ODOMETRY),
        "speedometer": t.carla_topic(role_name, t.SPEEDOMETER),
        "collision": t.carla_topic(role_name, t.COLLISION),
        "lane_invasion": t.carla_topic(role_name, t.LANE_INVASION),
        "situation": t.carla_topic(role_name, t.SITUATION),
        "route": t.carla_topic(role_name, t.ROUTE),
        "vehicle_command": t.VEHICLE_COMMAND,
        "scenario": t.SCENARIO,
    }


# ---------------------------------------------------------------------------------------------
# Message conversions (duck-typed carla_msgs / our interfaces)


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def step_id_from_stamp(stamp: Any, fixed_delta_seconds: float) -> int:
    """``round(sim_time / fixed_delta_seconds)`` — the contract's step id of a tick."""
    return int(round(stamp_to_ns(stamp) / 1e9 / fixed_delta_seconds))


def collision_from_msg(msg: Any) -> CollisionEvent:
    """carla_msgs/CarlaCollisionEvent -> :class:`CollisionEvent`."""
    imp = msg.normal_impulse
    return CollisionEvent(other_actor_id=int(msg.other_actor_id),
                          normal_impulse=(float(imp.x), float(imp.y), float(imp.z)))


def lane_invasion_from_msg(msg: Any) -> LaneInvasionEvent:
    """carla_msgs/CarlaLaneInvasionEvent -> :class:`LaneInvasionEvent`."""
    return LaneInvasionEvent(crossed_lane_markings=tuple(int(m) for m in msg.crossed_lane_markings))


def fill_collision_msg(out: Any, event: CollisionEvent, header: Any = None) -> Any:
    """Fill carla_rl_interfaces/CollisionEvent (or carla_msgs') from :class:`CollisionEvent`."""
    if header is not None:
        out.header = header
    out.other_actor_id = int(event.other_actor_id)
    out.normal_impulse.x, out.normal_impulse.y, out.normal_impulse.z = map(float, event.normal_impulse)
    return out


def fill_lane_invasion_msg(out: Any, event: LaneInvasionEvent, header: Any = None) -> Any:
    if header is not None:
        out.header = header
    out.crossed_lane_markings = [int(m) for m in event.crossed_lane_markings]
    return out


@dataclass
class EgoVehicleStatus:
    """carla_msgs/CarlaEgoVehicleStatus as plain data (ENU)."""

    speed: float
    acceleration: tuple[float, float, float]
    yaw: float
    control: VehicleControl


def vehicle_status_from_msg(msg: Any) -> EgoVehicleStatus:
    q, a = msg.orientation, msg.acceleration.linear
    c = msg.control
    return EgoVehicleStatus(
        speed=float(msg.velocity), acceleration=(float(a.x), float(a.y), float(a.z)),
        yaw=quaternion_to_yaw(q.x, q.y, q.z, q.w),
        control=VehicleControl(throttle=float(c.throttle), steer=float(c.steer), brake=float(c.brake),
                               hand_brake=bool(c.hand_brake), reverse=bool(c.reverse)))


@dataclass
class BridgeStatus:
    """carla_msgs/CarlaStatus as plain data."""

    frame: int
    fixed_delta_seconds: float
    synchronous_mode: bool
    synchronous_mode_running: bool


def status_from_msg(msg: Any) -> BridgeStatus:
    return BridgeStatus(frame=int(msg.frame), fixed_delta_seconds=float(msg.fixed_delta_seconds),
                        synchronous_mode=bool(msg.synchronous_mode),
                        synchronous_mode_running=bool(msg.synchronous_mode_running))


def odometry_from_msg(msg: Any) -> Odometry:
    """nav_msgs/Odometry (the bridge's: map frame ENU, twist in the body frame) -> :class:`Odometry`."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    lin, ang = msg.twist.twist.linear, msg.twist.twist.angular
    return Odometry(x=float(p.x), y=float(p.y), z=float(p.z), yaw=quaternion_to_yaw(q.x, q.y, q.z, q.w),
                    vx=float(lin.x), vy=float(lin.y), yaw_rate=float(ang.z))


def fill_ego_control_msg(out: Any, command: Any, header: Any = None) -> tuple[Any, bool]:
    """Our VehicleCommand (``.control`` = carla_rl_interfaces/VehicleControl) -> CarlaEgoVehicleControl.

    Sanitized like CARLA (clipped; NaN/inf -> full brake). Returns (msg, input_was_invalid).
    A reset command maps to a full brake (the tick that carries the teleport).
    """
    c = command.control
    ours = VehicleControl(throttle=float(c.throttle), steer=float(c.steer), brake=float(c.brake),
                          hand_brake=bool(c.hand_brake), reverse=bool(c.reverse))
    if getattr(command, "reset_episode", False):
        ours = VehicleControl(brake=1.0)
    safe, invalid = ours.sanitized()
    if header is not None:
        out.header = header
    out.throttle, out.steer, out.brake = float(safe.throttle), float(safe.steer), float(safe.brake)
    out.hand_brake, out.reverse = bool(safe.hand_brake), bool(safe.reverse)
    out.manual_gear_shift = bool(getattr(c, "manual_gear_shift", False))
    out.gear = int(getattr(c, "gear", 0))
    return out, invalid


def bgra_image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image in bgra8 / bgr8 / rgb8 / rgba8 -> [H, W, 3] uint8 RGB."""
    channels = {"bgra8": 4, "rgba8": 4, "bgr8": 3, "rgb8": 3}.get(msg.encoding)
    if channels is None:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}")
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    rows = data.reshape(msg.height, msg.step)[:, : msg.width * channels]
    img = rows.reshape(msg.height, msg.width, channels)
    if msg.encoding.startswith("bgr"):
        return np.ascontiguousarray(img[..., 2::-1])
    return np.ascontiguousarray(img[..., :3])


_PF_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}  # PointField.*


def pointcloud_to_array(msg: Any, names: Iterable[str]) -> np.ndarray:
    """sensor_msgs/PointCloud2 -> [N, len(names)] float32 of the named fields (by offset, any padding)."""
    names = list(names)
    by_name = {f.name: f for f in msg.fields}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"point cloud has no field(s) {', '.join(missing)}")
    endian = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({"names": names,
                      "formats": [endian + _PF_DTYPES[by_name[n].datatype] for n in names],
                      "offsets": [by_name[n].offset for n in names],
                      "itemsize": msg.point_step})
    count = msg.width * msg.height
    rec = np.frombuffer(bytes(msg.data), dtype=dtype, count=count)
    return np.stack([rec[n].astype(np.float32) for n in names], axis=1) if count else \
        np.zeros((0, len(names)), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Server watchdog


class Recovery(enum.Enum):
    NONE = "none"
    WAIT_FOR_BRIDGE = "wait_for_bridge"   # no status yet: the bridge has not started
    RESPAWN_EGO = "respawn_ego"           # the server restarted: our ego and sensors are gone
    RESTART_SERVER = "restart_server"     # stalled: no frame advance within status_timeout_s
    RESUME = "resume"                     # the bridge is paused (CarlaControl PAUSE): send PLAY


@dataclass
class RecoveryAdvice:
    action: Recovery
    reason: str = ""


class StatusMonitor:
    """Watches ``/carla/status``: frame advance (alive), frame going backwards (server restarted),
    no advance within ``timeout_s`` (stalled or crashed server, or a hung bridge)."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.last_frame: int | None = None
        self.last_advance_t: float | None = None
        self.started_t: float | None = None
        self.restarts = 0
        self.stalls = 0
        self._stalled = False
        self.running = True

    def start(self, now: float) -> None:
        self.started_t = now

    def on_status(self, status: BridgeStatus, now: float) -> RecoveryAdvice:
        self.running = status.synchronous_mode_running
        if self.last_frame is not None and status.frame < self.last_frame:
            self.restarts += 1
            advice = RecoveryAdvice(Recovery.RESPAWN_EGO, f"frame went back from {self.last_frame} to "
                                                          f"{status.frame}: the CARLA server restarted")
            self.last_frame, self.last_advance_t, self._stalled = status.frame, now, False
            return advice
        if self.last_frame is None or status.frame > self.last_frame:
            self.last_frame, self.last_advance_t, self._stalled = status.frame, now, False
        if status.synchronous_mode and not status.synchronous_mode_running:
            return RecoveryAdvice(Recovery.RESUME, "the bridge is paused")
        return RecoveryAdvice(Recovery.NONE)

    def check(self, now: float) -> RecoveryAdvice:
        """Periodic check; reports a stall once per stall (until the frame advances again)."""
        if self.last_advance_t is None:
            since = now - (self.started_t if self.started_t is not None else now)
            if since > self.timeout_s:
                return RecoveryAdvice(Recovery.WAIT_FOR_BRIDGE,
                                      f"no /carla/status for {since:.1f} s: is the carla-ros-bridge running?")
            return RecoveryAdvice(Recovery.NONE)
        if not self.running:
            return RecoveryAdvice(Recovery.NONE)
        idle = now - self.last_advance_t
        if idle > self.timeout_s and not self._stalled:
            self._stalled = True
            self.stalls += 1
            return RecoveryAdvice(Recovery.RESTART_SERVER,
                                  f"no frame advance for {idle:.1f} s (last frame {self.last_frame}): "
                                  f"the CARLA server or the bridge stalled")
        return RecoveryAdvice(Recovery.NONE)


# ---------------------------------------------------------------------------------------------
# Tick assembly


@dataclass
class Tick:
    stamp_ns: int
    messages: dict[str, Any] = field(default_factory=dict)
    events: dict[str, list[Any]] = field(default_factory=lambda: {n: [] for n in EVENT_TOPICS})
    complete_t: float | None = None
    first_t: float = 0.0


class TickAssembler:
    """Groups the bridge's messages of one tick by header stamp.

    A tick is *complete* when every required topic has a message with its stamp; it is *released* after
    ``settle_s`` more (events of the tick arrive on other topics, unordered). Events whose stamp precedes
    the oldest open tick are attached to it (late delivery). Incomplete ticks older than ``timeout_s``
    are dropped (counted in ``dropped``).
    """

    def __init__(self, settle_s: float, timeout_s: float, required: tuple[str, ...] = REQUIRED_TOPICS):
        self.settle_s, self.timeout_s, self.required = settle_s, timeout_s, tuple(required)
        self._ticks: dict[int, Tick] = {}
        self.last_released_ns = -1
        self.dropped = 0
        self._late: list[tuple[str, Any]] = []

    def _tick(self, stamp_ns: int, now: float) -> Tick | None:
        if stamp_ns <= self.last_released_ns:
            return None
        tick = self._ticks.get(stamp_ns)
        if tick is None:
            tick = self._ticks[stamp_ns] = Tick(stamp_ns=stamp_ns, first_t=now)
        return tick

    def add(self, topic: str, stamp_ns: int, msg: Any, now: float) -> None:
        tick = self._tick(stamp_ns, now)
        if tick is None:
            return
        tick.messages[topic] = msg
        if tick.complete_t is None and all(t in tick.messages for t in self.required):
            tick.complete_t = now

    def add_event(self, topic: str, stamp_ns: int, msg: Any, now: float) -> None:
        """An event (collision / lane invasion) of the tick stamped ``stamp_ns``. A late event of an
        already released tick counts in the next tick (it is never lost)."""
        if stamp_ns <= self.last_released_ns:
            self._late.append((topic, msg))
            return
        self._tick(stamp_ns, now).events[topic].append(msg)

    def release(self, now: float) -> list[Tick]:
        """Ticks ready to publish, oldest first."""
        out: list[Tick] = []
        for stamp in sorted(self._ticks):
            tick = self._ticks[stamp]
            if tick.complete_t is not None and now - tick.complete_t >= self.settle_s:
                out.append(tick)
                continue
            if tick.complete_t is None and now - tick.first_t > self.timeout_s:
                continue
            break
        for stamp in list(self._ticks):
            tick = self._ticks[stamp]
            if tick in out:
                del self._ticks[stamp]
            elif tick.complete_t is None and now - tick.first_t > self.timeout_s:
                del self._ticks[stamp]
                self.dropped += 1
        if out:
            for topic, msg in self._late:
                out[0].events[topic].append(msg)
            self._late.clear()
            self.last_released_ns = out[-1].stamp_ns
            for stamp in [s for s in self._ticks if s <= self.last_released_ns]:
                del self._ticks[stamp]
                self.dropped += 1
        return out

    def clear(self) -> None:
        """Forget everything (after a server restart the stamps start again from zero)."""
        self._ticks.clear()
        self._late.clear()
        self.last_released_ns = -1


# ---------------------------------------------------------------------------------------------
# Spawning the ego + sensors (carla_spawn_objects' JSON format, or /carla/spawn_object requests)


def mount_to_spawn_point(mount: SensorMount) -> dict[str, float]:
    """A CARLA-frame mount -> the objects definition's ``spawn_point`` (ROS frame: y, pitch, yaw negated;
    the bridge converts back with ros_pose_to_carla_transform)."""
    return {"x": float(mount.x), "y": -float(mount.y), "z": float(mount.z), "roll": float(mount.roll),
            "pitch": -float(mount.pitch) + 0.0, "yaw": -float(mount.yaw) + 0.0}


def objects_definition(config: BridgeAdapterConfig, role_name: str = "ego_vehicle") -> dict[str, Any]:
    """The objects definition for carla_spawn_objects / our spawn calls: the pseudo sensors we read
    (traffic lights, world info comes with the bridge) and the ego with its sensors."""
    cam, lid, rad = config.camera, config.lidar, config.radar
    sensors = [
        {"type": "sensor.camera.semantic_segmentation", "id": CAMERA_ID,
         "spawn_point": mount_to_spawn_point(cam.mount),
         "image_size_x": cam.width, "image_size_y": cam.height, "fov": cam.fov_deg},
        {"type": "sensor.lidar.ray_cast", "id": LIDAR_ID, "spawn_point": mount_to_spawn_point(lid.mount),
         "range": lid.range_m, "channels": lid.channels, "points_per_second": lid.points_per_second,
         "rotation_frequency": lid.rotation_frequency_hz, "upper_fov": lid.upper_fov_deg,
         "lower_fov": lid.lower_fov_deg},
        {"type": "sensor.other.radar", "id": RADAR_ID, "spawn_point": mount_to_spawn_point(rad.mount),
         "horizontal_fov": rad.horizontal_fov_deg, "vertical_fov": rad.vertical_fov_deg,
         "range": rad.range_m, "points_per_second": rad.points_per_second},
        {"type": "sensor.other.collision", "id": COLLISION_ID,
         "spawn_point": {"x": 0.0, "y": 0.0, "z": 0.0}},
        {"type": "sensor.other.lane_invasion", "id": LANE_INVASION_ID,
         "spawn_point": {"x": 0.0, "y": 0.0, "z": 0.0}},
        {"type": "sensor.pseudo.odom", "id": ODOMETRY_ID},
        {"type": "actor.pseudo.control", "id": CONTROL_ID},
    ]
    return {"objects": [
        {"type": "sensor.pseudo.traffic_lights", "id": "traffic_lights"},
        {"type": "sensor.pseudo.actor_list", "id": "actor_list"},
        {"type": config.ego_blueprint, "id": role_name, "sensors": sensors},
    ]}


def objects_definition_json(config: BridgeAdapterConfig, role_name: str = "ego_vehicle") -> str:
    return json.dumps(objects_definition(config, role_name), indent=2)


@dataclass
class SpawnSpec:
    """One /carla/spawn_object request: ``parent`` = index of the spec it attaches to (-1 = world)."""

    type: str
    id: str
    attributes: list[tuple[str, str]]
    pose: tuple[float, float, float, float, float, float]  # x, y, z, roll, pitch, yaw (ROS frame, rad)
    parent: int = -1
    random_pose: bool = False


def _attr_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def spawn_specs(definition: dict[str, Any]) -> list[SpawnSpec]:
    """Flatten an objects definition into spawn requests in dependency order (parents first), the way
    carla_spawn_objects does: vehicles without a spawn point get ``random_pose``."""
    out: list[SpawnSpec] = []

    def add(obj: dict[str, Any], parent: int) -> None:
        obj = dict(obj)
        kind = obj.pop("type")
        ident = obj.pop("id")
        children = obj.pop("sensors", []) + obj.pop("attached_objects", [])
        sp = obj.pop("spawn_point", None)
        is_actor = kind.split(".")[0] in ("vehicle", "walker") and parent < 0
        pose = (0.0,) * 6
        if sp is not None:
            pose = (float(sp.get("x", 0.0)), float(sp.get("y", 0.0)), float(sp.get("z", 0.0)),
                    math.radians(sp.get("roll", 0.0)), math.radians(sp.get("pitch", 0.0)),
                    math.radians(sp.get("yaw", 0.0)))
        attributes = [(str(k), _attr_value(v)) for k, v in obj.items()]
        out.append(SpawnSpec(type=kind, id=ident, attributes=attributes, pose=pose, parent=parent,
                             random_pose=is_actor and sp is None))
        index = len(out) - 1
        for child in children:
            add(child, index)

    for obj in definition["objects"]:
        add(obj, -1)
    return out


def fill_pose(pose_msg: Any, x: float, y: float, z: float, roll: float, pitch: float, yaw: float) -> Any:
    """geometry_msgs/Pose from ENU position + roll/pitch/yaw [rad]."""
    pose_msg.position.x, pose_msg.position.y, pose_msg.position.z = float(x), float(y), float(z)
    qx, qy, qz, qw = rpy_to_quaternion(roll, pitch, yaw)
    o = pose_msg.orientation
    o.x, o.y, o.z, o.w = qx, qy, qz, qw
    return pose_msg


def fill_spawn_request(req: Any, spec: SpawnSpec, attach_to: int, key_value_cls: Any) -> Any:
    """carla_msgs/SpawnObject.Request from a :class:`SpawnSpec` (``attach_to``: the parent's actor id)."""
    req.type, req.id = spec.type, spec.id
    req.attributes = [key_value_cls(key=k, value=v) for k, v in spec.attributes]
    fill_pose(req.transform, *spec.pose)
    req.attach_to = int(attach_to)
    req.random_pose = bool(spec.random_pose)
    return req


# ---------------------------------------------------------------------------------------------
# EgoSituation from odometry + map (+ traffic lights from the bridge)


@dataclass
class LightView:
    """A traffic light as the bridge reports it; ``state`` is updated from the status list."""

    id: int
    x: float   # trigger volume centre, ENU world
    y: float
    radius: float
    state: int = TrafficLightState.UNKNOWN


def lights_from_info(info_list: Any) -> dict[int, LightView]:
    """carla_msgs/CarlaTrafficLightInfoList -> {id: LightView}; the trigger volume centre is given
    relative to the light's pose, so it is rotated by the light's yaw and added to its position."""
    out = {}
    for info in info_list.traffic_lights:
        p, q = info.transform.position, info.transform.orientation
        yaw = quaternion_to_yaw(q.x, q.y, q.z, q.w)
        c = info.trigger_volume.center
        wx = p.x + math.cos(yaw) * c.x - math.sin(yaw) * c.y
        wy = p.y + math.sin(yaw) * c.x + math.cos(yaw) * c.y
        size = info.trigger_volume.size
        out[int(info.id)] = LightView(id=int(info.id), x=float(wx), y=float(wy),
                                      radius=0.5 * math.hypot(size.x, size.y))
    return out


def apply_light_status(lights: dict[int, LightView], status_list: Any) -> None:
    for st in status_list.traffic_lights:
        light = lights.get(int(st.id))
        if light is not None:
            light.state = int(st.state)


def stop_lines_from_lights(tracker: RouteTracker, lights: Iterable[LightView], margin_m: float = 1.0
                           ) -> list[StopLine]:
    """Lights whose trigger volume touches the route: a stop line at the route point nearest to the
    trigger volume centre (CARLA puts trigger volumes on the lanes before the stop line)."""
    pts = tracker._pts  # noqa: SLF001 - same package
    out = []
    for light in lights:
        d = np.hypot(pts[:, 0] - light.x, pts[:, 1] - light.y)
        i = int(np.argmin(d))
        if d[i] <= light.radius + margin_m:
            out.append(StopLine(s=float(tracker.s[i]), light_id=light.id, light=light))
    out.sort(key=lambda sl: sl.s)
    return out


def map_from_opendrive(map_name: str, opendrive: str) -> Any:
    """A ``carla.Map`` built offline from /carla/world_info's OpenDRIVE (no server needed). ImportError when
    the carla wheel is missing; RuntimeError when the OpenDRIVE cannot be parsed."""
    import carla

    return carla.Map(map_name, opendrive)


class SituationTracker:
    """Episode bookkeeping + EgoSituation for the adapter.

    ``carla_map`` (a ``carla.Map``, e.g. built from /carla/world_info's OpenDRIVE) enables routes, lane
    flags and lane widths; without it the situation carries the episode counters and events only.
    """

    def __init__(self, config: BridgeAdapterConfig, seed: int = 0):
        self.config = config
        self.rng = random.Random(seed)
        self.carla_map: Any = None
        self.tracker: RouteTracker | None = None
        self.route = np.zeros((0, 2), dtype=np.float32)
        self.route_version = 0
        self.lights: dict[int, LightView] = {}
        self.episode_id = 0
        self.episode_step = -1
        self.phase = 1
        self.evaluation = False
        self.scenario: Any = None

    def set_map(self, carla_map: Any) -> None:
        self.carla_map = carla_map

    def new_episode(self, evaluation: bool, scenario: Any = None, phase: int | None = None
                    ) -> tuple[float, float, float, float] | None:
        """Start an episode: pick a start waypoint and plan the route (if a map is known).

        Returns the ego's new pose (x, y, z, yaw) in ENU for ``control/set_transform``, or None to keep
        the ego where it is.
        """
        from carla_rl.carla.carla_conversions import location_to_enu, rotation_to_rpy
        from carla_rl.carla.map_route import plan_route, route_points, start_candidates

        self.episode_id += 1
        self.episode_step = -1
        self.evaluation = bool(evaluation)
        if scenario is not None:
            self.scenario = scenario
        if phase is not None:
            self.phase = int(phase)
        if self.carla_map is None:
            self.tracker = None
            return None
        candidates = start_candidates(self.carla_map)
        if not candidates:
            self.tracker = None
            return None
        start = self.rng.choice(candidates)
        length = float(getattr(self.scenario, "route_length_m", 150.0))
        route = plan_route(start, length, self.config.route_step_m, self.rng)
        pts, widths = route_points(route)
        if len(pts) < 2:
            self.tracker = None
            return None
        self.tracker = RouteTracker(pts, widths, goal_tolerance_m=self.config.goal_tolerance_m)
        if self.lights:
            self.tracker.stop_lines = stop_lines_from_lights(self.tracker, self.lights.values())
        self.route = pts
        self.route_version += 1
        x, y, z = location_to_enu(start.transform.location)
        _, _, yaw = rotation_to_rpy(start.transform.rotation)
        return x, y, z + self.config.spawn_height_m, yaw

    def situation(self, step_id: int, odom: Odometry, collisions: int, lane_invasions: int) -> EgoSituation:
        """The EgoSituation of one released tick (advances the episode step)."""
        self.episode_step += 1
        sit = EgoSituation(step_id=step_id, episode_id=self.episode_id, episode_step=self.episode_step,
                           phase=self.phase, evaluation=self.evaluation, collision_events=collisions,
                           lane_invasion_events=lane_invasions)
        if self.tracker is not None:
            st = self.tracker.update(odom.x, odom.y, odom.yaw)
            sit.lateral_offset_m, sit.heading_error_rad = st.lateral_offset_m, st.heading_error_rad
            sit.lane_width_m, sit.route_remaining_m = st.lane_width_m, st.remaining_m
            sit.route_progress_m, sit.goal_reached = st.progress_m, st.goal_reached
            sit.traffic_light_state = int(st.traffic_light_state)
            sit.traffic_light_distance_m, sit.ran_red_light = st.traffic_light_distance_m, st.ran_red_light
        if self.carla_map is not None:
            import carla

            from carla_rl.carla.map_route import lane_flags

            loc = carla.Location(x=odom.x, y=-odom.y, z=odom.z)
            sit.on_sidewalk, sit.off_road, _ = lane_flags(self.carla_map, loc)
        return sit


# ---------------------------------------------------------------------------------------------
# One released tick -> SensorFrame (published with the same conversions as the embedded simulator)

BRIDGE_LIDAR_FIELDS = ("x", "y", "z", "intensity")                       # already y-flipped by the bridge
BRIDGE_RADAR_FIELDS = ("Range", "AzimuthAngle", "ElevationAngle", "Velocity")


def frame_from_tick(tick: Tick, situation: SituationTracker, fixed_delta_seconds: float):
    """The :class:`~carla_rl.contract.sensor_frame.SensorFrame` of a complete tick (advances the episode step).

    Camera: bgra8 CityScapes colours -> RGB; lidar: x, y, z, intensity (the bridge already converted to
    the right-handed sensor frame); radar: (depth, azimuth, altitude, velocity) as carla.RadarDetection.
    """
    from carla_rl.contract.sensor_frame import SensorFrame

    m = tick.messages
    stamp = m["odometry"].header.stamp
    step_id = step_id_from_stamp(stamp, fixed_delta_seconds)
    odom = odometry_from_msg(m["odometry"])
    collisions = [collision_from_msg(e) for e in tick.events.get("collision", [])]
    invasions = [lane_invasion_from_msg(e) for e in tick.events.get("lane_invasion", [])]
    sit = situation.situation(step_id, odom, len(collisions), len(invasions))
    return SensorFrame(
        step_id=step_id, sim_time=stamp_to_ns(stamp) / 1e9, camera=bgra_image_to_rgb(m["camera"]),
        lidar=pointcloud_to_array(m["lidar"], BRIDGE_LIDAR_FIELDS),
        radar=pointcloud_to_array(m["radar"], BRIDGE_RADAR_FIELDS), odometry=odom,
        speed=float(odom.vx), situation=sit, route=situation.route,
        route_version=situation.route_version, collisions=collisions, lane_invasions=invasions)


class ResetGate:
    """After a teleport (``control/set_transform``) the bridge may tick before applying it; ticks are
    held back until the ego is within ``tolerance_m`` of the target pose (at most ``max_ticks``)."""

    def __init__(self, tolerance_m: float = 2.0, max_ticks: int = 20):
        self.tolerance_m, self.max_ticks = tolerance_m, max_ticks
        self.target: tuple[float, float] | None = None
        self.active = False
        self.waited = 0

    def arm(self, target_xy: tuple[float, float] | None) -> None:
        self.target, self.active, self.waited = target_xy, True, 0

    def passes(self, x: float, y: float) -> bool:
        """True when this tick may be published as the episode's first (disarms the gate)."""
        if not self.active:
            return True
        self.waited += 1
        arrived = (self.target is None
                   or math.hypot(x - self.target[0], y - self.target[1]) <= self.tolerance_m)
        if arrived or self.waited > self.max_ticks:
            self.active = False
            return True
        return False
