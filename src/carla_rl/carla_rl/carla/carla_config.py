"""Typed configuration of the real-CARLA backends, read from ``config/carla.yaml``.

Two node blocks in the ROS 2 params layout, each holding its config under a prefix (the node declares
the fields as ``<prefix>.<name>`` parameters, next to its ``shell.*`` parameters):

- ``carla_client: ros__parameters: carla: {...}``          :class:`CarlaConfig` — direct client + lifecycle
- ``carla_bridge_adapter: ros__parameters: bridge: {...}`` :class:`BridgeAdapterConfig` — bridge adapter

The sensor blocks (camera, lidar, radar) appear in both; a test keeps them identical.

Every number of the CARLA integration lives here (or in the YAML that fills it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from carla_rl.contract.config import (
    ConfigError,
    _deep_merge,
    default_config_dir,
    from_mapping,
    node_parameters,
    param,
    unflatten,
)

DEFAULT_CONFIG_FILE = "carla.yaml"


@dataclass(frozen=True)
class SensorMount:
    """Pose of a sensor relative to the ego, in CARLA's frame (left-handed, metres, degrees)."""

    x: float = param(0.0, "Forward offset [m]", low=-50.0, high=50.0)
    y: float = param(0.0, "Right offset [m] (CARLA frame)", low=-50.0, high=50.0)
    z: float = param(0.0, "Up offset [m]", low=-10.0, high=200.0)
    roll: float = param(0.0, "Roll [deg]", low=-180.0, high=180.0)
    pitch: float = param(0.0, "Pitch [deg] (-90 looks straight down)", low=-90.0, high=90.0)
    yaw: float = param(0.0, "Yaw [deg] (CARLA frame, + = right)", low=-180.0, high=180.0)


@dataclass(frozen=True)
class CameraConfig:
    """The bird's-eye semantic segmentation camera (above the ego, looking down, heading up)."""

    mount: SensorMount = param(default_factory=lambda: SensorMount(z=20.0, pitch=-90.0),
                               description="Camera pose relative to the ego")
    width: int = param(84, "Image width [px]", low=8, high=4096)
    height: int = param(84, "Image height [px]", low=8, high=4096)
    fov_deg: float = param(90.0, "Horizontal field of view [deg]", low=5.0, high=170.0)


@dataclass(frozen=True)
class LidarConfig:
    """sensor.lidar.ray_cast attributes; one full rotation per tick by default."""

    mount: SensorMount = param(default_factory=lambda: SensorMount(z=2.4), description="Lidar pose")
    range_m: float = param(50.0, "Range [m]", low=1.0, high=500.0)
    channels: int = param(32, "Laser channels", low=1, high=128)
    points_per_second: int = param(100000, "Points per second", low=1000, high=5_000_000)
    rotation_frequency_hz: float = param(20.0, "Rotations per second (1 / fixed_delta for one sweep a tick)",
                                         low=1.0, high=200.0)
    upper_fov_deg: float = param(10.0, "Upper field of view [deg]", low=-90.0, high=90.0)
    lower_fov_deg: float = param(-30.0, "Lower field of view [deg]", low=-90.0, high=90.0)


@dataclass(frozen=True)
class RadarConfig:
    """sensor.other.radar attributes."""

    mount: SensorMount = param(default_factory=lambda: SensorMount(x=2.0, z=1.0), description="Radar pose")
    horizontal_fov_deg: float = param(30.0, "Horizontal field of view [deg]", low=1.0, high=180.0)
    vertical_fov_deg: float = param(10.0, "Vertical field of view [deg]", low=1.0, high=180.0)
    range_m: float = param(100.0, "Range [m]", low=1.0, high=500.0)
    points_per_second: int = param(1500, "Detections per second", low=10, high=100000)


@dataclass(frozen=True)
class TownMap:
    """CARLA town per scenario ``map_name`` (used when ``town`` is empty)."""

    straight: str = param("Town04", "Town for map_name=straight (long straight highway segments)")
    curvy: str = param("Town07", "Town for map_name=curvy (rural curves)")
    town: str = param("Town03", "Town for map_name=town (urban, signalised junctions)")
    parking: str = param("Town05", "Town for map_name=parking (parking lots)")


