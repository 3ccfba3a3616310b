"""Typed configuration of the embedded simulator (``config/sim.yaml``, ``embedded_simulator``).

Every number is a :func:`carla_rl.contract.config.param` field with a description, a unit and a range, so the
ROS shell can declare it with a ``ParameterDescriptor`` and the loader rejects unknown keys and
impossible values with a :class:`~carla_rl.contract.config.ConfigError` that names the key.
"""

from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path

from carla_rl.contract.actions import ACTION_NAMES, ActionControl, ActionTable
from carla_rl.contract.config import ConfigError, load_section, param
from carla_rl.contract.sensor_frame import VehicleControl

SIM_NODE_NAME = "embedded_simulator"  # block of config/sim.yaml read into SimConfig
SHELL_KEY = "shell"                   # the node's settings beside the world's, in the same block


@dataclass(frozen=True)
class CameraConfig:
    """Semantic bird's-eye camera (ego heading up)."""

    width: int = param(84, "Image width [px]", low=8, high=1024)
    height: int = param(84, "Image height [px]", low=8, high=1024)
    metres_per_pixel: float = param(0.5, "Ground resolution [m/px]", low=0.02, high=5.0)
    ego_col_fraction: float = param(
        0.5, "Ego column as a fraction of the width (0 left, 1 right)", low=0.0, high=1.0
    )
    ego_row_fraction: float = param(
        0.75, "Ego row as a fraction of the height (0 top, 1 bottom)", low=0.0, high=1.0
    )
    raster_oversample: int = param(2, "Static map raster pixels per camera pixel", low=1, high=8)


@dataclass(frozen=True)
class LidarConfig:
    """Ray-cast LiDAR (points in the ego frame: x forward, y left, z up from the ground)."""

    channels: int = param(1, "Vertical channels", low=1, high=64)
    rays_per_channel: int = param(180, "Horizontal rays per channel (360 deg)", low=4, high=4096)
    range_m: float = param(30.0, "Maximum range [m]", low=1.0, high=200.0)
    upper_fov_deg: float = param(0.0, "Elevation of the top channel [deg]", low=-60.0, high=60.0)
    lower_fov_deg: float = param(0.0, "Elevation of the bottom channel [deg]", low=-60.0, high=60.0)
    mount_height_m: float = param(1.2, "Sensor height above the ground [m]", low=0.1, high=5.0)
    resolution_m: float = param(
        0.5, "Ray-march step and occupancy raster resolution [m]", low=0.05, high=2.0
    )
    noise_std_m: float = param(0.02, "Gaussian range noise [m]", low=0.0, high=1.0)
    atmosphere_attenuation: float = param(
        0.004, "Intensity = exp(-a * distance) [1/m]", low=0.0, high=1.0
    )


@dataclass(frozen=True)
class RadarConfig:
    """Front radar: one detection per actor in the field of view (nearest first)."""

    horizontal_fov_deg: float = param(30.0, "Horizontal field of view [deg]", low=1.0, high=180.0)
    vertical_fov_deg: float = param(10.0, "Vertical field of view [deg]", low=1.0, high=90.0)
    range_m: float = param(50.0, "Maximum range [m]", low=1.0, high=300.0)
    max_detections: int = param(32, "Maximum detections per tick", low=1, high=1024)
    mount_height_m: float = param(0.7, "Sensor height above the ground [m]", low=0.1, high=5.0)
    noise_std_m: float = param(0.05, "Gaussian depth noise [m]", low=0.0, high=2.0)


@dataclass(frozen=True)
class VehicleDynamicsConfig:
    """Kinematic bicycle model of the ego (rear-axle reference, wheelbase centred on the body)."""

    length_m: float = param(4.6, "Body length [m]", low=1.0, high=20.0)
    width_m: float = param(1.9, "Body width [m]", low=0.5, high=4.0)
    height_m: float = param(1.5, "Body height [m]", low=0.5, high=5.0)
    wheelbase_m: float = param(2.9, "Wheelbase [m]", low=0.5, high=10.0)
    track_m: float = param(1.6, "Track width (wheel to wheel) [m]", low=0.5, high=3.0)
    max_steer_deg: float = param(35.0, "Front-wheel angle at |steer| = 1 [deg]", low=1.0, high=60.0)
    max_accel_mps2: float = param(3.5, "Acceleration at full throttle [m/s^2]", low=0.1, high=20.0)
    max_brake_mps2: float = param(8.0, "Deceleration at full brake [m/s^2]", low=0.1, high=30.0)
    hand_brake_mps2: float = param(
        6.0, "Deceleration of the hand brake [m/s^2]", low=0.1, high=30.0
    )
    rolling_resistance_mps2: float = param(
        0.15, "Constant coasting deceleration [m/s^2]", low=0.0, high=5.0
    )
    drag_coefficient: float = param(
        0.0012, "Quadratic drag deceleration per (m/s)^2 [1/m]", low=0.0, high=0.1
    )
    max_speed_mps: float = param(25.0, "Top forward speed [m/s]", low=0.5, high=100.0)
    reverse_max_speed_mps: float = param(5.0, "Top reverse speed [m/s]", low=0.1, high=30.0)
    mass_kg: float = param(1500.0, "Mass, for collision impulses [kg]", low=50.0, high=50000.0)

    def validate(self) -> None:
        if self.wheelbase_m > self.length_m:
            raise ConfigError("vehicle.wheelbase_m: must not exceed vehicle.length_m")
        if self.track_m > self.width_m:
            raise ConfigError("vehicle.track_m: must not exceed vehicle.width_m")


