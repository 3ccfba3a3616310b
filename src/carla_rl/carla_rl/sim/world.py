"""The embedded driving world: ego (kinematic bicycle), NPC traffic, pedestrians, lights, sensors.

``World.step(control)`` applies one carla.VehicleControl, advances everything by
``fixed_delta_seconds`` and returns the :class:`~carla_rl.contract.sensor_frame.SensorFrame` of the new
tick. Deterministic: the same seed and the same controls give bit-identical frames.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import cv2
import numpy as np

from carla_rl.contract.scenario import ScenarioConfig
from carla_rl.contract.semantic_palette import PALETTE, SemanticTag as Tag
from carla_rl.contract.sensor_frame import (
    CollisionEvent,
    EgoSituation,
    LaneInvasionEvent,
    Odometry,
    SensorFrame,
    TrafficLightState,
    VehicleControl,
)
from carla_rl.sim import kernels
from carla_rl.sim.maps import Route, build_map, plan_parking_route, plan_route
from carla_rl.sim.road import STOP_LINE, RoadNetwork
from carla_rl.sim.sensors import (
    SUBPIXEL_SCALE,
    SUBPIXEL_SHIFT,
    BevCamera,
    Lidar,
    Radar,
    box_corners,
    ego_to_view,
)
from carla_rl.sim.sim_config import SimConfig
from carla_rl.sim.traffic import Pedestrians, TrafficLights, Vehicles

STATIC_ACTOR_ID = 0  # collisions with buildings / map geometry
EGO_ACTOR_ID = 1
VEHICLE_ID_BASE = 100  # NPC vehicle i has id VEHICLE_ID_BASE + i
PEDESTRIAN_ID_BASE = 1000  # pedestrian i has id PEDESTRIAN_ID_BASE + i
KIND_EGO, KIND_VEHICLE, KIND_PEDESTRIAN = 0, 1, 2
PEDESTRIAN_HEIGHT_M = 1.8
NPC_HEIGHT_M = 1.5
REVERSE_ACCEL_FACTOR = 0.6  # reverse gear gives this fraction of the forward acceleration
EGO_PREDICT_S = 1.0  # NPC vehicles also avoid the ego's position this far ahead [s]
MIN_IMPULSE_SPEED_MPS = 0.5  # relative speed floor for collision impulses [m/s]
ROUTE_WINDOW_BACK = 0  # route projection window, segments behind / ahead of the last match
ROUTE_WINDOW_AHEAD = 4
ROUTE_LOST_M = 5.0  # beyond this distance the whole route is searched [m]
SPAWN_END_MARGIN_M = 20.0  # linear maps: keep the route this far from the road end [m]
ROUTE_ATTEMPTS = 20  # route planner retries for a goal away from the start
ROUTE_MIN_GOAL_FRACTION = 0.3  # straight-line start-goal distance / route length, at least
CAR_RGB = tuple(int(v) for v in PALETTE[Tag.CAR])
PEDESTRIAN_RGB = tuple(int(v) for v in PALETTE[Tag.PEDESTRIAN])
DRIVABLE_TAGS = np.zeros(len(PALETTE), dtype=bool)
DRIVABLE_TAGS[[Tag.ROAD, Tag.ROAD_LINE]] = True
_DRIVABLE = frozenset(int(t) for t in np.nonzero(DRIVABLE_TAGS)[0])
# Plain ints of the enums used per tick (enum attribute access is slow in the hot path).
_BUILDING, _SIDEWALK = int(Tag.BUILDING), int(Tag.SIDEWALK)
_CAR, _PEDESTRIAN = int(Tag.CAR), int(Tag.PEDESTRIAN)
_RED = int(TrafficLightState.RED)
_LIGHT_UNKNOWN = TrafficLightState.UNKNOWN
_NO_BOXES = np.zeros((0, 4, 2), dtype=np.int32)


@dataclass
class ActorsSnapshot:
    """All actors, ego first: positions [A, 2], yaws [A], sizes [A, 2] (length, width), kinds [A]
    (0 ego, 1 vehicle, 2 pedestrian), ids [A], speeds [A] (m/s, signed for the ego)."""

    positions: np.ndarray
    yaws: np.ndarray
    sizes: np.ndarray
    kinds: np.ndarray
    ids: np.ndarray
    speeds: np.ndarray


def wrap_angle(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def parking_turn_radius(sim_config: SimConfig) -> float:
    """Radius [m] of the parking route's turn into the bay: the circle the ego's centre drives with
    the sharpest steering of the forward discrete actions (kinematic bicycle: rear axle on
    wheelbase / tan(delta), the centre half a wheelbase ahead of it), times parking_arc_margin."""
    veh = sim_config.vehicle
    steers = [abs(a.steer) for a in sim_config.action_table() if not a.reverse and a.steer != 0.0]
    delta = math.radians(veh.max_steer_deg) * min(max(steers, default=1.0), 1.0)
    rear = veh.wheelbase_m / math.tan(delta)
    return math.hypot(rear, veh.wheelbase_m / 2.0) * sim_config.parking_arc_margin


class World:
    """Deterministic numpy driving world with CARLA's semantics (see module docstring)."""

    def __init__(self, sim_config: SimConfig, scenario: ScenarioConfig, seed: int = 0):
        self.cfg = sim_config
        self.scenario = scenario
        self.dt = sim_config.fixed_delta_seconds
        self.step_id = 0
        self.episode_id = 0
        self.episode_step = 0
        self.phase = 1
        self.evaluation = False
        self.invalid_controls = 0
        self.route_version = 0
        self._seed_rng = np.random.default_rng(seed)
        self.rng = np.random.default_rng(seed)
        self.sensor_rng = np.random.default_rng(seed)
        self._maps: dict[str, tuple] = {}
        veh = sim_config.vehicle
        self.ego_length, self.ego_width = veh.length_m, veh.width_m
        self.ego_radius = 0.5 * math.hypot(veh.length_m, veh.width_m)
        self.max_steer = math.radians(veh.max_steer_deg)
        self.min_turn_radius = veh.wheelbase_m / math.tan(self.max_steer)
        self.parking_turn_radius = parking_turn_radius(sim_config)
        # Wheels in the body frame [4, 2]: front-left, front-right, rear-left, rear-right.
        hx, hy = veh.wheelbase_m / 2.0, veh.track_m / 2.0
        self._wheels = np.array([[hx, hy], [hx, -hy], [-hx, hy], [-hx, -hy]])
        self._ego_corners = (
            np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [veh.length_m / 2, veh.width_m / 2]
        )[
            None
        ]  # [1, 4, 2]
        self._body = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [
            veh.length_m / 2,
            veh.width_m / 2,
        ]
        self._probe_body = np.concatenate([self._body, self._wheels, [[0.0, 0.0]]])  # [9, 2]
        self._front_wheels = np.ascontiguousarray(self._wheels[:2])
        self._probe_buf = np.zeros(len(self._probe_body), dtype=np.uint8)
        self._probe_tags: list[int] = [0] * len(self._probe_body)
        self._a_nearest2 = math.inf
        self._use_map(scenario.map_name)
        self.x = self.y = self.yaw = self.speed = self.yaw_rate = 0.0
        self.route: Route | None = None
        self._route32 = np.zeros((0, 2), dtype=np.float32)
        self._route_idx = 0
        # Evaluation loops that only need the situation may switch the sensors off (blank frames).
        self.sensors_enabled = True
        self._blank_camera = np.zeros(
            (sim_config.camera.height, sim_config.camera.width, 3), np.uint8
        )

    # ------------------------------------------------------------------ map and sensors
    def prepare_maps(self, names) -> None:
        """Build the maps ``names`` (their sensors and rasters) now, staying on the current one: a
        map is otherwise built when a phase first uses it, which stalls that tick (town: ~0.4 s)
        and grows the process by its size (per world: curvy ~12 MB, town ~20 MB, parking ~5 MB)."""
        current = self.map_name
        for name in dict.fromkeys(names):
            self._use_map(name)
        self._use_map(current)

    def _use_map(self, name: str) -> None:
        if name not in self._maps:
            net = build_map(name, self.cfg.map)
            camera = BevCamera(self.cfg.camera, net)
            lidar = Lidar(self.cfg.lidar, net, camera.res)
            radar = Radar(self.cfg.radar, self.cfg.vehicle.length_m / 2.0)
            lights = TrafficLights(net, self.cfg.traffic_lights)
            vehicles = Vehicles(net, self.cfg.idm)
            peds = Pedestrians(net, self.cfg.pedestrians, self.cfg.map.waypoint_spacing_m)
            self._maps[name] = (net, camera, lidar, radar, lights, vehicles, peds)
        self.map_name = name
        (
            self.net,
            self.camera,
            self.lidar,
            self.radar,
            self.lights,
            self.vehicles,
            self.pedestrians,
        ) = self._maps[name]
        self.map_tags, _ = self.net.raster(self.camera.res)
        # Fixed-point pixel frames of the camera and the LiDAR raster, and the ego in the camera.
        cam, lid = self.camera, self.lidar
        self._cam_px = (SUBPIXEL_SCALE / cam.cfg.metres_per_pixel, cam.u_e * SUBPIXEL_SCALE,
                        cam.v_e * SUBPIXEL_SCALE)
        self._lid_px = (SUBPIXEL_SCALE / lid.cfg.resolution_m, lid.c * SUBPIXEL_SCALE,
                        lid.c * SUBPIXEL_SCALE)
        self._ego_px = ego_to_view(
            self._ego_corners, self.cfg.camera.metres_per_pixel, cam.u_e, cam.v_e
        )
        radius = max(cam.view_radius, lid.view_radius)
        self._sensor_r2 = radius * radius

    @property
    def road_network(self) -> RoadNetwork:
        """Lanes (``lanes[i].points``), markings, crosswalks, ``light_pos``, ``parking_bays``."""
        return self.net

    @property
    def light_states(self) -> np.ndarray:
        """[NL] TrafficLightState of every light of ``road_network`` (OFF when signals are off)."""
        return self.lights.state.copy()

    # ------------------------------------------------------------------ episode
    def reset(
        self,
        seed: int | None = None,
        scenario: ScenarioConfig | None = None,
        evaluation: bool = False,
        phase: int | None = None,
    ) -> SensorFrame:
        if scenario is not None:
            self.scenario = scenario
        if phase is not None:
            self.phase = phase
        self.evaluation = evaluation
        sc = self.scenario
        episode_seed = seed if seed is not None else int(self._seed_rng.integers(2**63))
        world_seq, sensor_seq = np.random.SeedSequence(episode_seed).spawn(2)
        self.rng = rng = np.random.default_rng(world_seq)
        # Sensor noise has its own stream, so switching sensors off does not change the world.
        self.sensor_rng = np.random.default_rng(sensor_seq)
        self._use_map(sc.map_name)
        net = self.net
        self.episode_id += 1
        self.episode_step = 0
        spacing = self.cfg.map.waypoint_spacing_m
        goal_bay = -1
        if sc.map_name == "parking":
            north = [i for i, yaw in enumerate(net.bay_yaws) if yaw > 0]
            goal_bay = int(north[rng.integers(len(north) // 3, len(north))])
            self.route = plan_parking_route(net, goal_bay, self.parking_turn_radius,
                                            sc.route_length_m, spacing,
                                            self.cfg.parking_straight_in_m)
        else:
            lane = int(net.spawn_lanes[rng.integers(len(net.spawn_lanes))])
            if sc.map_name == "town":
                s0 = float(rng.uniform(2.0, max(3.0, net.lane_len[lane] - 10.0)))
            else:
                hi = max(10.0, net.lane_len[lane] - sc.route_length_m - SPAWN_END_MARGIN_M)
                s0 = float(rng.uniform(10.0, hi)) if hi > 10.0 else 0.0
            for _ in range(ROUTE_ATTEMPTS):
                self.route = plan_route(net, rng, lane, s0, sc.route_length_m, spacing)
                # Reject routes that loop back near their start (the goal would be trivial).
                if (
                    np.linalg.norm(self.route.goal - self.route.points[0])
                    >= ROUTE_MIN_GOAL_FRACTION * self.route.length
                ):
                    break
        pts = self.route.points
        self.x, self.y = float(pts[0, 0]), float(pts[0, 1])
        self.yaw = math.atan2(pts[1, 1] - pts[0, 1], pts[1, 0] - pts[0, 0])
        self.speed = self.yaw_rate = 0.0
        self._route_idx = 0
        self.route_version += 1
        self._route32 = pts.astype(np.float32)
        self._stop_s = self.route.stop_s.tolist()
        self.lights.reset(rng, sc.traffic_lights)
        if sc.map_name == "parking":
            free = [i for i in range(len(net.parking_bays)) if i != goal_bay]
            n = min(sc.num_vehicles, len(free))
            bays = np.sort(rng.permutation(free)[:n]) if n else np.zeros(0, dtype=np.int64)
            yaws = np.array(net.bay_yaws)[bays] + np.where(rng.random(n) < 0.5, 0.0, math.pi)
            self.vehicles.park(net.bay_centres[bays].reshape(-1, 2), yaws)
        else:
            self.vehicles.spawn(
                rng,
                sc.num_vehicles,
                sc.target_speed_mps,
                np.array([self.x, self.y]),
                self.cfg.idm.ego_clearance_m,
            )
        self.pedestrians.spawn(rng, sc.num_pedestrians, sc.jaywalk_probability)
        size = self.cfg.pedestrians.size_m
        nv, npd = self.vehicles.n, self.pedestrians.n
        self._a_len = np.concatenate([self.vehicles.length, np.full(npd, size)])  # [A]
        self._a_wid = np.concatenate([self.vehicles.width, np.full(npd, size)])  # [A]
        self._a_height = np.concatenate(
            [np.full(nv, NPC_HEIGHT_M), np.full(npd, PEDESTRIAN_HEIGHT_M)]
        )
        self._a_reach = 0.5 * np.hypot(self._a_len, self._a_wid) + self.ego_radius  # [A]
        self._a_radius = 0.5 * np.minimum(self._a_len, self._a_wid)
        # Per-tick actor arrays (filled in place by the compiled kernels).
        a = nv + npd
        self._a_pos = np.zeros((a, 2))
        self._a_yaw, self._a_speed = np.zeros(a), np.zeros(a)
        self._a_ex, self._a_ey, self._a_dist2 = np.zeros(a), np.zeros(a), np.zeros(a)
        self._a_cr, self._a_sr = np.zeros(a), np.zeros(a)
        self._hits = np.zeros(a, dtype=np.int64)
        self._radar_buf = np.zeros((a, 4))
        self._cam_boxes = np.zeros((a, 4, 2), dtype=np.int32)  # fixed-point sensor pixels
        self._lid_boxes = np.zeros((a, 4, 2), dtype=np.int32)
        self._lid_box = np.zeros(4, dtype=np.int64)
        # Obstacles of the NPC vehicles: vehicles, ego, ego ahead, pedestrians.
        half = size / 2.0
        self._obs_pos = np.zeros((a + 2, 2))
        self._obs_yaw, self._obs_speed = np.zeros(a + 2), np.zeros(a + 2)
        self._obs_hl = np.concatenate(
            [self.vehicles.length / 2.0, [self.ego_length / 2.0] * 2, np.full(npd, half)]
        )
        self._obs_hw = np.concatenate(
            [self.vehicles.width / 2.0, [self.ego_width / 2.0] * 2, np.full(npd, half)]
        )
        self._gather_actors()
        self.step_id += 1
        self._update_probe(math.cos(self.yaw), math.sin(self.yaw))
        return self._frame([], [], False)

    # ------------------------------------------------------------------ stepping
    def apply_action(self, index: int) -> SensorFrame:
        """Step with discrete action ``index`` (0 fast_forward ... 5 reverse)."""
        return self.step(self.cfg.action_control(index))

    def step(self, control: VehicleControl) -> SensorFrame:
        if self.route is None:
            raise RuntimeError("World.step() before World.reset()")
        ctrl, invalid = control.sanitized()
        if invalid:
            self.invalid_controls += 1
        self.step_id += 1
        self.episode_step += 1
        dt = self.dt
        self.lights.update(self.episode_step * dt)
        prev = (self.x, self.y, self.yaw)
        self._integrate_ego(ctrl, dt)
        veh, peds = self.vehicles, self.pedestrians
        if veh.n and not veh.static.all():
            # NPCs also keep clear of where the ego will be in EGO_PREDICT_S.
            ahead = max(self.speed, 0.0) * EGO_PREDICT_S
            kernels.fill_obstacles(
                veh.pos, veh.yaw, veh.speed, peds.pos, peds.yaw, peds.speed, peds.state,
                self.x, self.y, self.yaw, self.speed,
                math.cos(self.yaw) * ahead, math.sin(self.yaw) * ahead,
                self._obs_pos, self._obs_yaw, self._obs_speed,
            )
            veh.step(
                dt,
                self.rng,
                self.lights,
                self._obs_pos,
                self._obs_yaw,
                self._obs_speed,
                self._obs_hl,
                self._obs_hw,
                np.zeros(0),
            )
        peds.step(dt, self.rng, self.lights)
        self._gather_actors()
        collisions = self._collisions()
        if collisions:
            self.x, self.y, self.yaw = prev
            self.speed = 0.0
            self._gather_actors()
            self._update_probe(math.cos(self.yaw), math.sin(self.yaw))
        invasions, ran_red = self._line_crossings(prev)
        return self._frame(collisions, invasions, ran_red)

    def _integrate_ego(self, ctrl: VehicleControl, dt: float) -> None:
        """Kinematic bicycle on the rear axle (exact arc for constant steer), CARLA pedal rules."""
        veh = self.cfg.vehicle
        v = self.speed
        if ctrl.reverse:
            v += -ctrl.throttle * veh.max_accel_mps2 * REVERSE_ACCEL_FACTOR * dt
        else:
            v += ctrl.throttle * veh.max_accel_mps2 * dt
        resist = (
            ctrl.brake * veh.max_brake_mps2
            + (veh.hand_brake_mps2 if ctrl.hand_brake else 0.0)
            + veh.rolling_resistance_mps2
            + veh.drag_coefficient * v * v
        )
        if v > 0.0:
            v = max(0.0, v - resist * dt)
        elif v < 0.0:
            v = min(0.0, v + resist * dt)
        v = min(max(v, -veh.reverse_max_speed_mps), veh.max_speed_mps)
        delta = -ctrl.steer * self.max_steer  # + steer = right = clockwise
        half_wb = veh.wheelbase_m / 2.0
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        rx, ry = self.x - half_wb * c, self.y - half_wb * s
        dist = v * dt
        tan_d = math.tan(delta)
        dyaw = dist * tan_d / veh.wheelbase_m
        if abs(dyaw) > 1e-9:
            radius = veh.wheelbase_m / tan_d
            yaw1 = self.yaw + dyaw
            rx += radius * (math.sin(yaw1) - s)
            ry -= radius * (math.cos(yaw1) - c)
        else:
            yaw1 = self.yaw
            rx += dist * c
            ry += dist * s
        self.yaw = wrap_angle(yaw1)
        self.x = rx + half_wb * math.cos(self.yaw)
        self.y = ry + half_wb * math.sin(self.yaw)
        self.speed = v
        self.yaw_rate = dyaw / dt

    # ------------------------------------------------------------------ events
    def _gather_actors(self) -> None:
        """Actor arrays of this tick (vehicles then pedestrians), world and ego frame."""
        if len(self._a_yaw) == 0:
            self._a_nearest2 = math.inf
            return
        veh, peds = self.vehicles, self.pedestrians
        self._a_nearest2 = kernels.gather_actors(
            self.x, self.y, self.yaw, veh.pos, veh.yaw, veh.speed, peds.pos, peds.yaw,
            peds.speed, peds.state, self._a_pos, self._a_yaw, self._a_speed, self._a_ex,
            self._a_ey, self._a_dist2, self._a_cr, self._a_sr,
        )

    def _collisions(self) -> list[CollisionEvent]:
        events = []
        veh = self.vehicles
        mass = self.cfg.vehicle.mass_kg
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        if len(self._a_dist2):
            m = kernels.sat_hits(
                self._a_ex, self._a_ey, self._a_cr, self._a_sr, self._a_len, self._a_wid,
                self._a_dist2, self._a_reach, self.ego_length / 2.0, self.ego_width / 2.0,
                self._hits,
            )
            if m:
                for k in self._hits[:m].tolist():
                    if k < veh.n:
                        other_id = VEHICLE_ID_BASE + int(k)
                    else:
                        other_id = PEDESTRIAN_ID_BASE + int(k - veh.n)
                    other_v = self._a_speed[k] * np.array(
                        [math.cos(self._a_yaw[k]), math.sin(self._a_yaw[k])]
                    )
                    d = self._a_pos[k] - (self.x, self.y)
                    normal = -d / max(float(np.linalg.norm(d)), 1e-6)
                    ego_v = np.array([self.speed * c, self.speed * s])
                    rel = max(abs(float(np.dot(ego_v - other_v, normal))), MIN_IMPULSE_SPEED_MPS)
                    j = mass * rel * normal
                    events.append(CollisionEvent(other_id, (float(j[0]), float(j[1]), 0.0)))
        tags = self._update_probe(c, s)
        if _BUILDING in tags[:4]:
            j = (
                -mass
                * max(abs(self.speed), MIN_IMPULSE_SPEED_MPS)
                * (1.0 if self.speed >= 0.0 else -1.0)
            )
            events.append(CollisionEvent(STATIC_ACTOR_ID, (j * c, j * s, 0.0)))
        return events

    def _update_probe(self, c: float, s: float) -> list[int]:
        """Map tags under the body corners [0:4], wheels [4:8] and centre [8] (plain ints)."""
        x_min, _, _, y_max = self.net.bounds
        kernels.probe_tags(
            self._probe_body, self.x, self.y, c, s, self.map_tags, x_min, y_max,
            self.camera.res, self._probe_buf,
        )
        self._probe_tags = tags = self._probe_buf.tolist()
        return tags

    def _line_crossings(self, prev) -> tuple[list[LaneInvasionEvent], bool]:
        """Markings crossed by the front wheels and red stop lines crossed by the centre."""
        idx = self.net.lines_near(self.x, self.y)
        if len(idx) == 0 or prev == (self.x, self.y, self.yaw):
            return [], False
        cross = np.empty((3, len(idx)), dtype=bool)
        if not kernels.segment_crossings(
            prev[0], prev[1], prev[2], self.x, self.y, self.yaw, self._front_wheels,
            self.net.line_a, self.net.line_b, idx, cross,
        ):
            return [], False
        kind = self.net.line_kind[idx]
        marks = sorted({int(k) for k in kind[cross[:2].any(axis=0)] if k != STOP_LINE})
        invasions = [LaneInvasionEvent(tuple(marks))] if marks else []
        ran_red = False
        if self.lights.enabled:
            stop = cross[2] & (kind == STOP_LINE)
            if stop.any():
                light = self.net.line_light[idx][stop]
                ran_red = bool(np.any(self.lights.state[light] == _RED))
        return invasions, ran_red

    # ------------------------------------------------------------------ frame
    def _project_route(self) -> tuple[float, float, float]:
        """Progress [m], lateral offset [m] (+ left) and heading error [rad] w.r.t. the route.

        Searches a few segments around the last match; the whole route when the ego is farther
        than ROUTE_LOST_M from that window (one compiled call).
        """
        route = self.route
        k, progress, lateral, seg_yaw = kernels.project_route(
            route.points,
            route.s,
            max(0, self._route_idx - ROUTE_WINDOW_BACK),
            min(len(route.points) - 2, self._route_idx + ROUTE_WINDOW_AHEAD),
            self.x,
            self.y,
            ROUTE_LOST_M**2,
        )
        self._route_idx = k
        return progress, lateral, wrap_angle(self.yaw - seg_yaw)

    def _goal_pose_error(self) -> tuple[float, float]:
        """Distance [m] from the ego's centre to the goal, and (parking) the ego's heading error to
        the bay axis folded to [-pi/2, pi/2) (nose in and tail in both park; NaN: no goal heading)."""
        route = self.route
        dist = math.hypot(self.x - route.goal[0], self.y - route.goal[1])
        if route.goal_yaw is None:
            return dist, math.nan
        return dist, ((self.yaw - route.goal_yaw + math.pi / 2.0) % math.pi) - math.pi / 2.0

    def _goal_reached(self, dist: float, heading_err: float) -> bool:
        if self.route.goal_yaw is None:
            return dist < self.cfg.goal_radius_m
        return dist < self.cfg.parking_goal_radius_m and abs(heading_err) < math.radians(
            self.cfg.parking_heading_tolerance_deg
        )

    def _sensors(self, x: float, y: float, yaw: float, nv: int):
        """Camera [H, W, 3] uint8, LiDAR [N, 4] float32 and radar [M, 4] float32 of this tick."""
        if len(self._a_ex):
            # Boxes of the actors within sensor range, in the camera's and the LiDAR's pixels.
            cam_px, lid_px, box = self._cam_boxes, self._lid_boxes, self._lid_box
            n_veh, n_ped = kernels.actor_polygons(
                self._a_ex, self._a_ey, self._a_cr, self._a_sr, self._a_len, self._a_wid,
                self._a_dist2, self._sensor_r2, nv, SUBPIXEL_SHIFT, *self._cam_px,
                *self._lid_px, cam_px, lid_px, box,
            )
            veh_cam, ped_cam = cam_px[:n_veh], cam_px[n_veh : n_veh + n_ped]
            veh_lid, ped_lid = lid_px[:n_veh], lid_px[n_veh : n_veh + n_ped]
            n = kernels.radar_candidates(
                self._a_ex, self._a_ey, self._a_speed, self._a_cr, self._a_sr, self._a_radius,
                self._a_height, self._a_dist2, self._sensor_r2, self.radar.front,
                self.radar.half_h, self.radar.half_v, self.radar.cfg.range_m,
                self.radar.cfg.mount_height_m, self.speed, self._radar_buf,
            )
        else:
            veh_cam = ped_cam = veh_lid = ped_lid = _NO_BOXES
            box = None
            n = 0
        camera = self.camera.render_px(
            x, y, yaw, ((veh_cam, CAR_RGB), (ped_cam, PEDESTRIAN_RGB), (self._ego_px, CAR_RGB))
        )
        lidar = self.lidar.scan_px(
            x, y, yaw, ((veh_lid, _CAR), (ped_lid, _PEDESTRIAN)), self.sensor_rng, box
        )
        radar = self.radar.finish(self._radar_buf[:n], self.sensor_rng)
        return camera, lidar, radar

    def _frame(
        self, collisions: list[CollisionEvent], invasions: list[LaneInvasionEvent], ran_red: bool
    ) -> SensorFrame:
        veh = self.vehicles
        x, y, yaw = self.x, self.y, self.yaw
        nv = veh.n
        nearest = math.sqrt(self._a_nearest2)
        if self.sensors_enabled:
            camera, lidar, radar = self._sensors(x, y, yaw, nv)
        else:
            camera, lidar, radar = self._blank_camera, self.lidar.empty, self.radar.empty
        # Situation.
        progress, lateral, heading_err = self._project_route()
        tags = self._probe_tags
        on_sidewalk = _SIDEWALK in tags[4:8]
        off_road = tags[8] not in _DRIVABLE
        light_state, light_dist = _LIGHT_UNKNOWN, math.inf
        route = self.route
        stop_s = self._stop_s
        if self.lights.enabled and stop_s:
            j = bisect.bisect_left(stop_s, progress)
            if j < len(stop_s):
                light_state = int(self.lights.state[route.stop_light[j]])
                light_dist = float(stop_s[j] - progress - self.ego_length / 2.0)
        goal_dist, goal_heading_err = self._goal_pose_error()
        situation = EgoSituation(
            step_id=self.step_id,
            episode_id=self.episode_id,
            episode_step=self.episode_step,
            phase=self.phase,
            evaluation=self.evaluation,
            on_sidewalk=on_sidewalk,
            off_road=off_road,
            lateral_offset_m=lateral,
            heading_error_rad=heading_err,
            lane_width_m=self.cfg.map.lane_width_m,
            traffic_light_state=light_state,
            traffic_light_distance_m=light_dist,
            ran_red_light=ran_red,
            nearest_actor_distance_m=nearest,
            route_remaining_m=max(0.0, route.length - progress),
            route_progress_m=progress,
            goal_reached=self._goal_reached(goal_dist, goal_heading_err),
            goal_distance_m=goal_dist,
            goal_heading_error_rad=goal_heading_err,
            collision_events=len(collisions),
            lane_invasion_events=len(invasions),
        )
        odom = Odometry(
            x=x, y=y, z=0.0, yaw=yaw, vx=self.speed, vy=self.yaw_rate * 0.0, yaw_rate=self.yaw_rate
        )
        return SensorFrame(
            step_id=self.step_id,
            sim_time=self.step_id * self.dt,
            camera=camera,
            lidar=lidar,
            radar=radar,
            odometry=odom,
            speed=abs(self.speed),
            situation=situation,
            route=self._route32,
            route_version=self.route_version,
            collisions=collisions,
            lane_invasions=invasions,
        )

    # ------------------------------------------------------------------ views
    def actors_snapshot(self) -> ActorsSnapshot:
        veh, peds = self.vehicles, self.pedestrians
        size = self.cfg.pedestrians.size_m
        return ActorsSnapshot(
            positions=np.concatenate([[[self.x, self.y]], veh.pos, peds.pos]),
            yaws=np.concatenate([[self.yaw], veh.yaw, peds.yaw]),
            sizes=np.concatenate(
                [
                    [[self.ego_length, self.ego_width]],
                    np.stack([veh.length, veh.width], 1),
                    np.full((peds.n, 2), size),
                ]
            ),
            kinds=np.concatenate(
                [[KIND_EGO], np.full(veh.n, KIND_VEHICLE), np.full(peds.n, KIND_PEDESTRIAN)]
            ).astype(np.int64),
            ids=np.concatenate(
                [
                    [EGO_ACTOR_ID],
                    VEHICLE_ID_BASE + np.arange(veh.n),
                    PEDESTRIAN_ID_BASE + np.arange(peds.n),
                ]
            ).astype(np.int64),
            speeds=np.concatenate([[self.speed], veh.speed, peds.speed * (peds.state != 1)]),
        )

    def render_topdown(self, size_px: int = 800) -> np.ndarray:
        """Whole-map RGB uint8 picture: map, route, goal, lights, actors (ego in white)."""
        _, rgb = self.net.raster(self.camera.res)
        scale = size_px / max(rgb.shape[:2])
        img = cv2.resize(
            rgb,
            (max(1, int(rgb.shape[1] * scale)), max(1, int(rgb.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
        res = self.camera.res / scale

        def px(xy: np.ndarray) -> np.ndarray:
            return np.round(self.net.world_to_raster(np.asarray(xy), res) * 4).astype(np.int32)

        if self.route is not None:
            cv2.polylines(img, [px(self.route.points)], False, (0, 200, 255), 2, cv2.LINE_AA, 2)
            g = px(self.route.goal)
            cv2.circle(img, (int(g[0]), int(g[1])), int(4 * 4), (255, 215, 0), 2, cv2.LINE_AA, 2)
        colours = {
            TrafficLightState.RED: (255, 0, 0),
            TrafficLightState.YELLOW: (255, 255, 0),
            TrafficLightState.GREEN: (0, 255, 0),
        }
        for pos, state in zip(self.net.light_pos, self.lights.state):
            p = px(pos)
            cv2.circle(
                img,
                (int(p[0]), int(p[1])),
                12,
                colours.get(int(state), (128, 128, 128)),
                -1,
                cv2.LINE_AA,
                2,
            )
        snap = self.actors_snapshot()
        corners = box_corners(
            snap.positions,
            snap.yaws,
            np.maximum(snap.sizes[:, 0], 1.5 / scale * res),
            np.maximum(snap.sizes[:, 1], 1.5 / scale * res),
        )
        for kind, colour in (
            (KIND_VEHICLE, PALETTE[Tag.CAR]),
            (KIND_PEDESTRIAN, PALETTE[Tag.PEDESTRIAN]),
            (KIND_EGO, (255, 255, 255)),
        ):
            sel = corners[snap.kinds == kind]
            if len(sel):
                cv2.fillPoly(img, px(sel), tuple(int(v) for v in colour), cv2.LINE_AA, 2)
        return img