@dataclass(frozen=True)
class CarlaConfig:
    """Direct CARLA 0.9.16 client: server connection, lifecycle, world settings, ego and sensors."""

    host: str = param("localhost", "CARLA server host")
    port: int = param(2000, "CARLA server RPC port (the streaming port is port + 1)", low=1, high=65535)
    timeout_s: float = param(10.0, "RPC timeout of the client [s]", low=0.1, high=600.0)
    connect_timeout_s: float = param(5.0, "Timeout of the first connection attempt [s]", low=0.1, high=600.0)
    town: str = param("", "Town to load for every phase (the CLI's --town); empty = per map_name (towns)")
    towns: TownMap = param(default_factory=TownMap, description="Town per scenario map_name")
    tm_port: int = param(8000, "Traffic Manager port", low=1, high=65535)
    fixed_delta_seconds: float = param(0.05, "Simulation step [s] in synchronous mode", low=0.005, high=0.5)
    time_scale: float = param(0.0, "Wall-clock pacing: 0 = as fast as possible, 1 = real time (watching)",
                              low=0.0, high=100.0)
    no_rendering_mode: bool = param(False, "Disable the spectator rendering (sensors still render)")
    restart_command: str = param("", "Shell command that restarts a crashed or hung server; empty = none")
    restart_wait_s: float = param(60.0, "Time allowed for a restarted server to answer [s]",
                                  low=1.0, high=3600.0)
    reconnect_attempts: int = param(5, "Connection attempts before giving up (or restarting)",
                                    low=1, high=1000)
    reconnect_backoff_s: float = param(1.0, "First back-off between attempts [s] (doubles)",
                                       low=0.0, high=600.0)
    reconnect_backoff_max_s: float = param(30.0, "Longest back-off [s]", low=0.0, high=3600.0)
    health_timeout_s: float = param(5.0, "Timeout of a health check (get_server_version + snapshot) [s]",
                                    low=0.1, high=600.0)
    sensor_timeout_s: float = param(5.0, "Wait for all sensors of a frame after world.tick() [s]",
                                    low=0.1, high=600.0)
    role_name: str = param("ego_vehicle", "role_name attribute of the ego (the bridge's topic prefix)")
    ego_blueprint: str = param("vehicle.tesla.model3", "Ego blueprint id")
    vehicle_filter: str = param("vehicle.*", "Blueprint filter for NPC vehicles")
    vehicle_four_wheels_only: bool = param(True, "NPC vehicles: only cars (number_of_wheels == 4)")
    walker_filter: str = param("walker.pedestrian.*", "Blueprint filter for pedestrians")
    walker_max_speed_mps: float = param(1.4, "Pedestrian target speed [m/s]", low=0.1, high=5.0)
    tm_global_distance_m: float = param(2.5, "Traffic Manager: distance to the leading vehicle [m]",
                                        low=0.0, high=50.0)
    tm_speed_difference_percent: float = param(10.0, "Traffic Manager: % below the speed limit",
                                               low=-100.0, high=100.0)
    tm_hybrid_physics: bool = param(False, "Traffic Manager: hybrid physics mode for far vehicles")
    camera: CameraConfig = param(default_factory=CameraConfig, description="Bird's-eye semantic camera")
    lidar: LidarConfig = param(default_factory=LidarConfig, description="Lidar")
    radar: RadarConfig = param(default_factory=RadarConfig, description="Front radar")
    route_step_m: float = param(2.0, "Spacing of route waypoints [m]", low=0.2, high=20.0)
    goal_tolerance_m: float = param(3.0, "Goal reached when the route remaining is below this [m]",
                                    low=0.1, high=50.0)
    actor_search_radius_m: float = param(60.0, "Only actors within this radius count for the nearest "
                                               "actor distance [m]", low=1.0, high=1000.0)
    spawn_attempts: int = param(20, "Spawn points tried for the ego before failing", low=1, high=1000)
    settle_ticks: int = param(2, "Ticks after a reset before the first frame (the ego settles)", low=0,
                              high=100)

    def validate(self) -> None:
        if self.lidar.lower_fov_deg >= self.lidar.upper_fov_deg:
            raise ValueError("lidar.lower_fov_deg must be below lidar.upper_fov_deg")
        if self.reconnect_backoff_max_s < self.reconnect_backoff_s:
            raise ValueError("reconnect_backoff_max_s must be >= reconnect_backoff_s")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def town_for(self, map_name: str) -> str:
        """The CARLA town of a scenario: the fixed ``town`` if set, else ``towns.<map_name>``."""
        if self.town:
            return self.town
        try:
            return getattr(self.towns, map_name)
        except AttributeError:
            raise ConfigError(f"carla_client.towns: no town for map_name {map_name!r}") from None