@dataclass(frozen=True)
class IdmConfig:
    """Intelligent Driver Model of the NPC vehicles (Treiber et al. 2000)."""

    max_accel_mps2: float = param(1.5, "Maximum acceleration a [m/s^2]", low=0.1, high=10.0)
    comfortable_decel_mps2: float = param(
        2.5, "Comfortable deceleration b [m/s^2]", low=0.1, high=10.0
    )
    max_decel_mps2: float = param(8.0, "Hard deceleration limit [m/s^2]", low=0.5, high=30.0)
    time_headway_s: float = param(1.5, "Desired time headway T [s]", low=0.1, high=10.0)
    min_gap_m: float = param(2.0, "Jam distance s0 [m]", low=0.1, high=20.0)
    delta: float = param(4.0, "Acceleration exponent", low=1.0, high=10.0)
    lookahead_m: float = param(
        30.0, "Obstacle look-ahead along the heading [m]", low=5.0, high=200.0
    )
    lateral_margin_m: float = param(
        0.6, "Extra half-width of the look-ahead corridor [m]", low=0.0, high=5.0
    )
    speed_factor_low: float = param(
        0.9, "Lowest desired speed / scenario target speed", low=0.1, high=2.0
    )
    speed_factor_high: float = param(
        1.1, "Highest desired speed / scenario target speed", low=0.1, high=2.0
    )
    turn_speed_mps: float = param(4.5, "Desired speed through turns [m/s]", low=0.5, high=20.0)
    turn_slowdown_m: float = param(
        15.0, "Distance before a turn where the turn speed applies [m]", low=0.0, high=100.0
    )
    vehicle_length_m: float = param(4.5, "NPC body length [m]", low=1.0, high=20.0)
    vehicle_width_m: float = param(1.9, "NPC body width [m]", low=0.5, high=4.0)
    spawn_spacing_m: float = param(
        12.0, "Minimum distance between spawned vehicles [m]", low=1.0, high=100.0
    )
    ego_clearance_m: float = param(
        20.0, "Minimum spawn distance from the ego [m]", low=0.0, high=200.0
    )

    def validate(self) -> None:
        if self.speed_factor_low > self.speed_factor_high:
            raise ConfigError("idm.speed_factor_low: must not exceed idm.speed_factor_high")


@dataclass(frozen=True)
class PedestrianConfig:
    """Pedestrians walking the sidewalks and crossing roads."""

    speed_min_mps: float = param(1.0, "Slowest walking speed [m/s]", low=0.1, high=5.0)
    speed_max_mps: float = param(1.6, "Fastest walking speed [m/s]", low=0.1, high=5.0)
    crossing_probability: float = param(
        0.4, "Chance to take a crosswalk when passing one", low=0.0, high=1.0
    )
    size_m: float = param(0.6, "Body footprint (square side) [m]", low=0.1, high=2.0)

    def validate(self) -> None:
        if self.speed_min_mps > self.speed_max_mps:
            raise ConfigError(
                "pedestrians.speed_min_mps: must not exceed pedestrians.speed_max_mps"
            )


@dataclass(frozen=True)
class TrafficLightConfig:
    """Fixed-time signal plan: green, yellow and all-red per approach group (two groups)."""

    green_s: float = param(6.0, "Green time [s]", low=0.5, high=300.0)
    yellow_s: float = param(2.0, "Yellow time [s]", low=0.0, high=30.0)
    all_red_s: float = param(1.0, "All-red clearance time [s]", low=0.0, high=30.0)

    @property
    def cycle_s(self) -> float:
        return 2.0 * (self.green_s + self.yellow_s + self.all_red_s)