@dataclass(frozen=True)
class BridgeAdapterConfig:
    """Adapter between the carla-ros-bridge (``/carla/...``) and our contract under ``/env_<i>``.

    The env id, role name, seed and initial phase are the node's ``shell.*`` parameters (as for every
    simulator node of the graph)."""

    ego_blueprint: str = param("vehicle.tesla.model3", "Ego blueprint in the objects definition")
    spawn_ego: bool = param(True, "Spawn the ego + sensors through /carla/spawn_object at start")
    objects_definition_out: str = param("", "Also write the objects-definition JSON here (for "
                                             "carla_spawn_objects); empty = do not write")
    camera: CameraConfig = param(default_factory=CameraConfig, description="Bird's-eye semantic camera")
    lidar: LidarConfig = param(default_factory=LidarConfig, description="Lidar")
    radar: RadarConfig = param(default_factory=RadarConfig, description="Front radar")
    fixed_delta_seconds: float = param(0.05, "The bridge's fixed_delta_seconds [s]", low=0.005, high=0.5)
    status_timeout_s: float = param(10.0, "No /carla/status frame advance for this long = stalled server [s]",
                                    low=0.1, high=3600.0)
    restart_command: str = param("", "Shell command run when the server / bridge stalled (e.g. "
                                     "'docker compose -f docker/compose.yaml restart carla bridge'); "
                                     "empty = only report")
    event_settle_s: float = param(0.02, "After all sensors of a tick arrived, wait this long for its "
                                        "collision / lane-invasion events [s]", low=0.0, high=1.0)
    tick_timeout_s: float = param(2.0, "Drop an incomplete tick after this long [s]", low=0.05, high=60.0)
    route_step_m: float = param(2.0, "Spacing of route waypoints [m]", low=0.2, high=20.0)
    goal_tolerance_m: float = param(3.0, "Goal reached when the route remaining is below this [m]",
                                    low=0.1, high=50.0)
    spawn_height_m: float = param(0.5, "Height above the road when teleporting the ego at a reset [m]",
                                  low=0.0, high=5.0)
    check_period_s: float = param(0.5, "Period of the stall / restart watchdog timer [s]",
                                  low=0.01, high=60.0)


CLIENT_NODE, CLIENT_PREFIX = "carla_client", "carla"
ADAPTER_NODE, ADAPTER_PREFIX = "carla_bridge_adapter", "bridge"


def _load_block(path: Path | None, node: str, prefix: str, cls: type,
                overrides: Mapping[str, Any] | None) -> Any:
    """``<node>: ros__parameters: <prefix>: {...}`` of a params file -> ``cls`` (dotted overrides)."""
    path = Path(path) if path else default_config_dir() / DEFAULT_CONFIG_FILE
    params = node_parameters(path, node).get(prefix, {})
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: {node}.{prefix}: expected a mapping")
    if overrides:
        params = _deep_merge(params, unflatten(overrides))
    try:
        return from_mapping(cls, params, prefix)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {node}: {exc}") from None


def load_carla_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> CarlaConfig:
    """``carla_client.carla`` of ``config/carla.yaml`` (or ``path``), with dotted overrides (the node
    declares the same fields as ``carla.<name>`` parameters)."""
    return _load_block(path, CLIENT_NODE, CLIENT_PREFIX, CarlaConfig, overrides)


def load_bridge_adapter_config(path: Path | None = None,
                               overrides: Mapping[str, Any] | None = None) -> BridgeAdapterConfig:
    """``carla_bridge_adapter.bridge`` of ``config/carla.yaml`` (or ``path``), with dotted overrides."""
    return _load_block(path, ADAPTER_NODE, ADAPTER_PREFIX, BridgeAdapterConfig, overrides)