@dataclass(frozen=True)
class MapGeometryConfig:
    """Sizes of the procedural maps."""

    lane_width_m: float = param(3.5, "Lane width [m]", low=2.0, high=6.0)
    sidewalk_width_m: float = param(3.0, "Sidewalk width [m]", low=0.5, high=10.0)
    crosswalk_width_m: float = param(
        4.0, "Crosswalk width (along the road) [m]", low=1.0, high=10.0
    )
    curb_radius_m: float = param(
        4.0, "Radius of the rounded sidewalk corners [m]", low=0.0, high=20.0
    )
    block_spacing_m: float = param(
        90.0, "Distance between town intersections [m]", low=30.0, high=500.0
    )
    town_grid_size: int = param(5, "Town intersections per side", low=2, high=12)
    straight_length_m: float = param(
        600.0, "Length of the straight road [m]", low=100.0, high=5000.0
    )
    curvy_min_radius_m: float = param(
        30.0, "Smallest curve radius of the curvy road [m]", low=10.0, high=500.0
    )
    parking_bays_per_side: int = param(
        12, "Parking bays on each side of the aisle", low=2, high=100
    )
    bay_width_m: float = param(3.0, "Parking bay width [m]", low=2.0, high=6.0)
    bay_depth_m: float = param(5.5, "Parking bay depth [m]", low=3.0, high=10.0)
    aisle_width_m: float = param(10.0, "Parking aisle width [m]", low=5.0, high=30.0)
    waypoint_spacing_m: float = param(
        1.0, "Spacing of lane polyline points [m]", low=0.1, high=10.0
    )


@dataclass(frozen=True)
class SimConfig:
    """The embedded simulator: tick, sensors, ego dynamics, traffic, maps and actions."""

    fixed_delta_seconds: float = param(0.05, "Simulation tick [s]", low=0.001, high=1.0)
    goal_radius_m: float = param(
        3.0, "Distance to the route end that counts as goal [m]", low=0.1, high=50.0
    )
    parking_goal_radius_m: float = param(
        1.0, "Distance to the bay centre that counts as parked [m]", low=0.1, high=10.0
    )
    parking_heading_tolerance_deg: float = param(
        20.0, "Heading tolerance to the bay axis [deg]", low=1.0, high=90.0
    )
    parking_arc_margin: float = param(
        1.15,
        "Radius of the parking route's turn into the bay / the radius the sharpest discrete "
        "steering action drives (> 1: the agent can follow it by mixing steered and straight ticks)",
        low=1.0,
        high=3.0,
    )
    parking_straight_in_m: float = param(
        1.0,
        "The parking route's turn ends this far before the bay centre, straight on to it along the "
        "bay axis [m]",
        low=0.0,
        high=5.0,
    )
    camera: CameraConfig = param(default_factory=CameraConfig, description="BEV camera")
    lidar: LidarConfig = param(default_factory=LidarConfig, description="LiDAR")
    radar: RadarConfig = param(default_factory=RadarConfig, description="Radar")
    vehicle: VehicleDynamicsConfig = param(
        default_factory=VehicleDynamicsConfig, description="Ego vehicle dynamics"
    )
    actions: ActionTable = param(
        default_factory=ActionTable,
        description="The 6 discrete actions (shared with the policy: the /** block of sim.yaml)",
    )
    idm: IdmConfig = param(default_factory=IdmConfig, description="NPC vehicle behaviour")
    pedestrians: PedestrianConfig = param(
        default_factory=PedestrianConfig, description="Pedestrians"
    )
    traffic_lights: TrafficLightConfig = param(
        default_factory=TrafficLightConfig, description="Signal timing"
    )
    map: MapGeometryConfig = param(default_factory=MapGeometryConfig, description="Map sizes")

    def validate(self) -> None:
        if self.lidar.lower_fov_deg > self.lidar.upper_fov_deg:
            raise ConfigError("lidar.lower_fov_deg: must not exceed lidar.upper_fov_deg")
        if self.map.curb_radius_m > self.map.crosswalk_width_m:
            raise ConfigError("map.curb_radius_m: must not exceed map.crosswalk_width_m")
        if self.map.aisle_width_m / 2.0 < self.vehicle.wheelbase_m / _tan_deg(
            self.vehicle.max_steer_deg
        ):
            raise ConfigError(
                "map.aisle_width_m: half the aisle must exceed the ego's turning radius"
            )
        for sub in (self.vehicle, self.idm, self.pedestrians):
            sub.validate()

    def action_control(self, index: int) -> VehicleControl:
        """VehicleControl of discrete action ``index`` (0 fast_forward ... 5 reverse)."""
        return self.actions.control(index)

    def action_table(self) -> list[ActionControl]:
        """The actions in index order."""
        return [getattr(self.actions, name) for name in ACTION_NAMES]


def _tan_deg(deg: float) -> float:
    import math

    return math.tan(math.radians(deg))


def load_sim_config(path: Path, overrides: dict | None = None) -> SimConfig:
    """SimConfig from ``config/sim.yaml``: the ``embedded_simulator`` block merged over ``/**``,
    without the node's own ``shell`` block (nodes/support/simulator_shell.py)."""
    return load_section(Path(path), SIM_NODE_NAME, SimConfig, overrides, ignore=(SHELL_KEY,))
